//! The certificate controllers, as upstream's:
//!
//! - **csrapproving**: a request to `kubernetes.io/kube-apiserver-client-kubelet` for a
//!   node client certificate (`system:node:<name>` in `system:nodes`, client usages, no
//!   names) is approved when a SubjectAccessReview says its requester may create
//!   `certificatesigningrequests/nodeclient` (a bootstrap token joining) or, for a node
//!   renewing its own, `certificatesigningrequests/selfnodeclient`. Nothing else is
//!   approved here: serving certificates wait for an admin (`kubectl certificate approve`).
//! - **csrsigning**: an approved request to one of upstream's `kubernetes.io` signers is
//!   checked against that signer's rules and signed with the cluster CA
//!   (`--cluster-signing-cert-file`/`--cluster-signing-key-file`) for
//!   `--cluster-signing-duration`, or less if the request asks; one that breaks the rules
//!   gets a `Failed` condition saying why.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use component_base::pki::{Ca, Request};
use k8s_openapi::api::authorization::v1::ResourceAttributes;
use k8s_openapi::api::authorization::v1::{SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::informer::Informer;
use crate::workqueue::{Action, WorkQueue};

/// The signer of kubelets' client certificates.
pub const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The signer of kubelets' serving certificates.
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
/// The signer of other clients' certificates.
pub const API_CLIENT: &str = "kubernetes.io/kube-apiserver-client";

/// What csrsigning signs with.
pub struct Signing {
    /// The cluster CA.
    pub ca: Ca,
    /// The longest a certificate it signs lives.
    pub duration: Duration,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Signing").field("duration", &self.duration).finish()
    }
}

/// Starts both controllers (csrsigning only with a CA); they run until `tasks` is dropped.
pub fn start(
    client: kube::Client,
    tasks: &crate::Tasks,
    metrics: Arc<crate::metrics::Metrics>,
    signing: Option<Arc<Signing>>,
) {
    let queue = WorkQueue::new("certificatesigningrequest", metrics);
    let q = queue.clone();
    let csrs = Informer::start(
        tasks,
        Api::<CertificateSigningRequest>::all(client.clone()),
        vec![Box::new(move |c| {
            if !c.deleted {
                q.add(c.object.metadata.name.clone().unwrap_or_default());
            }
        })],
    );
    queue.run(tasks, 2, move |name| reconcile(client.clone(), csrs.clone(), signing.clone(), name));
}

fn has(csr: &CertificateSigningRequest, kind: &str) -> bool {
    csr.status.iter().flat_map(|s| s.conditions.iter().flatten()).any(|c| c.type_ == kind)
}

async fn reconcile(
    client: kube::Client,
    csrs: Arc<Informer<CertificateSigningRequest>>,
    signing: Option<Arc<Signing>>,
    name: String,
) -> anyhow::Result<Action> {
    csrs.wait_synced().await;
    let Some(csr) = csrs.get(&name) else { return Ok(Action::Done) };
    let issued = csr.status.as_ref().and_then(|s| s.certificate.as_ref()).is_some_and(|c| !c.0.is_empty());
    if has(&csr, "Denied") || has(&csr, "Failed") || issued {
        return Ok(Action::Done);
    }
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    if !has(&csr, "Approved") {
        if let Some(message) = approval(&client, &csr).await? {
            let patch = json!({"status": {"conditions": [{
                "type": "Approved", "status": "True", "reason": "AutoApproved", "message": message,
            }]}});
            crate::tolerate(
                api.patch_subresource("approval", &name, &PatchParams::default(), &Patch::Merge(&patch)).await,
                &[404, 409],
            )?;
            tracing::info!(csr = name, "approved");
        }
        return Ok(Action::Done);
    }
    let Some(signing) = signing else { return Ok(Action::Done) };
    let status = match sign(&signing, &csr) {
        Ok(None) => return Ok(Action::Done),
        Ok(Some(cert)) => {
            tracing::info!(csr = name, signer = csr.spec.signer_name, "signed");
            json!({"status": {"certificate": base64::engine::general_purpose::STANDARD.encode(cert)}})
        }
        Err(why) => {
            tracing::warn!(csr = name, signer = csr.spec.signer_name, reason = %why, "refused to sign");
            json!({"status": {"conditions": [{
                "type": "Failed", "status": "True", "reason": "SignerValidationFailure", "message": why,
            }]}})
        }
    };
    crate::tolerate(api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await, &[404, 409])?;
    Ok(Action::Done)
}

