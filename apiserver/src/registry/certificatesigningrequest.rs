//! CertificateSigningRequest (`certificates.k8s.io/v1`, cluster-scoped): a client asks a
//! signer for a certificate; an approver adds `Approved` through `/approval`; the signer
//! writes `status.certificate` through `/status`. Who asked (`spec.username`, `groups`,
//! `uid`) is set by the server from the request's credentials, never by the client.

use std::borrow::Cow;

use base64::Engine;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use serde_json::{Value, json};

use super::print::{age, s};
use super::{Columns, Resource, Strategy, Sub, names};
use crate::names::dns1123_subdomain_errors;
use crate::status::Cause;
use crate::validation;

pub fn resource() -> Resource {
    Resource {
        namespaced: false,
        short_names: names(&["csr"]),
        subresources: Cow::Borrowed(&[Sub::Status, Sub::Approval]),
        fields: &[("spec.signerName", "spec.signerName", "")],
        ..Resource::of::<CertificateSigningRequest>(
            "certificates.k8s.io",
            "v1",
            "certificatesigningrequests",
            "certificatesigningrequest",
            "CertificateSigningRequest",
            CsrStrategy,
        )
    }
}

const COLUMNS: Columns = &[
    ("Name", "string", 0),
    ("Age", "string", 0),
    ("SignerName", "string", 0),
    ("Requestor", "string", 0),
    ("RequestedDuration", "string", 0),
    ("Condition", "string", 0),
];

/// The key usages a request may name (upstream's `KeyUsage` values).
pub const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// The condition types an approver sets; they are final once set.
const APPROVAL: [&str; 2] = ["Approved", "Denied"];

struct CsrStrategy;

/// Parses a PEM CSR and checks its self-signature (proof that the requester holds the key).
pub fn check_request(pem: &[u8]) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    use x509_parser::prelude::FromDer;
    let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem)
        .map_err(|e| format!("no PEM CERTIFICATE REQUEST block: {e}"))?;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
        .map_err(|e| format!("not a certificate request: {e}"))?;
    csr.verify_signature().map_err(|e| format!("the request's signature does not verify: {e}"))
}

fn decoded(obj: &Value, pointer: &str) -> Option<Vec<u8>> {
    obj.pointer(pointer).and_then(Value::as_str).and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
}

fn conditions(obj: &Value) -> Vec<Value> {
    obj.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default()
}

fn has_condition(obj: &Value, kind: &str) -> bool {
    conditions(obj).iter().any(|c| s(c, "/type") == kind)
}

