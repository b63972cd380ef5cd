//! Default sizes of every map. All maps are bounded; user space may resize the
//! ring buffer and owner maps before load (`--ring-buffer-size`, `--max-sockets`).

/// Default ring-buffer size in bytes (a power of two multiple of the page size):
/// about 14500 events of 288 bytes.
pub const RING_BUFFER_BYTES: u32 = 4 << 20;
/// Default capacity of the live-socket owner map (LRU).
pub const SOCKET_OWNERS: u32 = 65536;
/// Default capacity of the flow owner map (census and recently closed flows, LRU).
pub const FLOW_OWNERS: u32 = 65536;
/// Capacity of the listener map.
pub const LISTENERS: u32 = 8192;
/// Capacity of each filter set (ports, pids, address prefixes).
pub const FILTER_ENTRIES: u32 = 64;
/// Maximum network namespaces in a `--netns` filter.
pub const FILTER_NETNS: usize = 8;
/// Default grace period an owner is kept after its socket closed.
pub const OWNER_GRACE_NS: u64 = 120_000_000_000;
/// Capacity of the storm-mode aggregate map (distinct kind, reason, owner and
/// port combinations counted in one storm).
pub const AGGREGATES: u32 = 4096;
/// Capacity of the kernel-stack map (`--kstack`): distinct reset paths, each
/// stored once however often it fires.
pub const KSTACKS: u32 = 1024;
/// Frames kept of each kernel stack (the kernel's `PERF_MAX_STACK_DEPTH` is 127).
pub const KSTACK_DEPTH: u32 = 32;
/// Capacity of the map of `listen()` backlogs by (netns, port).
pub const LISTEN_BACKLOGS: u32 = 8192;

/// Failed connects remembered between their socket's close and the end of the
/// `connect()` call (`--kind app_error`), whose return the close's flow is
/// joined to.
pub const FAILED_CONNECTS: u32 = 1024;
