//! The HTTP endpoint Prometheus scrapes: `GET /metrics` answers the
//! [`super::prometheus`] registry as OpenMetrics text. HTTP/1.1 only, at most
//! [`MAX_CONNECTIONS`] connections at once (more are closed at once and
//! counted), headers within [`HEADER_TIMEOUT`]. Listens on loopback unless
//! configured otherwise.

use std::{convert::Infallible, io, net::SocketAddr, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{ALLOW, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{metrics::counter::Counter, registry::Registry};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinSet};
use tracing::debug;

use super::prometheus::encode;

/// Connections served at once at most.
pub const MAX_CONNECTIONS: usize = 16;
/// A request's headers must arrive within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// What OpenMetrics text is served as.
const CONTENT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A listening endpoint; dropping it stops it (and its connections).
pub struct Endpoint {
    /// Where it listens.
    pub addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Endpoint {
    /// Stops serving and waits until every connection is closed.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Binds `addr` and serves `registry` there; connections closed for want of a
/// slot count in `refused`.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    refused: Counter,
) -> io::Result<Endpoint> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(accept(listener, registry, refused));
    Ok(Endpoint {
        addr,
        task: Some(task),
    })
}

async fn accept(listener: TcpListener, registry: Arc<Registry>, refused: Counter) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    refused.inc();
                    debug!("metrics: refusing {peer}: {MAX_CONNECTIONS} connections open");
                    continue;
                };
                let registry = Arc::clone(&registry);
                connections.spawn(async move {
                    let service = service_fn(move |request| answer(request, Arc::clone(&registry)));
                    let served = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(e) = served {
                        debug!("metrics: {peer}: {e}");
                    }
                    drop(permit);
                });
            }
            Some(_) = connections.join_next() => {}
        }
    }
}

async fn answer(
    request: Request<Incoming>,
    registry: Arc<Registry>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status, kind: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = kind.parse() {
            response.headers_mut().insert(CONTENT_TYPE, value);
        }
        response
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
        if let Ok(value) = "GET, HEAD".parse() {
            response.headers_mut().insert(ALLOW, value);
        }
        return Ok(response);
    }
    Ok(match request.uri().path() {
        "/metrics" => reply(StatusCode::OK, CONTENT, encode(&registry)),
        "/" => reply(
            StatusCode::OK,
            "text/plain",
            "tcpwatch: metrics at /metrics\n".into(),
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
}
