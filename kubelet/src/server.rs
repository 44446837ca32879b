//! The kubelet's HTTP endpoint: container logs (`/containerLogs/{ns}/{pod}/{container}`
//! with `follow`, `tailLines`, `previous`, `timestamps`), which the apiserver's `pods/log`
//! proxies to, plus `/healthz` and `/metrics`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;

use component_base::tls::{PeerCert, Serving};

use crate::Node;
use crate::runtime::LogOptions;

struct Shared {
    nodes: Vec<Arc<Node>>,
    metrics: Arc<crate::metrics::Metrics>,
}

async fn logs(
    State(shared): State<Arc<Shared>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let key = format!("{ns}/{pod}");
    let Some((node, uid)) =
        shared.nodes.iter().find_map(|n| n.pods.lock().get(&key).cloned().map(|uid| (n.clone(), uid)))
    else {
        return (StatusCode::NOT_FOUND, format!("pod {key} is not on this node")).into_response();
    };
    let containers = match node.runtime.pod_containers(&uid).await {
        Ok(c) => c,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let mut attempts: Vec<_> = containers.into_iter().filter(|c| c.name == container).collect();
    attempts.sort_by_key(|c| c.attempt);
    let previous = q.get("previous").is_some_and(|v| v == "true");
    let chosen = if previous { attempts.iter().rev().nth(1) } else { attempts.last() };
    let Some(chosen) = chosen else {
        let what = if previous { "a previous terminated" } else { "a" };
        return (StatusCode::BAD_REQUEST, format!("container \"{container}\" in pod \"{pod}\" has no {what} instance"))
            .into_response();
    };
    let options = LogOptions {
        follow: q.get("follow").is_some_and(|v| v == "true"),
        tail_lines: q.get("tailLines").and_then(|v| v.parse().ok()),
        timestamps: q.get("timestamps").is_some_and(|v| v == "true"),
    };
    match node.runtime.logs(&chosen.id, options).await {
        Ok(stream) => Response::builder()
            .header("Content-Type", "text/plain")
            .body(Body::from_stream(stream.map(Ok::<_, std::convert::Infallible>)))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Serves the endpoint for every node this process runs: over TLS when `tls` is given,
/// and then, when it has a client CA, only to clients with a certificate that CA signed
/// (the apiserver's); anyone else gets 401, as upstream's kubelet with anonymous access
/// off. `/healthz` is open to all.
pub async fn serve(
    addr: SocketAddr,
    nodes: Vec<Arc<Node>>,
    metrics: Arc<crate::metrics::Metrics>,
    tls: Option<Serving>,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared { nodes, metrics });
    let mut app = Router::new()
        .route("/containerLogs/{ns}/{pod}/{container}", get(logs))
        .route("/metrics", get(|State(s): State<Arc<Shared>>| async move { s.metrics.encode() }));
    if tls.as_ref().is_some_and(|t| t.client_ca.is_some()) {
        app = app.layer(axum::middleware::from_fn(require_client_certificate));
    }
    let app = app.route("/healthz", get(|| async { "ok" })).with_state(shared);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    component_base::serve::serve(listener, app, tls).await;
    Ok(())
}

/// 401 for a request without a valid client certificate.
async fn require_client_certificate(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let cert = request.extensions().get::<PeerCert>().cloned().unwrap_or_default();
    match cert.identity_at(std::time::SystemTime::now()) {
        Ok(Some(_)) => next.run(request).await,
        Ok(None) => (StatusCode::UNAUTHORIZED, "Unauthorized").into_response(),
        Err(why) => {
            tracing::info!(reason = %why, "refusing a client certificate");
            (StatusCode::UNAUTHORIZED, "Unauthorized").into_response()
        }
    }
}
