//! Admission that depends on who writes: RBAC's escalation check (a writer may grant in a
//! role or a binding only what it holds, unless it may `escalate` or `bind`), and
//! NodeRestriction (a node changes only its own Node object and the pods bound to it).

use std::sync::Arc;

use serde_json::Value;

use super::node::node_name;
use super::rbac::{Rule, describe, uncovered};
use super::{Attributes, Authorizer, Decision};
use crate::api::write::Admit;
use crate::authn::{MASTERS, UserInfo};
use crate::registry::rbac::GROUP as RBAC;
use crate::status::ApiError;

/// What a write is to.
#[derive(Debug, Clone)]
pub struct Target {
    /// The API group.
    pub group: String,
    /// The resource.
    pub resource: String,
    /// The subresource.
    pub subresource: String,
    /// The namespace (empty: cluster-scoped).
    pub namespace: String,
    /// The name (empty for a create).
    pub name: String,
}

/// The admission of a write by `user` to `target`, or `None` when nothing is checked.
pub fn for_write(authorizer: &Arc<Authorizer>, user: &UserInfo, target: Target) -> Option<Admit> {
    let rbac = authorizer.rbac()?.clone();
    if user.groups.iter().any(|g| g == MASTERS) {
        return None;
    }
    if target.group == CERTIFICATES && target.resource == "certificatesigningrequests" {
        let verb = match target.subresource.as_str() {
            "approval" => "approve",
            "status" => "sign",
            _ => return None,
        };
        let (authorizer, user) = (authorizer.clone(), user.clone());
        return Some(Arc::new(move |old: Option<&Value>, new: &Value| {
            let signer = new.pointer("/spec/signerName").and_then(Value::as_str).unwrap_or_default();
            // A status write that leaves the certificate alone (a Failed condition) signs nothing.
            let changes_certificate =
                old.and_then(|o| o.pointer("/status/certificate")) != new.pointer("/status/certificate");
            if verb == "sign" && !changes_certificate {
                return Ok(());
            }
            may_use_signer(&authorizer, &user, verb, signer).map_err(|why| {
                ApiError::forbidden(format!(
                    "certificatesigningrequests.certificates.k8s.io {:?} is forbidden: {why}",
                    name_of(new)
                ))
            })
        }));
    }
    let node = node_name(user).map(str::to_owned);
    let rbac_kind = target.group == RBAC
        && matches!(target.resource.as_str(), "roles" | "clusterroles" | "rolebindings" | "clusterrolebindings");
    let node_kind = node.is_some() && target.group.is_empty() && matches!(target.resource.as_str(), "nodes" | "pods");
    if !rbac_kind && !node_kind {
        return None;
    }
    let (authorizer, user) = (authorizer.clone(), user.clone());
    Some(Arc::new(move |old: Option<&Value>, new: &Value| {
        if let Some(node) = &node {
            node_restriction(node, &target, old, new)?;
        }
        if rbac_kind {
            no_escalation(&authorizer, &rbac, &user, &target, new)?;
        }
        Ok(())
    }))
}

const CERTIFICATES: &str = "certificates.k8s.io";

/// Upstream's check that `user` may `approve` or `sign` for `signer`: the verb on the
/// `signers` resource, by the signer's name or its domain's wildcard (`example.com/*`).
fn may_use_signer(authorizer: &Authorizer, user: &UserInfo, verb: &str, signer: &str) -> Result<(), String> {
    let wildcard = signer.split_once('/').map(|(domain, _)| format!("{domain}/*")).unwrap_or_default();
    for name in [signer, wildcard.as_str()] {
        let attributes = Attributes::resource(verb, CERTIFICATES, "signers", "", "", name);
        if let Decision::Allow(_) = authorizer.authorize(user, &attributes) {
            return Ok(());
        }
    }
    Err(format!("user not permitted to {verb} requests with signerName {signer:?}"))
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
}

