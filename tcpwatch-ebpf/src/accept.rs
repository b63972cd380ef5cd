//! `syscalls:sys_exit_accept4` / `sys_exit_accept`: the process that accepts a
//! connection owns it. Runs in the accepting process, so the current task is the
//! owner; the socket is found through the returned descriptor
//! (`current->files->fdt->fd[ret]->private_data->sk`, offsets from BTF).

use aya_ebpf::{helpers::generated::bpf_get_current_task, programs::TracePointContext};
use aya_log_ebpf::debug;
use tcpwatch_common::{counters::Counter, family, owner::OwnerSource};

use crate::{
    config::config,
    emit::Slot,
    kmem::{ReadError, read, read_at, tp},
    maps::count,
    owner, sock,
};

/// Handles the exit of `accept4()` (`accept4 == true`) or `accept()`.
pub fn on_accept_exit(ctx: &TracePointContext, accept4: bool) -> Result<(), ReadError> {
    let field = if accept4 {
        config!(accept4_exit.ret)
    } else {
        config!(accept_exit.ret)
    };
    let ret: i64 = tp(ctx, field)?;
    if ret < 0 {
        return Ok(());
    }
    let result = socket_of_fd(ret as u64).and_then(|sk| {
        let fam = sock::family(sk)?;
        if fam == family::INET || fam == family::INET6 {
            // The scratch event's owner field holds the record (map memory, not
            // the BPF stack); no event is emitted.
            let Some(mut slot) = Slot::take() else {
                count(Counter::OwnerUpdateErrors);
                return Ok(());
            };
            let record = &mut slot.event().owner;
            owner::fill_current_owner(record, OwnerSource::Accept, owner::now_ns());
            owner::set_socket_owner(sk, record);
            debug!(ctx, "accept: pid {} owns socket {:x}", record.task.pid, sk);
        }
        Ok(())
    });
    if result.is_err() {
        count(Counter::ReadErrors);
    }
    result
}

/// The `struct sock *` behind descriptor `fd` of the current task.
pub fn socket_of_fd(fd: u64) -> Result<u64, ReadError> {
    // SAFETY: helper without arguments; returns the current task_struct address.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read(task, config!(kernel.task_files))?;
    let fdt: u64 = read(files, config!(kernel.files_fdt))?;
    let max_fds: u32 = read(fdt, config!(kernel.fdt_max_fds))?;
    if fd >= u64::from(max_fds) {
        return Err(ReadError::Fault);
    }
    let fd_array: u64 = read(fdt, config!(kernel.fdt_fd))?;
    let file: u64 = read_at(fd_array + fd * 8)?;
    let socket: u64 = read(file, config!(kernel.file_private_data))?;
    read(socket, config!(kernel.socket_sk))
}
