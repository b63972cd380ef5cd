//! What the rules remember, all bounded: per-flow history (states with times,
//! who closed first, idle time and bytes at that close), who listened on each
//! port and until when, recently completed connections, and recent resets that
//! found no socket.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    num::NonZeroUsize,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, TimeDelta, Utc};
use lru::LruCache;

use crate::events::model::{EventRecord, Kind, Process, TcpActivity};

/// Transitions kept per flow (a connection's whole life is 4 to 6).
const TRANSITIONS: usize = 8;
/// Failed socket calls kept per flow (the first few after a reset say it all).
const APP_ERRORS: usize = 4;
/// Distinct owners shared between flows before unused ones are dropped.
const OWNERS: usize = 16_384;
/// Distinct state names kept (the kernel has a dozen).
const STATE_NAMES: usize = 64;

/// The names of the states seen, kept once for the whole program: flow
/// histories hold many transitions, and the kernel has a dozen names.
static STATES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// A TCP state, as an index into the names seen (one byte per state in a
/// transition instead of a string).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State(u8);

impl State {
    /// The state called `name`.
    pub fn named(name: &str) -> Self {
        let Ok(mut names) = STATES.lock() else {
            return Self(u8::MAX);
        };
        if let Some(i) = names.iter().position(|n| *n == name) {
            return Self(i as u8);
        }
        if names.len() >= STATE_NAMES {
            return Self(u8::MAX);
        }
        names.push(Box::leak(name.to_owned().into_boxed_str()));
        Self((names.len() - 1) as u8)
    }

    /// Its name (`?` past the table's capacity).
    pub fn name(self) -> &'static str {
        STATES
            .lock()
            .ok()
            .and_then(|names| names.get(usize::from(self.0)).copied())
            .unwrap_or("?")
    }
}

/// Owners shared by the flows of one process, instead of a copy per flow.
#[derive(Default)]
struct Owners {
    by_task: HashMap<(u32, u32, u64), Arc<Process>>,
}

impl Owners {
    /// The shared record for `p` (without its event-specific
    /// `closed_ms_before`).
    fn get(&mut self, p: &Process) -> Arc<Process> {
        let key = (p.pid, p.tid, p.cgroup_id);
        if let Some(known) = self.by_task.get(&key)
            && known.comm == p.comm
            && known.uid == p.uid
            && known.source == p.source
        {
            return known.clone();
        }
        if self.by_task.len() >= OWNERS {
            self.by_task.retain(|_, a| Arc::strong_count(a) > 1);
        }
        let shared = Arc::new(Process {
            closed_ms_before: None,
            ..p.clone()
        });
        self.by_task.insert(key, shared.clone());
        shared
    }
}
/// Completed connections kept (for TIME_WAIT attribution), and for how long.
const CLOSES: usize = 50_000;
const CLOSES_FOR: TimeDelta = TimeDelta::seconds(120);
/// Socket-less resets kept, and for how long.
const ORPHAN_RESETS: usize = 10_000;
const ORPHAN_RESETS_FOR: TimeDelta = TimeDelta::seconds(60);
/// Listener histories kept.
const LISTENERS: usize = 4096;
/// Former listeners kept per port.
const FORMER_LISTENERS: usize = 4;

/// Parses an `addr:port` endpoint, mapping IPv4-mapped IPv6 to IPv4 so both
/// ends of a dual-stack connection meet.
pub fn endpoint(text: &str) -> Option<SocketAddr> {
    let addr: SocketAddr = text.parse().ok()?;
    Some(SocketAddr::new(addr.ip().to_canonical(), addr.port()))
}

/// A connection as seen from one end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowId {
    /// Network namespace inode.
    pub netns: u32,
    /// This end.
    pub local: SocketAddr,
    /// The other end.
    pub remote: SocketAddr,
}

