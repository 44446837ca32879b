//! The resource registry: one file per kind (or small group of kinds), each holding its
//! row (names, scope, short names, categories, subresources, selectable fields, the typed
//! schema) and its [`Strategy`]: defaulting, validation, what the server sets on create,
//! graceful deletion, table columns. The generic handlers in `api/` read everything
//! kind-specific from here and name no kind. Adding a built-in kind is a new file here
//! and its line in [`builtins`] (docs/registry.md shows one). The server holds the rows in
//! a [`Registry`], which kinds can join and leave while it runs.

use std::borrow::Cow;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub mod certificatesigningrequest;
mod configmap;
pub mod custom;
pub mod customresourcedefinition;
mod deployment;
mod endpoints;
mod endpointslice;
mod event;
mod ipaddress;
mod lease;
mod namespace;
mod node;
mod pod;
mod podtemplate;
pub mod print;
pub mod rbac;
mod replicaset;
mod replicationcontroller;
mod review;
mod secret;
mod service;
mod serviceaccount;
mod strategy;

pub use namespace::SYSTEM_NAMESPACES;
pub use strategy::{Allocator, Columns, Pool, Strategy};

/// A subresource served under `/{resource}/{name}/{sub}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    /// `/status`: writes change only `.status`.
    Status,
    /// `/scale`: an `autoscaling/v1` Scale view of `.spec.replicas`.
    Scale,
    /// `/binding`: assigns a pod to a node.
    Binding,
    /// `/log`: a container's log, proxied from the node's kubelet.
    Log,
    /// `/token`: a ServiceAccount token (a `TokenRequest`).
    Token,
    /// `/approval`: a CertificateSigningRequest's `Approved` or `Denied` condition.
    Approval,
}

impl Sub {
    /// The URL segment.
    pub fn name(self) -> &'static str {
        match self {
            Sub::Status => "status",
            Sub::Scale => "scale",
            Sub::Binding => "binding",
            Sub::Log => "log",
            Sub::Token => "token",
            Sub::Approval => "approval",
        }
    }
}

/// A field a field selector may name: its selector name, where it lives in the object,
/// and its value when absent.
pub type SelectableField = (&'static str, &'static str, &'static str);

/// What a kind's objects may hold.
#[derive(Clone)]
pub enum Schema {
    /// A built-in kind's Rust type: decoding through it and back gives the canonical form to
    /// store, and (by difference) the unknown fields; schemars gives its OpenAPI schema.
    Typed {
        /// Decode and re-encode.
        decode: fn(&Value) -> Result<Value, String>,
        /// The OpenAPI schema (a `$ref` into the generator's definitions).
        openapi: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    },
    /// A custom resource's structural schema: pruning gives the canonical form.
    Structural(Arc<crate::structural::Structural>),
}

impl Schema {
    /// The canonical form of `value`: what is stored. Fields the schema does not know are
    /// left out (the caller reports them by difference).
    pub fn decode(&self, value: &Value) -> Result<Value, String> {
        match self {
            Schema::Typed { decode, .. } => decode(value),
            Schema::Structural(s) => s.prune_object(value),
        }
    }
}

/// Maps between a served version and the stored one.
#[derive(Clone)]
pub enum Conversion {
    /// By functions (events.k8s.io/v1 Event is stored as core/v1 Event).
    Typed {
        /// Served form to stored form.
        to_storage: fn(Value) -> Value,
        /// Stored form to served form.
        from_storage: fn(Value) -> Value,
    },
    /// A custom resource's versions with conversion strategy `None`: the same object, with
    /// its `apiVersion` rewritten.
    ApiVersion {
        /// `group/version` as served.
        served: Name,
        /// `group/version` as stored.
        stored: Name,
    },
}

impl Conversion {
    fn stored(&self, value: Value) -> Value {
        match self {
            Conversion::Typed { to_storage, .. } => to_storage(value),
            Conversion::ApiVersion { stored, .. } => with_api_version(value, stored),
        }
    }

    fn served(&self, value: Value) -> Value {
        match self {
            Conversion::Typed { from_storage, .. } => from_storage(value),
            Conversion::ApiVersion { served, .. } => with_api_version(value, served),
        }
    }
}

fn with_api_version(mut value: Value, api_version: &str) -> Value {
    if let Some(o) = value.as_object_mut() {
        o.insert("apiVersion".into(), Value::String(api_version.to_owned()));
    }
    value
}

/// A name in a registry row: a literal for the built-in kinds, owned for the kinds
/// CustomResourceDefinitions add while the server runs.
pub type Name = Cow<'static, str>;

/// One served resource.
#[derive(Clone)]
pub struct Resource {
    /// API group, empty for core.
    pub group: Name,
    /// API version.
    pub version: Name,
    /// Plural resource name, as in URLs.
    pub resource: Name,
    /// Singular name (`kubectl get pod`).
    pub singular: Name,
    /// Kind.
    pub kind: Name,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names (`po`, `deploy`).
    pub short_names: Cow<'static, [Name]>,
    /// Categories (`all`).
    pub categories: Cow<'static, [Name]>,
    /// Subresources served.
    pub subresources: Cow<'static, [Sub]>,
    /// The storage key segment: `/registry/{storage}/...`.
    pub storage: Name,
    /// Fields a field selector may name, besides `metadata.name` and `metadata.namespace`.
    pub fields: &'static [SelectableField],
    /// What its objects may hold.
    pub schema: Schema,
    /// The kind's behaviour.
    pub strategy: Arc<dyn Strategy>,
    /// Conversion to and from the stored version, when they differ.
    pub conversion: Option<Conversion>,
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.qualified())
    }
}