fn usages(csr: &CertificateSigningRequest) -> Vec<&str> {
    csr.spec.usages.iter().flatten().map(String::as_str).collect()
}

/// Whether the usages are within `allowed` and include `required`.
fn usages_fit(usages: &[&str], allowed: &[&str], required: &str) -> bool {
    usages.iter().all(|u| allowed.contains(u)) && usages.contains(&required)
}

/// What a node's client certificate request asks, if it is one: the node's name.
fn node_client(csr: &CertificateSigningRequest, asked: &Request) -> Option<String> {
    let node = asked.common_name.strip_prefix("system:node:")?;
    let fits = !node.is_empty()
        && asked.organizations == ["system:nodes"]
        && asked.dns_names.is_empty()
        && asked.ips.is_empty()
        && usages_fit(&usages(csr), &["digital signature", "key encipherment", "client auth"], "client auth");
    fits.then(|| node.to_owned())
}

/// Why a kubelet client request should be approved (the condition's message), after a
/// SubjectAccessReview of its requester; `None`: not for this approver.
async fn approval(client: &kube::Client, csr: &CertificateSigningRequest) -> anyhow::Result<Option<String>> {
    if csr.spec.signer_name != KUBELET_CLIENT {
        return Ok(None);
    }
    let pem = String::from_utf8_lossy(&csr.spec.request.0).into_owned();
    let Ok((asked, _)) = component_base::pki::read_csr(&pem) else { return Ok(None) };
    let Some(_) = node_client(csr, &asked) else { return Ok(None) };
    let requester = csr.spec.username.clone().unwrap_or_default();
    let mut checks = Vec::new();
    if requester == asked.common_name {
        checks.push(("selfnodeclient", "Auto approving self kubelet client certificate after SubjectAccessReview."));
    }
    checks.push(("nodeclient", "Auto approving kubelet client certificate after SubjectAccessReview."));
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    for (subresource, message) in checks {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: csr.spec.username.clone(),
                uid: csr.spec.uid.clone(),
                groups: csr.spec.groups.clone(),
                extra: csr.spec.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    group: Some("certificates.k8s.io".into()),
                    resource: Some("certificatesigningrequests".into()),
                    subresource: Some(subresource.into()),
                    verb: Some("create".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = reviews.create(&PostParams::default(), &review).await?;
        if answer.status.is_some_and(|s| s.allowed) {
            return Ok(Some(message.to_owned()));
        }
    }
    Ok(None)
}

/// The certificate for an approved request (PEM), `None` if the signer is not one of
/// ours, or why the request breaks its signer's rules.
fn sign(signing: &Signing, csr: &CertificateSigningRequest) -> Result<Option<String>, String> {
    let signer = csr.spec.signer_name.as_str();
    if ![KUBELET_CLIENT, KUBELET_SERVING, API_CLIENT, "kubernetes.io/legacy-unknown"].contains(&signer) {
        return Ok(None);
    }
    if signer == "kubernetes.io/legacy-unknown" {
        return Err("the kubernetes.io/legacy-unknown signer issues no certificates".into());
    }
    let pem = String::from_utf8_lossy(&csr.spec.request.0).into_owned();
    let (mut request, params) = component_base::pki::read_csr(&pem).map_err(|e| format!("{e:#}"))?;
    let usages = usages(csr);
    match signer {
        KUBELET_CLIENT => {
            node_client(csr, &request).ok_or(
                "a kubelet client certificate is for system:node:<name> in the organization system:nodes, with no subject alternative names and the usages digital signature, key encipherment (optional) and client auth",
            )?;
            request.client = true;
        }
        KUBELET_SERVING => {
            let node = request.common_name.strip_prefix("system:node:").unwrap_or_default();
            let ok = !node.is_empty()
                && request.organizations == ["system:nodes"]
                && !(request.dns_names.is_empty() && request.ips.is_empty())
                && usages_fit(&usages, &["digital signature", "key encipherment", "server auth"], "server auth");
            if !ok {
                return Err("a kubelet serving certificate is for system:node:<name> in the organization system:nodes, with at least one DNS name or IP address, and the usages digital signature, key encipherment (optional) and server auth".into());
            }
            request.server = true;
        }
        _ => {
            if !usages.contains(&"client auth") || usages.contains(&"server auth") {
                return Err("a kube-apiserver-client certificate has the usage client auth and no server auth".into());
            }
            request.client = true;
        }
    }
    let asked = csr.spec.expiration_seconds.map(|s| Duration::from_secs(s.max(600) as u64));
    request.validity = asked.map_or(signing.duration, |a| a.min(signing.duration));
    signing.ca.sign(&request, &params.public_key).map(Some).map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequestSpec;

    fn csr(signer: &str, asked: &Request, usages: &[&str]) -> CertificateSigningRequest {
        let (pem, _) = component_base::pki::csr(asked).expect("csr");
        CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                request: ByteString(pem.into_bytes()),
                signer_name: signer.into(),
                usages: Some(usages.iter().map(|u| (*u).to_owned()).collect()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn node(name: &str) -> Request {
        Request {
            common_name: format!("system:node:{name}"),
            organizations: vec!["system:nodes".into()],
            ..Default::default()
        }
    }

    #[test]
    fn each_signer_signs_only_what_its_rules_allow() {
        let ca = Ca::generate("test", Duration::from_secs(3600)).expect("ca");
        let signing = Signing { ca, duration: Duration::from_secs(1800) };
        let client = csr(KUBELET_CLIENT, &node("n1"), &["digital signature", "client auth"]);
        let cert = sign(&signing, &client).expect("valid").expect("ours");
        let (cn, _) = component_base::pki::expiry(&cert).expect("expiry");
        assert_eq!(cn, "system:node:n1");

        let admin = Request {
            common_name: "mallory".into(),
            organizations: vec!["system:masters".into()],
            ..Default::default()
        };
        let err = sign(&signing, &csr(KUBELET_CLIENT, &admin, &["client auth"])).expect_err("not a node");
        assert!(err.contains("system:node:<name>"), "{err}");
        let serving_usage = csr(KUBELET_CLIENT, &node("n1"), &["server auth"]);
        assert!(sign(&signing, &serving_usage).is_err());

        let mut named = node("n1");
        named.ips = vec![[10, 0, 0, 7].into()];
        assert!(sign(&signing, &csr(KUBELET_SERVING, &named, &["digital signature", "server auth"])).is_ok());
        assert!(sign(&signing, &csr(KUBELET_SERVING, &node("n1"), &["server auth"])).is_err(), "no names");
        assert!(sign(&signing, &csr("example.com/other", &node("n1"), &["client auth"])).expect("skip").is_none());
    }

    #[test]
    fn only_node_client_requests_are_candidates_for_approval() {
        let ok = csr(KUBELET_CLIENT, &node("n1"), &["key encipherment", "digital signature", "client auth"]);
        let (asked, _) =
            component_base::pki::read_csr(std::str::from_utf8(&ok.spec.request.0).expect("utf8")).expect("read");
        assert_eq!(node_client(&ok, &asked).as_deref(), Some("n1"));
        let mut named = node("n1");
        named.dns_names = vec!["n1".into()];
        let with_names = csr(KUBELET_CLIENT, &named, &["client auth"]);
        let (asked, _) = component_base::pki::read_csr(std::str::from_utf8(&with_names.spec.request.0).expect("utf8"))
            .expect("read");
        assert!(node_client(&with_names, &asked).is_none());
    }
}
