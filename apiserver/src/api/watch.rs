//! watch: a stream of `{"type": ..., "object": ...}` lines served from the watch cache,
//! with selectors applied per watcher, bookmarks, `sendInitialEvents`, timeouts, and the
//! 410 `Expired` ERROR event for a resource version that is too old.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::read::{filter, served_json};
use super::storage::parse_revision;
use super::{App, Params, Target, json_response};
use crate::cache::{CacheEvent, Cached, Error as CacheError, Filter, Initial, Kind};
use crate::metrics::ResourceLabel;
use crate::registry::Resource;
use crate::status::{ApiError, ApiResult};

/// How often an idle watch with bookmarks allowed gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

fn line(kind: &str, object: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(object.len() + 32);
    out.put_slice(br#"{"type":""#);
    out.put_slice(kind.as_bytes());
    out.put_slice(br#"","object":"#);
    out.put_slice(object);
    out.put_slice(b"}\n");
    out.freeze()
}

fn bookmark(resource: &Resource, revision: i64, initial_end: bool) -> Bytes {
    let mut meta = json!({ "resourceVersion": revision.to_string() });
    if initial_end {
        meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    let obj = json!({ "kind": &resource.kind, "apiVersion": resource.api_version(), "metadata": meta });
    line("BOOKMARK", obj.to_string().as_bytes())
}

fn expired(message: String) -> Bytes {
    line("ERROR", &ApiError::expired(message).encode())
}

fn flag(params: &Params, name: &str) -> bool {
    params.get(name).is_some_and(|v| v == "true" || v == "1")
}

/// WATCH of a collection.
pub async fn watch(app: &Arc<App>, target: &Target, params: &Params, table: Option<&str>) -> ApiResult<Response> {
    let filter = filter(target, params)?;
    let resource = &target.resource;
    let cache = app.cache(resource)?.clone();
    let bookmarks = flag(params, "allowWatchBookmarks");
    let send_initial = flag(params, "sendInitialEvents");
    if send_initial && !bookmarks {
        return Err(ApiError::bad_request("sendInitialEvents requires allowWatchBookmarks=true"));
    }
    let rv = params.get("resourceVersion").map(String::as_str).unwrap_or_default();
    let from = match rv {
        "" | "0" => None,
        rv if send_initial => {
            parse_revision(rv)?;
            None
        }
        rv => Some(parse_revision(rv)?),
    };
    let timeout = match params.get("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse::<u64>().map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
        ),
        // Upstream picks between 30 and 60 minutes so that watches spread their restarts.
        None => Duration::from_secs(1800 + u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 7),
    };
    cache.wait_ready().await;
    if let Some(rv) = from {
        super::read::fresh_enough(app, target, rv).await?;
    }
    let subscription = match cache.subscribe(from) {
        Ok(s) => s,
        Err(CacheError::Expired { requested, oldest }) => {
            let body = expired(format!("too old resource version: {requested} ({oldest})"));
            return Ok(json_response(StatusCode::OK, body, &[]));
        }
        Err(e) => return Err(ApiError::timeout(e.to_string())),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let watchers = app.metrics.watchers.get_or_create(&ResourceLabel { resource: resource.qualified() }).clone();
    watchers.inc();
    let start_revision = from.unwrap_or(subscription.revision);
    let render = Render { resource: resource.clone(), filter, table: table.map(str::to_owned), columns_sent: false };
    tokio::spawn(async move {
        let _ = stream(render, subscription, start_revision, send_initial, bookmarks, timeout, &tx).await;
        watchers.dec();
    });
    let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>));
    Ok(json_response(StatusCode::OK, body, &[]))
}

/// How one watcher sees events: its filter, and whether it wants Table rows.
struct Render {
    resource: Arc<Resource>,
    filter: Filter,
    table: Option<String>,
    columns_sent: bool,
}

impl Render {
    fn event(&mut self, ev: &CacheEvent) -> Option<Bytes> {
        let kind = self.filter.view(ev)?;
        if self.table.is_none() && self.resource.conversion.is_none() {
            // The stored JSON is what is served: one encoding for every watcher.
            return Some(ev.line(kind, || line(kind.as_str(), &ev.object.json)));
        }
        self.render(kind, &ev.object)
    }

    /// An object of the initial snapshot, as ADDED, if it passes the filter.
    fn added(&mut self, obj: &Cached) -> Option<Bytes> {
        if !self.filter.matches(obj) {
            return None;
        }
        self.render(Kind::Added, obj)
    }

    fn render(&mut self, kind: Kind, object: &Cached) -> Option<Bytes> {
        let json = served_json(&self.resource, object);
        let Some(include) = &self.table else { return Some(line(kind.as_str(), &json)) };
        let obj: serde_json::Value = serde_json::from_slice(&json).ok()?;
        let rv = obj.pointer("/metadata/resourceVersion").cloned().unwrap_or_default();
        // Column definitions go with the first event only, as upstream sends them.
        let t =
            super::table::table(&self.resource, &[obj], json!({"resourceVersion": rv}), include, !self.columns_sent);
        self.columns_sent = true;
        Some(line(kind.as_str(), t.to_string().as_bytes()))
    }
}

/// Sends events until the client goes, the timeout passes, or the cache resets.
#[allow(clippy::too_many_arguments)]
async fn stream(
    mut render: Render,
    subscription: crate::cache::Subscription,
    start_revision: i64,
    send_initial: bool,
    bookmarks: bool,
    timeout: Duration,
    tx: &mpsc::Sender<Bytes>,
) -> Result<(), mpsc::error::SendError<Bytes>> {
    let mut last = start_revision;
    match &subscription.initial {
        Initial::Objects(objects) => {
            for obj in objects.iter() {
                if let Some(l) = render.added(obj) {
                    tx.send(l).await?;
                }
            }
        }
        Initial::Events(events) => {
            for ev in events {
                if let Some(l) = render.event(ev) {
                    tx.send(l).await?;
                }
                last = last.max(ev.revision());
            }
        }
    }
    if send_initial {
        last = last.max(subscription.revision);
        tx.send(bookmark(&render.resource, last, true)).await?;
    }
    let mut live = subscription.live;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = &mut deadline => return Ok(()),
            _ = tx.closed() => return Ok(()),
            _ = ticker.tick(), if bookmarks => {
                tx.send(bookmark(&render.resource, last, false)).await?;
            }
            ev = live.recv() => match ev {
                Ok(ev) => {
                    // Dropped from the history (its bounds) before we got to it: this
                    // watcher is too far behind; the client resumes or relists.
                    let Some(ev) = ev.upgrade() else { return Ok(()) };
                    if ev.revision() <= last {
                        continue;
                    }
                    last = ev.revision();
                    if let Some(l) = render.event(&ev) {
                        tx.send(l).await?;
                    }
                }
                // A watcher that fell behind (or a cache that relisted) ends its stream; the
                // client resumes from its last revision, or relists on 410.
                Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}
