//! `cordon`, `uncordon` and `drain`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::finish;
use crate::client::{Ctx, Error, Result, is_not_found, with_query};

/// `kubectl cordon|uncordon`.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// The nodes.
    #[arg(required = true)]
    pub nodes: Vec<String>,
}

fn path(node: &str) -> String {
    format!("/api/v1/nodes/{node}")
}

async fn set_unschedulable(ctx: &Ctx, node: &str, value: bool) -> Result<()> {
    let current = ctx.get(&path(node)).await?;
    let now = current.pointer("/spec/unschedulable").and_then(Value::as_bool).unwrap_or(false);
    let word = if value { "cordoned" } else { "uncordoned" };
    if now == value {
        println!("node/{node} already {word}");
        return Ok(());
    }
    let patch = json!({"spec": {"unschedulable": if value { json!(true) } else { Value::Null }}});
    let url = with_query(&path(node), &[("fieldManager", "kubectl-cordon".into())]);
    ctx.patch(&url, "application/strategic-merge-patch+json", &patch).await?;
    println!("node/{node} {word}");
    Ok(())
}

/// Runs `cordon` (`value` true) or `uncordon`.
pub async fn cordon(ctx: &Ctx, args: NodeArgs, value: bool) -> Result<()> {
    let mut errors = Vec::new();
    for node in &args.nodes {
        if let Err(e) = set_unschedulable(ctx, node, value).await {
            errors.push(e);
        }
    }
    finish(errors)
}

/// `kubectl drain`.
#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// The node.
    pub node: String,
    /// Also delete pods no controller will replace.
    #[arg(long)]
    pub force: bool,
    /// Pods of DaemonSets are left alone (none are served here; accepted for scripts).
    #[arg(long)]
    pub ignore_daemonsets: bool,
    /// Also delete pods with emptyDir volumes (their data is lost).
    #[arg(long)]
    pub delete_emptydir_data: bool,
    /// Seconds each pod gets to stop (-1: its own).
    #[arg(long, default_value_t = -1)]
    pub grace_period: i64,
    /// How long to wait for the pods to go (0: forever).
    #[arg(long, default_value = "0s")]
    pub timeout: String,
}

/// Runs `drain`: cordon, then delete the node's pods and wait until they are gone.
pub async fn drain(ctx: &Ctx, args: DrainArgs) -> Result<()> {
    set_unschedulable(ctx, &args.node, true).await?;
    let url = with_query("/api/v1/pods", &[("fieldSelector", format!("spec.nodeName={}", args.node))]);
    let pods = ctx.get(&url).await?;
    let pods: Vec<Value> = pods.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut unmanaged = Vec::new();
    let mut local = Vec::new();
    for p in &pods {
        let name = format!(
            "{}/{}",
            p.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default(),
            p.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
        );
        let controlled = p
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|o| o.iter().any(|r| r.get("controller") == Some(&Value::Bool(true))));
        if !controlled {
            unmanaged.push(name.clone());
        }
        let empty_dir = p
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .is_some_and(|v| v.iter().any(|v| v.get("emptyDir").is_some()));
        if empty_dir {
            local.push(name);
        }
    }
    let mut problems = Vec::new();
    if !unmanaged.is_empty() && !args.force {
        problems.push(format!(
            "cannot delete Pods that declare no controller (use --force to override): {}",
            unmanaged.join(", ")
        ));
    }
    if !local.is_empty() && !args.delete_emptydir_data {
        problems.push(format!(
            "cannot delete Pods with local storage (use --delete-emptydir-data to override): {}",
            local.join(", ")
        ));
    }
    if !problems.is_empty() {
        return Err(Error::Other(anyhow::anyhow!(
            "unable to drain node {:?} due to error: [{}], continuing command...",
            args.node,
            problems.join(", ")
        )));
    }
    if !unmanaged.is_empty() {
        eprintln!("Warning: deleting Pods that declare no controller: {}", unmanaged.join(", "));
    }
    let mut options = json!({"kind": "DeleteOptions", "apiVersion": "v1"});
    if args.grace_period >= 0 {
        options["gracePeriodSeconds"] = json!(args.grace_period);
    }
    let mut waiting = Vec::new();
    for p in &pods {
        let ns = p.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
        let name = p.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let uid = p.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned();
        let path = format!("/api/v1/namespaces/{ns}/pods/{name}");
        println!("evicting pod {ns}/{name}");
        match ctx.delete(&path, &options).await {
            Ok(_) => waiting.push((path, uid, format!("{ns}/{name}"))),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let timeout = crate::cmd::workloads::parse_duration(&args.timeout)?;
    let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
    for (path, uid, name) in waiting {
        loop {
            match ctx.get(&path).await {
                Err(e) if is_not_found(&e) => break,
                // A new pod of the same name is not the one evicted.
                Ok(p) if p.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid.as_str()) => break,
                _ if deadline.is_some_and(|d| Instant::now() > d) => {
                    return Err(Error::Other(anyhow::anyhow!("drain did not complete within {}s", timeout.as_secs())));
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        println!("pod/{} evicted", name.rsplit('/').next().unwrap_or_default());
    }
    println!("node/{} drained", args.node);
    Ok(())
}
