//! Everything tcpwatch learns about the running kernel at start-up, in one place:
//! tracefs, BTF, features, enum names and struct layouts.

use std::path::Path;

use tcpwatch_common::{
    config::ProgramConfig,
    filter::FilterConfig,
    layout::{KernelLayout, TcpStates},
};

use super::{
    btf::{BtfError, KernelBtf},
    features::Features,
    kernel_enums::{KernelNames, NamesError},
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
}

impl Kernel {
    /// Inspects the running kernel, with its BTF read from `btf` (normally
    /// `/sys/kernel/btf/vmlinux`). Fails when tracefs or BTF is missing: struct
    /// offsets cannot be known without BTF.
    pub fn inspect(btf: &Path) -> Result<Self, KernelError> {
        let tracefs = Tracefs::locate()?;
        let mut features = Features::detect(&tracefs)?;
        features.btf = btf.exists();
        let btf = KernelBtf::load(btf)?;
        let names = KernelNames::resolve(
            Some(&btf),
            features.set_state.as_ref(),
            features.send_reset.as_ref(),
        )?;
        let layout = btf.kernel_layout()?;
        let states = names.tcp_states()?;
        Ok(Self {
            features,
            names,
            layout,
            states,
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
        }
    }
}