impl FlowId {
    /// The local view of an event's flow (`reset_received` flows point from the peer).
    pub fn of(event: &EventRecord) -> Option<Self> {
        let src = endpoint(&event.flow.src)?;
        let dst = endpoint(&event.flow.dst)?;
        let (local, remote) = match event.kind {
            Kind::ResetReceived => (dst, src),
            Kind::State | Kind::ResetSent | Kind::Drop | Kind::AppError => (src, dst),
        };
        Some(Self {
            netns: event.flow.netns,
            local,
            remote,
        })
    }

    /// The same with the higher port (the client's ephemeral one) set to 0:
    /// every connection to one service in one key.
    pub fn service(&self) -> Self {
        let mut id = *self;
        if id.local.port() <= id.remote.port() {
            id.remote.set_port(0);
        } else {
            id.local.set_port(0);
        }
        id
    }

    /// The connection, whichever end sees it (see [`ConnKey`]).
    pub fn connection(&self) -> ConnKey {
        let (a, b) = if self.local <= self.remote {
            (self.local, self.remote)
        } else {
            (self.remote, self.local)
        };
        ConnKey {
            a,
            b,
            // Loopback never leaves its namespace; other addresses may be the
            // two ends of a veth pair in two namespaces.
            netns: if self.local.ip().is_loopback() {
                self.netns
            } else {
                0
            },
        }
    }

    /// The same connection seen from the other end, in namespace `netns`.
    pub fn reversed_in(&self, netns: u32) -> Self {
        Self {
            netns,
            local: self.remote,
            remote: self.local,
        }
    }
}

/// A connection regardless of the end that sees it: its endpoints in a fixed
/// order, and the namespace for loopback connections (0 otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    a: SocketAddr,
    b: SocketAddr,
    netns: u32,
}

/// One state transition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transition {
    /// When.
    pub time: DateTime<Utc>,
    from: State,
    to: State,
}

impl Transition {
    /// From state.
    pub fn from(&self) -> &'static str {
        self.from.name()
    }

    /// To state.
    pub fn to(&self) -> &'static str {
        self.to.name()
    }
}

/// The first close of a connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Close {
    /// When the first FIN was sent (local) or received (peer).
    pub time: DateTime<Utc>,
    /// This end closed first.
    pub by_local: bool,
    /// The owner at that moment.
    pub owner: Option<Arc<Process>>,
    /// Socket activity at that moment: `idle_ms` is how long the connection had
    /// been idle when it was closed.
    pub tcp: Option<TcpActivity>,
}

/// A socket call of a process that failed (`--kind app_error`).
#[derive(Clone, Debug, PartialEq)]
pub struct AppCall {
    /// When it returned.
    pub time: DateTime<Utc>,
    /// The task that made it.
    pub process: Arc<Process>,
    /// The syscall (`read`, `sendmsg`), when known.
    pub syscall: Option<String>,
    /// The errno name it returned.
    pub error: String,
}

/// What is known about one connection.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowHistory {
    /// The latest owner.
    pub owner: Option<Arc<Process>>,
    /// First event seen.
    pub first_seen: DateTime<Utc>,
    /// When it became ESTABLISHED, if seen.
    pub established_at: Option<DateTime<Utc>>,
    /// Recent transitions, oldest first.
    pub transitions: VecDeque<Transition>,
    /// The first close.
    pub first_close: Option<Close>,
    /// When it reached CLOSE.
    pub ended_at: Option<DateTime<Utc>>,
    /// The latest socket activity seen.
    pub last_tcp: Option<TcpActivity>,
    /// The first failed socket calls of its owner, oldest first.
    pub app_errors: VecDeque<AppCall>,
}

impl FlowHistory {
    fn new(time: DateTime<Utc>) -> Self {
        Self {
            owner: None,
            first_seen: time,
            established_at: None,
            transitions: VecDeque::new(),
            first_close: None,
            ended_at: None,
            last_tcp: None,
            app_errors: VecDeque::new(),
        }
    }

