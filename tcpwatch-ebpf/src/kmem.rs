//! Reading kernel memory at offsets resolved by user space.

use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_probe_read_kernel, generated},
    programs::TracePointContext,
};
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

/// Copies a `T` at `base + offset` in kernel memory straight into `dst`. With
/// `dst` in map memory (the scratch event), nothing passes through the BPF
/// stack, which is 512 bytes for a whole call chain (6.1 and 6.12 enforce it).
#[inline(always)]
pub fn read_into<T>(dst: &mut T, base: u64, offset: u16) -> Result<(), ReadError> {
    if offset == ABSENT {
        return Err(ReadError::Absent);
    }
    if base == 0 {
        return Err(ReadError::Null);
    }
    copy_into(dst, base + u64::from(offset))
}

#[inline(always)]
fn copy_into<T>(dst: &mut T, addr: u64) -> Result<(), ReadError> {
    // SAFETY: `dst` is a valid, exclusively borrowed `T` of `size_of::<T>()`
    // bytes; the helper reads `addr` through the kernel's fault-tolerant path
    // and only writes `dst`. The `T`s used here are plain integers and byte
    // arrays, valid for any bit pattern.
    let rc = unsafe {
        generated::bpf_probe_read_kernel(
            (dst as *mut T).cast::<c_void>(),
            size_of::<T>() as u32,
            addr as *const c_void,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(ReadError::Fault)
    }
}

/// Copies `size_of::<T>()` bytes at byte `at` of tracepoint field `field` into
/// `dst`, checking that they lie inside the field.
#[inline(always)]
pub fn tp_part_into<T>(
    ctx: &TracePointContext,
    field: TpField,
    at: u16,
    dst: &mut T,
) -> Result<(), ReadError> {
    if !field.present() || usize::from(at) + size_of::<T>() > usize::from(field.size) {
        return Err(ReadError::Absent);
    }
    copy_into(
        dst,
        ctx.as_ptr() as u64 + u64::from(field.offset) + u64::from(at),
    )
}

/// Reads `size_of::<T>()` bytes at byte `at` of tracepoint field `field`.
#[inline(always)]
pub fn tp_part<T: Default>(
    ctx: &TracePointContext,
    field: TpField,
    at: u16,
) -> Result<T, ReadError> {
    let mut value = T::default();
    tp_part_into(ctx, field, at, &mut value)?;
    Ok(value)
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
