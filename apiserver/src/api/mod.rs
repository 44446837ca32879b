//! The HTTP API: the router (`route`) parses `/api/v1/...` and `/apis/{group}/{version}/...`
//! URLs into a registry row, a namespace, a name and a subresource, and hands them to the
//! generic verb handlers. No handler is specific to one resource. This module holds what
//! they share: the server's state, the request's target, responses.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::cache::WatchCache;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::registry::{Registry, Resource, Sub};
use crate::status::{ApiError, ApiResult};
use crate::store::{self, Store};

mod allocate;
mod crds;
mod delete;
pub mod discovery;
mod kubelet;
mod namespaces;
pub mod openapi_v2;
pub mod origin;
mod policy;
mod read;
mod review;
mod route;
mod storage;
mod subresource;
mod table;
mod token;
mod watch;
pub mod write;

pub use allocate::{Ranges, repair_forever};
pub use crds::CustomResources;
pub use kubelet::KubeletClient;
pub use namespaces::finalize_namespaces;
pub use policy::ensure_bootstrap_policy;
pub use route::dispatch;

/// What every handler shares.
pub struct App {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// The kinds served.
    pub registry: Registry,
    /// One watch cache per storage prefix (`pods`, `events`, ...).
    pub caches: parking_lot::RwLock<HashMap<String, Arc<WatchCache>>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Woken when a namespace starts terminating.
    pub namespace_wake: tokio::sync::Notify,
    /// What a request may make the server spend.
    pub limits: Limits,
    /// How much history a watch cache keeps (also for the caches custom resources add).
    pub watch_history: crate::cache::HistoryLimit,
    /// The ranges of service cluster IPs and node ports.
    pub ranges: Ranges,
    /// Which hosts and browser origins are answered.
    pub origin: origin::OriginPolicy,
    /// How kubelets are reached.
    pub kubelet: KubeletClient,
    /// Who may do what.
    pub authorizer: Arc<crate::authz::Authorizer>,
    /// Who a request is from.
    pub authenticator: Arc<crate::authn::Authenticator>,
    /// ServiceAccount tokens, when this server issues or honors them.
    pub tokens: Option<Arc<crate::serviceaccount::Tokens>>,
    /// The in-flight request pools.
    pub inflight: Arc<crate::serve::Inflight>,
    /// Whether storage answered its last check, and if not why (kept current by a
    /// background check, so that `/readyz` answers at once however loaded the server is).
    pub storage_health: tokio::sync::watch::Receiver<Result<(), String>>,
    /// What is encrypted in storage: an update of an object stored under an older key is
    /// written even when nothing changed, so re-saving everything rotates the key.
    pub encryption: Option<Arc<crate::encryption::Encryption>>,
    /// The audit log, when there is one.
    pub audit: Option<Arc<crate::audit::Auditor>>,
}

impl App {
    /// The cache of a resource.
    pub fn cache(&self, resource: &Resource) -> ApiResult<Arc<WatchCache>> {
        self.caches
            .read()
            .get(resource.storage.as_ref())
            .cloned()
            .ok_or_else(|| ApiError::internal(format!("no watch cache for {}", resource.qualified())))
    }
}

/// The object (or collection) a request names.
#[derive(Debug, Clone)]
pub struct Target {
    /// The registry row.
    pub resource: Arc<Resource>,
    /// The namespace in the URL, if any.
    pub namespace: Option<String>,
    /// The object name, if any.
    pub name: Option<String>,
    /// The subresource, if any.
    pub sub: Option<Sub>,
}

impl Target {
    /// The storage key of the named object.
    pub fn key(&self) -> String {
        self.resource.key(self.namespace.as_deref(), self.name.as_deref().unwrap_or_default())
    }

    /// The object name (empty for collections).
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    /// 404 for the named object, in upstream's words.
    pub fn not_found(&self) -> ApiError {
        ApiError::not_found(&self.resource.qualified(), &self.resource.group, &self.resource.resource, self.name())
    }

    /// 409 for a lost optimistic-concurrency race.
    pub fn conflict(&self) -> ApiError {
        ApiError::conflict(
            &self.resource.qualified(),
            &self.resource.group,
            &self.resource.resource,
            self.name(),
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// Maps a storage error about this target to an API error.
    pub fn storage_error(&self, e: store::Error) -> ApiError {
        match e {
            store::Error::NotFound { .. } => self.not_found(),
            store::Error::AlreadyExists { .. } => ApiError::already_exists(
                &self.resource.qualified(),
                &self.resource.group,
                &self.resource.resource,
                self.name(),
            ),
            store::Error::Conflict { .. } => self.conflict(),
            store::Error::Compacted { requested, .. } => {
                ApiError::expired(format!("too old resource version: {requested}"))
            }
            store::Error::FutureRevision { requested, .. } => {
                ApiError::timeout(format!("Too large resource version: {requested}"))
            }
            // Upstream's words for a storage call that missed its deadline.
            e @ store::Error::Timeout { .. } => ApiError::timeout(format!(
                "Timeout: request did not complete within requested timeout - context deadline exceeded ({e})"
            )),
            e @ store::Error::Unavailable(_) => {
                let mut err = ApiError::new(503, "ServiceUnavailable", e.to_string());
                err.retry_after = Some(1);
                err
            }
            e @ store::Error::TooLarge(_) => ApiError::too_large(e.to_string()),
            store::Error::Backend(msg) | store::Error::Unreadable(msg) => ApiError::internal(msg),
        }
    }
}

/// Query parameters, as upstream reads them (the last value wins).
pub type Params = HashMap<String, String>;

/// A JSON response.
pub fn json_response(code: StatusCode, body: impl Into<Body>, warnings: &[String]) -> Response {
    let mut resp = Response::builder().status(code).header(header::CONTENT_TYPE, "application/json");
    for w in warnings {
        let text = w.replace(['\r', '\n'], " ");
        resp = resp.header("Warning", format!("299 - \"{}\"", text.replace('"', "\\\"")));
    }
    resp.body(body.into()).unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A JSON response of a value.
pub fn value_response(code: StatusCode, value: &Value, warnings: &[String]) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => json_response(code, body, warnings),
        Err(e) => ApiError::internal(format!("encoding the response: {e}")).into_response(),
    }
}
