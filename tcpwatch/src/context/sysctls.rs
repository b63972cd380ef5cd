//! The sysctls that decide how TCP resets and piles up. Most are per network
//! namespace: they are read on a thread inside the namespace (`/proc/sys/net`
//! shows the reading thread's namespace).

use std::{collections::BTreeMap, fs};

/// Sysctls tcpwatch reports, as dotted names.
pub const NAMES: &[&str] = &[
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_abort_on_overflow",
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_retries2",
    "net.ipv4.tcp_syn_retries",
    "net.ipv4.tcp_max_orphans",
    "net.ipv4.tcp_orphan_retries",
];

/// Reads [`NAMES`] in the calling thread's namespace; missing ones are left out.
/// Whitespace inside a value (`ip_local_port_range`) becomes one space.
pub fn read() -> BTreeMap<String, String> {
    NAMES
        .iter()
        .filter_map(|name| {
            let path = format!("/proc/sys/{}", name.replace('.', "/"));
            let value = fs::read_to_string(path).ok()?;
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            Some(((*name).to_owned(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_namespace() {
        let values = super::read();
        assert!(values["net.ipv4.tcp_max_tw_buckets"].parse::<u64>().is_ok());
        let range = &values["net.ipv4.ip_local_port_range"];
        assert_eq!(range.split(' ').count(), 2, "{range}");
    }
}
