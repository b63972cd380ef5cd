//! Names of kernel enums the events carry as numbers: TCP states,
//! `enum sk_rst_reason` and `enum skb_drop_reason`. Resolved at start-up from BTF, else from the tracepoints'
//! print fmt; numbers moved between 6.11 and 6.12, so no table is compiled in.

use std::collections::BTreeMap;

use tcpwatch_common::layout::TcpStates;

use super::{btf::KernelBtf, tracefs::TpFormat};

/// Where a name table came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameSource {
    /// Kernel BTF.
    Btf,
    /// A tracepoint's `print fmt` symbol table.
    TracepointFormat,
}

impl NameSource {
    /// Human-readable origin.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Btf => "kernel BTF",
            Self::TracepointFormat => "tracepoint print fmt",
        }
    }
}

/// The members of `enum <name>` by number (`prefix` stripped), from BTF, else
/// from the `__print_symbolic` table of `field` in `format`'s print fmt; with
/// where they came from (`None`: neither has them).
fn numbered(
    btf: Option<&KernelBtf>,
    name: &str,
    prefix: &str,
    format: Option<&TpFormat>,
    field: &str,
) -> (BTreeMap<u32, String>, Option<NameSource>) {
    let (members, source) = match btf.and_then(|b| b.enum_named(name)) {
        Some(members) => (strip(members, prefix), Some(NameSource::Btf)),
        None => {
            let table = format.map(|f| f.symbolic_table(field)).unwrap_or_default();
            let source = (!table.is_empty()).then_some(NameSource::TracepointFormat);
            (
                table.into_iter().map(|(v, n)| (n, v as i64)).collect(),
                source,
            )
        }
    };
    let numbered = members
        .into_iter()
        .filter_map(|(name, value)| Some((u32::try_from(value).ok()?, name)))
        .collect();
    (numbered, source)
}

/// The iptables chain name of a netfilter hook (`NF_INET_LOCAL_IN` is
/// `INPUT`); `None` for `NF_INET_NUMHOOKS` and the ingress hook's alias.
fn chain_name(hook: &str) -> Option<String> {
    Some(
        match hook.strip_prefix("NF_INET_")? {
            "PRE_ROUTING" => "PREROUTING",
            "LOCAL_IN" => "INPUT",
            "FORWARD" => "FORWARD",
            "LOCAL_OUT" => "OUTPUT",
            "POST_ROUTING" => "POSTROUTING",
            "INGRESS" => "INGRESS",
            _ => return None,
        }
        .to_owned(),
    )
}

/// Errors resolving names.
#[derive(Debug, thiserror::Error)]
pub enum NamesError {
    /// Neither BTF nor the state tracepoint describes the TCP states.
    #[error(
        "cannot resolve TCP state numbers: no TCP_ESTABLISHED enum in BTF and no state table in sock:inet_sock_set_state's format"
    )]
    NoStates,
    /// A state tcpwatch needs is missing from the kernel's table.
    #[error("the kernel's TCP state table has no {0}")]
    MissingState(&'static str),
}

/// Kernel enum names for this kernel.
#[derive(Clone, Debug)]
pub struct KernelNames {
    states: BTreeMap<u8, String>,
    reasons: BTreeMap<u32, String>,
    /// Netfilter hooks (`enum nf_inet_hooks`) as iptables names its chains.
    nf_hooks: BTreeMap<u32, String>,
    /// Origin of the state table.
    pub states_source: NameSource,
    /// Origin of the reset-reason table, `None` when the kernel has no reasons.
    pub reasons_source: Option<NameSource>,
    drop_reasons: BTreeMap<u32, String>,
    /// Origin of the drop-reason table, `None` when the kernel has none (or
    /// it was not resolved).
    pub drop_reasons_source: Option<NameSource>,
}