    /// How the connection ended, as of `now`; `None` while it is open.
    pub fn ending(&self, now: DateTime<Utc>) -> Option<Ending> {
        let since = |then: DateTime<Utc>| (now - then).num_milliseconds().max(0) as u64;
        if let Some(close) = &self.first_close {
            let ms = since(close.time);
            return Some(if close.by_local {
                Ending::ClosedHere { ms }
            } else {
                Ending::ClosedByPeer { ms }
            });
        }
        let ended = self.ended_at?;
        let from = self
            .transitions
            .iter()
            .rev()
            .find(|t| t.to() == "CLOSE")
            .map_or_else(|| "?".to_owned(), |t| t.from().to_owned());
        Some(Ending::Dropped {
            ms: since(ended),
            from,
        })
    }

    /// Age of the connection at `time` (from ESTABLISHED, else first seen).
    pub fn age_ms(&self, time: DateTime<Utc>) -> u64 {
        let since = self.established_at.unwrap_or(self.first_seen);
        (time - since).num_milliseconds().max(0) as u64
    }
}

/// How a connection ended on this host.
#[derive(Clone, Debug, PartialEq)]
pub enum Ending {
    /// This host closed first, `ms` before.
    ClosedHere {
        /// Milliseconds since the close.
        ms: u64,
    },
    /// The peer closed first; this host finished the close.
    ClosedByPeer {
        /// Milliseconds since the peer's FIN.
        ms: u64,
    },
    /// It ended here (-> CLOSE) without any FIN: aborted or dropped.
    Dropped {
        /// Milliseconds since it ended.
        ms: u64,
        /// The state it left.
        from: String,
    },
}

impl Ending {
    /// Milliseconds since the close or end.
    pub fn ms(&self) -> u64 {
        match self {
            Self::ClosedHere { ms } | Self::ClosedByPeer { ms } | Self::Dropped { ms, .. } => *ms,
        }
    }
}

/// Who listened on a port.
#[derive(Clone, Debug, PartialEq)]
pub struct ListenerSpell {
    /// The listening process.
    pub owner: Option<Arc<Process>>,
    /// listen() time.
    pub since: DateTime<Utc>,
    /// When the listener closed, if it did.
    pub closed_at: Option<DateTime<Utc>>,
}

/// A completed connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Completed {
    /// When it reached CLOSE.
    pub time: DateTime<Utc>,
    /// The connection.
    pub id: FlowId,
    /// This end closed first (and so holds the TIME_WAIT).
    pub local_first: bool,
    /// Owner when it was closed.
    pub closer: Option<Arc<Process>>,
    /// From ESTABLISHED (or first seen) to CLOSE.
    pub lifetime_ms: u64,
}

/// A reset sent with no socket.
#[derive(Clone, Debug, PartialEq)]
pub struct OrphanReset {
    /// When.
    pub time: DateTime<Utc>,
    /// The flow.
    pub id: FlowId,
    /// The incoming segment's flags.
    pub flags: Vec<String>,
}

/// All of the above.
pub struct History {
    flows: LruCache<FlowId, FlowHistory>,
    /// The namespaces each (local, remote) pair of `flows` is seen in, to find
    /// the other end of a connection across namespaces (veth) without a scan.
    namespaces_of: HashMap<(SocketAddr, SocketAddr), Vec<u32>>,
    listeners: LruCache<(u32, u16), VecDeque<ListenerSpell>>,
    /// Completed connections, oldest first.
    pub completed: VecDeque<Completed>,
    /// Socket-less resets, oldest first.
    pub orphan_resets: VecDeque<OrphanReset>,
    /// Flow histories evicted because the table was full.
    pub evicted: u64,
    /// Segments the kernel dropped (`--kind drop`).
    pub drops: super::drops::Drops,
    owners: Owners,
}

impl History {
    /// An empty history keeping at most `max_flows` flows.
    pub fn new(max_flows: usize) -> Self {
        Self {
            flows: LruCache::new(NonZeroUsize::new(max_flows.max(1)).unwrap_or(NonZeroUsize::MIN)),
            namespaces_of: HashMap::new(),
            listeners: LruCache::new(NonZeroUsize::new(LISTENERS).unwrap_or(NonZeroUsize::MIN)),
            completed: VecDeque::new(),
            orphan_resets: VecDeque::new(),
            evicted: 0,
            drops: super::drops::Drops::default(),
            owners: Owners::default(),
        }
    }

