//! Authorization: whether a user may do what a request asks, as upstream's
//! `--authorization-mode=Node,RBAC` decides it. Members of `system:masters` may do
//! anything (upstream's privileged group, before any mode); then the Node authorizer
//! answers for kubelets (`system:node:NAME` in `system:nodes`); then RBAC, from the
//! roles and bindings held in memory. A request no mode allows gets upstream's 403.
//!
//! `AlwaysAllow` (any authenticated user may do anything) remains for servers that ask
//! for it, and for `--insecure-serving`, which has no users to tell apart.

pub mod admission;
pub mod bootstrap;
pub mod node;
pub mod rbac;

use std::sync::Arc;

use crate::authn::{MASTERS, UserInfo};

/// What a request asks to do, in upstream's terms (`authorizer.Attributes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// The verb: get, list, watch, create, update, patch, delete, deletecollection (or,
    /// for a non-resource request, the lower-cased HTTP method).
    pub verb: String,
    /// Whether it names a resource (else a path).
    pub resource_request: bool,
    /// The namespace, empty for cluster-scoped requests.
    pub namespace: String,
    /// The API group, empty for core.
    pub api_group: String,
    /// The resource (`pods`).
    pub resource: String,
    /// The subresource (`status`, `log`).
    pub subresource: String,
    /// The object's name, empty for collections.
    pub name: String,
    /// The request path, for non-resource requests.
    pub path: String,
}

impl Attributes {
    /// A request for a resource.
    pub fn resource(
        verb: &str,
        api_group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> Attributes {
        Attributes {
            verb: verb.to_owned(),
            resource_request: true,
            namespace: namespace.to_owned(),
            api_group: api_group.to_owned(),
            resource: resource.to_owned(),
            subresource: subresource.to_owned(),
            name: name.to_owned(),
            path: String::new(),
        }
    }

    /// A request for a path that names no resource (`/healthz`, `/api`).
    pub fn path(verb: &str, path: &str) -> Attributes {
        Attributes { verb: verb.to_owned(), path: path.to_owned(), ..Default::default() }
    }

    /// `pods/log`, or `pods`.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// A mode's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, and by what.
    Allow(String),
    /// Refused outright, and why (no later mode is asked).
    Deny(String),
    /// This mode does not decide (and why, if it says); the next one is asked.
    NoOpinion(String),
}

/// How requests are authorized.
pub enum Authorizer {
    /// Everyone may do anything.
    AlwaysAllow,
    /// `system:masters`, then the Node authorizer, then RBAC.
    NodeRbac {
        /// The Node authorizer.
        node: Arc<node::NodeAuthorizer>,
        /// RBAC.
        rbac: Arc<rbac::Rbac>,
    },
}

impl Authorizer {
    /// Whether `user` may do `attributes`: the decision and the reason.
    pub fn authorize(&self, user: &UserInfo, attributes: &Attributes) -> Decision {
        match self {
            Authorizer::AlwaysAllow => Decision::Allow("AlwaysAllow".into()),
            Authorizer::NodeRbac { node, rbac } => {
                if user.groups.iter().any(|g| g == MASTERS) {
                    return Decision::Allow(format!("member of {MASTERS}"));
                }
                let node_reason = match node.authorize(user, attributes) {
                    Decision::NoOpinion(reason) => reason,
                    decided => return decided,
                };
                match rbac.authorize(user, attributes) {
                    Decision::NoOpinion(reason) if reason.is_empty() => Decision::NoOpinion(node_reason),
                    decided => decided,
                }
            }
        }
    }

    /// 403 with upstream's message unless `user` may do it; the decision goes to the
    /// request's audit record.
    pub fn check(
        &self,
        user: &UserInfo,
        attributes: &Attributes,
        audit: Option<&crate::audit::Context>,
    ) -> Result<(), crate::status::ApiError> {
        let decision = self.authorize(user, attributes);
        if let Some(audit) = audit {
            audit.authorized(user, attributes, &decision);
        }
        match decision {
            Decision::Allow(_) => Ok(()),
            Decision::Deny(reason) | Decision::NoOpinion(reason) => {
                Err(crate::status::ApiError::forbidden(forbidden_message(user, attributes, &reason)))
            }
        }
    }

    /// RBAC, when this server uses it.
    pub fn rbac(&self) -> Option<&Arc<rbac::Rbac>> {
        match self {
            Authorizer::AlwaysAllow => None,
            Authorizer::NodeRbac { rbac, .. } => Some(rbac),
        }
    }
}

/// Upstream's 403 message: `pods "web" is forbidden: User "alice" cannot delete resource
/// "pods" in API group "" in the namespace "default"`, with the reason a mode gave.
pub fn forbidden_message(user: &UserInfo, a: &Attributes, reason: &str) -> String {
    let mut message = if !a.resource_request {
        format!("forbidden: User {:?} cannot {} path {:?}", user.username, a.verb, a.path)
    } else {
        let what = if a.api_group.is_empty() { a.resource.clone() } else { format!("{}.{}", a.resource, a.api_group) };
        let subject = if a.name.is_empty() { what } else { format!("{what} {:?}", a.name) };
        let scope = if a.namespace.is_empty() {
            "at the cluster scope".to_owned()
        } else {
            format!("in the namespace {:?}", a.namespace)
        };
        format!(
            "{subject} is forbidden: User {:?} cannot {} resource {:?} in API group {:?} {scope}",
            user.username,
            a.verb,
            a.combined_resource(),
            a.api_group
        )
    };
    if !reason.is_empty() {
        message.push_str(": ");
        message.push_str(reason);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_messages_are_upstreams() {
        let alice = UserInfo { username: "alice".into(), ..Default::default() };
        let list = Attributes::resource("list", "", "pods", "", "kube-system", "");
        assert_eq!(
            forbidden_message(&alice, &list, ""),
            "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"kube-system\""
        );
        let delete = Attributes::resource("delete", "apps", "deployments", "", "default", "web");
        assert_eq!(
            forbidden_message(&alice, &delete, ""),
            "deployments.apps \"web\" is forbidden: User \"alice\" cannot delete resource \"deployments\" in API group \"apps\" in the namespace \"default\""
        );
        let nodes = Attributes::resource("get", "", "nodes", "status", "", "n1");
        assert_eq!(
            forbidden_message(&alice, &nodes, ""),
            "nodes \"n1\" is forbidden: User \"alice\" cannot get resource \"nodes/status\" in API group \"\" at the cluster scope"
        );
        assert_eq!(
            forbidden_message(&alice, &Attributes::path("get", "/metrics"), ""),
            "forbidden: User \"alice\" cannot get path \"/metrics\""
        );
    }
}