impl Strategy for CsrStrategy {
    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = validation::generic(obj, old);
        match obj.pointer("/spec/request").and_then(Value::as_str) {
            None | Some("") => causes.push(Cause::required("spec.request")),
            Some(b64) => match base64::engine::general_purpose::STANDARD.decode(b64) {
                Err(e) => causes.push(Cause::invalid("spec.request", "<binary>", e)),
                Ok(pem) => {
                    if let Err(e) = check_request(&pem) {
                        causes.push(Cause::invalid("spec.request", "<binary>", e));
                    }
                }
            },
        }
        match obj.pointer("/spec/signerName").and_then(Value::as_str) {
            None | Some("") => causes.push(Cause::required("spec.signerName")),
            Some(signer) => {
                let why = match signer.split_once('/') {
                    None => {
                        vec!["must be a fully qualified domain and path of the form 'example.com/signer-name'".into()]
                    }
                    Some((domain, path)) => {
                        let mut why = dns1123_subdomain_errors(domain);
                        if path.is_empty() || path.ends_with('/') {
                            why.push("validating path: must not be empty or end in '/'".into());
                        }
                        why
                    }
                };
                causes.extend(why.into_iter().map(|w| Cause::invalid("spec.signerName", signer, w)));
            }
        }
        if let Some(secs) = obj.pointer("/spec/expirationSeconds").and_then(Value::as_i64)
            && secs < 600
        {
            causes.push(Cause::invalid(
                "spec.expirationSeconds",
                &secs.to_string(),
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
        let usages: Vec<&str> = obj
            .pointer("/spec/usages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if usages.is_empty() {
            causes.push(Cause::required("spec.usages"));
        }
        for (i, u) in usages.iter().enumerate() {
            if !USAGES.contains(u) {
                causes.push(Cause::not_supported(format!("spec.usages[{i}]"), u, USAGES));
            } else if usages[..i].contains(u) {
                causes.push(Cause::duplicate(format!("spec.usages[{i}]"), u));
            }
        }
        let conds = conditions(obj);
        for (i, c) in conds.iter().enumerate() {
            let kind = s(c, "/type");
            if kind.is_empty() {
                causes.push(Cause::required(format!("status.conditions[{i}].type")));
            } else if conds[..i].iter().any(|o| s(o, "/type") == kind) {
                causes.push(Cause::duplicate(format!("status.conditions[{i}].type"), kind));
            }
            let status = s(c, "/status");
            if APPROVAL.contains(&kind) && status != "True" {
                causes.push(Cause::not_supported(format!("status.conditions[{i}].status"), status, &["True"]));
            }
        }
        if has_condition(obj, "Approved") && has_condition(obj, "Denied") {
            causes.push(Cause::invalid(
                "status.conditions",
                "",
                "Approved and Denied conditions are mutually exclusive",
            ));
        }
        if let Some(cert) = decoded(obj, "/status/certificate").filter(|c| !c.is_empty()) {
            let text = String::from_utf8_lossy(&cert);
            if !text.contains("-----BEGIN CERTIFICATE-----") {
                causes.push(Cause::invalid(
                    "status.certificate",
                    "<certificate data>",
                    "must contain at least one CERTIFICATE PEM block",
                ));
            }
            if !has_condition(obj, "Approved") {
                causes.push(Cause::forbidden(
                    "status.certificate",
                    "only an approved request may be issued a certificate",
                ));
            }
        }
        if let Some(old) = old {
            if old.get("spec") != obj.get("spec") {
                causes.push(Cause::forbidden("spec", "updates to spec are forbidden"));
            }
            for kind in APPROVAL {
                if has_condition(old, kind) && !has_condition(obj, kind) {
                    causes.push(Cause::forbidden(
                        "status.conditions",
                        format!("updates may not remove a condition of type {kind:?}"),
                    ));
                }
            }
            let old_cert = decoded(old, "/status/certificate").unwrap_or_default();
            let new_cert = decoded(obj, "/status/certificate").unwrap_or_default();
            if !old_cert.is_empty() && old_cert != new_cert {
                causes.push(Cause::forbidden(
                    "status.certificate",
                    "updates may not modify existing certificate content",
                ));
            }
        }
        causes
    }

    fn prepare_status_update(&self, old: &Value, next: &mut Value) {
        // `/status` is the signer's: the approval conditions stay as `/approval` set them.
        let kept: Vec<Value> = conditions(old).into_iter().filter(|c| APPROVAL.contains(&s(c, "/type"))).collect();
        let mut conds: Vec<Value> =
            conditions(next).into_iter().filter(|c| !APPROVAL.contains(&s(c, "/type"))).collect();
        conds.splice(0..0, kept);
        stamp(old, &mut conds);
        next["status"]["conditions"] = json!(conds);
        if conds.is_empty()
            && let Some(status) = next.get_mut("status").and_then(Value::as_object_mut)
        {
            status.remove("conditions");
        }
    }

    fn columns(&self) -> Columns {
        COLUMNS
    }

    fn cells(&self, csr: &Value) -> Vec<Value> {
        let duration = csr
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_i64)
            .map(crate::registry::print::human_duration)
            .unwrap_or_else(|| "<none>".into());
        vec![
            json!(s(csr, "/metadata/name")),
            json!(age(csr, "/metadata/creationTimestamp")),
            json!(s(csr, "/spec/signerName")),
            json!(s(csr, "/spec/username")),
            json!(duration),
            json!(condition(csr)),
        ]
    }
}

/// Upstream's CONDITION column: the approval, then `Issued` or `Failed`.
fn condition(csr: &Value) -> String {
    let mut parts = Vec::new();
    for kind in ["Approved", "Denied", "Failed"] {
        if has_condition(csr, kind) {
            parts.push(kind.to_owned());
        }
    }
    if parts.is_empty() {
        parts.push("Pending".into());
    }
    if decoded(csr, "/status/certificate").is_some_and(|c| !c.is_empty()) {
        parts.push("Issued".into());
    }
    parts.join(",")
}

/// Sets `lastUpdateTime` and `lastTransitionTime` on conditions that are new or changed.
pub fn stamp(old: &Value, conds: &mut [Value]) {
    let before = conditions(old);
    let now = crate::meta::now_rfc3339();
    for c in conds.iter_mut() {
        let prior = before.iter().find(|o| s(o, "/type") == s(c, "/type"));
        let Some(obj) = c.as_object_mut() else { continue };
        if obj.get("lastUpdateTime").is_none_or(Value::is_null) {
            obj.insert("lastUpdateTime".into(), json!(now));
        }
        if obj.get("lastTransitionTime").is_none_or(Value::is_null) {
            let same =
                prior.filter(|p| s(p, "/status") == obj.get("status").and_then(Value::as_str).unwrap_or_default());
            let at = same.and_then(|p| p.get("lastTransitionTime").cloned()).unwrap_or_else(|| json!(now));
            obj.insert("lastTransitionTime".into(), at);
        }
    }
}

/// Records who asked, from the request's credentials (whatever the client wrote there),
/// and starts with no status.
pub fn set_requester(csr: &mut Value, user: &crate::authn::UserInfo) {
    if !csr.get("spec").is_some_and(Value::is_object) {
        csr["spec"] = json!({});
    }
    let spec = &mut csr["spec"];
    spec["username"] = json!(user.username);
    spec["groups"] = json!(user.groups);
    match user.uid.is_empty() {
        true => _ = spec.as_object_mut().map(|o| o.remove("uid")),
        false => spec["uid"] = json!(user.uid),
    }
    match user.extra.is_empty() {
        true => _ = spec.as_object_mut().map(|o| o.remove("extra")),
        false => spec["extra"] = json!(user.extra),
    }
}

/// The approval conditions of `sent` on `old`: what `/approval` changes, and nothing else.
pub fn with_approval(old: &Value, sent: &Value) -> Value {
    let mut next = old.clone();
    let mut conds = conditions(sent);
    stamp(old, &mut conds);
    if !next.get("status").is_some_and(Value::is_object) {
        next["status"] = json!({});
    }
    next["status"]["conditions"] = json!(conds);
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(request: &str) -> Value {
        json!({"metadata": {"name": "n1"}, "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(request),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"],
        }})
    }

    fn fields(causes: &[Cause]) -> Vec<&str> {
        causes.iter().map(|c| c.field.as_str()).collect()
    }

    #[test]
    fn a_request_must_be_a_signed_csr_with_a_signer_and_known_usages() {
        use rustls_pki_types::pem::PemObject;
        let asked = component_base::pki::Request { common_name: "system:node:n1".into(), ..Default::default() };
        let (pem, _) = component_base::pki::csr(&asked).expect("csr");
        assert!(CsrStrategy.validate(&csr(&pem), None).is_empty());
        // A request whose signature does not verify proves nothing about the key.
        let mut der =
            rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).expect("der").to_vec();
        let last = der.len() - 1;
        der[last] ^= 1;
        let tampered = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        assert_eq!(fields(&CsrStrategy.validate(&csr(&tampered), None)), vec!["spec.request"]);
        assert_eq!(fields(&CsrStrategy.validate(&csr("garbage"), None)), vec!["spec.request"]);
        let mut bad = csr(&pem);
        bad["spec"]["signerName"] = json!("no-slash");
        bad["spec"]["usages"] = json!(["client auth", "client auth", "flying"]);
        bad["spec"]["expirationSeconds"] = json!(60);
        let got = CsrStrategy.validate(&bad, None);
        assert_eq!(
            fields(&got),
            vec!["spec.signerName", "spec.expirationSeconds", "spec.usages[1]", "spec.usages[2]"],
            "{got:?}"
        );
    }

    #[test]
    fn approval_is_final_and_a_certificate_needs_it() {
        let asked = component_base::pki::Request { common_name: "system:node:n1".into(), ..Default::default() };
        let (pem, _) = component_base::pki::csr(&asked).expect("csr");
        let old = csr(&pem);
        let approved =
            with_approval(&old, &json!({"status": {"conditions": [{"type": "Approved", "status": "True"}]}}));
        assert!(CsrStrategy.validate(&approved, Some(&old)).is_empty());
        assert!(approved.pointer("/status/conditions/0/lastTransitionTime").is_some());
        let both = with_approval(
            &approved,
            &json!({"status": {"conditions": [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]}}),
        );
        assert!(!CsrStrategy.validate(&both, Some(&approved)).is_empty());
        let removed = with_approval(&approved, &json!({"status": {"conditions": []}}));
        let got = CsrStrategy.validate(&removed, Some(&approved));
        assert!(got.iter().any(|c| c.message.contains("may not remove")), "{got:?}");
        let mut issued = old.clone();
        issued["status"] =
            json!({"certificate": base64::engine::general_purpose::STANDARD.encode("-----BEGIN CERTIFICATE-----\n")});
        let got = CsrStrategy.validate(&issued, Some(&old));
        assert!(got.iter().any(|c| c.message.contains("only an approved request")), "{got:?}");
        // `/status` cannot approve: the approval conditions stay as they were.
        let mut next = old.clone();
        next["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}]});
        CsrStrategy.prepare_status_update(&old, &mut next);
        assert!(!has_condition(&next, "Approved"));
    }
}