    /// The flow's history, if known.
    pub fn flow(&self, id: &FlowId) -> Option<&FlowHistory> {
        self.flows.peek(id)
    }

    /// The other end's history, when the other end is on this host: the same
    /// namespace first, then any (a veth peer sees the same addresses).
    pub fn peer(&self, id: &FlowId) -> Option<&FlowHistory> {
        if let Some(h) = self.flows.peek(&id.reversed_in(id.netns)) {
            return Some(h);
        }
        if id.local.ip().is_loopback() {
            return None;
        }
        let namespaces = self.namespaces_of.get(&(id.remote, id.local))?;
        namespaces
            .iter()
            .find_map(|netns| self.flows.peek(&id.reversed_in(*netns)))
    }

    /// Who listened on (netns, port), newest first.
    pub fn listeners(&self, netns: u32, port: u16) -> impl Iterator<Item = &ListenerSpell> {
        self.listeners
            .peek(&(netns, port))
            .into_iter()
            .flat_map(|spells| spells.iter().rev())
    }

    /// Records an event.
    pub fn record(&mut self, event: &EventRecord) {
        let Some(id) = FlowId::of(event) else { return };
        let time = event.time;
        if event.kind == Kind::Drop {
            self.drops.record(event, id);
            return;
        }
        if event.kind == Kind::ResetSent && event.state.is_none() {
            self.orphan_resets.push_back(OrphanReset {
                time,
                id,
                flags: event
                    .segment
                    .as_ref()
                    .map(|s| s.flags.clone())
                    .unwrap_or_default(),
            });
            trim(
                &mut self.orphan_resets,
                ORPHAN_RESETS,
                time - ORPHAN_RESETS_FOR,
                |r| r.time,
            );
            return;
        }
        let owner = event.owner.as_ref().map(|o| self.owners.get(o));
        let caller = (event.kind == Kind::AppError).then(|| self.owners.get(&event.actor));
        if event.kind == Kind::State {
            self.listener_transition(event, id, owner.as_ref());
        }
        // A connect() is reported before the kernel picks the local port.
        if id.local.port() == 0 || id.remote.port() == 0 {
            return;
        }
        if !self.flows.contains(&id) {
            if let Some((gone, _)) = self.flows.push(id, FlowHistory::new(time)) {
                self.evicted += 1;
                self.forget_namespace(gone);
            }
            // Loopback never leaves its namespace: only other flows can have
            // their other end in another one.
            if !id.local.ip().is_loopback() {
                self.namespaces_of
                    .entry((id.local, id.remote))
                    .or_default()
                    .push(id.netns);
            }
        }
        let Some(flow) = self.flows.get_mut(&id) else {
            return;
        };
        if owner.is_some() {
            flow.owner.clone_from(&owner);
        }
        if event.tcp.is_some() {
            flow.last_tcp = event.tcp;
        }
        if let Some(process) = caller {
            if flow.app_errors.len() < APP_ERRORS {
                flow.app_errors.push_back(AppCall {
                    time,
                    process,
                    syscall: event.syscall.clone(),
                    error: event.error.clone().unwrap_or_default(),
                });
            }
            return;
        }
        if event.kind != Kind::State {
            return;
        }
        let (Some(from), Some(to)) = (&event.old_state, &event.new_state) else {
            return;
        };
        if flow.transitions.len() >= TRANSITIONS {
            flow.transitions.pop_front();
        }
        flow.transitions.push_back(Transition {
            time,
            from: State::named(from),
            to: State::named(to),
        });
        match (from.as_str(), to.as_str()) {
            (_, "ESTABLISHED") => flow.established_at = Some(time),
            ("ESTABLISHED", "FIN_WAIT1" | "CLOSE_WAIT") if flow.first_close.is_none() => {
                flow.first_close = Some(Close {
                    time,
                    by_local: to == "FIN_WAIT1",
                    owner,
                    tcp: event.tcp,
                });
            }
            (_, "CLOSE") => {
                flow.ended_at = Some(time);
                if let Some(close) = &flow.first_close {
                    let done = Completed {
                        time,
                        id,
                        local_first: close.by_local,
                        closer: close.owner.clone(),
                        lifetime_ms: flow.age_ms(time),
                    };
                    self.completed.push_back(done);
                    trim(&mut self.completed, CLOSES, time - CLOSES_FOR, |c| c.time);
                }
            }
            _ => {}
        }
    }

