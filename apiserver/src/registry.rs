//! The resource registry: one row per served resource. Every generic handler reads its
//! behaviour from here (names, scope, subresources, selectable fields, the typed schema,
//! defaulting and validation hooks); adding a resource is adding a row.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::status::Cause;
use crate::{defaults, validation};

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
}

impl Sub {
    /// The URL segment.
    pub fn name(self) -> &'static str {
        match self {
            Sub::Status => "status",
            Sub::Scale => "scale",
            Sub::Binding => "binding",
            Sub::Log => "log",
        }
    }
}

/// A field a field selector may name: its selector name, where it lives in the object,
/// and its value when absent.
pub type SelectableField = (&'static str, &'static str, &'static str);

/// Decodes a JSON object through its typed Kubernetes struct and back: the canonical form
/// to store, and the evidence (by difference) of unknown fields.
pub type Schema = fn(&Value) -> Result<Value, String>;

/// Fills the defaults upstream fills.
pub type Defaulter = fn(&mut Value);

/// Checks an object (and, on update, the object it replaces).
pub type Validator = fn(&Value, Option<&Value>) -> Vec<Cause>;

/// Maps between a served version and the stored one (events.k8s.io/v1 Event is stored as
/// core/v1 Event).
#[derive(Clone, Copy)]
pub struct Conversion {
    /// Served form to stored form.
    pub to_storage: fn(Value) -> Value,
    /// Stored form to served form.
    pub from_storage: fn(Value) -> Value,
}

/// One served resource.
#[derive(Clone, Copy)]
pub struct Resource {
    /// API group, empty for core.
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Plural resource name, as in URLs.
    pub resource: &'static str,
    /// Singular name (`kubectl get pod`).
    pub singular: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names (`po`, `deploy`).
    pub short_names: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
    /// Subresources served.
    pub subresources: &'static [Sub],
    /// The storage key segment: `/registry/{storage}/...`.
    pub storage: &'static str,
    /// Fields a field selector may name, besides `metadata.name` and `metadata.namespace`.
    pub fields: &'static [SelectableField],
    /// The typed schema.
    pub schema: Schema,
    /// The OpenAPI schema (a `$ref` into the generator's definitions).
    pub openapi: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    /// Defaulting.
    pub default: Defaulter,
    /// Validation.
    pub validate: Validator,
    /// Conversion to and from the stored version, when they differ.
    pub conversion: Option<Conversion>,
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.qualified())
    }
}

impl Resource {
    /// Whether a collection of this kind may be deleted at once (upstream serves no
    /// `deletecollection` for namespaces: each goes through its own finalization).
    pub fn deletes_as_collection(&self) -> bool {
        !(self.group.is_empty() && self.resource == "namespaces")
    }

    /// The verbs discovery lists for this kind.
    pub fn verbs(&self) -> &'static [&'static str] {
        const ALL: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
        const NO_COLLECTION_DELETE: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];
        if self.deletes_as_collection() { ALL } else { NO_COLLECTION_DELETE }
    }

    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_owned() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `pods` or `deployments.apps`, as upstream names resources in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.resource.to_owned() } else { format!("{}.{}", self.resource, self.group) }
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

use k8s_openapi::api::{apps::v1 as apps, coordination::v1 as coordination, core::v1 as core, events::v1 as events};

const POD_FIELDS: &[SelectableField] = &[
    ("spec.nodeName", "spec.nodeName", ""),
    ("spec.restartPolicy", "spec.restartPolicy", ""),
    ("spec.schedulerName", "spec.schedulerName", ""),
    ("spec.serviceAccountName", "spec.serviceAccountName", ""),
    ("spec.hostNetwork", "spec.hostNetwork", "false"),
    ("status.phase", "status.phase", ""),
    ("status.podIP", "status.podIP", ""),
    ("status.nominatedNodeName", "status.nominatedNodeName", ""),
];

const EVENT_FIELDS: &[SelectableField] = &[
    ("involvedObject.kind", "involvedObject.kind", ""),
    ("involvedObject.namespace", "involvedObject.namespace", ""),
    ("involvedObject.name", "involvedObject.name", ""),
    ("involvedObject.uid", "involvedObject.uid", ""),
    ("involvedObject.apiVersion", "involvedObject.apiVersion", ""),
    ("involvedObject.resourceVersion", "involvedObject.resourceVersion", ""),
    ("involvedObject.fieldPath", "involvedObject.fieldPath", ""),
    ("reason", "reason", ""),
    ("reportingComponent", "reportingComponent", ""),
    ("source", "source.component", ""),
    ("type", "type", ""),
];

const EVENTS_V1_FIELDS: &[SelectableField] = &[
    ("regarding.kind", "involvedObject.kind", ""),
    ("regarding.namespace", "involvedObject.namespace", ""),
    ("regarding.name", "involvedObject.name", ""),
    ("regarding.uid", "involvedObject.uid", ""),
    ("reason", "reason", ""),
    ("reportingController", "reportingComponent", ""),
    ("type", "type", ""),
];

