//! Kernel stacks of resets (`--kstack`): the path that built or took a reset,
//! stored once per distinct stack in the `KSTACKS` stack-trace map; the event
//! carries its id and user space reads and symbolises it. Off unless asked for:
//! without the option the map has one entry and nothing here runs.

use aya_ebpf::{macros::map, maps::StackTrace, programs::tracing::StackIdContext};
use tcpwatch_common::{
    config::options,
    counters::Counter,
    event::{TcpEvent, flags},
    limits,
};

use crate::{config::config, maps::count};

/// Stacks by id. User space sizes it to [`limits::KSTACKS`] with `--kstack`, to
/// one entry otherwise.
#[map]
static KSTACKS: StackTrace = StackTrace::with_max_entries(limits::KSTACKS, 0);

/// Records the current kernel stack into `event` when `--kstack` is on. A
/// stack whose hash bucket another stack holds (the map never evicts) is
/// counted as lost; the event goes out without it.
#[inline(always)]
pub fn record<C: StackIdContext>(ctx: &C, event: &mut TcpEvent) {
    if config!(options) & options::KSTACK == 0 {
        return;
    }
    match ctx.get_stackid(&KSTACKS, 0) {
        Ok(id) => {
            event.kstack = id as u32;
            event.flags |= flags::HAS_KSTACK;
        }
        Err(_) => count(Counter::KstackLost),
    }
}
