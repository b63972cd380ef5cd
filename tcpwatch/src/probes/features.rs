//! What the running kernel offers: tracepoints and their layouts, kprobes, the
//! functions the kprobe fallback needs, BTF. Detection only; decisions are in
//! [`super::plan`].

use std::{collections::BTreeSet, fs, path::Path};

use super::tracefs::{TpFormat, Tracefs, TracefsError};

/// Kernel functions tcpwatch may probe, looked up in `/proc/kallsyms`.
pub const FUNCTIONS: [&str; 5] = [
    "tcp_v4_send_reset",
    "tcp_v6_send_reset",
    "tcp_send_active_reset",
    "nf_send_reset",
    "nf_send_reset6",
];

/// Detected kernel features.
#[derive(Clone, Debug, Default)]
pub struct Features {
    /// `uname -r`.
    pub release: String,
    /// `/sys/kernel/btf/vmlinux` exists.
    pub btf: bool,
    /// kprobes can be attached (kprobe PMU or tracefs `kprobe_events`).
    pub kprobes: bool,
    /// Which of [`FUNCTIONS`] are in kallsyms.
    pub functions: BTreeSet<String>,
    /// `sock:inet_sock_set_state`.
    pub set_state: Option<TpFormat>,
    /// `tcp:tcp_send_reset`.
    pub send_reset: Option<TpFormat>,
    /// `tcp:tcp_receive_reset`.
    pub receive_reset: Option<TpFormat>,
    /// `syscalls:sys_exit_accept4`.
    pub accept4_exit: Option<TpFormat>,
    /// `syscalls:sys_exit_accept`.
    pub accept_exit: Option<TpFormat>,
    /// `skb:kfree_skb`.
    pub kfree_skb: Option<TpFormat>,
    /// `syscalls:sys_enter_listen`.
    pub listen_enter: Option<TpFormat>,
    /// `sock:sock_recv_length` (6.4+).
    pub recv_length: Option<TpFormat>,
    /// `sock:sock_send_length` (6.4+).
    pub send_length: Option<TpFormat>,
    /// `syscalls:sys_exit_connect`.
    pub connect_exit: Option<TpFormat>,
    /// BTF gives the argument positions of `nf_send_reset`/`nf_send_reset6`
    /// (set by [`super::kernel::Kernel::inspect`]).
    pub nf_reset_args: bool,
}

impl Features {
    /// Detects the running kernel's features.
    pub fn detect(tracefs: &Tracefs) -> Result<Self, TracefsError> {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let kprobes = Path::new("/sys/bus/event_source/devices/kprobe").exists()
            || tracefs.has_kprobe_events();
        let kallsyms = fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        Self::from_tracefs(
            tracefs,
            release,
            Path::new(super::btf::VMLINUX_BTF).exists(),
            kprobes,
            kallsyms_functions(&kallsyms),
        )
    }

    /// Features from a tracefs tree plus facts found elsewhere (tests build these
    /// from fixtures of real kernels).
    pub fn from_tracefs(
        tracefs: &Tracefs,
        release: String,
        btf: bool,
        kprobes: bool,
        functions: BTreeSet<String>,
    ) -> Result<Self, TracefsError> {
        Ok(Self {
            release,
            btf,
            kprobes,
            functions,
            set_state: tracefs.format("sock", "inet_sock_set_state")?,
            send_reset: tracefs.format("tcp", "tcp_send_reset")?,
            receive_reset: tracefs.format("tcp", "tcp_receive_reset")?,
            accept4_exit: tracefs.format("syscalls", "sys_exit_accept4")?,
            accept_exit: tracefs.format("syscalls", "sys_exit_accept")?,
            kfree_skb: tracefs.format("skb", "kfree_skb")?,
            listen_enter: tracefs.format("syscalls", "sys_enter_listen")?,
            recv_length: tracefs.format("sock", "sock_recv_length")?,
            send_length: tracefs.format("sock", "sock_send_length")?,
            connect_exit: tracefs.format("syscalls", "sys_exit_connect")?,
            nf_reset_args: false,
        })
    }

    /// `tcp:tcp_send_reset` fires for resets without a full socket (no socket,
    /// TIME_WAIT) and carries `enum sk_rst_reason`: both arrived together in 6.10
    /// (19822a980e19, b533fb9cf4f7), so the `reason` field is the feature test.
    pub fn send_reset_covers_all(&self) -> bool {
        self.send_reset
            .as_ref()
            .is_some_and(|f| f.get("reason").is_some())
    }

    /// `skb:kfree_skb` carries `enum skb_drop_reason` (5.17+; before, only
    /// the location of the free).
    pub fn drops_have_reason(&self) -> bool {
        self.kfree_skb
            .as_ref()
            .is_some_and(|f| f.get("reason").is_some())
    }

    /// `skb:kfree_skb` names the socket that received the dropped segment
    /// (`rx_sk`, 6.12+).
    pub fn drops_have_socket(&self) -> bool {
        self.kfree_skb
            .as_ref()
            .is_some_and(|f| f.get("rx_sk").is_some())
    }

    /// Whether `function` is in kallsyms.
    pub fn has_function(&self, function: &str) -> bool {
        self.functions.contains(function)
    }
}

/// Which of [`FUNCTIONS`] appear (exactly, not `.cold`/`.isra` clones) in a
/// kallsyms text.
pub fn kallsyms_functions(kallsyms: &str) -> BTreeSet<String> {
    kallsyms
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .filter(|name| FUNCTIONS.contains(name))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kallsyms_exact_names_only() {
        let text = "ffffffff820917f0 t tcp_v4_send_reset\nffffffff8209 t tcp_v4_send_reset.cold\nffffffffc0 t nf_send_reset6\t[nf_reject_ipv6]\nffff T tcp_send_active_reset\n";
        let found = kallsyms_functions(text);
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            [
                "nf_send_reset6",
                "tcp_send_active_reset",
                "tcp_v4_send_reset"
            ]
        );
    }
}
