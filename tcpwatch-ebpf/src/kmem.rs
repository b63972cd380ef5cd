//! Reading kernel memory at offsets resolved by user space.

use aya_ebpf::{helpers::bpf_probe_read_kernel, programs::TracePointContext};
use tcpwatch_common::layout::{ABSENT, TpField};

/// Why a read failed. Any failure drops the event and is counted.
#[derive(Clone, Copy)]
pub enum ReadError {
    /// The member or field does not exist on this kernel.
    Absent,
    /// A NULL pointer where an object was expected.
    Null,
    /// `bpf_probe_read_kernel` failed.
    Fault,
}

impl ReadError {
    /// Short description for the kernel-side debug log.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Absent => "field absent on this kernel",
            Self::Null => "null pointer",
            Self::Fault => "bpf_probe_read_kernel failed",
        }
    }
}

/// Reads a `T` at `base + offset` in kernel memory.
#[inline(always)]
pub fn read<T>(base: u64, offset: u16) -> Result<T, ReadError> {
    if offset == ABSENT {
        return Err(ReadError::Absent);
    }
    if base == 0 {
        return Err(ReadError::Null);
    }
    // SAFETY: bpf_probe_read_kernel copies through the kernel's fault-tolerant path;
    // a bad address gives an error, never a fault.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) }
        .map_err(|_| ReadError::Fault)
}

/// Reads a `T` at an absolute kernel address.
#[inline(always)]
pub fn read_at<T>(addr: u64) -> Result<T, ReadError> {
    read(addr, 0)
}

/// Reads a tracepoint field of the record at `ctx`.
#[inline(always)]
pub fn tp<T>(ctx: &TracePointContext, field: TpField) -> Result<T, ReadError> {
    if !field.present() {
        return Err(ReadError::Absent);
    }
    // SAFETY: the offset comes from the tracepoint's format file; read_at uses
    // bpf_probe_read_kernel and fails cleanly on a bad address.
    unsafe { ctx.read_at::<T>(usize::from(field.offset)) }.map_err(|_| ReadError::Fault)
}

/// Reads an integer tracepoint field of 1, 2, 4 or 8 bytes, widened to u64.
#[inline(always)]
pub fn tp_uint(ctx: &TracePointContext, field: TpField) -> Result<u64, ReadError> {
    match field.size {
        1 => tp::<u8>(ctx, field).map(u64::from),
        2 => tp::<u16>(ctx, field).map(u64::from),
        4 => tp::<u32>(ctx, field).map(u64::from),
        8 => tp::<u64>(ctx, field),
        _ => Err(ReadError::Absent),
    }
}
