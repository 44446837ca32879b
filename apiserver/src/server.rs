//! Starting the apiserver: open storage, fill the watch caches, create the system
//! namespaces, run the background loops (namespace finalization, compaction, object
//! counts) and serve HTTP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::api::origin::OriginPolicy;
use crate::api::{self, App, discovery};
use crate::authz::{Attributes, Authorizer};
use crate::cache::{HistoryLimit, WatchCache};
use crate::metrics::{Metrics, ResourceLabel};
use crate::registry::{self, Registry, Resource, SelectableField};
use crate::status::ApiError;
use crate::store::embedded::EmbeddedStore;
use crate::store::encrypted::Encrypted;
use crate::store::etcd::EtcdStore;
use crate::store::metered::Metered;
use crate::store::prefixed::Prefixed;
use crate::store::{self, Store};

/// What can stop the apiserver from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Authorization could not be set up.
    #[error("authorization: {0}")]
    Authorization(String),
    /// Storage could not be opened or reached.
    #[error("opening storage: {0}")]
    Storage(#[from] store::Error),
    /// A stored object cannot be decrypted with the encryption configuration given.
    #[error("{0}; give --encryption-provider-config a provider with the key it was written with")]
    Unreadable(String),
    /// The listen address could not be bound.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// How to run the apiserver.
#[derive(Debug, Clone)]
pub struct Config {
    /// etcd endpoints; empty means the embedded store.
    pub etcd_servers: Vec<String>,
    /// Where the embedded store keeps its data.
    pub data_dir: PathBuf,
    /// The address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Events each watch cache keeps for watches that resume.
    pub watch_cache_size: usize,
    /// How often storage history is compacted (0 disables).
    pub compaction_interval: Duration,
    /// The prefix of every key in etcd (`--etcd-prefix`, upstream's default `/registry` is
    /// already part of each key, so this adds to it).
    pub etcd_prefix: String,
    /// What a request may make the server spend.
    pub limits: crate::limits::Limits,
    /// DNS names clients use for this server (`--allowed-hosts`), besides IP literals,
    /// `localhost` and this machine's name.
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed to write (`--cors-allowed-origins`).
    pub cors_allowed_origins: Vec<String>,
    /// Service cluster IPs and node ports (`--service-cluster-ip-range`,
    /// `--service-node-port-range`).
    pub ranges: api::Ranges,
    /// The serving certificate and the client CA; `None` serves plain HTTP.
    pub tls: Option<component_base::tls::Serving>,
    /// How requests are authenticated.
    pub authentication: crate::authn::Authenticator,
    /// How kubelets are reached.
    pub kubelet_client: api::KubeletClient,
    /// How requests are authorized.
    pub authorization: AuthorizationMode,
    /// ServiceAccount tokens' keys, issuer and audiences; `None`: none are issued or honored.
    pub service_account_tokens: Option<crate::serviceaccount::TokenConfig>,
    /// What is encrypted in storage (`--encryption-provider-config`); `None`: nothing.
    pub encryption: Option<Arc<crate::encryption::Encryption>>,
    /// The audit log (`--audit-log-path`, `--audit-policy-file`); `None`: none.
    pub audit: Option<Arc<crate::audit::Auditor>>,
}

/// `--authorization-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthorizationMode {
    /// Every request is allowed (servers without authentication).
    #[default]
    AlwaysAllow,
    /// `system:masters`, the Node authorizer, then RBAC.
    NodeRbac,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            etcd_servers: Vec::new(),
            data_dir: PathBuf::from(".cluster/apiserver"),
            listen: SocketAddr::from(([127, 0, 0, 1], 6443)),
            watch_cache_size: 20_000,
            compaction_interval: Duration::from_secs(300),
            etcd_prefix: String::new(),
            limits: Default::default(),
            allowed_hosts: Vec::new(),
            cors_allowed_origins: Vec::new(),
            ranges: api::Ranges::default(),
            tls: None,
            authentication: crate::authn::Authenticator::insecure(),
            kubelet_client: api::KubeletClient::default(),
            authorization: AuthorizationMode::AlwaysAllow,
            service_account_tokens: None,
            encryption: None,
            audit: None,
        }
    }
}

