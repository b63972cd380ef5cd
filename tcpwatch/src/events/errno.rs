//! Names of what a failed socket call returned: errnos (`ECONNRESET`) and the
//! syscalls that read or write a socket (`read`, `sendmsg`), by this
//! architecture's numbers (libc's).

use nix::{errno::Errno, libc};

/// The symbolic name of `errno` (`ECONNRESET`), or `errno N` when unknown.
pub fn name(errno: u32) -> String {
    let unknown = || format!("errno {errno}");
    let Ok(raw) = i32::try_from(errno) else {
        return unknown();
    };
    match Errno::from_raw(raw) {
        Errno::UnknownErrno => unknown(),
        e => format!("{e:?}"),
    }
}

/// The syscalls that reach a TCP socket's receive or send path, and
/// `connect`, by number.
const SOCKET_SYSCALLS: [(libc::c_long, &str); 13] = [
    (libc::SYS_read, "read"),
    (libc::SYS_write, "write"),
    (libc::SYS_readv, "readv"),
    (libc::SYS_writev, "writev"),
    (libc::SYS_recvfrom, "recvfrom"),
    (libc::SYS_sendto, "sendto"),
    (libc::SYS_recvmsg, "recvmsg"),
    (libc::SYS_sendmsg, "sendmsg"),
    (libc::SYS_recvmmsg, "recvmmsg"),
    (libc::SYS_sendmmsg, "sendmmsg"),
    (libc::SYS_preadv2, "preadv2"),
    (libc::SYS_pwritev2, "pwritev2"),
    (libc::SYS_connect, "connect"),
];

/// The name of syscall `nr` when it is one that reads or writes a socket
/// (io_uring and others show as `syscall N`).
pub fn syscall(nr: u32) -> String {
    SOCKET_SYSCALLS
        .iter()
        .find(|(n, _)| *n == libc::c_long::from(nr))
        .map_or_else(|| format!("syscall {nr}"), |(_, name)| (*name).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_errnos_and_syscalls() {
        assert_eq!(name(libc::ECONNRESET as u32), "ECONNRESET");
        assert_eq!(name(libc::EPIPE as u32), "EPIPE");
        assert_eq!(name(100_000), "errno 100000");
        assert_eq!(syscall(libc::SYS_read as u32), "read");
        assert_eq!(syscall(libc::SYS_sendmsg as u32), "sendmsg");
        assert_eq!(syscall(100_000), "syscall 100000");
    }
}
