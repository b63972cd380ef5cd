//! Real servers from Debian's packages (nginx, redis-server), started in the
//! calling thread's network namespace with their files in a temporary
//! directory, and stopped (SIGKILL) when dropped. Fixed ports are fine: each
//! test has a namespace of its own.

use std::{
    fs,
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tcpwatch-{name}-{}-{:?}",
            std::process::id(),
            thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Waits until `127.0.0.1:port` accepts connections.
fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} within 10 s"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// nginx with one worker on 127.0.0.1:8080 answering `200 ok`.
pub struct Nginx {
    child: Child,
    _dir: TempDir,
    /// The master process.
    pub master: u32,
}

impl Nginx {
    /// Starts nginx with `keepalive_timeout` (e.g. `1s`, or `0` to close every
    /// connection after its response).
    pub fn start(keepalive_timeout: &str) -> Nginx {
        Self::start_listening(keepalive_timeout, "")
    }

    /// The same with `listen` parameters (e.g. `deferred backlog=16`).
    pub fn start_listening(keepalive_timeout: &str, listen: &str) -> Nginx {
        let dir = TempDir::new("nginx");
        let d = dir.0.display();
        let conf = format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nuser root;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  keepalive_timeout {keepalive_timeout};\n  server {{ listen 127.0.0.1:8080 {listen}; location / {{ return 200 \"ok\\n\"; }} }}\n}}\n"
        );
        fs::write(dir.0.join("nginx.conf"), conf).expect("nginx.conf");
        let child = Command::new("nginx")
            .arg("-c")
            .arg(dir.0.join("nginx.conf"))
            .arg("-p")
            .arg(&dir.0)
            .arg("-e")
            .arg(dir.0.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx (apt-get install nginx-light)");
        let master = child.id();
        let nginx = Nginx {
            child,
            _dir: dir,
            master,
        };
        wait_listening(8080, "nginx");
        nginx
    }

    /// The worker process (nginx accepts and closes connections in it).
    pub fn worker(&self) -> u32 {
        let path = format!("/proc/{0}/task/{0}/children", self.master);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let children = fs::read_to_string(&path).unwrap_or_default();
            if let Some(pid) = children
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
            {
                return pid;
            }
            assert!(Instant::now() < deadline, "nginx started no worker");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // The worker dies with the master (it watches its parent).
        let workers = fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.master))
            .unwrap_or_default();
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in workers
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// redis-server on 127.0.0.1:`port`, no persistence.
pub struct Redis {
    child: Option<Child>,
    _dir: TempDir,
    /// Its process id.
    pub pid: u32,
}

impl Redis {
    /// Starts redis-server.
    pub fn start(port: u16) -> Redis {
        let dir = TempDir::new("redis");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            // DEBUG SLEEP lets a test make the server busy for a moment.
            .args([
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
                "--enable-debug-command",
                "yes",
                "--dir",
            ])
            .arg(&dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let pid = child.id();
        wait_listening(port, "redis-server");
        Redis {
            child: Some(child),
            _dir: dir,
            pid,
        }
    }

    /// Kills it with SIGKILL and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