/// A running apiserver.
pub struct Server {
    /// The address it serves on.
    pub addr: SocketAddr,
    /// Whether it serves TLS.
    pub tls: bool,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// The base URL (`https://127.0.0.1:PORT`, or `http://` without TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// Stops serving and every background loop.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Opens the storage the config names, encrypting what it says to.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, Error> {
    let store: Arc<dyn Store> = if config.etcd_servers.is_empty() {
        Arc::new(EmbeddedStore::open(&config.data_dir)?)
    } else {
        let etcd: Arc<dyn Store> = Arc::new(EtcdStore::connect(&config.etcd_servers).await?);
        if config.etcd_prefix.trim_end_matches('/').is_empty() {
            etcd
        } else {
            Arc::new(Prefixed::new(etcd, &config.etcd_prefix))
        }
    };
    Ok(match &config.encryption {
        Some(encryption) => Arc::new(Encrypted::new(store, encryption.clone())),
        None => store,
    })
}

/// The selectable fields of every resource stored under `storage`.
fn fields_of(rows: &[Arc<Resource>], storage: &str) -> Vec<SelectableField> {
    let mut fields: Vec<SelectableField> = Vec::new();
    for r in rows.iter().filter(|r| r.storage == storage) {
        for f in r.fields {
            if !fields.iter().any(|(n, _, _)| *n == f.0) {
                fields.push(*f);
            }
        }
    }
    fields
}

