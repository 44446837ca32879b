//! `logs`: a pod's (or a deployment's first pod's) container logs, followed with `-f`.

use futures::StreamExt;
use serde_json::Value;

use crate::client::{Ctx, Error, Result, with_query};

/// `kubectl logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// POD, TYPE/NAME (deploy/web), or POD CONTAINER.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// The container.
    #[arg(short, long)]
    pub container: Option<String>,
    /// Keep streaming.
    #[arg(short, long)]
    pub follow: bool,
    /// The last N lines (-1: all).
    #[arg(long, default_value_t = -1)]
    pub tail: i64,
    /// The previous instance of the container.
    #[arg(short, long)]
    pub previous: bool,
    /// Prefix lines with timestamps.
    #[arg(long)]
    pub timestamps: bool,
}

/// The pod a `logs` argument means.
async fn pod_of(ctx: &Ctx, arg: &str) -> Result<String> {
    let Some((kind, name)) = arg.split_once('/') else { return Ok(arg.to_owned()) };
    let kind = kind.to_lowercase();
    let path = match kind.as_str() {
        "pod" | "pods" | "po" => return Ok(name.to_owned()),
        "deploy" | "deployment" | "deployments" => {
            format!("/apis/apps/v1/namespaces/{}/deployments/{name}", ctx.namespace)
        }
        "rs" | "replicaset" | "replicasets" => format!("/apis/apps/v1/namespaces/{}/replicasets/{name}", ctx.namespace),
        other => {
            return Err(Error::Other(anyhow::anyhow!(
                "cannot get the logs of a {other}: pods, deployments and replicasets have logs"
            )));
        }
    };
    let owner = ctx.get(&path).await?;
    let selector = super::selector_of(&owner);
    let url = with_query(&format!("/api/v1/namespaces/{}/pods", ctx.namespace), &[("labelSelector", selector)]);
    let pods = ctx.get(&url).await?;
    let items = pods.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    let running = items.iter().find(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some("Running"));
    let pod = running.or(items.first()).ok_or_else(|| Error::Other(anyhow::anyhow!("no pods found for {arg}")))?;
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
    if items.len() > 1 {
        eprintln!("Found {} pods, using pod/{name}", items.len());
    }
    Ok(name)
}

/// Runs `logs`.
pub async fn logs(ctx: &Ctx, args: LogsArgs) -> Result<()> {
    let pod = pod_of(ctx, &args.args[0]).await?;
    let container = args.container.clone().or_else(|| args.args.get(1).cloned());
    let mut params = vec![
        ("container", container.unwrap_or_default()),
        ("follow", if args.follow { "true".into() } else { String::new() }),
        ("previous", if args.previous { "true".into() } else { String::new() }),
        ("timestamps", if args.timestamps { "true".into() } else { String::new() }),
    ];
    if args.tail >= 0 {
        params.push(("tailLines", args.tail.to_string()));
    }
    let url = with_query(&format!("/api/v1/namespaces/{}/pods/{pod}/log", ctx.namespace), &params);
    let mut lines = ctx.lines(&url, Some("*/*")).await?;
    while let Some(line) = lines.next().await {
        println!("{}", line.map_err(|e| Error::Other(e.into()))?);
    }
    Ok(())
}
