//! Scripted TCP peers: the test binary re-executed as a separate process that
//! takes one command per line on stdin and answers one line on stdout. Each peer
//! holds at most one listener and one connection.
//!
//! Commands: `listen IP` → `ok PORT`; `accept` → `ok PEERPORT`;
//! `connect IP PORT` → `ok LOCALPORT` | `err ERRNO`; `send N`; `await-data`
//! (poll readable, nothing read); `recv` → `ok N` | `eof` | `err ERRNO`;
//! `await-eof`; `linger0`; `close`; `close-listener`; `comm NAME` (set the
//! process name); `exit`.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsFd,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc::{self, Receiver},
    thread,
    time::Duration,
};

use nix::{
    errno::Errno,
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::socket::{setsockopt, sockopt::Linger},
};

/// Environment variable that turns the test binary into a peer.
pub const ROLE_ENV: &str = "TCPWATCH_TEST_PEER";

/// Runs the peer command loop (called from the test binary's main).
pub fn serve() -> ! {
    let mut listener: Option<TcpListener> = None;
    let mut conn: Option<TcpStream> = None;
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match run(&words, &mut listener, &mut conn) {
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

fn need<'a, T>(slot: &'a mut Option<T>, what: &str) -> io::Result<&'a mut T> {
    slot.as_mut()
        .ok_or_else(|| io::Error::other(format!("no_{what}")))
}

fn run(
    words: &[&str],
    listener: &mut Option<TcpListener>,
    conn: &mut Option<TcpStream>,
) -> io::Result<String> {
    match words {
        ["listen", ip] => {
            let ip: IpAddr = ip.parse().map_err(io::Error::other)?;
            let l = TcpListener::bind(SocketAddr::new(ip, 0))?;
            let port = l.local_addr()?.port();
            *listener = Some(l);
            Ok(format!("ok {port}"))
        }
        ["accept"] => {
            let (s, peer) = need(listener, "listener")?.accept()?;
            *conn = Some(s);
            Ok(format!("ok {}", peer.port()))
        }
        ["connect", ip, port] => {
            let ip: IpAddr = ip.parse().map_err(io::Error::other)?;
            let port: u16 = port.parse().map_err(io::Error::other)?;
            let s = TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(5))?;
            let local = s.local_addr()?.port();
            *conn = Some(s);
            Ok(format!("ok {local}"))
        }
        ["send", n] => {
            let n: usize = n.parse().map_err(io::Error::other)?;
            need(conn, "conn")?.write_all(&vec![b'x'; n])?;
            Ok("ok".into())
        }
        ["await-data"] => {
            let c = need(conn, "conn")?;
            let mut fds = [PollFd::new(c.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(5000u16)) {
                Ok(1) => Ok("ok".into()),
                Ok(_) => Err(io::Error::other("timeout")),
                Err(e) => Err(e.into()),
            }
        }
        ["recv"] => {
            let mut buf = [0u8; 65536];
            match need(conn, "conn")?.read(&mut buf)? {
                0 => Ok("eof".into()),
                n => Ok(format!("ok {n}")),
            }
        }
        ["await-eof"] => {
            let c = need(conn, "conn")?;
            c.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut buf = [0u8; 65536];
            while c.read(&mut buf)? != 0 {}
            Ok("eof".into())
        }
        ["linger0"] => {
            let c = need(conn, "conn")?;
            setsockopt(
                c,
                Linger,
                &nix::libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                },
            )?;
            Ok("ok".into())
        }
        ["close"] => {
            *conn = None;
            Ok("ok".into())
        }
        ["close-listener"] => {
            *listener = None;
            Ok("ok".into())
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
        writeln!(self.stdin, "{command}").expect("write to peer");
        self.stdin.flush().expect("flush peer");
        self.lines
            .recv_timeout(Duration::from_secs(15))
            .unwrap_or_else(|_| panic!("peer {} gave no answer to '{command}'", self.pid))
    }

    /// Sends a command that must succeed; returns the reply's argument.
    pub fn ok(&mut self, command: &str) -> String {
        let reply = self.cmd(command);
        let Some(rest) = reply.strip_prefix("ok") else {
            panic!("peer {}: '{command}' answered '{reply}'", self.pid);
        };
        rest.trim().to_owned()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
