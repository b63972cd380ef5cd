//! The backlog each program asked `listen()` for (`syscalls:sys_enter_listen`).
//!
//! The kernel keeps only `min(backlog, net.core.somaxconn)` as the accept
//! queue's limit, which is what sock_diag shows; what the program asked for is
//! known only here. Recorded per (netns, local port) of the socket behind the
//! descriptor, in the bounded `LISTEN_BACKLOGS` map user space reads when it
//! explains an accept-queue overflow. Runs in the calling process: the
//! descriptor is the current task's. A socket not yet bound (listen() picks a
//! port) is skipped.

use aya_ebpf::programs::TracePointContext;
use tcpwatch_common::{counters::Counter, family, flow::ListenKey};

use crate::{
    accept::socket_of_fd,
    config::config,
    kmem::{ReadError, read, tp_uint},
    maps::{LISTEN_BACKLOGS, count},
    sock,
};

/// `syscalls:sys_enter_listen(int fd, int backlog)`.
pub fn on_listen_enter(ctx: &TracePointContext) -> Result<(), ReadError> {
    let fd = tp_uint(ctx, config!(listen_enter.fd))? as u32;
    // The syscall takes an int; the record widens it to 8 bytes.
    let backlog = tp_uint(ctx, config!(listen_enter.backlog))? as u32 as i32;
    let result = record(u64::from(fd), backlog);
    if result.is_err() {
        count(Counter::BacklogUpdateErrors);
    }
    result
}

#[inline(always)]
fn record(fd: u64, backlog: i32) -> Result<(), ReadError> {
    let sk = socket_of_fd(fd)?;
    let fam = sock::family(sk)?;
    if fam != family::INET && fam != family::INET6 {
        return Ok(());
    }
    let port: u16 = read(sk, config!(kernel.skc_num))?;
    if port == 0 {
        return Ok(());
    }
    let key = ListenKey {
        netns: sock::netns(sk)?,
        port,
        _pad: 0,
    };
    if LISTEN_BACKLOGS.insert(key, backlog, 0).is_err() {
        count(Counter::BacklogUpdateErrors);
    }
    Ok(())
}
