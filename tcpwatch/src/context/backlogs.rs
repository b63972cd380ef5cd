//! The backlog each program asked `listen()` for, as the kernel program on
//! `syscalls:sys_enter_listen` recorded it per (netns, port) in the
//! `LISTEN_BACKLOGS` map. The kernel keeps only `min(backlog, somaxconn)`
//! (what sock_diag shows as the listener's limit), so this is the only place
//! the asked-for number survives.

use aya::maps::{HashMap, MapData};
use tcpwatch_common::flow::ListenKey;

/// Read access to the map, owned by the sampler thread.
pub struct Backlogs {
    map: HashMap<MapData, ListenKey, i32>,
}

impl Backlogs {
    /// Takes the map out of the loaded object; `None` when it is missing.
    pub fn take(ebpf: &mut aya::Ebpf) -> Option<Self> {
        let map = ebpf.take_map("LISTEN_BACKLOGS")?;
        HashMap::try_from(map).ok().map(|map| Self { map })
    }

    /// The backlog given to `listen()` for the listener on (netns, port), if
    /// it was called while tcpwatch ran.
    pub fn get(&self, netns: u32, port: u16) -> Option<i32> {
        self.map
            .get(
                &ListenKey {
                    netns,
                    port,
                    _pad: 0,
                },
                0,
            )
            .ok()
    }
}
