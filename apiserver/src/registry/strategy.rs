//! What a kind does differently from the generic handlers: upstream's REST strategies
//! (`PrepareForCreate`, `Validate`, graceful deletion, table conversion) as one trait whose
//! defaults fit most kinds.

use serde_json::{Value, json};

use super::print::{age, s};
use super::{Resource, Sub};
use crate::status::{ApiResult, Cause};
use crate::validation;

/// A Table's column definitions: name, type, priority (0 shown, 1 with `-o wide`).
pub type Columns = &'static [(&'static str, &'static str, i32)];

/// The columns of a kind with no printer of its own, as upstream's default table.
pub const DEFAULT_COLUMNS: Columns = &[("Name", "string", 0), ("Age", "string", 0)];

/// A pool of values the server hands out to objects, each to one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Service cluster IPs (`--service-cluster-ip-range`).
    ServiceIp,
    /// Service node ports (`--service-node-port-range`).
    NodePort,
}

/// Hands out values from the server's pools; claims are stored, so no value is handed out
/// twice, across concurrent requests and apiservers and restarts.
#[async_trait::async_trait]
pub trait Allocator: Send + Sync {
    /// Claims `requested`, or any free value when `None`, for `owner` (`namespace/name`).
    /// The error says why, in upstream's words (`provided IP is already allocated`).
    async fn claim(&self, pool: Pool, requested: Option<&str>, owner: &str) -> Result<String, String>;

    /// Gives back a value `owner` holds.
    async fn release(&self, pool: Pool, value: &str, owner: &str);
}

/// A kind's hooks. Every method has the behaviour most kinds want.
#[async_trait::async_trait]
pub trait Strategy: Send + Sync {
    /// Fills the defaults upstream fills.
    fn default(&self, _obj: &mut Value) {}

    /// Checks an object (and, on update, the object it replaces); one cause per problem.
    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        validation::generic(obj, None)
    }

    /// Adjusts an update through `/status` (the status sent is already on `next`): what
    /// that subresource may not change is put back from `old`.
    fn prepare_status_update(&self, _old: &Value, _next: &mut Value) {}

    /// Sets what the server owns in a new object's status. A kind with a status
    /// subresource starts with [`Strategy::initial_status`], whatever the client sent:
    /// clients write status through `/status` only.
    fn prepare_create(&self, resource: &Resource, obj: &mut Value) {
        if resource.has(Sub::Status)
            && let Some(o) = obj.as_object_mut()
        {
            o.insert("status".into(), self.initial_status());
        }
    }

    /// A new object's status: the zero value upstream's Go types encode (`{}`, or with
    /// the fields that have no `omitempty`), which clients and test suites compare with.
    fn initial_status(&self) -> Value {
        json!({})
    }

    /// Whether the kind takes values from the server's pools ([`Strategy::allocate`]).
    fn allocates(&self) -> bool {
        false
    }

    /// Takes what a new or changed object needs from the server's pools (a Service's
    /// cluster IP and node ports) and writes the values into it; `old` is the object it
    /// replaces. On an error it has given back what it took.
    async fn allocate(&self, _pools: &dyn Allocator, _obj: &mut Value, _old: Option<&Value>) -> ApiResult<()> {
        Ok(())
    }

    /// Gives back what `obj` holds and `kept` (the object that replaced it, if any) does not.
    async fn release(&self, _pools: &dyn Allocator, _obj: &Value, _kept: Option<&Value>) {}

    /// Whether a PUT of a missing object creates it (upstream's `AllowCreateOnUpdate`).
    fn creates_on_update(&self) -> bool {
        false
    }

    /// Refuses a delete the kind does not allow (the system's own namespaces).
    fn check_delete(&self, _name: &str) -> ApiResult<()> {
        Ok(())
    }

    /// The grace period a delete gives the object, given what the client asked for:
    /// 0 (removed at once, or when its finalizers are done) for most kinds.
    fn grace_period(&self, _obj: &Value, _requested: Option<i64>) -> i64 {
        0
    }

    /// For a kind whose deletion the server itself finishes (a namespace empties first):
    /// the object marked as being deleted. `None`: the generic deletion.
    fn begin_deletion(&self, _obj: &Value) -> Option<Value> {
        None
    }

    /// Whether a deleted object still waits for something besides `metadata.finalizers`
    /// before it is removed (a namespace's `spec.finalizers`).
    fn waits_for_finalization(&self, _obj: &Value) -> bool {
        false
    }

    /// Whether the kind is a review: a question answered in one `create` and never
    /// stored (`SelfSubjectReview`, `TokenReview`). Reviews have no watch cache and serve
    /// no other verb.
    fn reviews(&self) -> bool {
        false
    }

    /// Whether `deletecollection` is served (upstream serves none for namespaces).
    fn deletes_as_collection(&self) -> bool {
        true
    }

    /// The object's pod selector as a `metav1.LabelSelector`, for its Scale view.
    fn label_selector(&self, obj: &Value) -> Option<Value> {
        obj.pointer("/spec/selector").cloned()
    }

    /// The Scale view's selector when the object holds it already as a string (a custom
    /// resource's `labelSelectorPath`); `None`: built from [`Strategy::label_selector`].
    fn scale_selector(&self, _obj: &Value) -> Option<String> {
        None
    }

    /// Where the Scale view's desired and observed replicas live (JSON pointers).
    fn replicas_paths(&self) -> (&str, &str) {
        ("/spec/replicas", "/status/replicas")
    }

    /// Whether the server keeps `metadata.generation` (bumped on every change but to
    /// metadata and status): kinds with a status subresource, and every custom resource.
    fn keeps_generation(&self, resource: &Resource) -> bool {
        resource.has(Sub::Status)
    }

    /// Whether strategic merge patches apply (they need the Go types' patch strategies,
    /// which custom resources do not have).
    fn strategic_merge(&self) -> bool {
        true
    }

    /// The Table columns `kubectl get` shows.
    fn columns(&self) -> Columns {
        DEFAULT_COLUMNS
    }

    /// The Table's column definitions, from [`Strategy::columns`].
    fn column_definitions(&self) -> Vec<Value> {
        self.columns()
            .iter()
            .map(|(name, kind, priority)| {
                let format = if *name == "Name" { "name" } else { "" };
                json!({"name": name, "type": kind, "format": format, "description": name, "priority": priority})
            })
            .collect()
    }

    /// One Table row's cells, matching [`Strategy::columns`].
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![json!(s(obj, "/metadata/name")), json!(age(obj, "/metadata/creationTimestamp"))]
    }
}
