//! The socket tuple as the `sock:` and `tcp:` tracepoints carry it: host-order
//! `sport`/`dport`, `saddr`/`daddr` as IPv4 arrays and `saddr_v6`/`daddr_v6` (which
//! hold v4-mapped addresses for IPv4 sockets).

use tcpwatch_common::{
    family,
    flow::{FlowKey, map_v4},
    layout::TpField,
};

use aya_ebpf::programs::TracePointContext;

use crate::kmem::{ReadError, tp, tp_part_into, tp_uint};

/// The tuple fields of one tracepoint.
pub struct TupleFields {
    pub sport: TpField,
    pub dport: TpField,
    pub saddr: TpField,
    pub daddr: TpField,
    pub saddr_v6: TpField,
    pub daddr_v6: TpField,
}

/// The tuple fields of tracepoint layout `$tp` in the config, e.g.
/// `tuple_fields!(set_state)`.
macro_rules! tuple_fields {
    ($tp:ident) => {
        $crate::tp_tuple::TupleFields {
            sport: $crate::config::config!($tp.sport),
            dport: $crate::config::config!($tp.dport),
            saddr: $crate::config::config!($tp.saddr),
            daddr: $crate::config::config!($tp.daddr),
            saddr_v6: $crate::config::config!($tp.saddr_v6),
            daddr_v6: $crate::config::config!($tp.daddr_v6),
        }
    };
}
pub(crate) use tuple_fields;

/// Reads the local/remote tuple of a socket of family `fam` into `flow`
/// (netns untouched), in place.
#[inline(always)]
pub fn read_into(
    ctx: &TracePointContext,
    f: &TupleFields,
    fam: u16,
    flow: &mut FlowKey,
) -> Result<(), ReadError> {
    if fam == family::INET6 {
        tp_part_into(ctx, f.saddr_v6, 0, &mut flow.local_addr)?;
        tp_part_into(ctx, f.daddr_v6, 0, &mut flow.remote_addr)?;
    } else {
        flow.local_addr = map_v4(tp::<[u8; 4]>(ctx, f.saddr)?);
        flow.remote_addr = map_v4(tp::<[u8; 4]>(ctx, f.daddr)?);
    }
    flow.local_port = tp_uint(ctx, f.sport)? as u16;
    flow.remote_port = tp_uint(ctx, f.dport)? as u16;
    Ok(())
}
