//! Which resources the server has, from aggregated discovery (two requests), and how the
//! names users type (`po`, `deploy`, `deployments.apps`, `Deployment`, `rs/web`) resolve.

use serde_json::Value;

use crate::client::{Ctx, Error, Result};

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";

/// One served resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// API group (`""` for core).
    pub group: String,
    /// Version (`v1`).
    pub version: String,
    /// Kind (`Deployment`).
    pub kind: String,
    /// Plural resource name (`deployments`).
    pub plural: String,
    /// Singular name (`deployment`).
    pub singular: String,
    /// Short names (`deploy`).
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Verbs served.
    pub verbs: Vec<String>,
}

impl Resource {
    /// `apps/v1` or `v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `deployments.apps` or `pods`: how kubectl names the resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.clone() } else { format!("{}.{}", self.plural, self.group) }
    }

    /// `deployment.apps` or `pod`: the prefix of `kind/name` output.
    pub fn kind_prefix(&self) -> String {
        let kind = self.kind.to_lowercase();
        if self.group.is_empty() { kind } else { format!("{kind}.{}", self.group) }
    }

    /// The collection path, in `namespace` when the resource is namespaced and one is given.
    pub fn collection(&self, namespace: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace {
            Some(ns) if self.namespaced => format!("{base}/namespaces/{ns}/{}", self.plural),
            _ => format!("{base}/{}", self.plural),
        }
    }

    /// The path of one object.
    pub fn object(&self, namespace: &str, name: &str) -> String {
        format!("{}/{name}", self.collection(Some(namespace)))
    }

    fn answers_to(&self, name: &str) -> bool {
        let name = name.to_lowercase();
        let (base, group) = match name.split_once('.') {
            Some((b, g)) => (b.to_owned(), Some(g.to_owned())),
            None => (name.clone(), None),
        };
        if let Some(g) = group {
            // `deployments.apps`, `deployment.v1.apps`.
            let g = g.strip_prefix(&format!("{}.", self.version)).map(str::to_owned).unwrap_or(g);
            if g != self.group {
                return false;
            }
        }
        base == self.plural
            || base == self.singular
            || base == self.kind.to_lowercase()
            || self.short_names.contains(&base)
    }
}

/// The resources the server serves.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// Every resource, core first, in the server's order.
    pub resources: Vec<Resource>,
}

impl Discovery {
    /// Reads `/api` and `/apis` in aggregated form.
    pub async fn fetch(ctx: &Ctx) -> Result<Discovery> {
        let mut resources = Vec::new();
        for path in ["/api", "/apis"] {
            let text = ctx.text(http::Method::GET, path, None, Some(AGGREGATED), Vec::new()).await?;
            let list: Value = serde_json::from_str(&text)
                .map_err(|e| Error::Other(anyhow::anyhow!("discovery at {path} is not JSON: {e}")))?;
            resources.extend(parse(&list));
        }
        Ok(Discovery { resources })
    }

    /// Resolves what a user typed to a resource.
    pub fn resolve(&self, name: &str) -> Result<&Resource> {
        self.resources
            .iter()
            .find(|r| r.answers_to(name))
            .ok_or_else(|| Error::Other(anyhow::anyhow!("the server doesn't have a resource type \"{name}\"")))
    }

    /// The resources in a category (`all`).
    pub fn category(&self, name: &str) -> Vec<&Resource> {
        self.resources.iter().filter(|r| r.categories.iter().any(|c| c == name)).collect()
    }

    /// The resource of a kind in an API version (`apps/v1`, `Deployment`), for manifests.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Result<&Resource> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        self.resources
            .iter()
            .find(|r| r.kind == kind && r.group == group && r.version == version)
            .ok_or_else(|| {
                Error::Other(anyhow::anyhow!(
                    "resource mapping not found for kind \"{kind}\" in version \"{api_version}\": ensure the resource is served by the server"
                ))
            })
    }
}

/// Reads an `APIGroupDiscoveryList`; the first version of each group is the preferred one.
pub fn parse(list: &Value) -> Vec<Resource> {
    let mut out = Vec::new();
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    for group in list.get("items").and_then(Value::as_array).into_iter().flatten() {
        let group_name = group.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let Some(version) = group.get("versions").and_then(Value::as_array).and_then(|v| v.first()) else { continue };
        let version_name = version.get("version").and_then(Value::as_str).unwrap_or_default();
        for r in version.get("resources").and_then(Value::as_array).into_iter().flatten() {
            let text = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or_default().to_owned();
            let kind = r.pointer("/responseKind/kind").and_then(Value::as_str).unwrap_or_default().to_owned();
            out.push(Resource {
                group: group_name.to_owned(),
                version: version_name.to_owned(),
                singular: if text("singularResource").is_empty() {
                    kind.to_lowercase()
                } else {
                    text("singularResource")
                },
                kind,
                plural: text("resource"),
                short_names: strings(r.get("shortNames")),
                categories: strings(r.get("categories")),
                namespaced: text("scope") == "Namespaced",
                verbs: strings(r.get("verbs")),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn discovery() -> Discovery {
        let list = json!({"items": [
            {"metadata": {"name": ""}, "versions": [{"version": "v1", "resources": [
                {"resource": "pods", "responseKind": {"kind": "Pod"}, "scope": "Namespaced", "singularResource": "pod", "shortNames": ["po"], "categories": ["all"], "verbs": ["get"]},
                {"resource": "nodes", "responseKind": {"kind": "Node"}, "scope": "Cluster", "singularResource": "node", "shortNames": ["no"]}
            ]}]},
            {"metadata": {"name": "apps"}, "versions": [{"version": "v1", "resources": [
                {"resource": "deployments", "responseKind": {"kind": "Deployment"}, "scope": "Namespaced", "singularResource": "deployment", "shortNames": ["deploy"], "categories": ["all"]}
            ]}]}
        ]});
        Discovery { resources: parse(&list) }
    }

    #[test]
    fn names_resolve_like_stock_kubectl() {
        let d = discovery();
        for name in ["deploy", "deployment", "deployments", "Deployment", "deployments.apps", "deployment.v1.apps"] {
            assert_eq!(d.resolve(name).expect(name).plural, "deployments", "{name}");
        }
        assert_eq!(d.resolve("po").expect("po").plural, "pods");
        assert!(d.resolve("deployments.batch").is_err());
        let err = d.resolve("gizmos").unwrap_err().to_string();
        assert_eq!(err, "error: the server doesn't have a resource type \"gizmos\"");
        assert_eq!(d.category("all").len(), 2);
        let deploy = d.resolve("deploy").expect("deploy");
        assert_eq!(deploy.object("demo", "web"), "/apis/apps/v1/namespaces/demo/deployments/web");
        assert_eq!(d.resolve("no").expect("nodes").object("demo", "n1"), "/api/v1/nodes/n1");
        assert!(d.by_kind("apps/v1", "Deployment").is_ok());
        assert!(d.by_kind("v1", "Gizmo").unwrap_err().to_string().contains("resource mapping not found"));
    }
}
