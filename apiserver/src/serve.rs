//! Serving HTTP so that no client can hold what others need: an accept loop with a cap on
//! open connections (below the file-descriptor limit, with a log line when it is near),
//! hyper's header-read timeout (which also closes keep-alive connections that sit idle),
//! and upstream's in-flight limits — `--max-requests-inflight` read-only and
//! `--max-mutating-requests-inflight` mutating requests at once, a bounded queue beyond
//! them, 429 with `Retry-After` beyond that — plus the request timeout for everything that
//! is not long-running.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use component_base::tls::{PeerCert, Serving};

use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::status::ApiError;

/// Logs at most once per `every`, and says how many it held back.
struct Throttled {
    last: Mutex<Option<Instant>>,
    every: Duration,
}

impl Throttled {
    fn new(every: Duration) -> Throttled {
        Throttled { last: Mutex::new(None), every }
    }

    fn ready(&self) -> bool {
        let mut last = self.last.lock();
        if last.is_some_and(|t| t.elapsed() < self.every) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

/// Raises the soft open-files limit to the hard one (as Go's runtime does for upstream's
/// apiserver) and returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

/// How many connections may be open at once: the configured cap, but never more than
/// three quarters of the file descriptors, so storage, watches and logs keep theirs.
pub fn connection_cap(configured: usize, fd_limit: u64) -> usize {
    let by_fds = usize::try_from(fd_limit.saturating_mul(3) / 4).unwrap_or(usize::MAX).max(16);
    configured.min(by_fds)
}

/// Accepts connections on `listener` and serves `router` on each, until the task is
/// dropped.
pub async fn serve(listener: TcpListener, router: Router, limits: &Limits, tls: Option<Serving>) {
    let fd_limit = raise_fd_limit();
    let cap = connection_cap(limits.max_open_connections, fd_limit);
    tracing::info!(max_open_connections = cap, fd_limit, "serving connections");
    let permits = Arc::new(Semaphore::new(cap));
    let warn_full = Throttled::new(Duration::from_secs(10));
    let warn_near = Throttled::new(Duration::from_secs(60));
    let warn_accept = Throttled::new(Duration::from_secs(10));
    let header_timeout = limits.read_header_timeout;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE/ENFILE: out of descriptors. Back off instead of spinning.
                if warn_accept.ready() {
                    tracing::warn!(error = %e, fd_limit, "accepting a connection failed (is the open-files limit reached?)");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if warn_full.ready() {
                tracing::warn!(%peer, cap, "refusing connections: the cap on open connections is reached (--max-open-connections, ulimit -n)");
            }
            drop(stream);
            continue;
        };
        if permits.available_permits() < cap / 10 && warn_near.ready() {
            tracing::warn!(open = cap - permits.available_permits(), cap, "open connections are near the cap");
        }
        let router = router.clone();
        let _ = stream.set_nodelay(true);
        let stream = Counted { _permit: permit, stream };
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(tls) = tls else {
                return serve_connection(stream, peer, router, header_timeout, PeerCert::None).await;
            };
            // The handshake has the header-read timeout too: a client that opens a
            // connection and says nothing holds its place for no longer than that.
            match tokio::time::timeout(header_timeout, tls.accept(stream)).await {
                Ok(Ok((stream, cert))) => serve_connection(stream, peer, router, header_timeout, cert).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// A connection that holds its place under the cap until it closes. The place is given
/// back before the socket is closed (fields drop in order), so a client that sees its
/// connection closed can always open the next one.
struct Counted {
    _permit: tokio::sync::OwnedSemaphorePermit,
    stream: tokio::net::TcpStream,
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

async fn serve_connection<IO>(stream: IO, peer: SocketAddr, router: Router, header_timeout: Duration, cert: PeerCert)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limits = component_base::serve::Limits { header_timeout, read_buffer: Some(MAX_READ_BUFFER) };
    component_base::serve::connection_with(stream, peer, router, cert, limits).await
}

/// The longest request URI answered (longer: 414 with a Status). The HTTP layer cannot
/// represent URIs over 64 KiB and answers those 414 itself, without a body.
pub const MAX_URI_BYTES: usize = 32 << 10;
/// The most header bytes answered (more: 431). Past [`MAX_READ_BUFFER`] the HTTP layer
/// answers 431 itself, without a body, as upstream's does past its 1 MB.
pub const MAX_HEADER_BYTES: usize = 256 << 10;
/// The HTTP layer's read buffer: the request line and headers must fit in it.
pub const MAX_READ_BUFFER: usize = 1 << 20;

/// 414 and 431 with a Status body, for URIs and headers a client has no reason to send.
pub fn check_size(request: &Request) -> Result<(), ApiError> {
    let uri = request.uri().to_string().len();
    if uri > MAX_URI_BYTES {
        return Err(ApiError::new(
            414,
            "RequestURITooLong",
            format!("the request URI is {uri} bytes, over the limit of {MAX_URI_BYTES}"),
        ));
    }
    let headers: usize = request.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if headers > MAX_HEADER_BYTES {
        return Err(ApiError::new(
            431,
            "RequestHeaderFieldsTooLarge",
            format!("the request headers are {headers} bytes, over the limit of {MAX_HEADER_BYTES}"),
        ));
    }
    Ok(())
}

/// One in-flight pool: its slots, and a bounded queue of requests waiting for one.
struct Pool {
    slots: Arc<Semaphore>,
    /// Places in the queue: a request beyond them is refused at once.
    queue: Arc<Semaphore>,
}

impl Pool {
    fn new(slots: usize) -> Pool {
        let slots = slots.max(1);
        Pool { slots: Arc::new(Semaphore::new(slots)), queue: Arc::new(Semaphore::new(QUEUE_PER_SLOT * slots)) }
    }
}

/// Requests that may wait per slot of a pool: enough for our own components at full
/// burst together (a 512-request kubelet, the scheduler's 256 bindings, the ReplicaSet
/// controller's batches) to queue rather than be refused.
const QUEUE_PER_SLOT: usize = 8;
/// The longest a request waits in the queue (and at most half its request timeout).
const QUEUE_WAIT: Duration = Duration::from_secs(10);

/// The two in-flight pools. A request beyond a pool's slots waits in its queue, as
/// upstream's API Priority and Fairness queues requests rather than refusing them, so that
/// a burst is served a moment later; one that finds the queue full, or waits too long, is
/// refused with 429.
pub struct Inflight {
    read_only: Pool,
    mutating: Pool,
    request_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Inflight {
    /// Pools of the sizes `limits` give, counted in `metrics`.
    pub fn new(limits: &Limits, metrics: Arc<Metrics>) -> Inflight {
        Inflight {
            read_only: Pool::new(limits.max_requests_inflight),
            mutating: Pool::new(limits.max_mutating_requests_inflight),
            request_timeout: limits.request_timeout,
            metrics,
        }
    }
}

/// Watches, followed logs and the health and metrics endpoints hold no in-flight slot and
/// have no request timeout, as upstream's long-running requests.
fn long_running(request: &Request) -> bool {
    let path = request.uri().path();
    if matches!(path, "/healthz" | "/livez" | "/readyz" | "/metrics") {
        return true;
    }
    let query = request.uri().query().unwrap_or_default();
    let pairs = query.split('&').map(|kv| kv.split_once('=').unwrap_or((kv, "")));
    request.method() == Method::GET && (crate::query::streams(pairs) || path.contains("/watch/"))
}

/// The middleware: a slot from the request's pool, or 429; then the request timeout.
pub async fn limit_inflight(State(inflight): State<Arc<Inflight>>, request: Request, next: Next) -> Response {
    if long_running(&request) {
        return next.run(request).await;
    }
    let (pool, kind) = match *request.method() {
        Method::GET | Method::HEAD | Method::OPTIONS => (&inflight.read_only, "readOnly"),
        _ => (&inflight.mutating, "mutating"),
    };
    let _slot = match pool.slots.clone().try_acquire_owned() {
        Ok(slot) => slot,
        Err(_) => {
            let Ok(_place) = pool.queue.clone().try_acquire_owned() else {
                inflight.metrics.rejected(kind);
                return too_many_requests();
            };
            let wait = QUEUE_WAIT.min(inflight.request_timeout / 2);
            match tokio::time::timeout(wait, pool.slots.clone().acquire_owned()).await {
                Ok(Ok(slot)) => slot,
                _ => {
                    inflight.metrics.rejected(kind);
                    return too_many_requests();
                }
            }
        }
    };
    let gauge = inflight.metrics.inflight(kind);
    gauge.inc();
    let response = match tokio::time::timeout(inflight.request_timeout, next.run(request)).await {
        Ok(response) => response,
        // Upstream's words for its request timeout.
        Err(_) => {
            ApiError::timeout("Timeout: request did not complete within requested timeout - context deadline exceeded")
                .into_response()
        }
    };
    gauge.dec();
    response
}

/// Upstream's 429: a Status with `retryAfterSeconds`, and the `Retry-After` header.
fn too_many_requests() -> Response {
    let mut err = ApiError::new(429, "TooManyRequests", "Too many requests, please try again later.");
    err.retry_after = Some(1);
    let mut response = err.into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_leaves_descriptors_for_the_rest() {
        assert_eq!(connection_cap(10_000, 1024), 768);
        assert_eq!(connection_cap(500, 1 << 20), 500);
    }

    #[test]
    fn watches_and_health_are_long_running() {
        let get = |uri: &str| Request::builder().uri(uri).body(axum::body::Body::empty()).expect("request");
        assert!(long_running(&get("/api/v1/pods?watch=true&resourceVersion=5")));
        assert!(long_running(&get("/api/v1/watch/namespaces/default/pods")));
        assert!(long_running(&get("/api/v1/namespaces/default/pods/web/log?follow=true")));
        assert!(long_running(&get("/readyz")));
        assert!(!long_running(&get("/api/v1/pods")));
        assert!(!long_running(&get("/api/v1/pods?watchful=true")));
    }
}