    fn forget_namespace(&mut self, gone: FlowId) {
        let pair = (gone.local, gone.remote);
        if let Some(namespaces) = self.namespaces_of.get_mut(&pair) {
            namespaces.retain(|n| *n != gone.netns);
            if namespaces.is_empty() {
                self.namespaces_of.remove(&pair);
            }
        }
    }

    fn listener_transition(
        &mut self,
        event: &EventRecord,
        id: FlowId,
        owner: Option<&Arc<Process>>,
    ) {
        let key = (id.netns, id.local.port());
        match (event.old_state.as_deref(), event.new_state.as_deref()) {
            (Some("CLOSE"), Some("LISTEN")) => {
                let spells = self.listeners.get_or_insert_mut(key, VecDeque::new);
                spells.push_back(ListenerSpell {
                    owner: owner.cloned(),
                    since: event.time,
                    closed_at: None,
                });
                if spells.len() > FORMER_LISTENERS {
                    spells.pop_front();
                }
            }
            (Some("LISTEN"), Some("CLOSE")) => {
                let spells = self.listeners.get_or_insert_mut(key, VecDeque::new);
                let pid = event.owner.as_ref().map(|o| o.pid);
                match spells
                    .iter_mut()
                    .rev()
                    .find(|s| s.closed_at.is_none() && s.owner.as_ref().map(|o| o.pid) == pid)
                {
                    Some(spell) => spell.closed_at = Some(event.time),
                    None => {
                        // A listener that predates tcpwatch (its listen() was not seen).
                        spells.push_front(ListenerSpell {
                            owner: owner.cloned(),
                            since: event.time,
                            closed_at: Some(event.time),
                        });
                        if spells.len() > FORMER_LISTENERS {
                            spells.pop_back();
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Drops entries beyond `max` or older than `oldest`.
fn trim<T>(
    queue: &mut VecDeque<T>,
    max: usize,
    oldest: DateTime<Utc>,
    time: impl Fn(&T) -> DateTime<Utc>,
) {
    while queue.len() > max || queue.front().is_some_and(|t| time(t) < oldest) {
        queue.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::testkit::{owner, proc, state};

    fn open(ms: i64, local: &str, remote: &str, netns: u32) -> EventRecord {
        let mut e = state(
            ms,
            local,
            remote,
            "SYN_SENT",
            "ESTABLISHED",
            Some(owner(7, "a", "connect")),
            proc(7, "a"),
        );
        e.flow.netns = netns;
        e
    }

    /// The other end of a veth connection is found in another namespace, and
    /// forgotten with its flow when the table evicts it.
    #[test]
    fn peer_across_namespaces_and_eviction() {
        let mut h = History::new(2);
        h.record(&open(0, "10.0.0.1:80", "10.0.0.2:5000", 1));
        h.record(&open(0, "10.0.0.2:5000", "10.0.0.1:80", 2));
        let server = FlowId::of(&open(0, "10.0.0.1:80", "10.0.0.2:5000", 1)).unwrap();
        assert!(h.peer(&server).is_some());
        h.record(&open(5, "10.0.0.3:80", "10.0.0.4:1", 1));
        h.record(&open(6, "10.0.0.5:80", "10.0.0.6:1", 1));
        assert_eq!(h.evicted, 2);
        assert!(h.peer(&server).is_none());
        assert!(!h.namespaces_of.contains_key(&(server.remote, server.local)));
        assert!(
            h.namespaces_of.len() <= 2,
            "the index shrinks with the table"
        );
    }
}