/// Every resource this apiserver serves.
pub static RESOURCES: &[Resource] = &[
    Resource {
        group: "",
        version: "v1",
        resource: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        subresources: &[Sub::Status],
        storage: "namespaces",
        fields: &[("status.phase", "status.phase", "")],
        schema: typed::<core::Namespace>,
        openapi: openapi::<core::Namespace>,
        default: defaults::namespace,
        validate: validation::namespace,
        conversion: None,
    },
    Resource {
        group: "",
        version: "v1",
        resource: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        subresources: &[Sub::Status],
        storage: "minions",
        fields: &[("spec.unschedulable", "spec.unschedulable", "false")],
        schema: typed::<core::Node>,
        openapi: openapi::<core::Node>,
        default: defaults::none,
        validate: validation::node,
        conversion: None,
    },
    Resource {
        group: "",
        version: "v1",
        resource: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        subresources: &[Sub::Status, Sub::Binding, Sub::Log],
        storage: "pods",
        fields: POD_FIELDS,
        schema: typed::<core::Pod>,
        openapi: openapi::<core::Pod>,
        default: defaults::pod,
        validate: validation::pod,
        conversion: None,
    },
    Resource {
        group: "",
        version: "v1",
        resource: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        subresources: &[Sub::Status],
        storage: "services/specs",
        fields: &[],
        schema: typed::<core::Service>,
        openapi: openapi::<core::Service>,
        default: defaults::service,
        validate: validation::service,
        conversion: None,
    },
    Resource {
        group: "",
        version: "v1",
        resource: "endpoints",
        singular: "endpoints",
        kind: "Endpoints",
        namespaced: true,
        short_names: &["ep"],
        categories: &[],
        subresources: &[],
        storage: "services/endpoints",
        fields: &[],
        schema: typed::<core::Endpoints>,
        openapi: openapi::<core::Endpoints>,
        default: defaults::none,
        validate: validation::generic,
        conversion: None,
    },
    Resource {
        group: "",
        version: "v1",
        resource: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        subresources: &[],
        storage: "configmaps",
        fields: &[],
        schema: typed::<core::ConfigMap>,
        openapi: openapi::<core::ConfigMap>,
        default: defaults::none,
        validate: validation::config_map,
        conversion: None,
    },
    Resource {
        group: "",
        version: "v1",
        resource: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        storage: "secrets",
        fields: &[("type", "type", "")],
        schema: typed::<core::Secret>,
        openapi: openapi::<core::Secret>,
        default: defaults::secret,
        validate: validation::secret,
        conversion: None,
    },
    Resource {
        group: "",
        version: "v1",
        resource: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
        storage: "events",
        fields: EVENT_FIELDS,
        schema: typed::<core::Event>,
        openapi: openapi::<core::Event>,
        default: defaults::none,
        validate: validation::generic,
        conversion: None,
    },
    Resource {
        group: "apps",
        version: "v1",
        resource: "deployments",
        singular: "deployment",
        kind: "Deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        subresources: &[Sub::Status, Sub::Scale],
        storage: "deployments",
        fields: &[],
        schema: typed::<apps::Deployment>,
        openapi: openapi::<apps::Deployment>,
        default: defaults::deployment,
        validate: validation::deployment,
        conversion: None,
    },
    Resource {
        group: "apps",
        version: "v1",
        resource: "replicasets",
        singular: "replicaset",
        kind: "ReplicaSet",
        namespaced: true,
        short_names: &["rs"],
        categories: &["all"],
        subresources: &[Sub::Status, Sub::Scale],
        storage: "replicasets",
        fields: &[("status.replicas", "status.replicas", "0")],
        schema: typed::<apps::ReplicaSet>,
        openapi: openapi::<apps::ReplicaSet>,
        default: defaults::replica_set,
        validate: validation::replica_set,
        conversion: None,
    },
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        resource: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        storage: "leases",
        fields: &[],
        schema: typed::<coordination::Lease>,
        openapi: openapi::<coordination::Lease>,
        default: defaults::none,
        validate: validation::generic,
        conversion: None,
    },
    Resource {
        group: "events.k8s.io",
        version: "v1",
        resource: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
        storage: "events",
        fields: EVENTS_V1_FIELDS,
        schema: typed::<events::Event>,
        openapi: openapi::<events::Event>,
        default: defaults::none,
        validate: validation::generic,
        conversion: Some(Conversion {
            to_storage: crate::convert::event_to_core,
            from_storage: crate::convert::event_from_core,
        }),
    },
];

/// Looks a resource up by group, version and plural name.
pub fn find(group: &str, version: &str, resource: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.resource == resource)
}

/// Looks a resource up by its kind in a group-version (`apps/v1`, `Deployment`).
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.api_version() == api_version && r.kind == kind)
}

/// The group-versions served, in discovery order.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// The stored form of an object served as `resource`.
pub fn to_storage(resource: &Resource, value: Value) -> Value {
    match resource.conversion {
        Some(c) => (c.to_storage)(value),
        None => value,
    }
}

/// The served form of a stored object.
pub fn from_storage(resource: &Resource, value: Value) -> Value {
    match resource.conversion {
        Some(c) => (c.from_storage)(value),
        None => value,
    }
}
