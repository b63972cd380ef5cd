//! Summarising a namespace's TCP sockets for a sample: totals per state, the
//! local ports where TIME_WAIT and CLOSE_WAIT pile up, listeners with their
//! accept queues, and the CLOSE_WAIT sockets themselves.

use std::collections::{BTreeMap, HashMap};

use super::sample::{CloseWait, Destination, Listener, PortSockets};
use crate::{attrib::sock_diag::DiagSocket, probes::kernel_enums::KernelNames};

/// At most this many ports, listeners and CLOSE_WAIT sockets per sample.
pub const MAX_PORTS: usize = 32;
/// See [`MAX_PORTS`].
pub const MAX_LISTENERS: usize = 128;
/// See [`MAX_PORTS`].
pub const MAX_CLOSE_WAIT: usize = 256;

/// The summary, with the socket inodes whose owners are worth resolving.
#[derive(Debug, Default)]
pub struct Summary {
    /// Count per state name.
    pub states: BTreeMap<String, u32>,
    /// Ports with TIME_WAIT or CLOSE_WAIT sockets.
    pub ports: Vec<PortSockets>,
    /// Remote endpoints with TIME_WAIT sockets.
    pub destinations: Vec<Destination>,
    /// Listeners, with the inode of each.
    pub listeners: Vec<(Listener, u64)>,
    /// CLOSE_WAIT sockets, with the inode of each.
    pub close_wait: Vec<(CloseWait, u64)>,
}

/// Summarises `sockets` (all states; CLOSE_WAIT ones may carry `tcp_info`).
pub fn summarise(sockets: &[DiagSocket], names: &KernelNames) -> Summary {
    let name = |state: u8| {
        names
            .state(state)
            .map_or_else(|| state.to_string(), str::to_owned)
    };
    // Counted by state number and named once at the end: a busy server has
    // hundreds of thousands of TIME_WAIT sockets, and nothing per socket may
    // allocate.
    let number = |name: &str| names.state_number(name);
    let (time_wait, close_wait, listen) =
        (number("TIME_WAIT"), number("CLOSE_WAIT"), number("LISTEN"));
    let mut summary = Summary::default();
    let mut per_state = [0u32; 256];
    let mut per_port: HashMap<(u16, u8), u32> = HashMap::new();
    let mut destinations: HashMap<std::net::SocketAddr, u32> = HashMap::new();
    for s in sockets {
        let state = Some(s.state);
        per_state[usize::from(s.state)] += 1;
        if state == time_wait || state == close_wait {
            *per_port.entry((s.local.port(), s.state)).or_default() += 1;
        }
        if state == time_wait {
            *destinations.entry(s.remote).or_default() += 1;
        } else if state == listen {
            summary.listeners.push((
                Listener {
                    local: s.local.to_string(),
                    queue: s.recv_queue,
                    backlog: s.send_queue,
                    requested_backlog: None,
                    owner: None,
                },
                s.inode,
            ));
        } else if state == close_wait {
            summary.close_wait.push((
                CloseWait {
                    local: s.local.to_string(),
                    remote: s.remote.to_string(),
                    idle_ms: s.since_last_receive_ms.map(u64::from),
                    unread_bytes: s.recv_queue,
                    owner: None,
                },
                s.inode,
            ));
        }
    }
    for (state, n) in (0..=u8::MAX).zip(per_state) {
        if n > 0 {
            summary.states.insert(name(state), n);
        }
    }
    let mut ports: HashMap<u16, BTreeMap<String, u32>> = HashMap::new();
    for ((port, state), n) in per_port {
        ports.entry(port).or_default().insert(name(state), n);
    }
    let mut ports: Vec<PortSockets> = ports
        .into_iter()
        .map(|(port, states)| PortSockets { port, states })
        .collect();
    ports.sort_by_key(|p| std::cmp::Reverse(p.states.values().sum::<u32>()));
    ports.truncate(MAX_PORTS);
    summary.ports = ports;
    let mut destinations: Vec<Destination> = destinations
        .into_iter()
        .map(|(remote, time_wait)| Destination {
            remote: remote.to_string(),
            time_wait,
        })
        .collect();
    destinations.sort_by_key(|d| std::cmp::Reverse(d.time_wait));
    destinations.truncate(MAX_PORTS);
    summary.destinations = destinations;
    // Fullest accept queues first; longest-idle CLOSE_WAIT first.
    summary.listeners.sort_by_key(|(l, _)| {
        std::cmp::Reverse(u64::from(l.queue) * 1000 / u64::from(l.backlog.max(1)))
    });
    summary.listeners.truncate(MAX_LISTENERS);
    summary
        .close_wait
        .sort_by_key(|(c, _)| std::cmp::Reverse(c.idle_ms.unwrap_or(0)));
    summary.close_wait.truncate(MAX_CLOSE_WAIT);
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::tracefs::TpFormat;

    fn names() -> KernelNames {
        let f = TpFormat::parse("format:\n\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;\nprint fmt: \"x\", __print_symbolic(REC->oldstate, { 1, \"TCP_ESTABLISHED\" }, { 6, \"TCP_TIME_WAIT\" }, { 8, \"TCP_CLOSE_WAIT\" }, { 10, \"TCP_LISTEN\" })\n").unwrap();
        KernelNames::resolve(None, Some(&f), None).unwrap()
    }

    fn socket(
        state: u8,
        local: &str,
        remote: &str,
        rq: u32,
        wq: u32,
        idle: Option<u32>,
    ) -> DiagSocket {
        DiagSocket {
            family: 2,
            state,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            inode: 7,
            uid: 0,
            cookie: 1,
            interface: 0,
            recv_queue: rq,
            send_queue: wq,
            since_last_receive_ms: idle,
        }
    }

    #[test]
    fn counts_ports_listeners_and_close_wait() {
        let sockets = vec![
            socket(10, "0.0.0.0:80", "0.0.0.0:0", 3, 4, None),
            socket(6, "10.0.0.1:80", "10.0.0.2:5000", 0, 0, None),
            socket(6, "10.0.0.1:80", "10.0.0.2:5001", 0, 0, None),
            socket(8, "10.0.0.1:80", "10.0.0.3:6000", 17, 0, Some(12_000)),
            socket(8, "10.0.0.1:80", "10.0.0.3:6001", 0, 0, Some(40_000)),
            socket(1, "10.0.0.1:80", "10.0.0.4:7000", 0, 0, None),
        ];
        let s = summarise(&sockets, &names());
        assert_eq!(s.states["TIME_WAIT"], 2);
        assert_eq!(s.states["ESTABLISHED"], 1);
        assert_eq!(s.ports.len(), 1);
        assert_eq!(s.ports[0].states["TIME_WAIT"], 2);
        assert_eq!(s.ports[0].states["CLOSE_WAIT"], 2);
        assert_eq!(s.destinations.len(), 2);
        assert_eq!(s.destinations[0].time_wait, 1);
        assert_eq!((s.listeners[0].0.queue, s.listeners[0].0.backlog), (3, 4));
        assert_eq!(
            s.close_wait[0].0.idle_ms,
            Some(40_000),
            "longest idle first"
        );
        assert_eq!(s.close_wait[1].0.unread_bytes, 17);
    }
}
