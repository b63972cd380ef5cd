//! Netfilter's reset builder: where `nf_send_reset`/`nf_send_reset6` take the
//! arguments the kprobes read, from their BTF prototypes (in vmlinux when
//! `nf_reject_ipv4`/`nf_reject_ipv6` are built in, else in the loaded module's
//! BTF). The positions moved when `sk` was added (5.13), so none is assumed.

use tcpwatch_common::config::NfResetArgs;

use super::btf::KernelBtf;

/// The modules that define the functions, when not built in.
const MODULES: [(&str, &str); 2] = [
    ("nf_send_reset", "nf_reject_ipv4"),
    ("nf_send_reset6", "nf_reject_ipv6"),
];

/// Argument positions of `function` from its prototype's parameter names.
pub fn args_from(parameters: &[String]) -> Option<NfResetArgs> {
    let at = |name: &str| {
        parameters
            .iter()
            .position(|p| p == name)
            .and_then(|i| u8::try_from(i).ok())
            // Kprobes read the first five arguments from registers.
            .filter(|i| *i < 5)
    };
    Some(NfResetArgs {
        net: at("net")?,
        oldskb: at("oldskb")?,
        hook: at("hook")?,
        _pad: 0,
    })
}

/// The positions for this kernel, when both functions' prototypes (those
/// present) agree and name every argument needed.
pub fn reset_args(btf: &KernelBtf) -> Option<NfResetArgs> {
    let mut found = None;
    for (function, module) in MODULES {
        let parameters = btf
            .parameters(function)
            .or_else(|| btf.module(module)?.parameters(function));
        let Some(parameters) = parameters else {
            continue;
        };
        let args = args_from(&parameters)?;
        if found.is_some_and(|f| f != args) {
            return None;
        }
        found = Some(args);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn positions_follow_the_prototype() {
        // 5.13+: nf_send_reset(net, sk, oldskb, hook).
        let args = args_from(&names(&["net", "sk", "oldskb", "hook"])).unwrap();
        assert_eq!((args.net, args.oldskb, args.hook), (0, 2, 3));
        // Before: nf_send_reset(net, oldskb, hook).
        let args = args_from(&names(&["net", "oldskb", "hook"])).unwrap();
        assert_eq!((args.net, args.oldskb, args.hook), (0, 1, 2));
    }

    #[test]
    fn an_unknown_prototype_is_not_guessed() {
        assert_eq!(args_from(&names(&["net", "skb", "hook"])), None);
    }
}