/// Names for a row's short names or categories.
pub fn names(list: &[&'static str]) -> Cow<'static, [Name]> {
    list.iter().map(|n| Cow::Borrowed(*n)).collect::<Vec<Name>>().into()
}

impl Resource {
    /// A row with the defaults most kinds share: namespaced, no short names, categories,
    /// subresources or extra fields, stored under its plural, typed as `T`.
    pub fn of<T: DeserializeOwned + Serialize + schemars::JsonSchema>(
        group: &'static str,
        version: &'static str,
        resource: &'static str,
        singular: &'static str,
        kind: &'static str,
        strategy: impl Strategy + 'static,
    ) -> Resource {
        Resource {
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
            singular: singular.into(),
            kind: kind.into(),
            namespaced: true,
            short_names: Cow::Borrowed(&[]),
            categories: Cow::Borrowed(&[]),
            subresources: Cow::Borrowed(&[]),
            storage: resource.into(),
            fields: &[],
            schema: Schema::Typed { decode: typed::<T>, openapi: openapi::<T> },
            strategy: Arc::new(strategy),
            conversion: None,
        }
    }

    /// Whether a collection of this kind may be deleted at once.
    pub fn deletes_as_collection(&self) -> bool {
        self.strategy.deletes_as_collection()
    }

    /// The verbs discovery lists for this kind.
    pub fn verbs(&self) -> &'static [&'static str] {
        const ALL: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
        const NO_COLLECTION_DELETE: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];
        if self.strategy.reviews() {
            return &["create"];
        }
        if self.deletes_as_collection() { ALL } else { NO_COLLECTION_DELETE }
    }

    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `pods` or `deployments.apps`, as upstream names resources in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.resource.to_string() } else { format!("{}.{}", self.resource, self.group) }
    }

    /// Whether the subresource is served.
    pub fn has(&self, sub: Sub) -> bool {
        self.subresources.contains(&sub)
    }

    /// The key prefix of every object of this resource.
    pub fn prefix(&self) -> String {
        format!("/registry/{}/", self.storage)
    }

    /// The key prefix of the objects in one namespace (or all, for `None`).
    pub fn namespace_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{ns}/", self.storage),
            _ => self.prefix(),
        }
    }

    /// The key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{ns}/{name}", self.storage),
            _ => format!("/registry/{}/{name}", self.storage),
        }
    }
}

fn openapi<T: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<T>()
}

fn typed<T: DeserializeOwned + Serialize>(value: &Value) -> Result<Value, String> {
    let object = T::deserialize(value).map_err(|e| e.to_string())?;
    serde_json::to_value(&object).map_err(|e| e.to_string())
}

/// The kinds built into this apiserver, in discovery order.
pub fn builtins() -> Vec<Resource> {
    vec![
        namespace::resource(),
        node::resource(),
        pod::resource(),
        service::resource(),
        serviceaccount::resource(),
        endpoints::resource(),
        configmap::resource(),
        secret::resource(),
        podtemplate::resource(),
        replicationcontroller::resource(),
        event::core_v1(),
        deployment::resource(),
        replicaset::resource(),
        lease::resource(),
        event::events_v1(),
        customresourcedefinition::resource(),
        ipaddress::resource(),
        endpointslice::resource(),
        certificatesigningrequest::resource(),
    ]
    .into_iter()
    .chain(rbac::resources())
    .chain(review::resources())
    .collect()
}

