//! Deployments from the tutorials: `run`, `scale`, `rolling-update` (and its `--rollback`),
//! and the `rollout` family. Long work is followed with progress until it is done, times
//! out, or stalls past the deployment's progress deadline.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Target, finish, name_of, targets};
use crate::client::{Ctx, Error, Result, with_query};
use crate::discovery::{Discovery, Resource};
use crate::progress::Progress;

const REVISION: &str = "deployment.kubernetes.io/revision";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// Parses a Go duration (`30s`, `5m`, `1m30s`); a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    component_base::flags::parse_duration(text)
        .map_err(|e| Error::Other(anyhow::anyhow!("invalid duration {text:?}: {e}")))
}

fn deployments(discovery: &Discovery) -> Result<Resource> {
    Ok(discovery.resolve("deployments.apps")?.clone())
}

fn other(message: impl std::fmt::Display) -> Error {
    Error::Other(anyhow::anyhow!("{message}"))
}

fn n(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// Where a deployment's rollout stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Rollout {
    /// Still going: the message kubectl prints, and (done, total) replicas.
    Waiting(String, u64, u64),
    /// Finished.
    Done,
}

/// Reads a deployment's rollout state as `kubectl rollout status` does.
pub fn rollout_state(d: &Value) -> Result<Rollout> {
    let name = name_of(d);
    if let Some(conds) = d.pointer("/status/conditions").and_then(Value::as_array) {
        let stalled = conds.iter().any(|c| {
            c.get("type").and_then(Value::as_str) == Some("Progressing")
                && c.get("reason").and_then(Value::as_str) == Some("ProgressDeadlineExceeded")
        });
        if stalled {
            return Err(other(format!("deployment {name:?} exceeded its progress deadline")));
        }
    }
    let replicas = d.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let updated = n(d, "/status/updatedReplicas");
    let total = n(d, "/status/replicas");
    let available = n(d, "/status/availableReplicas");
    let done = u64::try_from(updated.min(available)).unwrap_or(0);
    let want = u64::try_from(replicas).unwrap_or(0);
    if n(d, "/status/observedGeneration") < n(d, "/metadata/generation") {
        return Ok(Rollout::Waiting("Waiting for deployment spec update to be observed...".into(), done, want));
    }
    if d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
        return Err(other(format!(
            "deployment {name:?} is paused; resume it with kubectl rollout resume deployment/{name}"
        )));
    }
    let message = if updated < replicas {
        format!(
            "Waiting for deployment {name:?} rollout to finish: {updated} out of {replicas} new replicas have been updated..."
        )
    } else if total > updated {
        format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            total - updated
        )
    } else if available < updated {
        format!(
            "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
        )
    } else {
        return Ok(Rollout::Done);
    };
    Ok(Rollout::Waiting(message, done, want))
}