/// NodeRestriction's checks, with its messages.
fn node_restriction(node: &str, target: &Target, old: Option<&Value>, new: &Value) -> Result<(), ApiError> {
    let name = name_of(new);
    let forbidden = |why: String| ApiError::forbidden(format!("{} {name:?} is forbidden: {why}", target.resource));
    match target.resource.as_str() {
        "nodes" if name != node => Err(forbidden(format!("node {node:?} is not allowed to modify node {name:?}"))),
        "pods" => {
            let bound = |o: &Value| o.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node);
            match old {
                None => {
                    let mirror = new.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some();
                    if !mirror {
                        return Err(forbidden(format!(
                            "pod does not have \"kubernetes.io/config.mirror\" annotation, node {node:?} can only create mirror pods"
                        )));
                    }
                    if !bound(new) {
                        return Err(forbidden(format!(
                            "node {node:?} can only create pods with spec.nodeName set to itself"
                        )));
                    }
                    Ok(())
                }
                Some(old) if target.subresource == "status" => {
                    if bound(old) {
                        Ok(())
                    } else {
                        Err(forbidden(format!(
                            "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
                        )))
                    }
                }
                Some(_) => Err(forbidden(format!("node {node:?} can only update pod status"))),
            }
        }
        _ => Ok(()),
    }
}

/// Whether a node may delete this object: its own Node, or a pod bound to it.
pub fn node_may_delete(user: &UserInfo, resource: &str, obj: &Value) -> Result<(), ApiError> {
    let Some(node) = node_name(user) else { return Ok(()) };
    let name = name_of(obj);
    match resource {
        "nodes" if name != node => Err(ApiError::forbidden(format!(
            "nodes {name:?} is forbidden: node {node:?} is not allowed to modify node {name:?}"
        ))),
        "pods" if obj.pointer("/spec/nodeName").and_then(Value::as_str) != Some(node) => Err(ApiError::forbidden(
            format!("pods {name:?} is forbidden: node {node:?} can only delete pods with spec.nodeName set to itself"),
        )),
        _ => Ok(()),
    }
}

/// The escalation check: the rules a role would hold, or the binding would grant, must be
/// the writer's own already, unless it may `escalate` (roles) or `bind` (the role bound).
fn no_escalation(
    authorizer: &Authorizer,
    rbac: &super::rbac::Rbac,
    user: &UserInfo,
    target: &Target,
    new: &Value,
) -> Result<(), ApiError> {
    let name = name_of(new);
    let ns = if target.resource.starts_with("cluster") { String::new() } else { target.namespace.clone() };
    let allowed = |verb: &str, resource: &str, object: &str| {
        let a = Attributes::resource(verb, RBAC, resource, "", &ns, object);
        matches!(authorizer.authorize(user, &a), Decision::Allow(_))
    };
    let wanted: Vec<Rule> = match target.resource.as_str() {
        "roles" | "clusterroles" => {
            if allowed("escalate", &target.resource, name) {
                return Ok(());
            }
            Rule::of_role(new)
        }
        _ => {
            let kind = new.pointer("/roleRef/kind").and_then(Value::as_str).unwrap_or_default();
            let role = new.pointer("/roleRef/name").and_then(Value::as_str).unwrap_or_default();
            let role_resource = if kind == "Role" { "roles" } else { "clusterroles" };
            if allowed("bind", role_resource, role) {
                return Ok(());
            }
            rbac.role_rules(&ns, kind == "Role", role)
        }
    };
    let held = rbac.rules_for(user, &ns);
    let missing = uncovered(&held, &wanted);
    if missing.is_empty() {
        return Ok(());
    }
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    let list: Vec<String> = missing.iter().map(describe).collect();
    Err(ApiError::forbidden(format!(
        "{}.{RBAC} {name:?} is forbidden: user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        target.resource,
        user.username,
        groups.join(" "),
        list.join("\n")
    )))
}
