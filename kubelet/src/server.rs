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

/// Serves the endpoint for every node this process runs.
pub async fn serve(
    addr: SocketAddr,
    nodes: Vec<Arc<Node>>,
    metrics: Arc<crate::metrics::Metrics>,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared { nodes, metrics });
    let app = Router::new()
        .route("/containerLogs/{ns}/{pod}/{container}", get(logs))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(|State(s): State<Arc<Shared>>| async move { s.metrics.encode() }))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