/// Follows a deployment until its rollout is done, with progress.
pub async fn follow(ctx: &Ctx, path: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut progress: Option<Progress> = None;
    loop {
        let d = ctx.get(path).await?;
        let state = match rollout_state(&d) {
            Ok(s) => s,
            Err(e) => {
                if let Some(p) = progress {
                    p.abandon();
                }
                return Err(e);
            }
        };
        match state {
            Rollout::Done => {
                let msg = format!("deployment {:?} successfully rolled out", name_of(&d));
                match progress {
                    Some(p) => p.finish(&msg),
                    None => println!("{msg}"),
                }
                return Ok(());
            }
            Rollout::Waiting(message, done, total) => {
                progress.get_or_insert_with(|| Progress::new(total)).update(done, total, &message);
            }
        }
        if Instant::now() > deadline {
            if let Some(p) = progress {
                p.abandon();
            }
            return Err(other(format!(
                "timed out waiting for the rollout of deployment {:?} after {}s",
                name_of(&d),
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `kubectl run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The name.
    pub name: String,
    /// The container image.
    #[arg(long, required = true)]
    pub image: String,
    /// With replicas, a Deployment labelled `run=NAME` (as kubectl 1.17); without, a Pod.
    #[arg(short, long)]
    pub replicas: Option<i64>,
    /// The container port.
    #[arg(long)]
    pub port: Option<i64>,
    /// Also create a Service on --port in front of it.
    #[arg(long)]
    pub expose: bool,
    /// Environment variables (`K=V`, repeatable).
    #[arg(long)]
    pub env: Vec<String>,
    /// Labels (`k=v,k2=v2`); default `run=NAME`.
    #[arg(short = 'l', long)]
    pub labels: Option<String>,
    /// The pod's restart policy (Always, OnFailure, Never).
    #[arg(long, default_value = "Always")]
    pub restart: String,
    /// The arguments after `--` are the command, not arguments to the image's.
    #[arg(long)]
    pub command: bool,
    /// Follow until every replica is ready; for a pod (`--restart=Never|OnFailure`), until
    /// it has run to its end (or, with `Always`, until it is ready).
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "5m")]
    pub timeout: String,
    /// Print the object instead of creating it (`client`).
    #[arg(long)]
    pub dry_run: Option<String>,
    /// `-o yaml|json|name`.
    #[arg(short, long)]
    pub output: Option<String>,
    /// After `--`: the container's args (or command with --command).
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// The object `run` creates.
pub fn run_object(args: &RunArgs, namespace: &str) -> Result<Value> {
    let mut labels = serde_json::Map::new();
    match &args.labels {
        Some(l) => {
            for pair in l.split(',').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').ok_or_else(|| other(format!("invalid label spec: {pair}")))?;
                labels.insert(k.to_owned(), json!(v));
            }
        }
        None => {
            labels.insert("run".into(), json!(args.name));
        }
    }
    let mut container = json!({"name": args.name, "image": args.image});
    if let Some(p) = args.port {
        container["ports"] = json!([{"containerPort": p}]);
    }
    if !args.env.is_empty() {
        let env: Result<Vec<Value>> = args
            .env
            .iter()
            .map(|e| {
                let (k, v) = e.split_once('=').ok_or_else(|| other(format!("invalid env: {e}")))?;
                Ok(json!({"name": k, "value": v}))
            })
            .collect();
        container["env"] = Value::Array(env?);
    }
    if !args.args.is_empty() {
        container[if args.command { "command" } else { "args" }] = json!(args.args);
    }
    if !matches!(args.restart.as_str(), "Always" | "OnFailure" | "Never") {
        return Err(other(format!("invalid restart policy: {}", args.restart)));
    }
    Ok(match args.replicas {
        Some(replicas) => {
            if replicas < 0 {
                return Err(other("--replicas must be 0 or more"));
            }
            if args.restart != "Always" {
                return Err(other("a deployment's pods must have --restart=Always"));
            }
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": args.name, "namespace": namespace, "labels": labels},
                "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}
            })
        }
        None => json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": args.name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [container], "restartPolicy": args.restart}
        }),
    })
}

/// Runs `run`.
pub async fn run(ctx: &Ctx, args: RunArgs) -> Result<()> {
    let obj = run_object(&args, &ctx.namespace)?;
    let discovery = Discovery::fetch(ctx).await?;
    let resource =
        discovery.by_kind(obj["apiVersion"].as_str().unwrap_or_default(), obj["kind"].as_str().unwrap_or_default())?;
    if args.expose {
        // The service first, as stock kubectl creates it.
        let Some(port) = args.port else { return Err(other("--port must be set when exposing a service")) };
        let expose = super::expose::ExposeArgs {
            port: Some(port),
            protocol: "TCP".into(),
            dry_run: args.dry_run.clone(),
            output: args.output.clone(),
            ..Default::default()
        };
        let service = super::expose::service_for(resource.kind.as_str(), &obj, &expose)?;
        super::expose::create_service(ctx, &discovery, &service, &expose, "created").await?;
    }
    if args.dry_run.is_some() {
        let format = crate::print::Format::parse(args.output.as_deref().or(Some("yaml")))?;
        print!("{}", crate::print::objects(&format, &[(resource, obj)], true)?);
        return Ok(());
    }
    let url = with_query(&resource.collection(Some(&ctx.namespace)), &[("fieldManager", "kubectl-run".into())]);
    let created = ctx.post(&url, &obj).await?;
    match args.output.as_deref() {
        Some("name") => println!("{}", crate::print::name_of(resource, &created)),
        _ => println!("{} created", crate::print::name_of(resource, &created)),
    }
    let timeout = parse_duration(&args.timeout)?;
    match resource.kind.as_str() {
        "Deployment" if args.wait => follow(ctx, &resource.object(&ctx.namespace, &args.name), timeout).await?,
        "Pod" if args.wait => {
            wait_pod(ctx, &resource.object(&ctx.namespace, &args.name), &args.restart, timeout).await?
        }
        _ => {}
    }
    Ok(())
}

/// Waits for a pod: to its end (`Succeeded`/`Failed`) unless it restarts `Always`, else
/// until it is Ready. A pod that failed is an error.
async fn wait_pod(ctx: &Ctx, path: &str, restart: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let pod = ctx.get(path).await?;
        let phase = pod["status"]["phase"].as_str().unwrap_or_default();
        let ready = pod["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
        match phase {
            "Succeeded" => return Ok(()),
            "Failed" => return Err(other(format!("pod {:?} failed", name_of(&pod)))),
            _ if restart == "Always" && ready => return Ok(()),
            _ => {}
        }
        if Instant::now() > deadline {
            return Err(other(format!("timed out waiting for pod {:?} after {}s", name_of(&pod), timeout.as_secs())));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `kubectl scale`.
#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// NAME (a deployment), TYPE NAME or TYPE/NAME.
    pub args: Vec<String>,
    /// The new number of replicas.
    #[arg(long, required = true)]
    pub replicas: i64,
    /// Only scale if the current count is this (a precondition).
    #[arg(long, default_value_t = -1)]
    pub current_replicas: i64,
    /// Files naming what to scale.
    #[arg(short, long = "filename")]
    pub filename: Vec<String>,
    /// Follow until the new count is ready.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "5m")]
    pub timeout: String,
}

/// Runs `scale`.
pub async fn scale(ctx: &Ctx, args: ScaleArgs) -> Result<()> {
    if args.replicas < 0 {
        return Err(other("The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0"));
    }
    let discovery = Discovery::fetch(ctx).await?;
    let mut list: Vec<(Resource, String, String)> = Vec::new();
    if !args.filename.is_empty() {
        for doc in crate::manifest::read(&args.filename, false)? {
            let o = &doc.object;
            let r = discovery
                .by_kind(o["apiVersion"].as_str().unwrap_or_default(), o["kind"].as_str().unwrap_or_default())?;
            list.push((r.clone(), super::namespace_of(ctx, o).to_owned(), name_of(o).to_owned()));
        }
    } else if args.args.len() == 1 && !args.args[0].contains('/') {
        // A bare name is a deployment, as in the tutorials.
        list.push((deployments(&discovery)?, ctx.namespace.clone(), args.args[0].clone()));
    } else {
        for Target { resource, name } in targets(&discovery, &args.args)? {
            let name = name.ok_or_else(|| other("resource(s) were provided, but no name was specified"))?;
            list.push((resource, ctx.namespace.clone(), name));
        }
    }
    if list.is_empty() {
        return Err(other("You must provide one or more resources by argument or filename."));
    }
    let mut errors = Vec::new();
    for (resource, ns, name) in list {
        let path = format!("{}/scale", resource.object(&ns, &name));
        // The precondition is on the count, as stock's: a write that loses a race to
        // another writer (the controllers update status all the time) reads again and
        // re-checks before trying again.
        let result = async {
            let mut attempt = 0;
            loop {
                let mut scale = ctx.get(&path).await?;
                if args.current_replicas >= 0 && n(&scale, "/spec/replicas") != args.current_replicas {
                    return Err(other(format!(
                        "Expected replicas to be {}, was {}",
                        args.current_replicas,
                        n(&scale, "/spec/replicas")
                    )));
                }
                scale["spec"]["replicas"] = json!(args.replicas);
                match ctx.put(&path, &scale).await {
                    Err(e) if e.code() == Some(409) && attempt < 5 => attempt += 1,
                    other => return other,
                }
            }
        }
        .await;
        match result {
            Ok(_) => {
                println!("{} scaled", crate::print::name_of(&resource, &json!({"metadata": {"name": name}})));
                if args.wait
                    && resource.kind == "Deployment"
                    && let Err(e) = follow(ctx, &resource.object(&ns, &name), parse_duration(&args.timeout)?).await
                {
                    errors.push(e);
                }
            }
            Err(e) => errors.push(e),
        }
    }
    finish(errors)
}

/// `kubectl rolling-update`.
#[derive(Debug, clap::Args)]
pub struct RollingUpdateArgs {
    /// The deployment.
    pub name: String,
    /// The new image.
    #[arg(long, required_unless_present = "rollback")]
    pub image: Option<String>,
    /// Which container gets the image (needed when there are several).
    #[arg(long)]
    pub container: Option<String>,
    /// How long each new pod must be ready before the next step (sets minReadySeconds for the update).
    #[arg(long)]
    pub update_period: Option<String>,
    /// How long to wait for the rollout.
    #[arg(long, default_value = "5m")]
    pub timeout: String,
    /// Abort the update in progress, or undo the last one, and follow that.
    #[arg(long, conflicts_with = "image")]
    pub rollback: bool,
}

/// Runs `rolling-update`.
pub async fn rolling_update(ctx: &Ctx, args: RollingUpdateArgs) -> Result<()> {
    let discovery = Discovery::fetch(ctx).await?;
    let resource = deployments(&discovery)?;
    let path = resource.object(&ctx.namespace, &args.name);
    let timeout = parse_duration(&args.timeout)?;
    if args.rollback {
        undo(ctx, &resource, &args.name, 0).await?;
        return follow(ctx, &path, timeout).await;
    }
    let image = args.image.clone().unwrap_or_default();
    let d = ctx.get(&path).await?;
    let containers: Vec<String> = d
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let container = match &args.container {
        Some(c) if containers.contains(c) => c.clone(),
        Some(c) => {
            return Err(other(format!(
                "deployment {:?} has no container {c:?} (it has {})",
                args.name,
                containers.join(", ")
            )));
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Err(other(format!(
                "deployment {:?} has several containers ({}): choose one with --container",
                args.name,
                containers.join(", ")
            )));
        }
    };
    let previous_min_ready = d.pointer("/spec/minReadySeconds").cloned();
    let cause = format!("kubectl rolling-update {} --image={image}", args.name);
    let mut patch = json!({
        "metadata": {"annotations": {CHANGE_CAUSE: cause}},
        "spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}
    });
    if let Some(period) = &args.update_period {
        patch["spec"]["minReadySeconds"] = json!(parse_duration(period)?.as_secs());
    }
    let url = with_query(&path, &[("fieldManager", "kubectl-rolling-update".into())]);
    ctx.patch(&url, "application/strategic-merge-patch+json", &patch).await?;
    println!("{} rolling out to {image}", crate::print::name_of(&resource, &d));
    let followed = follow(ctx, &path, timeout).await;
    if args.update_period.is_some() {
        let restore = json!({"spec": {"minReadySeconds": previous_min_ready.unwrap_or(json!(0))}});
        ctx.patch(&url, "application/merge-patch+json", &restore).await?;
    }
    followed
}

/// The ReplicaSets a deployment owns, with their revisions.
async fn history(ctx: &Ctx, d: &Value) -> Result<Vec<(i64, Value)>> {
    let ns = d.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or(&ctx.namespace);
    let uid = d.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
    let selector = super::selector_of(d);
    let url = with_query(&format!("/apis/apps/v1/namespaces/{ns}/replicasets"), &[("labelSelector", selector)]);
    let list = ctx.get(&url).await?;
    let mut out: Vec<(i64, Value)> = list
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|rs| {
            rs.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|o| o.iter().any(|r| r.get("uid").and_then(Value::as_str) == Some(uid)))
        })
        .filter_map(|rs| {
            let rev = rs
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(REVISION))
                .and_then(Value::as_str)?
                .parse()
                .ok()?;
            Some((rev, rs.clone()))
        })
        .collect();
    out.sort_by_key(|(r, _)| *r);
    Ok(out)
}

/// Rolls a deployment back to `to_revision` (0: the one before the current).
async fn undo(ctx: &Ctx, resource: &Resource, name: &str, to_revision: i64) -> Result<()> {
    let path = resource.object(&ctx.namespace, name);
    let d = ctx.get(&path).await?;
    let revisions = history(ctx, &d).await?;
    let current: i64 = d
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let target = if to_revision > 0 {
        revisions
            .iter()
            .find(|(r, _)| *r == to_revision)
            .ok_or_else(|| other(format!("unable to find the specified revision {to_revision}")))?
    } else {
        let previous = if current > 0 {
            revisions.iter().rev().find(|(r, _)| *r < current)
        } else {
            revisions.iter().rev().nth(1)
        };
        previous.ok_or_else(|| other(format!("no rollout history found for deployment {name:?}")))?
    };
    let mut template = target.1.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    if let Some(labels) = template.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove("pod-template-hash");
    }
    let mut live = d.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    if let Some(labels) = live.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove("pod-template-hash");
    }
    if template == live {
        println!(
            "{} skipped rollback (current template already matches revision {})",
            crate::print::name_of(resource, &d),
            target.0
        );
        return Ok(());
    }
    let mut ops = vec![json!({"op": "replace", "path": "/spec/template", "value": template})];
    let cause = target.1.pointer("/metadata/annotations").and_then(|a| a.get(CHANGE_CAUSE)).cloned();
    if d.pointer("/metadata/annotations").is_some() {
        match cause {
            Some(c) => {
                ops.push(json!({"op": "add", "path": "/metadata/annotations/kubernetes.io~1change-cause", "value": c}))
            }
            None if d.pointer("/metadata/annotations").and_then(|a| a.get(CHANGE_CAUSE)).is_some() => {
                ops.push(json!({"op": "remove", "path": "/metadata/annotations/kubernetes.io~1change-cause"}));
            }
            None => {}
        }
    }
    let url = with_query(&path, &[("fieldManager", "kubectl-rollout".into())]);
    ctx.patch(&url, "application/json-patch+json", &Value::Array(ops)).await?;
    println!("{} rolled back", crate::print::name_of(resource, &d));
    Ok(())
}

/// `kubectl rollout`.
#[derive(Debug, clap::Subcommand)]
pub enum RolloutCommand {
    /// Follow a rollout until it is done.
    Status(RolloutArgs),
    /// The revisions of a deployment.
    History(RolloutArgs),
    /// Roll back to the previous (or a given) revision.
    Undo(RolloutArgs),
    /// Stop rolling out changes.
    Pause(RolloutArgs),
    /// Resume a paused deployment.
    Resume(RolloutArgs),
    /// Replace every pod, one rollout step at a time.
    Restart(RolloutArgs),
}

/// Arguments of `rollout` commands.
#[derive(Debug, clap::Args)]
pub struct RolloutArgs {
    /// deployment/NAME or deployment NAME.
    pub args: Vec<String>,
    /// The revision (`undo`, `history`).
    #[arg(long, default_value_t = 0)]
    pub to_revision: i64,
    /// The revision to show (`history`).
    #[arg(long, default_value_t = 0)]
    pub revision: i64,
    /// How long `status` waits.
    #[arg(long, default_value = "10m")]
    pub timeout: String,
    /// `status`: follow (default) or print once.
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
    pub watch: bool,
}

/// Runs a `rollout` command.
pub async fn rollout(ctx: &Ctx, command: RolloutCommand) -> Result<()> {
    let discovery = Discovery::fetch(ctx).await?;
    let (verb, args) = match &command {
        RolloutCommand::Status(a) => ("status", a),
        RolloutCommand::History(a) => ("history", a),
        RolloutCommand::Undo(a) => ("undo", a),
        RolloutCommand::Pause(a) => ("pause", a),
        RolloutCommand::Resume(a) => ("resume", a),
        RolloutCommand::Restart(a) => ("restart", a),
    };
    let mut errors = Vec::new();
    for Target { resource, name } in targets(&discovery, &args.args)? {
        let Some(name) = name else { return Err(other("required resource not specified")) };
        if resource.kind != "Deployment" {
            errors.push(other(format!(
                "no {verb} support for {}s; only deployments roll out",
                resource.kind.to_lowercase()
            )));
            continue;
        }
        let path = resource.object(&ctx.namespace, &name);
        let url = with_query(&path, &[("fieldManager", "kubectl-rollout".into())]);
        let result = match verb {
            "status" if args.watch => follow(ctx, &path, parse_duration(&args.timeout)?).await,
            "status" => match rollout_state(&ctx.get(&path).await?)? {
                Rollout::Done => {
                    println!("deployment {name:?} successfully rolled out");
                    Ok(())
                }
                Rollout::Waiting(m, _, _) => {
                    println!("{m}");
                    Ok(())
                }
            },
            "history" => print_history(ctx, &resource, &path, args.revision).await,
            "undo" => undo(ctx, &resource, &name, args.to_revision).await,
            "pause" | "resume" => {
                let paused = verb == "pause";
                let d = ctx.get(&path).await?;
                if d.pointer("/spec/paused").and_then(Value::as_bool).unwrap_or(false) == paused {
                    println!("{} already {verb}d", crate::print::name_of(&resource, &d));
                    Ok(())
                } else {
                    ctx.patch(&url, "application/merge-patch+json", &json!({"spec": {"paused": paused}})).await.map(
                        |d| {
                            println!("{} {verb}d", crate::print::name_of(&resource, &d));
                        },
                    )
                }
            }
            _ => {
                let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
                let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}});
                ctx.patch(&url, "application/strategic-merge-patch+json", &patch).await.map(|d| {
                    println!("{} restarted", crate::print::name_of(&resource, &d));
                })
            }
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
    finish(errors)
}

async fn print_history(ctx: &Ctx, resource: &Resource, path: &str, revision: i64) -> Result<()> {
    let d = ctx.get(path).await?;
    let revisions = history(ctx, &d).await?;
    if revision > 0 {
        let (_, rs) = revisions
            .iter()
            .find(|(r, _)| *r == revision)
            .ok_or_else(|| other(format!("unable to find the specified revision {revision}")))?;
        println!("{} with revision #{revision}", crate::print::name_of(resource, &d));
        let template = rs.pointer("/spec/template").cloned().unwrap_or(Value::Null);
        print!(
            "Pod Template:\n{}",
            crate::yaml::to_string(&template).lines().map(|l| format!("  {l}\n")).collect::<String>()
        );
        return Ok(());
    }
    println!("{}", crate::print::name_of(resource, &d));
    let mut text = String::from("REVISION\tCHANGE-CAUSE\n");
    for (rev, rs) in &revisions {
        let cause = rs
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(CHANGE_CAUSE))
            .and_then(Value::as_str)
            .unwrap_or("<none>");
        text.push_str(&format!("{rev}\t{cause}\n"));
    }
    print!("{}", crate::tabwriter::format(&text, 0, 2));
    println!();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn run_makes_a_deployment_with_replicas_and_a_pod_without() {
        let cli = Cli::parse_from([
            "run",
            "web",
            "--image=nginx",
            "--replicas=3",
            "--port=80",
            "--env=A=1",
            "--",
            "sh",
            "-c",
            "x",
        ]);
        let d = run_object(&cli.run, "default").expect("deployment");
        assert_eq!(d["kind"], "Deployment");
        assert_eq!(d["spec"]["selector"]["matchLabels"], json!({"run": "web"}));
        assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["args"], json!(["sh", "-c", "x"]));
        assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["env"], json!([{"name": "A", "value": "1"}]));
        let cli = Cli::parse_from(["run", "solo", "--image=nginx", "--restart=Never"]);
        let p = run_object(&cli.run, "default").expect("pod");
        assert_eq!((p["kind"].as_str(), p["spec"]["restartPolicy"].as_str()), (Some("Pod"), Some("Never")));
    }

    #[test]
    fn rollout_state_reads_like_rollout_status() {
        let d = |updated: i64, total: i64, available: i64| {
            json!({"metadata": {"name": "web", "generation": 2}, "spec": {"replicas": 4},
                   "status": {"observedGeneration": 2, "updatedReplicas": updated, "replicas": total, "availableReplicas": available}})
        };
        assert_eq!(
            rollout_state(&d(1, 5, 4)).unwrap(),
            Rollout::Waiting(
                "Waiting for deployment \"web\" rollout to finish: 1 out of 4 new replicas have been updated...".into(),
                1,
                4
            )
        );
        assert!(
            matches!(rollout_state(&d(4, 5, 4)).unwrap(), Rollout::Waiting(m, 4, 4) if m.contains("1 old replicas are pending termination"))
        );
        assert!(
            matches!(rollout_state(&d(4, 4, 3)).unwrap(), Rollout::Waiting(m, 3, 4) if m.contains("3 of 4 updated replicas are available"))
        );
        assert_eq!(rollout_state(&d(4, 4, 4)).unwrap(), Rollout::Done);
        let mut stalled = d(1, 5, 4);
        stalled["status"]["conditions"] =
            json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]);
        assert_eq!(
            rollout_state(&stalled).unwrap_err().to_string(),
            "error: deployment \"web\" exceeded its progress deadline"
        );
    }
}
