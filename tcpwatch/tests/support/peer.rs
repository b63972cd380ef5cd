//! Scripted TCP peers: the test binary re-executed as a separate process that
//! takes one command per line on stdin and answers one line on stdout.
//!
//! A peer holds at most one listener and any number of connections; commands
//! act on the current connection (the last made, or chosen with `select I`).
//! See `run` for the commands: connecting, listening with a backlog, sending and
//! reading, abortive and repair closes, keep-alive settings, a drop-all socket
//! filter, loops of short connections, and a server that never closes.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsFd, AsRawFd},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc::{self, Receiver},
    thread,
    time::Duration,
};

use nix::{
    errno::Errno,
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::{
        resource::{Resource, setrlimit},
        socket::{setsockopt, sockopt::Linger},
    },
};
use socket2::{Domain, SockRef, Socket, TcpKeepalive, Type};

/// Environment variable that turns the test binary into a peer.
pub const ROLE_ENV: &str = "TCPWATCH_TEST_PEER";

/// A peer's sockets: one listener, connections (the last is current).
#[derive(Default)]
struct State {
    listener: Option<TcpListener>,
    conns: Vec<TcpStream>,
    current: usize,
}

impl State {
    fn conn(&mut self) -> io::Result<&mut TcpStream> {
        self.conns
            .get_mut(self.current)
            .ok_or_else(|| io::Error::other("no_conn"))
    }
}

/// Runs the peer command loop (called from the test binary's main).
pub fn serve() -> ! {
    let mut state = State::default();
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match run(&words, &mut state) {
            Ok(reply) => reply,
            Err(e) => format!("err {}", errno_name(&e)),
        };
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{reply}");
        let _ = out.flush();
        if words.first() == Some(&"exit") {
            break;
        }
    }
    std::process::exit(0)
}

fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => format!("{:?}", Errno::from_raw(code)),
        None => e.to_string().replace(' ', "_"),
    }
}

fn parse<T: std::str::FromStr>(word: &str) -> io::Result<T> {
    word.parse()
        .map_err(|_| io::Error::other(format!("bad_argument_{word}")))
}

fn addr(ip: &str, port: &str) -> io::Result<SocketAddr> {
    Ok(SocketAddr::new(parse::<IpAddr>(ip)?, parse(port)?))
}

/// `\r`, `\n` and `\s` (space) escapes of `write`.
fn unescape(text: &str) -> Vec<u8> {
    text.replace("\\r", "\r")
        .replace("\\n", "\n")
        .replace("\\s", " ")
        .into_bytes()
}

