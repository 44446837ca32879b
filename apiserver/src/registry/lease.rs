//! Lease (coordination.k8s.io): leader election and node heartbeats. A PUT creates a
//! missing lease, as upstream's.

use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{Value, json};

use super::print::{age, or_none, s};
use super::{Columns, Resource, Strategy};

pub fn resource() -> Resource {
    Resource::of::<Lease>("coordination.k8s.io", "v1", "leases", "lease", "Lease", LeaseStrategy)
}

const COLUMNS: Columns = &[("Name", "string", 0), ("Holder", "string", 0), ("Age", "string", 0)];

struct LeaseStrategy;

impl Strategy for LeaseStrategy {
    fn creates_on_update(&self) -> bool {
        true
    }

    fn columns(&self) -> Columns {
        COLUMNS
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = json!(s(o, "/metadata/name"));
        let created = json!(age(o, "/metadata/creationTimestamp"));
        vec![name, json!(or_none(s(o, "/spec/holderIdentity").to_owned())), created]
    }
}
