//! `certificate approve|deny NAME...`: sets a CertificateSigningRequest's `Approved` or
//! `Denied` condition through its `approval` subresource, as stock kubectl does (and
//! refuses, as it does, to change a request already decided).

use serde_json::{Value, json};

use crate::client::{Ctx, Error, Result};

/// `kubectl certificate ...`.
#[derive(Debug, clap::Subcommand)]
pub enum CertificateCommand {
    /// Approve a certificate signing request.
    Approve(Decision),
    /// Deny a certificate signing request.
    Deny(Decision),
}

/// The requests to decide.
#[derive(Debug, clap::Args)]
pub struct Decision {
    /// The requests' names.
    #[arg(required = true)]
    names: Vec<String>,
    /// Update the condition even if the request is already decided.
    #[arg(long)]
    force: bool,
}

const PATH: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

/// Runs it.
pub async fn run(ctx: &Ctx, command: &CertificateCommand) -> Result<()> {
    let (decision, kind, reason, verb) = match command {
        CertificateCommand::Approve(d) => (d, "Approved", "KubectlApprove", "approve"),
        CertificateCommand::Deny(d) => (d, "Denied", "KubectlDeny", "deny"),
    };
    for name in &decision.names {
        let mut csr = ctx.get(&format!("{PATH}/{name}")).await?;
        let conditions: Vec<Value> =
            csr.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
        let has = |t: &str| conditions.iter().any(|c| c.get("type").and_then(Value::as_str) == Some(t));
        if has(kind) && !decision.force {
            println!(
                "certificatesigningrequest.certificates.k8s.io/{name} {}",
                if kind == "Approved" { "approved" } else { "denied" }
            );
            continue;
        }
        let other = if kind == "Approved" { "Denied" } else { "Approved" };
        if has(other) && !decision.force {
            return Err(Error::Other(anyhow::anyhow!("certificate signing request {name:?} is already {other}")));
        }
        let mut next = conditions.clone();
        next.retain(|c| c.get("type").and_then(Value::as_str) != Some(kind));
        next.push(json!({
            "type": kind, "status": "True", "reason": reason,
            "message": format!("This CSR was {} by kubectl certificate {verb}.", kind.to_lowercase()),
        }));
        csr["status"]["conditions"] = json!(next);
        ctx.put(&format!("{PATH}/{name}/approval"), &csr).await?;
        println!(
            "certificatesigningrequest.certificates.k8s.io/{name} {}",
            if kind == "Approved" { "approved" } else { "denied" }
        );
    }
    Ok(())
}
