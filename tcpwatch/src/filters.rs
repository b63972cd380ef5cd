//! `trace` filters: parsed and validated from the command line, then turned into
//! the in-kernel filter config and sets.

use std::{net::IpAddr, os::unix::fs::MetadataExt, path::Path};

use tcpwatch_common::{
    COMM_LEN,
    event::EventKind,
    filter::{FilterConfig, active},
    flow::map_v4,
    limits::{FILTER_ENTRIES, FILTER_NETNS},
};

/// An address prefix over IPv4-mapped 16-byte addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    /// The address, IPv4 mapped.
    pub addr: [u8; 16],
    /// Prefix length in bits over the 128-bit form.
    pub bits: u32,
}

/// The user's filters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    /// Kinds to emit.
    pub kinds: Vec<EventKind>,
    /// Owner or listener process ids.
    pub pids: Vec<u32>,
    /// Owner or listener command name.
    pub comm: Option<String>,
    /// Local or remote ports.
    pub ports: Vec<u16>,
    /// Local or remote address prefixes.
    pub prefixes: Vec<Prefix>,
    /// Network namespace inodes.
    pub netns: Vec<u32>,
}

/// The filter sets that live in maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterSets {
    /// Ports.
    pub ports: Vec<u16>,
    /// Process ids.
    pub pids: Vec<u32>,
    /// `(address, prefix bits)`.
    pub prefixes: Vec<([u8; 16], u32)>,
}

impl Filters {
    /// Checks the limits of the in-kernel sets.
    pub fn validate(&self) -> Result<(), String> {
        let max = FILTER_ENTRIES as usize;
        if self.pids.len() > max {
            return Err(format!("at most {max} --pid values"));
        }
        if self.ports.len() > max {
            return Err(format!("at most {max} --port values"));
        }
        if self.prefixes.len() > max {
            return Err(format!("at most {max} --addr values"));
        }
        if self.netns.len() > FILTER_NETNS {
            return Err(format!("at most {FILTER_NETNS} --netns values"));
        }
        Ok(())
    }

    /// The read-only part of the in-kernel filter.
    pub fn config(&self) -> FilterConfig {
        let mut config = FilterConfig {
            kinds: self.kinds.iter().fold(0, |mask, k| mask | k.mask()),
            ..FilterConfig::default()
        };
        if !self.ports.is_empty() {
            config.active |= active::PORTS;
        }
        if !self.prefixes.is_empty() {
            config.active |= active::ADDRS;
        }
        if !self.pids.is_empty() {
            config.active |= active::PIDS;
        }
        if let Some(comm) = &self.comm {
            config.active |= active::COMM;
            config.comm[..comm.len()].copy_from_slice(comm.as_bytes());
        }
        if !self.netns.is_empty() {
            config.active |= active::NETNS;
            for (slot, ns) in config.netns.iter_mut().zip(&self.netns) {
                *slot = *ns;
            }
            config.netns_count = self.netns.len() as u32;
        }
        config
    }

    /// The sets that go into the filter maps.
    pub fn sets(&self) -> FilterSets {
        FilterSets {
            ports: self.ports.clone(),
            pids: self.pids.clone(),
            prefixes: self.prefixes.iter().map(|p| (p.addr, p.bits)).collect(),
        }
    }
}

/// A `--kind` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kinds(pub Vec<EventKind>);

/// Parses `--kind`: `state`, `reset_sent`, `reset_received`, `reset` (both
/// reset kinds), `all` (those three), `drop` (opt-in: dropped TCP segments) or
/// `app_error` (opt-in: socket calls that failed with a reset's or a timeout's
/// error), comma-separated.
pub fn parse_kinds(text: &str) -> Result<Kinds, String> {
    let mut kinds = Vec::new();
    for word in text.split(',').map(str::trim) {
        let add: &[EventKind] = match word {
            "state" => &[EventKind::State],
            "reset_sent" => &[EventKind::ResetSent],
            "reset_received" => &[EventKind::ResetReceived],
            "reset" | "resets" => &[EventKind::ResetSent, EventKind::ResetReceived],
            "all" => &EventKind::ALL,
            "drop" | "drops" => &[EventKind::Drop],
            "app_error" | "app_errors" => &[EventKind::AppError],
            other => {
                return Err(format!(
                    "unknown kind '{other}' (expected state, reset_sent, reset_received, reset, all, drop or app_error)"
                ));
            }
        };
        for kind in add {
            if !kinds.contains(kind) {
                kinds.push(*kind);
            }
        }
    }
    Ok(Kinds(kinds))
}

