//! Serving an axum router on a listener, over TLS when a serving identity is given, with
//! each request carrying what the connection's client certificate says ([`PeerCert`]).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::tls::{PeerCert, Serving};

/// How long a client may take over its TLS handshake or its request's headers.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until the task is dropped; each is served on its own task.
pub async fn serve(listener: TcpListener, router: Router, tls: Option<Serving>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (router, tls) = (router.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => connection(stream, peer, router, PeerCert::None).await,
                Some(tls) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                    Ok(Ok((stream, cert))) => connection(stream, peer, router, cert).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
}

/// How one connection is served.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long the client may take over a request's headers, and how long an idle
    /// keep-alive connection is kept.
    pub header_timeout: Duration,
    /// The HTTP layer's read buffer (the request line and headers must fit).
    pub read_buffer: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { header_timeout: HANDSHAKE_TIMEOUT, read_buffer: None }
    }
}

/// Serves one connection (HTTP/1.1), every request carrying `cert` and the peer's
/// address (`ConnectInfo`) in its extensions.
pub async fn connection<IO>(io: IO, peer: SocketAddr, router: Router, cert: PeerCert)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    connection_with(io, peer, router, cert, Limits::default()).await
}

/// [`connection`] with these limits.
pub async fn connection_with<IO>(io: IO, peer: SocketAddr, router: Router, cert: PeerCert, limits: Limits)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // HTTP/1.1 only (TLS offers it alone through ALPN): every client speaks it. An
    // HTTP/1-or-2 server without ALPN would first wait for the client's first bytes to
    // tell them apart, with no timeout: a connection that sends nothing would be held
    // forever. The header-read timer starts at once, and runs again while a keep-alive
    // connection waits for its next request, so it is the idle timeout too.
    let service = router.map_request(move |mut request: Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(cert.clone());
        request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        request.map(axum::body::Body::new)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    if let Some(size) = limits.read_buffer {
        builder.max_buf_size(size);
    }
    if let Err(e) = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service)).with_upgrades().await
    {
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}
