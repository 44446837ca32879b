//! IPAddress (networking.k8s.io/v1, cluster-scoped): one per Service cluster IP in use,
//! named by the address, its `parentRef` the service. The server writes them when it
//! claims an address (`api/allocate.rs`); users read them to see who holds what.

use k8s_openapi::api::networking::v1::IPAddress;
use serde_json::{Value, json};

use super::print::{age, s};
use super::{Columns, Resource, Strategy};
use crate::status::Cause;
use crate::validation;

pub fn resource() -> Resource {
    Resource {
        namespaced: false,
        short_names: super::names(&["ip"]),
        ..Resource::of::<IPAddress>(
            "networking.k8s.io",
            "v1",
            "ipaddresses",
            "ipaddress",
            "IPAddress",
            IpAddressStrategy,
        )
    }
}

const COLUMNS: Columns = &[("Name", "string", 0), ("ParentRef", "string", 0), ("Age", "string", 0)];

struct IpAddressStrategy;

impl Strategy for IpAddressStrategy {
    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = validation::generic(obj, old);
        let name = s(obj, "/metadata/name");
        if name.parse::<std::net::IpAddr>().is_err() {
            causes.push(Cause::invalid("metadata.name", name, "must be a valid IP address"));
        }
        for field in ["resource", "name"] {
            if s(obj, &format!("/spec/parentRef/{field}")).is_empty() {
                causes.push(Cause::required(format!("spec.parentRef.{field}")));
            }
        }
        causes
    }

    fn columns(&self) -> Columns {
        COLUMNS
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let parent = format!(
            "{}/{}/{}",
            s(o, "/spec/parentRef/resource"),
            s(o, "/spec/parentRef/namespace"),
            s(o, "/spec/parentRef/name")
        );
        vec![json!(s(o, "/metadata/name")), json!(parent), json!(age(o, "/metadata/creationTimestamp"))]
    }
}
