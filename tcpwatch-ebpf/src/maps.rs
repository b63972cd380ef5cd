//! Every map the programs use. All are bounded; user space may resize the ring
//! buffer and owner maps before load.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use tcpwatch_common::{
    counters::Counter,
    filter::AddrKey,
    flow::{FlowKey, ListenKey},
    limits,
    owner::{ListenerRecord, OwnerRecord},
    storm::{AggregateKey, AggregateValue},
};

/// Events to user space.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(limits::RING_BUFFER_BYTES, 0);

/// Owner of each live socket, keyed by its kernel address. Overwritten at every
/// socket birth (connect, listen, child creation), so a reused address never keeps
/// a stale owner.
#[map]
pub static SOCK_OWNERS: LruHashMap<u64, OwnerRecord> =
    LruHashMap::with_max_entries(limits::SOCKET_OWNERS, 0);

/// Owner by flow: sockets found by the start-up census, and sockets that closed
/// recently (`closed_ns` set), for TIME_WAIT and no-socket resets.
#[map]
pub static FLOW_OWNERS: LruHashMap<FlowKey, OwnerRecord> =
    LruHashMap::with_max_entries(limits::FLOW_OWNERS, 0);

/// Owner of the listening socket on each (netns, port).
#[map]
pub static LISTENERS: HashMap<ListenKey, ListenerRecord> =
    HashMap::with_max_entries(limits::LISTENERS, 0);

/// The backlog given to `listen()` per (netns, port), for user space (see
/// [`crate::listen`]). The kernel keeps only the capped limit.
#[map]
pub static LISTEN_BACKLOGS: LruHashMap<ListenKey, i32> =
    LruHashMap::with_max_entries(limits::LISTEN_BACKLOGS, 0);

/// The flow of each socket whose connect failed (SYN_SENT → CLOSE), until its
/// `connect()` returns (`--kind app_error`): by then the failure has cleared
/// the socket's addresses.
#[map]
pub static FAILED_CONNECTS: LruHashMap<u64, FlowKey> =
    LruHashMap::with_max_entries(limits::FAILED_CONNECTS, 0);

/// Storm mode: `bpf_ktime_get_ns()` when it started, 0 when off. Set by the
/// programs, cleared by user space.
#[map]
pub static STORM: Array<u64> = Array::with_max_entries(1, 0);

/// Storm-mode counts of the events not written, per CPU.
#[map]
pub static AGGREGATES: PerCpuHashMap<AggregateKey, AggregateValue> =
    PerCpuHashMap::with_max_entries(limits::AGGREGATES, 0);

/// Per-CPU counters, indexed by [`Counter`].
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

/// `--port` filter set.
#[map]
pub static FILTER_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(limits::FILTER_ENTRIES, 0);

/// `--pid` filter set.
#[map]
pub static FILTER_PIDS: HashMap<u32, u8> = HashMap::with_max_entries(limits::FILTER_ENTRIES, 0);

/// `--addr` filter prefixes over IPv4-mapped addresses.
#[map]
pub static FILTER_ADDRS: LpmTrie<AddrKey, u8> =
    LpmTrie::with_max_entries(limits::FILTER_ENTRIES, 0);

/// Adds one to a per-CPU counter.
#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU slot, only touched by this CPU with preemption off.
        unsafe { *slot += 1 };
    }
}