/// Parses `--addr`: an IPv4/IPv6 address or CIDR prefix.
pub fn parse_prefix(text: &str) -> Result<Prefix, String> {
    let (addr, bits) = match text.split_once('/') {
        Some((addr, bits)) => (addr, Some(bits)),
        None => (text, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("'{text}' is not an IP address or CIDR prefix"))?;
    let (bytes, max, offset) = match ip {
        IpAddr::V4(v4) => (map_v4(v4.octets()), 32, 96),
        IpAddr::V6(v6) => (v6.octets(), 128, 0),
    };
    let bits = match bits {
        None => max,
        Some(b) => b
            .parse::<u32>()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(|| format!("'{text}': prefix length must be 0..={max}"))?,
    };
    Ok(Prefix {
        addr: bytes,
        bits: bits + offset,
    })
}

/// Parses `--comm`: at most 15 bytes (the kernel's TASK_COMM_LEN - 1).
pub fn parse_comm(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("empty command name".into());
    }
    if text.len() >= COMM_LEN {
        return Err(format!(
            "'{text}' is longer than {} bytes; the kernel keeps only the first {} of a command name",
            COMM_LEN - 1,
            COMM_LEN - 1
        ));
    }
    Ok(text.to_owned())
}

/// Parses `--netns`: an inode number, or a path such as `/proc/PID/ns/net` or
/// `/run/netns/NAME` (or a bare NAME under /run/netns).
pub fn parse_netns(text: &str) -> Result<u32, String> {
    if let Ok(inode) = text.parse::<u32>() {
        return Ok(inode);
    }
    let path = if text.contains('/') {
        Path::new(text).to_path_buf()
    } else {
        Path::new("/run/netns").join(text)
    };
    let meta = std::fs::metadata(&path).map_err(|e| {
        format!(
            "'{text}': not a netns inode or path ({}: {e})",
            path.display()
        )
    })?;
    u32::try_from(meta.ino()).map_err(|_| format!("'{text}': inode {} out of range", meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(
            parse_kinds("reset").unwrap().0,
            [EventKind::ResetSent, EventKind::ResetReceived]
        );
        assert_eq!(parse_kinds("all,state").unwrap().0.len(), 3);
        assert!(!parse_kinds("all").unwrap().0.contains(&EventKind::Drop));
        assert_eq!(parse_kinds("all,drop").unwrap().0.len(), 4);
        assert!(parse_kinds("resets,bogus").unwrap_err().contains("bogus"));
    }

    #[test]
    fn prefixes() {
        let p = parse_prefix("10.1.0.0/16").unwrap();
        assert_eq!(p.bits, 112);
        assert_eq!(&p.addr[10..14], &[0xff, 0xff, 10, 1]);
        assert_eq!(parse_prefix("::1").unwrap().bits, 128);
        assert_eq!(parse_prefix("127.0.0.1").unwrap().bits, 128);
        assert!(parse_prefix("10.0.0.0/33").is_err());
        assert!(parse_prefix("nope").is_err());
    }

    #[test]
    fn comm_and_netns() {
        assert!(parse_comm("a-very-long-command-name").is_err());
        assert!(parse_comm("").is_err());
        assert_eq!(parse_netns("4026531840").unwrap(), 4026531840);
        assert!(parse_netns("/proc/self/ns/net").is_ok());
        assert!(parse_netns("/nonexistent/ns").is_err());
    }

    #[test]
    fn config_bits() {
        let f = Filters {
            kinds: vec![EventKind::ResetSent],
            comm: Some("nginx".into()),
            netns: vec![7, 8],
            ..Filters::default()
        };
        let c = f.config();
        assert_eq!(c.kinds, EventKind::ResetSent.mask());
        assert_eq!(c.active, active::COMM | active::NETNS);
        assert_eq!(&c.comm[..6], b"nginx\0");
        assert_eq!((c.netns[1], c.netns_count), (8, 2));
        let too_many = Filters {
            netns: vec![1; 9],
            ..Filters::default()
        };
        assert!(too_many.validate().is_err());
    }
}