/// Each group-version's OpenAPI v3 document and its hash.
pub type OpenApiDocuments = std::collections::HashMap<(String, String), (Value, String)>;

/// The OpenAPI documents of one state of the rows: v3 per group-version, and the v2
/// document made from them when first asked for.
pub struct OpenApi {
    /// `/openapi/v3/...`.
    pub v3: OpenApiDocuments,
    /// `/openapi/v2`.
    pub v2: std::sync::OnceLock<Arc<Value>>,
}

/// The rows a server serves. Reads take a snapshot (an `Arc` of the list), so a kind that
/// joins or leaves never blocks or tears a request that is under way.
pub struct Registry {
    rows: RwLock<Arc<Vec<Arc<Resource>>>>,
    /// The OpenAPI documents of the rows as they are, built on first use, and the state of
    /// the rows they were built from (bumped by every change to the rows).
    openapi: RwLock<(u64, Option<Arc<OpenApi>>)>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(builtins())
    }
}

impl Registry {
    /// A registry of these rows.
    pub fn new(rows: Vec<Resource>) -> Registry {
        Registry {
            rows: RwLock::new(Arc::new(rows.into_iter().map(Arc::new).collect())),
            openapi: RwLock::new((0, None)),
        }
    }

    /// Every row now, in discovery order.
    pub fn all(&self) -> Arc<Vec<Arc<Resource>>> {
        self.rows.read().clone()
    }

    /// Looks a resource up by group, version and plural name.
    pub fn find(&self, group: &str, version: &str, resource: &str) -> Option<Arc<Resource>> {
        self.rows.read().iter().find(|r| r.group == group && r.version == version && r.resource == resource).cloned()
    }

    /// Looks a resource up by its kind in a group-version (`apps/v1`, `Deployment`).
    pub fn find_kind(&self, api_version: &str, kind: &str) -> Option<Arc<Resource>> {
        self.rows.read().iter().find(|r| r.api_version() == api_version && r.kind == kind).cloned()
    }

    /// The group-versions served, in discovery order.
    pub fn group_versions(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for r in self.rows.read().iter() {
            let gv = (r.group.to_string(), r.version.to_string());
            if !out.contains(&gv) {
                out.push(gv);
            }
        }
        out
    }

    /// The OpenAPI documents, built by `build` when the rows changed since the last call.
    pub fn cached_openapi(&self, build: impl FnOnce() -> OpenApiDocuments) -> Arc<OpenApi> {
        let generation = {
            let cached = self.openapi.read();
            if let Some(docs) = &cached.1 {
                return docs.clone();
            }
            cached.0
        };
        let docs = Arc::new(OpenApi { v3: build(), v2: Default::default() });
        let mut cached = self.openapi.write();
        // Rows that changed while this build ran make it stale: answer with it, keep none.
        if cached.0 == generation {
            cached.1 = Some(docs.clone());
        }
        docs
    }

    /// Serves `rows` in place of every row stored under `storage` (the versions of one
    /// CustomResourceDefinition); no rows stops serving them. Requests under way keep the
    /// rows they started with.
    pub fn replace_storage(&self, storage: &str, rows: Vec<Resource>) {
        let mut current = self.rows.write();
        let mut next: Vec<Arc<Resource>> = current.iter().filter(|r| r.storage != storage).cloned().collect();
        next.extend(rows.into_iter().map(Arc::new));
        *current = Arc::new(next);
        let mut cached = self.openapi.write();
        *cached = (cached.0 + 1, None);
    }

    /// Whether a group-version is served.
    pub fn serves(&self, group: &str, version: &str) -> bool {
        self.rows.read().iter().any(|r| r.group == group && r.version == version)
    }
}

/// The stored form of an object served as `resource`.
pub fn to_storage(resource: &Resource, value: Value) -> Value {
    match &resource.conversion {
        Some(c) => c.stored(value),
        None => value,
    }
}

/// The served form of a stored object.
pub fn from_storage(resource: &Resource, value: Value) -> Value {
    match &resource.conversion {
        Some(c) => c.served(value),
        None => value,
    }
}
