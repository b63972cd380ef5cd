//! Load generators, run as separate processes (`cargo xtask bench-load ...`,
//! the xtask binary re-executed) so that tcpwatch attributes their sockets to
//! them and several can run at once. Each prints one number when done: the
//! connections it made.

use std::{
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use socket2::SockRef;

/// `cargo xtask bench-load`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    kind: Kind,
}

#[derive(clap::Subcommand)]
enum Kind {
    /// Connect to a port nobody listens on, as fast as possible (one RST sent
    /// and one received per attempt).
    Refused {
        addr: SocketAddr,
        seconds: f64,
        /// Attempts per second (0: as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// Accept connections and close each with SO_LINGER {1,0} (an abortive
    /// close: one RST per connection). Runs until killed.
    AbortServer { addr: SocketAddr },
    /// Connect to an abort server and read until it resets, as fast as possible.
    AbortClient { addr: SocketAddr, seconds: f64 },
}

/// Runs one generator (in the child process).
pub fn run(args: &Args) -> Result<()> {
    let made = match &args.kind {
        Kind::Refused {
            addr,
            seconds,
            rate,
        } => repeat(*seconds, *rate, || {
            let _ = TcpStream::connect(addr);
        }),
        Kind::AbortServer { addr } => {
            let listener = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
            println!("listening");
            for stream in listener.incoming().flatten() {
                let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            }
            0
        }
        Kind::AbortClient { addr, seconds } => repeat(*seconds, 0, || {
            if let Ok(mut s) = TcpStream::connect(addr) {
                let mut buf = [0u8; 64];
                let _ = s.read(&mut buf);
            }
        }),
    };
    println!("{made}");
    Ok(())
}

/// Calls `once` for `seconds`, at `rate` calls per second (0: flat out).
fn repeat(seconds: f64, rate: u64, mut once: impl FnMut()) -> u64 {
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut made = 0u64;
    while Instant::now() < end {
        if rate > 0 {
            let due = start + Duration::from_secs_f64(made as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            once();
            made += 1;
        } else {
            for _ in 0..64 {
                once();
            }
            made += 64;
        }
    }
    made
}

/// Starts a generator process with `args` (after `bench-load`).
pub fn spawn(args: &[String]) -> Result<Child> {
    Command::new(std::env::current_exe()?)
        .arg("bench-load")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawning a load generator")
}

/// Waits for generators and sums the numbers they print.
pub fn total(children: Vec<Child>) -> Result<u64> {
    let mut sum = 0;
    for child in children {
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        sum += text
            .lines()
            .last()
            .and_then(|l| l.trim().parse::<u64>().ok())
            .context("a load generator printed no count")?;
    }
    Ok(sum)
}
