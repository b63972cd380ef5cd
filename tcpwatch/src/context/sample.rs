//! The `sample` record: what a network namespace looked like at one moment
//! (counter deltas, sysctls, socket states, accept queues, CLOSE_WAIT sockets,
//! descriptor usage). Written into the JSON stream so that a recording explains
//! the same way later (`tcpwatch explain --from`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::events::model::Process;

/// Record type tag of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleTag {
    /// Always `sample`.
    Sample,
}

/// One namespace at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// Schema version (same as events).
    pub schema_version: u32,
    /// Always `sample`.
    pub record: SampleTag,
    /// When it was taken.
    pub time: DateTime<Utc>,
    /// Network namespace inode.
    pub netns: u32,
    /// Milliseconds since the previous sample of this namespace (0 for the first).
    pub interval_ms: u64,
    /// Increases of the TCP counters since the previous sample (`TcpExt.*`,
    /// `Tcp.*`), non-zero only; empty in the first sample.
    pub counters: BTreeMap<String, u64>,
    /// Relevant sysctls (`net.ipv4.tcp_max_tw_buckets`, ...), as text.
    pub sysctls: BTreeMap<String, String>,
    /// `/proc/net/sockstat` TCP line.
    pub sockstat: Sockstat,
    /// Number of TCP sockets per state name.
    pub states: BTreeMap<String, u32>,
    /// Local ports holding TIME_WAIT or CLOSE_WAIT sockets, most first (bounded).
    pub ports: Vec<PortSockets>,
    /// Remote endpoints this host holds TIME_WAIT sockets toward, most first
    /// (bounded): a client that closes first piles up toward its server.
    pub destinations: Vec<Destination>,
    /// Listening sockets and their accept queues (bounded).
    pub listeners: Vec<Listener>,
    /// CLOSE_WAIT sockets, longest idle first (bounded).
    pub close_wait: Vec<CloseWait>,
    /// Descriptor usage of the processes owning listeners or CLOSE_WAIT sockets.
    pub processes: Vec<ProcessFds>,
}

/// `/proc/net/sockstat`'s TCP line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sockstat {
    /// Sockets in use.
    pub inuse: u64,
    /// Orphaned sockets (closed by their process, not finished), host-wide.
    pub orphan: u64,
    /// TIME_WAIT sockets.
    pub tw: u64,
    /// Allocated sockets.
    pub alloc: u64,
}

/// Sockets on one local port by state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSockets {
    /// Local port.
    pub port: u16,
    /// Count per state name.
    pub states: BTreeMap<String, u32>,
}

/// TIME_WAIT sockets toward one remote endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// `addr:port`.
    pub remote: String,
    /// TIME_WAIT sockets toward it.
    pub time_wait: u32,
}

/// A listening socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// `addr:port`.
    pub local: String,
    /// Connections in the accept queue, not yet accepted.
    pub queue: u32,
    /// The accept queue's limit (backlog given to listen(), capped by somaxconn).
    pub backlog: u32,
    /// The backlog the program gave `listen()` (before the somaxconn cap),
    /// when tcpwatch saw the call (it ran before the listener was set up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_backlog: Option<i32>,
    /// Owning process, when known.
    pub owner: Option<Process>,
}

/// A socket in CLOSE_WAIT: the peer closed, the owner has not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseWait {
    /// `addr:port`.
    pub local: String,
    /// `addr:port`.
    pub remote: String,
    /// Milliseconds since the last segment from the peer (its FIN, normally): a
    /// lower bound of the time spent in CLOSE_WAIT.
    pub idle_ms: Option<u64>,
    /// Bytes received and never read.
    pub unread_bytes: u32,
    /// Owning process, when known.
    pub owner: Option<Process>,
}

/// Descriptor usage of a process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessFds {
    /// Process id.
    pub pid: u32,
    /// Command name.
    pub comm: String,
    /// Open descriptors.
    pub fds: u64,
    /// RLIMIT_NOFILE soft limit (`None`: unlimited).
    pub fd_limit: Option<u64>,
}

/// Parses the TCP line of `/proc/net/sockstat`.
pub fn parse_sockstat(text: &str) -> Sockstat {
    let mut s = Sockstat::default();
    if let Some(line) = text.lines().find_map(|l| l.strip_prefix("TCP:")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.chunks(2) {
            if let [name, value] = pair {
                let value = value.parse().unwrap_or(0);
                match *name {
                    "inuse" => s.inuse = value,
                    "orphan" => s.orphan = value,
                    "tw" => s.tw = value,
                    "alloc" => s.alloc = value,
                    _ => {}
                }
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockstat_tcp_line() {
        let s = parse_sockstat(
            "sockets: used 7\nTCP: inuse 1 orphan 2 tw 30 alloc 4 mem 24\nUDP: inuse 0 mem 0\n",
        );
        assert_eq!(
            s,
            Sockstat {
                inuse: 1,
                orphan: 2,
                tw: 30,
                alloc: 4
            }
        );
        assert_eq!(parse_sockstat("garbage"), Sockstat::default());
    }
}