async fn ensure_namespace(app: &App, name: &str) -> Result<(), Error> {
    let Some(namespaces) = app.registry.find("", "v1", "namespaces") else { return Ok(()) };
    let mut ns = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": crate::meta::now_rfc3339(),
    }});
    namespaces.strategy.default(&mut ns);
    let bytes = serde_json::to_vec(&ns).unwrap_or_default();
    match app.store.create(&namespaces.key(None, name), bytes.into()).await {
        Ok(_) | Err(store::Error::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Recreates a system namespace that went missing (a store restored from an old backup, a
/// write behind the API's back), as upstream's bootstrap controller does every minute.
async fn keep_system_namespaces(app: Arc<App>) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        for ns in registry::SYSTEM_NAMESPACES {
            if let Err(e) = ensure_namespace(&app, ns).await {
                tracing::warn!(namespace = ns, error = %e, "recreating a system namespace failed");
            }
        }
    }
}

/// Starts an apiserver and returns once it serves.
pub async fn start(config: Config) -> Result<Server, Error> {
    let metrics = Arc::new(Metrics::default());
    let store: Arc<dyn Store> = Arc::new(Metered::new(open_store(&config).await?, metrics.clone()));
    let mut tasks = Vec::new();
    let registry = Registry::default();
    let rows = registry.all();
    let mut caches = HashMap::new();
    let limit = HistoryLimit { events: config.watch_cache_size, bytes: config.limits.watch_history_bytes };
    for r in rows.iter() {
        if caches.contains_key(r.storage.as_ref()) || r.strategy.reviews() {
            continue;
        }
        let cache = WatchCache::new(r, fields_of(&rows, &r.storage), limit);
        tasks.push(tokio::spawn(cache.clone().run(store.clone())));
        caches.insert(r.storage.to_string(), cache);
    }
    for cache in caches.values() {
        if let Err(why) = cache.first_fill().await {
            for t in &tasks {
                t.abort();
            }
            return Err(Error::Unreadable(why));
        }
    }
    let (health_tx, storage_health) = tokio::sync::watch::channel(Ok(()));
    let inflight = Arc::new(crate::serve::Inflight::new(&config.limits, metrics.clone()));
    let cache_of = |group: &str, resource: &str| {
        rows.iter()
            .find(|r| r.group == group && r.resource == resource)
            .and_then(|r| caches.get(r.storage.as_ref()).cloned())
    };
    let tokens = match &config.service_account_tokens {
        None => None,
        Some(c) => {
            let tokens = crate::serviceaccount::Tokens::load(c).map_err(|e| Error::Authorization(format!("{e:#}")))?;
            let (Some(accounts), Some(pods)) = (cache_of("", "serviceaccounts"), cache_of("", "pods")) else {
                return Err(Error::Authorization("the service account and pod caches are missing".into()));
            };
            Some(Arc::new(tokens.with_caches(accounts, pods)))
        }
    };
    let mut authenticator = config.authentication.clone();
    authenticator.service_accounts = tokens.clone();
    if authenticator.enable_bootstrap_tokens {
        let secrets =
            cache_of("", "secrets").ok_or_else(|| Error::Authorization("the secrets cache is missing".into()))?;
        authenticator.bootstrap_tokens = Some(Arc::new(crate::bootstrap_token::BootstrapTokens::new(secrets)));
    }
    let authenticator = Arc::new(authenticator);
    let authorizer = match config.authorization {
        AuthorizationMode::AlwaysAllow => Arc::new(Authorizer::AlwaysAllow),
        AuthorizationMode::NodeRbac => {
            let rbac_caches = ["roles", "rolebindings", "clusterroles", "clusterrolebindings"]
                .map(|r| cache_of(crate::registry::rbac::GROUP, r));
            let (Some(pods), [Some(r), Some(rb), Some(cr), Some(crb)]) = (cache_of("", "pods"), rbac_caches) else {
                return Err(Error::Authorization("the RBAC and pod caches are missing".into()));
            };
            let rbac = crate::authz::rbac::Rbac::new();
            let caches = [r, rb, cr, crb];
            rbac.rebuild(&caches);
            tasks.push(tokio::spawn(rbac.clone().run(caches)));
            let node = crate::authz::node::NodeAuthorizer::new();
            tasks.push(tokio::spawn(node.clone().run(pods)));
            Arc::new(Authorizer::NodeRbac { node, rbac })
        }
    };
    let app = Arc::new(App {
        store: store.clone(),
        registry,
        caches: parking_lot::RwLock::new(caches),
        metrics,
        namespace_wake: tokio::sync::Notify::new(),
        limits: config.limits.clone(),
        watch_history: limit,
        ranges: config.ranges.clone(),
        origin: OriginPolicy::new(config.allowed_hosts.clone(), config.cors_allowed_origins.clone()),
        inflight,
        kubelet: config.kubelet_client.clone(),
        authorizer,
        authenticator: authenticator.clone(),
        tokens,
        storage_health,
        encryption: config.encryption.clone(),
        audit: config.audit.clone(),
    });
    tasks.push(tokio::spawn(check_storage(store.clone(), health_tx)));
    for ns in registry::SYSTEM_NAMESPACES {
        ensure_namespace(&app, ns).await?;
    }
    tasks.push(tokio::spawn(keep_system_namespaces(app.clone())));
    if config.authorization == AuthorizationMode::NodeRbac {
        api::ensure_bootstrap_policy(&app).await;
    }
    tasks.push(tokio::spawn(api::finalize_namespaces(app.clone())));
    // The resources of the CustomResourceDefinitions stored are served before the first
    // request is: clients that created them before a restart find them at once.
    let mut custom = api::CustomResources::new(app.clone());
    custom.sync().await;
    tasks.push(tokio::spawn(custom.run()));
    tasks.push(tokio::spawn(api::repair_forever(app.clone())));
    tasks.push(tokio::spawn(count_objects(app.clone())));
    if !config.compaction_interval.is_zero() {
        tasks.push(tokio::spawn(compact(store.clone(), config.compaction_interval)));
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(|source| Error::Listen { addr: config.listen, source })?;
    let router = router(app, authenticator);
    let limits = config.limits.clone();
    let tls = config.tls.clone();
    if tls.is_none() {
        tracing::warn!(%addr, "serving plain HTTP without authentication: anyone who reaches this address may do anything");
    }
    tasks.push(tokio::spawn(async move { crate::serve::serve(listener, router, &limits, tls).await }));
    tracing::info!(%addr, tls = config.tls.is_some(), "kube-apiserver serving");
    Ok(Server { addr, tls: config.tls.is_some(), tasks })
}

/// The HTTP routes, behind authentication.
pub fn router(app: Arc<App>, authentication: Arc<crate::authn::Authenticator>) -> Router {
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/version", get(|| async { discovery::version() }))
        .route("/metrics", get(metrics))
        .route("/.well-known/openid-configuration", get(openid_configuration))
        .route("/openid/v1/jwks", get(jwks))
        .route(
            "/openapi/v2",
            get(|State(app): State<Arc<App>>, headers: axum::http::HeaderMap| async move {
                api::openapi_v2::serve(&app.registry, &headers)
            }),
        )
        .route("/openapi/v3", get(|State(app): State<Arc<App>>| async move { discovery::openapi_root(&app.registry) }))
        .route(
            "/openapi/v3/{*path}",
            get(|State(app): State<Arc<App>>, Path(path): Path<String>| async move {
                discovery::openapi_group_version(&app.registry, &path)
            }),
        )
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(app.inflight.clone(), crate::serve::limit_inflight))
        .layer(axum::middleware::from_fn_with_state(app.clone(), authorize_paths))
        .layer(axum::middleware::from_fn_with_state(authentication, crate::authn::authenticate))
        .layer(axum::middleware::from_fn_with_state(app.clone(), check_origin));
    let router = match &app.audit {
        Some(auditor) => router.layer(axum::middleware::from_fn_with_state(auditor.clone(), crate::audit::middleware)),
        None => router,
    };
    router.with_state(app)
}

/// Refuses oversized URIs and headers, requests for a host name we do not answer for, and
/// browser writes from origins not allowed (see [`OriginPolicy`]), before any handler runs.
async fn check_origin(State(app): State<Arc<App>>, request: axum::extract::Request, next: Next) -> Response {
    let checked =
        crate::serve::check_size(&request).and_then(|()| app.origin.check(request.method(), request.headers()));
    match checked {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// Authorizes the requests for paths that name no resource (`/healthz`, `/metrics`,
/// `/openapi/v3`); `/api` and `/apis` are authorized where they are routed.
async fn authorize_paths(State(app): State<Arc<App>>, request: axum::extract::Request, next: Next) -> Response {
    let path = request.uri().path();
    if path == "/api" || path.starts_with("/api/") || path == "/apis" || path.starts_with("/apis/") {
        return next.run(request).await;
    }
    let user =
        request.extensions().get::<crate::authn::UserInfo>().cloned().unwrap_or_else(crate::authn::UserInfo::anonymous);
    let attributes = Attributes::path(&request.method().as_str().to_ascii_lowercase(), path);
    match app.authorizer.check(&user, &attributes, request.extensions().get::<crate::audit::Context>()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

async fn fallback(state: State<Arc<App>>, request: axum::extract::Request) -> Response {
    let path = request.uri().path();
    if path == "/api" || path.starts_with("/api/") || path == "/apis" || path.starts_with("/apis/") {
        api::dispatch(state, request).await
    } else {
        ApiError::no_route(path).into_response()
    }
}

/// How long the storage check waits: a storage that takes longer is not ready for clients
/// either (upstream's `--etcd-healthcheck-timeout`).
const READY_WITHIN: Duration = Duration::from_secs(2);
/// How often storage is checked for `/readyz`.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// Checks storage every [`CHECK_EVERY`] and publishes the result, so that `/readyz`
/// answers from memory: a probe costs no storage call and no wait, and its answer is at
/// most one check old.
async fn check_storage(store: Arc<dyn Store>, health: tokio::sync::watch::Sender<Result<(), String>>) {
    loop {
        let result = match tokio::time::timeout(READY_WITHIN, store.current_revision()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {READY_WITHIN:?}")),
        };
        health.send_if_modified(|h| {
            let changed = *h != result;
            *h = result;
            changed
        });
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

async fn openid_configuration(State(app): State<Arc<App>>) -> Response {
    match &app.tokens {
        Some(t) => axum::Json(t.openid_configuration()).into_response(),
        None => ApiError::no_route("/.well-known/openid-configuration").into_response(),
    }
}

async fn jwks(State(app): State<Arc<App>>) -> Response {
    match &app.tokens {
        Some(t) => {
            ([(axum::http::header::CONTENT_TYPE, "application/jwk-set+json")], t.jwks().to_string()).into_response()
        }
        None => ApiError::no_route("/openid/v1/jwks").into_response(),
    }
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    match &*app.storage_health.borrow() {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("storage: {e}")).into_response(),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        app.metrics.encode(),
    )
        .into_response()
}

/// Keeps `apiserver_storage_objects` current from the caches.
async fn count_objects(app: Arc<App>) {
    loop {
        for r in app.registry.all().iter().filter(|r| !r.strategy.reviews()) {
            if let Ok(cache) = app.cache(r) {
                app.metrics
                    .storage_objects
                    .get_or_create(&ResourceLabel { resource: r.qualified() })
                    .set(cache.len() as i64);
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Compacts storage every `interval`, keeping one interval of history (as upstream does).
async fn compact(store: Arc<dyn Store>, interval: Duration) {
    let mut previous = None;
    loop {
        tokio::time::sleep(interval).await;
        match store.current_revision().await {
            Ok(now) => {
                if let Some(rev) = previous {
                    match store.compact(rev).await {
                        Ok(()) | Err(store::Error::Compacted { .. }) => tracing::debug!(revision = rev, "compacted"),
                        Err(e) => tracing::warn!(error = %e, "compaction failed"),
                    }
                }
                previous = Some(now);
            }
            Err(e) => tracing::warn!(error = %e, "reading the revision for compaction failed"),
        }
    }
}
