//! Everything tcpwatch learns about the running kernel at start-up, in one place:
//! tracefs, BTF, features, enum names and struct layouts.

use std::path::Path;

use tcpwatch_common::{
    config::{NfResetArgs, ProgramConfig},
    filter::FilterConfig,
    layout::{KernelLayout, TcpStates},
};

use super::{
    btf::{BtfError, KernelBtf, NO_BTF, VMLINUX_BTF},
    features::Features,
    kernel_enums::{KernelNames, NamesError},
    netfilter,
    tracefs::{Tracefs, TracefsError},
};

/// Why the kernel cannot be traced.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// tracefs problem.
    #[error(transparent)]
    Tracefs(#[from] TracefsError),
    /// BTF problem.
    #[error(transparent)]
    Btf(#[from] BtfError),
    /// Enum names problem.
    #[error(transparent)]
    Names(#[from] NamesError),
}

/// The running kernel, as tcpwatch sees it.
pub struct Kernel {
    /// Detected features.
    pub features: Features,
    /// Enum names.
    pub names: KernelNames,
    /// Struct member offsets.
    pub layout: KernelLayout,
    /// TCP state numbers.
    pub states: TcpStates,
    /// Argument positions of netfilter's reset builder, from BTF.
    pub nf_reset: Option<NfResetArgs>,
    /// What tracing cannot do on this kernel as configured (without BTF),
    /// one sentence each.
    pub lost: Vec<String>,
}

/// What running without BTF costs: no struct member offsets.
const WITHOUT_BTF: [&str; 4] = [
    "without kernel BTF, events carry no network namespace (all look like one; --netns cannot be used)",
    "without kernel BTF, connections carry no idle time or byte counts",
    "without kernel BTF, accepted sockets are attributed to the listening process (the accept() hook cannot read the file table)",
    "without kernel BTF, kprobes cannot read the segment, so on kernels before 6.10 resets without a full socket are not seen",
];

impl Kernel {
    /// Inspects the running kernel, with its BTF read from `btf` (normally
    /// `/sys/kernel/btf/vmlinux`). Fails when tracefs or BTF is missing: struct
    /// offsets cannot be known without BTF.
    ///
    /// `btf` may be [`NO_BTF`] (run without), and when it is [`VMLINUX_BTF`]
    /// and this kernel has none, tcpwatch runs without it too: struct offsets
    /// are then unknown, and `lost` says what that costs. Any other path must
    /// exist.
    pub fn inspect(btf: &Path) -> Result<Self, KernelError> {
        let tracefs = Tracefs::locate()?;
        let mut features = Features::detect(&tracefs)?;
        let without = btf == Path::new(NO_BTF) || (btf == Path::new(VMLINUX_BTF) && !btf.exists());
        let btf = if without {
            None
        } else {
            Some(KernelBtf::load(btf)?)
        };
        features.btf = btf.is_some();
        let names = KernelNames::resolve(
            btf.as_ref(),
            features.set_state.as_ref(),
            features.send_reset.as_ref(),
        )?;
        let (layout, lost) = match &btf {
            Some(btf) => (btf.kernel_layout()?, Vec::new()),
            None => (
                KernelLayout::default(),
                WITHOUT_BTF.map(str::to_owned).to_vec(),
            ),
        };
        let mut names = names;
        names.resolve_drop_reasons(btf.as_ref(), features.kfree_skb.as_ref());
        let states = names.tcp_states()?;
        let nf_reset = btf.as_ref().and_then(netfilter::reset_args);
        features.nf_reset_args = nf_reset.is_some();
        Ok(Self {
            features,
            names,
            layout,
            states,
            nf_reset,
            lost,
        })
    }

    /// The programs' configuration for this kernel with `filter`.
    pub fn program_config(&self, filter: FilterConfig, owner_grace_ns: u64) -> ProgramConfig {
        let layout = |f: &Option<super::tracefs::TpFormat>| {
            f.as_ref().map(|f| f.layout()).unwrap_or_default()
        };
        ProgramConfig {
            kernel: self.layout,
            states: self.states,
            set_state: layout(&self.features.set_state),
            send_reset: layout(&self.features.send_reset),
            receive_reset: layout(&self.features.receive_reset),
            accept4_exit: layout(&self.features.accept4_exit),
            accept_exit: layout(&self.features.accept_exit),
            owner_grace_ns,
            filter,
            storm_high_water: 0,
            options: 0,
            nf_reset: self.nf_reset.unwrap_or_default(),
            kfree_skb: layout(&self.features.kfree_skb),
            listen_enter: layout(&self.features.listen_enter),
            recv_length: layout(&self.features.recv_length),
            send_length: layout(&self.features.send_length),
            connect_exit: layout(&self.features.connect_exit),
            _pad: 0,
            app_errnos: app_errnos(),
        }
    }
}

/// The errnos a failed socket call is reported with: those a reset, a
/// timeout or an ICMP error leave on a TCP socket (libc's numbers for this
/// architecture), as the programs' bit set.
pub fn app_errnos() -> [u64; 2] {
    use nix::libc;
    let mut set = [0u64; 2];
    for errno in [
        libc::ECONNRESET,
        libc::EPIPE,
        libc::ETIMEDOUT,
        libc::ECONNREFUSED,
        libc::ECONNABORTED,
        libc::EHOSTUNREACH,
        libc::ENETUNREACH,
        libc::EHOSTDOWN,
    ] {
        let e = errno as usize;
        if e < 128 {
            set[e / 64] |= 1 << (e % 64);
        }
    }
    set
}
