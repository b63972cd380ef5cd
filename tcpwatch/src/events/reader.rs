//! Draining the ring buffer from tokio: wait until the kernel signals data (it
//! does once a batch has built up) or a short timer fires, then take the
//! records available.

use std::io;

use aya::{
    Ebpf,
    maps::{MapData, RingBuf},
};
use tokio::io::unix::AsyncFd;

/// The user-space end of the `EVENTS` ring buffer.
pub struct Reader {
    ring: AsyncFd<RingBuf<MapData>>,
}

impl Reader {
    /// Takes the `EVENTS` map out of `ebpf`.
    pub fn new(ebpf: &mut Ebpf) -> io::Result<Self> {
        let map = ebpf
            .take_map("EVENTS")
            .ok_or_else(|| io::Error::other("map EVENTS missing from the eBPF object"))?;
        let ring = RingBuf::try_from(map).map_err(io::Error::other)?;
        // SAFETY: the RingBuf owns its map's fd (an OwnedFd inside MapData) for its
        // whole life and always reports that same fd; the AsyncFd owns the RingBuf.
        let ring =
            unsafe { AsyncFd::register(ring) }.map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Self { ring })
    }

    /// Waits for records and hands each to `each` (at most `limit` per call, so
    /// a storm cannot starve the caller's other work). Returns how many were read.
    pub async fn drain(&mut self, limit: usize, mut each: impl FnMut(&[u8])) -> io::Result<usize> {
        let mut guard = self.ring.readable_mut().await?;
        let ring = guard.get_inner_mut();
        let mut read = 0;
        while read < limit {
            let Some(item) = ring.next() else { break };
            each(&item);
            read += 1;
        }
        if read < limit {
            // Drained: wait for the next wake-up. Otherwise stay ready.
            guard.clear_ready();
        }
        Ok(read)
    }

    /// Takes what is in the ring right now, at most `limit`, without waiting:
    /// the programs wake the reader only once a batch has built up, so it also
    /// drains on a short timer (and at shutdown, so that events submitted just
    /// before a signal are not lost).
    pub fn drain_now(&mut self, limit: usize, mut each: impl FnMut(&[u8])) -> usize {
        let ring = self.ring.get_mut();
        let mut read = 0;
        while read < limit {
            let Some(item) = ring.next() else { break };
            each(&item);
            read += 1;
        }
        read
    }
}