fn set_int(fd: &impl AsRawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: a valid socket descriptor and a pointer to an int of the right size.
    let rc = unsafe {
        nix::libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<i32>() as nix::libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes `s` the current connection; replies with its local port.
fn connected(st: &mut State, s: TcpStream) -> io::Result<String> {
    let local = s.local_addr()?.port();
    st.conns.push(s);
    st.current = st.conns.len() - 1;
    Ok(format!("ok {local}"))
}

#[allow(clippy::too_many_lines)]
fn run(words: &[&str], st: &mut State) -> io::Result<String> {
    match words {
        ["listen", ip] => run(&["listen-backlog", ip, "128"], st),
        ["listen-backlog", ip, backlog] => {
            let ip: IpAddr = parse(ip)?;
            let socket = Socket::new(
                Domain::for_address(SocketAddr::new(ip, 0)),
                Type::STREAM,
                None,
            )?;
            socket.set_reuse_address(true)?;
            socket.bind(&SocketAddr::new(ip, 0).into())?;
            socket.listen(parse(backlog)?)?;
            let l: TcpListener = socket.into();
            let port = l.local_addr()?.port();
            st.listener = Some(l);
            Ok(format!("ok {port}"))
        }
        ["listen-defer", ip, backlog] => {
            // A listener with TCP_DEFER_ACCEPT: connections stay request sockets
            // until their first data, which then meets the (full) accept queue.
            run(&["listen-backlog", ip, backlog], st).and_then(|reply| {
                let l = st
                    .listener
                    .as_ref()
                    .ok_or_else(|| io::Error::other("no_listener"))?;
                set_int(l, nix::libc::IPPROTO_TCP, nix::libc::TCP_DEFER_ACCEPT, 5)?;
                Ok(reply)
            })
        }
        ["unshare-net"] => {
            // This peer becomes another host: a network namespace of its own
            // (the driver wires it up with `netns::veth_to`).
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
            Ok("ok".into())
        }
        ["accept"] => {
            let l = st
                .listener
                .as_ref()
                .ok_or_else(|| io::Error::other("no_listener"))?;
            let (s, peer) = l.accept()?;
            st.conns.push(s);
            st.current = st.conns.len() - 1;
            Ok(format!("ok {}", peer.port()))
        }
        ["connect-blocking", ip, port] => {
            // A plain blocking connect(): its error is the syscall's return
            // (connect_timeout's comes from poll and SO_ERROR).
            connected(st, TcpStream::connect(addr(ip, port)?)?)
        }
        ["connect", ip, port] => connected(
            st,
            TcpStream::connect_timeout(&addr(ip, port)?, Duration::from_secs(5))?,
        ),
        ["connect-from", ip, port, local_port] => {
            let to = addr(ip, port)?;
            let socket = Socket::new(Domain::for_address(to), Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            socket.bind(&SocketAddr::new(to.ip(), parse(local_port)?).into())?;
            socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
            st.conns.push(socket.into());
            st.current = st.conns.len() - 1;
            Ok("ok".into())
        }
        ["select", i] => {
            let i: usize = parse(i)?;
            if i >= st.conns.len() {
                return Err(io::Error::other("no_such_conn"));
            }
            st.current = i;
            Ok("ok".into())
        }
        ["send", n] => {
            let n: usize = parse(n)?;
            st.conn()?.write_all(&vec![b'x'; n])?;
            Ok("ok".into())
        }
        ["write", text] => {
            st.conn()?.write_all(&unescape(text))?;
            Ok("ok".into())
        }
        ["write-all", text] => {
            let bytes = unescape(text);
            let mut failed = Vec::new();
            for (i, c) in st.conns.iter_mut().enumerate() {
                if let Err(e) = c.write_all(&bytes) {
                    failed.push(format!("{i}:{}", errno_name(&e)));
                }
            }
            Ok(format!("ok {}", failed.join(",")))
        }
        ["http-get"] => {
            st.conn()?
                .write_all(b"GET / HTTP/1.1\r\nHost: tcpwatch-test\r\n\r\n")?;
            Ok("ok".into())
        }
        ["await-data"] => {
            let c = st.conn()?;
            let mut fds = [PollFd::new(c.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(5000u16)) {
                Ok(1) => Ok("ok".into()),
                Ok(_) => Err(io::Error::other("timeout")),
                Err(e) => Err(e.into()),
            }
        }
        ["recv"] => {
            let c = st.conn()?;
            c.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut buf = [0u8; 65536];
            match c.read(&mut buf)? {
                0 => Ok("eof".into()),
                n => Ok(format!("ok {n}")),
            }
        }
        ["await-eof"] => {
            let c = st.conn()?;
            c.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut buf = [0u8; 65536];
            while c.read(&mut buf)? != 0 {}
            Ok("eof".into())
        }
        ["linger0"] => {
            let c = st.conn()?;
            setsockopt(
                &*c,
                Linger,
                &nix::libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                },
            )?;
            Ok("ok".into())
        }
        ["linger2-off"] => {
            // TCP_LINGER2 = -1: no FIN_WAIT2 after close, reset instead.
            set_int(
                &*st.conn()?,
                nix::libc::IPPROTO_TCP,
                nix::libc::TCP_LINGER2,
                -1,
            )?;
            Ok("ok".into())
        }
        ["keepalive", idle, interval, count] => {
            let keepalive = TcpKeepalive::new()
                .with_time(Duration::from_secs(parse(idle)?))
                .with_interval(Duration::from_secs(parse(interval)?))
                .with_retries(parse(count)?);
            SockRef::from(&*st.conn()?).set_tcp_keepalive(&keepalive)?;
            Ok("ok".into())
        }
        ["user-timeout", ms] => {
            SockRef::from(&*st.conn()?)
                .set_tcp_user_timeout(Some(Duration::from_millis(parse(ms)?)))?;
            Ok("ok".into())
        }
        ["blackhole"] => {
            // A classic BPF filter that drops everything this socket receives.
            let drop_all = [nix::libc::sock_filter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 0,
            }];
            let program = nix::libc::sock_fprog {
                len: 1,
                filter: drop_all.as_ptr().cast_mut(),
            };
            let c = st.conn()?;
            // SAFETY: a valid socket and a pointer to a sock_fprog whose filter
            // array outlives the call.
            let rc = unsafe {
                nix::libc::setsockopt(
                    c.as_raw_fd(),
                    nix::libc::SOL_SOCKET,
                    nix::libc::SO_ATTACH_FILTER,
                    (&raw const program).cast(),
                    size_of::<nix::libc::sock_fprog>() as nix::libc::socklen_t,
                )
            };
            if rc == 0 {
                Ok("ok".into())
            } else {
                Err(io::Error::last_os_error())
            }
        }
        ["repair-close"] => {
            // Close without FIN or RST: the peer keeps a stale connection.
            let c = st.conns.remove(st.current);
            set_int(&c, nix::libc::IPPROTO_TCP, nix::libc::TCP_REPAIR, 1)?;
            drop(c);
            st.current = st.conns.len().saturating_sub(1);
            Ok("ok".into())
        }
        ["shutdown-write"] => {
            st.conn()?.shutdown(std::net::Shutdown::Write)?;
            Ok("ok".into())
        }
        ["close"] => {
            if st.current < st.conns.len() {
                st.conns.remove(st.current);
            }
            st.current = st.conns.len().saturating_sub(1);
            Ok("ok".into())
        }
        ["close-listener"] => {
            st.listener = None;
            Ok("ok".into())
        }
        ["sleep", ms] => {
            std::thread::sleep(Duration::from_millis(parse(ms)?));
            Ok("ok".into())
        }
        ["talk-close-many", ip, port, n, text] => {
            // n short connections: connect, write, read the answer, close first.
            let to = addr(ip, port)?;
            let bytes = unescape(text);
            let (mut done, mut failed) = (0, 0);
            for _ in 0..parse::<u32>(n)? {
                let attempt = (|| -> io::Result<()> {
                    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
                    s.set_read_timeout(Some(Duration::from_secs(2)))?;
                    s.write_all(&bytes)?;
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf)?;
                    Ok(())
                })();
                if attempt.is_ok() {
                    done += 1
                } else {
                    failed += 1
                }
            }
            Ok(format!("ok {done} {failed}"))
        }
        ["http-close-loop", ip, port, n] => {
            // n requests, each on its own connection, read until the server closes.
            let to = addr(ip, port)?;
            let (mut done, mut failed) = (0, 0);
            for _ in 0..parse::<u32>(n)? {
                let attempt = (|| -> io::Result<()> {
                    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
                    s.set_read_timeout(Some(Duration::from_secs(2)))?;
                    s.write_all(b"GET / HTTP/1.1\r\nHost: tcpwatch-test\r\n\r\n")?;
                    let mut buf = [0u8; 4096];
                    while s.read(&mut buf)? != 0 {}
                    Ok(())
                })();
                if attempt.is_ok() {
                    done += 1
                } else {
                    failed += 1
                }
            }
            Ok(format!("ok {done} {failed}"))
        }
        ["close-while-redis-busy", ip, port, n] => {
            // n times: a short connection to redis (PING), closed by this side
            // while redis is blocked (DEBUG SLEEP on another connection), so
            // redis acknowledges the close at once but sends its own FIN late.
            let to = addr(ip, port)?;
            let mut blocker = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
            blocker.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut buf = [0u8; 4096];
            let (mut done, mut failed) = (0, 0);
            for _ in 0..parse::<u32>(n)? {
                let attempt = (|| -> io::Result<()> {
                    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
                    s.set_read_timeout(Some(Duration::from_secs(2)))?;
                    s.write_all(b"PING\r\n")?;
                    let _ = s.read(&mut buf)?;
                    blocker.write_all(b"DEBUG SLEEP 0.2\r\n")?;
                    std::thread::sleep(Duration::from_millis(10));
                    drop(s);
                    let _ = blocker.read(&mut buf)?;
                    Ok(())
                })();
                if attempt.is_ok() {
                    done += 1
                } else {
                    failed += 1
                }
            }
            Ok(format!("ok {done} {failed}"))
        }
        ["connect-close-many", ip, port, n] => {
            // n connections closed right away by this side; failures counted.
            let to = addr(ip, port)?;
            let (mut done, mut failed) = (0, 0);
            for _ in 0..parse::<u32>(n)? {
                match TcpStream::connect_timeout(&to, Duration::from_millis(300)) {
                    Ok(s) => {
                        drop(s);
                        done += 1;
                    }
                    Err(_) => failed += 1,
                }
            }
            Ok(format!("ok {done} {failed}"))
        }
        ["leaky-serve", ip, backlog, nofile] => {
            // A server that accepts, reads until the peer closes, and never
            // closes: the connections stay in CLOSE_WAIT until descriptors run out.
            let limit: u64 = parse(nofile)?;
            setrlimit(Resource::RLIMIT_NOFILE, limit, limit)?;
            run(&["listen-backlog", ip, backlog], st)?;
            let l = st
                .listener
                .take()
                .ok_or_else(|| io::Error::other("no_listener"))?;
            let port = l.local_addr()?.port();
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                loop {
                    match l.accept() {
                        Ok((s, _)) => kept.push(s),
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            });
            Ok(format!("ok {port}"))
        }
        ["comm", name] => {
            let name = std::ffi::CString::new(*name).map_err(io::Error::other)?;
            nix::sys::prctl::set_name(&name)?;
            Ok("ok".into())
        }
        ["exit"] => Ok("ok".into()),
        other => Err(io::Error::other(format!(
            "unknown_command_{}",
            other.join("_")
        ))),
    }
}

/// The driver side: a peer process.
pub struct Peer {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    /// Its process id.
    pub pid: u32,
}

impl Peer {
    /// Starts a peer (in the calling thread's network namespace).
    pub fn spawn() -> Peer {
        let exe = std::env::current_exe().expect("test binary path");
        let mut child = Command::new(exe)
            .env(ROLE_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn peer");
        let stdin = child.stdin.take().expect("peer stdin");
        let stdout = child.stdout.take().expect("peer stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let pid = child.id();
        Peer {
            child,
            stdin,
            lines,
            pid,
        }
    }

    /// Sends a command and returns the reply (panics after 15 s).
    pub fn cmd(&mut self, command: &str) -> String {
        self.cmd_within(command, Duration::from_secs(15))
    }

    /// Sends a command and returns the reply (panics after `limit`).
    pub fn cmd_within(&mut self, command: &str, limit: Duration) -> String {
        writeln!(self.stdin, "{command}").expect("write to peer");
        self.stdin.flush().expect("flush peer");
        self.lines
            .recv_timeout(limit)
            .unwrap_or_else(|_| panic!("peer {} gave no answer to '{command}'", self.pid))
    }

    /// [`Self::ok`] for a long command (bursts under emulation), within `limit`.
    pub fn ok_within(&mut self, command: &str, limit: Duration) -> String {
        let reply = self.cmd_within(command, limit);
        let Some(rest) = reply.strip_prefix("ok") else {
            panic!("peer {}: '{command}' answered '{reply}'", self.pid);
        };
        rest.trim().to_owned()
    }

    /// Sends a command that must succeed; returns the reply's argument.
    pub fn ok(&mut self, command: &str) -> String {
        self.ok_within(command, Duration::from_secs(15))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
