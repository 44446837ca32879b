//! ServiceAccount: an identity for the processes in pods. The controller-manager keeps a
//! `default` one in every namespace.

use k8s_openapi::api::core::v1::ServiceAccount;
use serde_json::{Value, json};

use super::print::{age, s};
use super::{Columns, Resource, Strategy, names};

pub fn resource() -> Resource {
    Resource {
        short_names: names(&["sa"]),
        subresources: std::borrow::Cow::Borrowed(&[super::Sub::Token]),
        ..Resource::of::<ServiceAccount>("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", Accounts)
    }
}

const COLUMNS: Columns = &[("Name", "string", 0), ("Secrets", "string", 0), ("Age", "string", 0)];

struct Accounts;

impl Strategy for Accounts {
    fn columns(&self) -> Columns {
        COLUMNS
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let secrets = o.get("secrets").and_then(Value::as_array).map_or(0, Vec::len);
        vec![json!(s(o, "/metadata/name")), json!(secrets), json!(age(o, "/metadata/creationTimestamp"))]
    }
}