impl KernelNames {
    /// Resolves names from BTF (preferred) or the tracepoint formats.
    pub fn resolve(
        btf: Option<&KernelBtf>,
        set_state: Option<&TpFormat>,
        send_reset: Option<&TpFormat>,
    ) -> Result<Self, NamesError> {
        let (states, states_source) = match btf.and_then(|b| b.enum_with_member("TCP_ESTABLISHED"))
        {
            Some(members) => (strip(members, "TCP_"), NameSource::Btf),
            None => {
                let table = set_state
                    .map(|f| f.symbolic_table("oldstate"))
                    .unwrap_or_default();
                if table.is_empty() {
                    return Err(NamesError::NoStates);
                }
                (
                    strip(
                        table.into_iter().map(|(v, n)| (n, v as i64)).collect(),
                        "TCP_",
                    ),
                    NameSource::TracepointFormat,
                )
            }
        };
        let states = states
            .into_iter()
            .filter_map(|(name, value)| Some((u8::try_from(value).ok()?, name)))
            .collect();

        let (reasons, reasons_source) =
            numbered(btf, "sk_rst_reason", "SK_RST_REASON_", send_reset, "reason");
        let nf_hooks = btf
            .and_then(|b| b.enum_named("nf_inet_hooks"))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, value)| Some((u32::try_from(value).ok()?, chain_name(&name)?)))
            .collect();
        Ok(Self {
            states,
            reasons,
            nf_hooks,
            states_source,
            reasons_source,
            drop_reasons: BTreeMap::new(),
            drop_reasons_source: None,
        })
    }

    /// Adds the `enum skb_drop_reason` names (`SKB_DROP_REASON_` stripped),
    /// from BTF, else from `skb:kfree_skb`'s print fmt. The numbers differ
    /// between kernels (a new reason shifts all after it).
    pub fn resolve_drop_reasons(&mut self, btf: Option<&KernelBtf>, kfree_skb: Option<&TpFormat>) {
        let (members, source) = numbered(
            btf,
            "skb_drop_reason",
            "SKB_DROP_REASON_",
            kfree_skb,
            "reason",
        );
        self.drop_reasons = members;
        self.drop_reasons_source = source;
    }

    /// `NO_SOCKET`, `TCP_LISTEN_OVERFLOW`, ... for a raw `skb_drop_reason`.
    pub fn drop_reason(&self, raw: u32) -> Option<&str> {
        self.drop_reasons.get(&raw).map(String::as_str)
    }

    /// Whether this kernel names a drop reason `name`.
    pub fn has_drop_reason(&self, name: &str) -> bool {
        self.drop_reasons.values().any(|n| n == name)
    }

    /// Number of drop reasons known.
    pub fn drop_reason_count(&self) -> usize {
        self.drop_reasons.len()
    }

    /// `ESTABLISHED`, `SYN_SENT`, ... for a kernel state number.
    pub fn state(&self, number: u8) -> Option<&str> {
        self.states.get(&number).map(String::as_str)
    }

    /// The number of state `name` (`TIME_WAIT`, ...) on this kernel.
    pub fn state_number(&self, name: &str) -> Option<u8> {
        self.states
            .iter()
            .find_map(|(number, n)| (n == name).then_some(*number))
    }

    /// `NO_SOCKET`, `TCP_ABORT_ON_CLOSE`, ... for a raw `sk_rst_reason`.
    pub fn reason(&self, raw: u32) -> Option<&str> {
        self.reasons.get(&raw).map(String::as_str)
    }

    /// `INPUT`, `FORWARD`, ... for a raw `enum nf_inet_hooks` value.
    pub fn netfilter_hook(&self, raw: u32) -> Option<&str> {
        self.nf_hooks.get(&raw).map(String::as_str)
    }

    /// Whether this kernel names a reset reason `name`.
    pub fn has_reason(&self, name: &str) -> bool {
        self.reasons.values().any(|n| n == name)
    }

    /// Number of reset reasons known.
    pub fn reason_count(&self) -> usize {
        self.reasons.len()
    }

    /// The state numbers the kernel programs need.
    pub fn tcp_states(&self) -> Result<TcpStates, NamesError> {
        let number = |name: &'static str| {
            self.states
                .iter()
                .find(|(_, n)| n.as_str() == name)
                .map(|(v, _)| *v)
                .ok_or(NamesError::MissingState(name))
        };
        Ok(TcpStates {
            established: number("ESTABLISHED")?,
            syn_sent: number("SYN_SENT")?,
            syn_recv: number("SYN_RECV")?,
            fin_wait1: number("FIN_WAIT1")?,
            fin_wait2: number("FIN_WAIT2")?,
            time_wait: number("TIME_WAIT")?,
            close: number("CLOSE")?,
            close_wait: number("CLOSE_WAIT")?,
            last_ack: number("LAST_ACK")?,
            listen: number("LISTEN")?,
            closing: number("CLOSING")?,
            new_syn_recv: number("NEW_SYN_RECV")?,
        })
    }
}

