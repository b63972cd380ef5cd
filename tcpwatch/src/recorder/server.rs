//! The query socket: a unix stream socket (mode 0600, in a directory only root
//! and the daemon can enter under systemd) that answers [`Request`]s from the
//! recorder. Peers other than root and the daemon's own user are refused
//! (`SO_PEERCRED`), as are requests that are too long or too slow; at most
//! [`MAX_CLIENTS`] are served at once.

use std::{
    fs,
    io::{self, ErrorKind},
    os::unix::fs::{FileTypeExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{TimeDelta, Utc};
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::Semaphore,
    task::JoinSet,
};
use tracing::debug;

use super::{
    protocol::{End, MAX_REQUEST, PROTOCOL_VERSION, Refusal, Request},
    store::{Recorded, Recorder},
};

/// Clients served at once at most.
pub const MAX_CLIENTS: usize = 4;
/// A request must arrive within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Writing the whole answer may take this long at most.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// Counters of queries, by result.
#[derive(Clone)]
pub struct QueryCounters {
    /// Answered.
    pub answered: Counter,
    /// Refused (peer, request, too many clients).
    pub refused: Counter,
}

/// A listening socket; dropping it stops serving and removes the socket file.
pub struct QueryServer {
    /// The socket's path.
    pub path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for QueryServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = fs::remove_file(&self.path);
    }
}

/// Binds the socket at `path` (replacing a stale socket, never another file)
/// and serves `recorder` there.
pub fn serve(
    path: &Path,
    recorder: Arc<Mutex<Recorder>>,
    counters: QueryCounters,
) -> io::Result<QueryServer> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                ErrorKind::AlreadyExists,
                "exists and is not a socket",
            ));
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    let task = tokio::spawn(accept(listener, recorder, counters));
    Ok(QueryServer {
        path: path.to_path_buf(),
        task,
    })
}

async fn accept(listener: UnixListener, recorder: Arc<Mutex<Recorder>>, counters: QueryCounters) {
    let permits = Arc::new(Semaphore::new(MAX_CLIENTS));
    let me = nix::unistd::geteuid().as_raw();
    let mut clients = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut stream, _)) = accepted else { continue };
                let allowed = stream.peer_cred().is_ok_and(|c| c.uid() == 0 || c.uid() == me);
                let permit = Arc::clone(&permits).try_acquire_owned();
                let refusal = match (&permit, allowed) {
                    (_, false) => Some("only root may query tcpwatch"),
                    (Err(_), true) => Some("too many queries at once; try again"),
                    (Ok(_), true) => None,
                };
                if let Some(message) = refusal {
                    counters.refused.inc();
                    clients.spawn(async move {
                        let _ = refuse(&mut stream, message).await;
                    });
                    continue;
                }
                let recorder = Arc::clone(&recorder);
                let counters = counters.clone();
                clients.spawn(async move {
                    match tokio::time::timeout(ANSWER_TIMEOUT, client(stream, &recorder)).await {
                        Ok(Ok(())) => {
                            counters.answered.inc();
                        }
                        Ok(Err(e)) => {
                            counters.refused.inc();
                            debug!("query: {e}");
                        }
                        Err(_) => {
                            counters.refused.inc();
                            debug!("query: answer not taken within {ANSWER_TIMEOUT:?}");
                        }
                    };
                    drop(permit);
                });
            }
            Some(_) = clients.join_next() => {}
        }
    }
}

async fn refuse(stream: &mut UnixStream, message: &str) -> io::Result<()> {
    let refusal = Refusal {
        record: "query_error".into(),
        message: message.into(),
    };
    write_line(stream, &refusal).await
}

async fn client(mut stream: UnixStream, recorder: &Mutex<Recorder>) -> io::Result<()> {
    let mut line = Vec::new();
    let read = {
        let mut reader = BufReader::new((&mut stream).take(MAX_REQUEST as u64 + 1));
        tokio::time::timeout(REQUEST_TIMEOUT, reader.read_until(b'\n', &mut line)).await
    };
    let request: Result<Request, String> = match read {
        Err(_) => Err("no request within 5 s".to_owned()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(_)) if line.len() > MAX_REQUEST => Err("request too long".to_owned()),
        Ok(Ok(_)) => serde_json::from_slice::<Request>(&line)
            .map_err(|e| format!("bad request: {e}"))
            .and_then(|r| {
                if r.version == PROTOCOL_VERSION {
                    Ok(r)
                } else {
                    Err(format!(
                        "protocol version {} (this daemon speaks {PROTOCOL_VERSION})",
                        r.version
                    ))
                }
            }),
    };
    let request = match request {
        Ok(r) => r,
        Err(message) => {
            refuse(&mut stream, &message).await?;
            return Err(io::Error::other(message));
        }
    };
    let since_ms = i64::try_from(request.since_ms).unwrap_or(i64::MAX);
    let since = Utc::now() - TimeDelta::try_milliseconds(since_ms).unwrap_or(TimeDelta::MAX);
    let answer = recorder
        .lock()
        .ok()
        .map(|recorder| recorder.select(since, &request.selection));
    let answer = match answer {
        Some(answer) => answer,
        None => {
            refuse(&mut stream, "recorder unavailable").await?;
            return Err(io::Error::other("recorder lock poisoned"));
        }
    };
    let mut out = Vec::with_capacity(64 * 1024);
    let (mut events, mut findings) = (0, 0);
    for record in &answer.records {
        match record {
            Recorded::Event(e) => {
                events += 1;
                serde_json::to_writer(&mut out, e.as_ref())
            }
            Recorded::Finding(f) => {
                findings += 1;
                serde_json::to_writer(&mut out, f.as_ref())
            }
            Recorded::Aggregate(a) => {
                events += 1;
                serde_json::to_writer(&mut out, a.as_ref())
            }
            Recorded::Storm(s) => serde_json::to_writer(&mut out, s.as_ref()),
        }
        .map_err(io::Error::other)?;
        out.push(b'\n');
        if out.len() >= 60 * 1024 {
            stream.write_all(&out).await?;
            out.clear();
        }
    }
    stream.write_all(&out).await?;
    let end = End {
        record: "query_end".into(),
        events,
        findings,
        held_since: answer.held_since,
        dropped: answer.dropped,
    };
    write_line(&mut stream, &end).await?;
    stream.shutdown().await
}

async fn write_line(stream: &mut UnixStream, value: &impl Serialize) -> io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line).await
}