fn strip(members: Vec<(String, i64)>, prefix: &str) -> Vec<(String, i64)> {
    members
        .into_iter()
        .map(|(name, value)| (name.strip_prefix(prefix).unwrap_or(&name).to_owned(), value))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(text: &str) -> TpFormat {
        TpFormat::parse(text).unwrap()
    }

    const STATE_FMT: &str = "format:\n\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;\nprint fmt: \"x\", __print_symbolic(REC->oldstate, { 1, \"TCP_ESTABLISHED\" }, { 2, \"TCP_SYN_SENT\" }, { 3, \"TCP_SYN_RECV\" }, { 4, \"TCP_FIN_WAIT1\" }, { 5, \"TCP_FIN_WAIT2\" }, { 6, \"TCP_TIME_WAIT\" }, { 7, \"TCP_CLOSE\" }, { 8, \"TCP_CLOSE_WAIT\" }, { 9, \"TCP_LAST_ACK\" }, { 10, \"TCP_LISTEN\" }, { 11, \"TCP_CLOSING\" }, { 12, \"TCP_NEW_SYN_RECV\" })\n";

    #[test]
    fn falls_back_to_print_fmt_without_btf() {
        let reset = format(
            "format:\n\tfield:enum sk_rst_reason reason;\toffset:28;\tsize:4;\tsigned:0;\nprint fmt: \"r\", __print_symbolic(REC->reason, { 0, \"NOT_SPECIFIED\" }, { 1, \"NO_SOCKET\" })\n",
        );
        let names = KernelNames::resolve(None, Some(&format(STATE_FMT)), Some(&reset)).unwrap();
        assert_eq!(names.state(1), Some("ESTABLISHED"));
        assert_eq!(names.states_source, NameSource::TracepointFormat);
        assert_eq!(names.tcp_states().unwrap().listen, 10);
        assert_eq!(names.reason(1), Some("NO_SOCKET"));
        assert_eq!(names.reasons_source, Some(NameSource::TracepointFormat));
    }

    #[test]
    fn no_reason_field_means_no_reasons() {
        let old_reset = format(
            "format:\n\tfield:int state;\toffset:24;\tsize:4;\tsigned:1;\nprint fmt: \"s\"\n",
        );
        let names = KernelNames::resolve(None, Some(&format(STATE_FMT)), Some(&old_reset)).unwrap();
        assert_eq!(names.reasons_source, None);
        assert_eq!(names.reason(1), None);
    }

    #[test]
    fn no_state_table_is_an_error() {
        assert!(matches!(
            KernelNames::resolve(None, None, None),
            Err(NamesError::NoStates)
        ));
    }

    #[test]
    fn host_btf_names() {
        let btf = KernelBtf::load(std::path::Path::new(super::super::btf::VMLINUX_BTF))
            .expect("this test needs kernel BTF");
        let names = KernelNames::resolve(Some(&btf), None, None).unwrap();
        assert_eq!(names.states_source, NameSource::Btf);
        assert_eq!(
            names.state(names.tcp_states().unwrap().time_wait),
            Some("TIME_WAIT")
        );
        assert!(names.has_reason("NO_SOCKET"));
    }
}
