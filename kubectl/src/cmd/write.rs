//! Commands that write objects: `apply` (client- and server-side), `delete`, `edit`,
//! `patch`, `label`, `annotate` (`create` is in [`super::create`]).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Target, check_namespace, finish, items, name_of, namespace_of, targets};
use crate::client::{Ctx, Error, Result, is_not_found, with_query};
use crate::discovery::{Discovery, Resource};
use crate::manifest;
use crate::print;
use crate::threeway::{self, LAST_APPLIED};

/// Prints what happened to an object: `-o name` prints only the name.
pub(super) fn report(output: Option<&str>, resource: &Resource, obj: &Value, verb: &str) {
    let name = print::name_of(resource, obj);
    match output {
        Some("name") => println!("{name}"),
        _ => println!("{name} {verb}"),
    }
}

pub(super) fn s<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// `kubectl apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Files, directories or `-`.
    #[arg(short, long = "filename", required = true)]
    pub filename: Vec<String>,
    /// Walk directories given with -f.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Apply on the server (server-side apply) instead of computing a patch here.
    #[arg(long)]
    pub server_side: bool,
    /// With --server-side: take fields other managers own.
    #[arg(long)]
    pub force_conflicts: bool,
    /// The field manager's name.
    #[arg(long)]
    pub field_manager: Option<String>,
    /// `-o name` prints only the names.
    #[arg(short, long)]
    pub output: Option<String>,
}

/// Runs `apply`.
pub async fn apply(ctx: &Ctx, args: ApplyArgs) -> Result<()> {
    let discovery = Discovery::fetch(ctx).await?;
    let docs = manifest::read(&args.filename, args.recursive)?;
    let mut errors = Vec::new();
    for doc in docs {
        let obj = doc.object;
        let resource = match discovery.by_kind(s(&obj, "apiVersion"), s(&obj, "kind")) {
            Ok(r) => r,
            Err(e) => {
                errors.push(Error::Other(anyhow::anyhow!(
                    "{}: {}",
                    doc.source,
                    e.to_string().trim_start_matches("error: ")
                )));
                continue;
            }
        };
        check_namespace(ctx, resource, &obj)?;
        let result = if args.server_side {
            server_side(ctx, resource, &obj, &args).await
        } else {
            client_side(ctx, resource, &obj, &args).await
        };
        match result {
            Ok((applied, verb)) => report(args.output.as_deref(), resource, &applied, verb),
            Err(e) => errors.push(e),
        }
    }
    finish(errors)
}

async fn server_side(ctx: &Ctx, resource: &Resource, obj: &Value, args: &ApplyArgs) -> Result<(Value, &'static str)> {
    let path = resource.object(namespace_of(ctx, obj), name_of(obj));
    let url = with_query(
        &path,
        &[
            ("fieldManager", args.field_manager.clone().unwrap_or_else(|| "kubectl".into())),
            ("fieldValidation", "Strict".into()),
            ("force", args.force_conflicts.to_string()),
        ],
    );
    match ctx.patch(&url, "application/apply-patch+yaml", obj).await {
        Ok(v) => Ok((v, "serverside-applied")),
        Err(Error::Api { code: 409, reason, message }) if message.starts_with("Apply failed") => {
            Err(Error::Other(anyhow::anyhow!(
                "{message}\nPlease review the fields above--they currently have other managers. Either apply again with --force-conflicts to take them over, or remove them from your manifest. ({reason})"
            )))
        }
        Err(e) => Err(e),
    }
}

async fn client_side(ctx: &Ctx, resource: &Resource, obj: &Value, args: &ApplyArgs) -> Result<(Value, &'static str)> {
    let ns = namespace_of(ctx, obj).to_owned();
    let path = resource.object(&ns, name_of(obj));
    let manager = args.field_manager.clone().unwrap_or_else(|| "kubectl-client-side-apply".into());
    let modified = threeway::annotated(obj);
    let current = match ctx.get(&path).await {
        Ok(c) => c,
        Err(e) if is_not_found(&e) => {
            let url = with_query(
                &resource.collection(Some(&ns)),
                &[("fieldManager", manager), ("fieldValidation", "Strict".into())],
            );
            return Ok((ctx.post(&url, &modified).await?, "created"));
        }
        Err(e) => return Err(e),
    };
    let original: Option<Value> = current
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .and_then(|t| serde_json::from_str(t).ok());
    if original.is_none() {
        eprintln!(
            "Warning: resource {} is missing the {LAST_APPLIED} annotation which is required by kubectl apply. kubectl apply should only be used on resources created declaratively by either kubectl create --save-config or kubectl apply. The missing annotation will be patched automatically.",
            resource.qualified() + "/" + name_of(obj)
        );
    }
    let patch = threeway::three_way(original.as_ref(), &modified, &current);
    if patch.as_object().is_some_and(serde_json::Map::is_empty) {
        return Ok((current, "unchanged"));
    }
    let url = with_query(&path, &[("fieldManager", manager), ("fieldValidation", "Strict".into())]);
    Ok((ctx.patch(&url, "application/strategic-merge-patch+json", &patch).await?, "configured"))
}

/// `kubectl delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// TYPE [NAME...] or TYPE/NAME...
    pub args: Vec<String>,
    /// Files, directories or `-`.
    #[arg(short, long = "filename")]
    pub filename: Vec<String>,
    /// Walk directories given with -f.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Every object of the type in the namespace.
    #[arg(long)]
    pub all: bool,
    /// Seconds pods get to stop (-1: the pod's own).
    #[arg(long, default_value_t = -1)]
    pub grace_period: i64,
    /// Delete now (grace period 0).
    #[arg(long)]
    pub now: bool,
    /// Dependents: background, foreground or orphan.
    #[arg(long, default_value = "background")]
    pub cascade: String,
    /// Wait until the objects are gone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub wait: bool,
    /// A missing object is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// How long to wait (e.g. 60s); 0 waits a week, as stock does.
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// `-o name` prints only the names.
    #[arg(short, long)]
    pub output: Option<String>,
}

/// Runs `delete`.
pub async fn delete(ctx: &Ctx, args: DeleteArgs) -> Result<()> {
    let discovery = Discovery::fetch(ctx).await?;
    let policy = match args.cascade.as_str() {
        "background" | "true" => "Background",
        "foreground" => "Foreground",
        "orphan" | "false" => "Orphan",
        other => {
            return Err(Error::Other(anyhow::anyhow!(
                "invalid cascade value ({other}). Must be \"background\", \"foreground\", or \"orphan\""
            )));
        }
    };
    let mut options = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": policy});
    let grace = if args.now { 0 } else { args.grace_period };
    if grace >= 0 {
        options["gracePeriodSeconds"] = json!(grace);
    }
    // What to delete: (resource, namespace, name).
    let mut victims: Vec<(Resource, String, String)> = Vec::new();
    if !args.filename.is_empty() {
        for doc in manifest::read(&args.filename, args.recursive)? {
            let r = discovery.by_kind(s(&doc.object, "apiVersion"), s(&doc.object, "kind"))?.clone();
            victims.push((r, namespace_of(ctx, &doc.object).to_owned(), name_of(&doc.object).to_owned()));
        }
    } else {
        for Target { resource, name } in targets(&discovery, &args.args)? {
            match name {
                Some(n) => victims.push((resource, ctx.namespace.clone(), n)),
                None if args.all || args.selector.is_some() => {
                    let url = with_query(
                        &resource.collection(Some(&ctx.namespace)),
                        &[("labelSelector", args.selector.clone().unwrap_or_default())],
                    );
                    for obj in items(&resource, ctx.get(&url).await?) {
                        victims.push((resource.clone(), namespace_of(ctx, &obj).to_owned(), name_of(&obj).to_owned()));
                    }
                }
                None => {
                    return Err(Error::Other(anyhow::anyhow!("resource(s) were provided, but no name was specified")));
                }
            }
        }
        if victims.is_empty() {
            eprintln!("No resources found");
            return Ok(());
        }
    }
    let mut errors = Vec::new();
    let mut deleted = Vec::new();
    for (resource, ns, name) in victims {
        let path = resource.object(&ns, &name);
        match ctx.delete(&path, &options).await {
            Ok(_) => {
                let obj = json!({"metadata": {"name": name}});
                match args.output.as_deref() {
                    Some("name") => println!("{}", print::name_of(&resource, &obj)),
                    _ => println!("{} \"{name}\" deleted", resource.kind_prefix()),
                }
                deleted.push(path);
            }
            Err(e) if args.ignore_not_found && is_not_found(&e) => {}
            Err(e) => errors.push(e),
        }
    }
    if args.wait && !deleted.is_empty() {
        let timeout = crate::cmd::workloads::parse_duration(&args.timeout)?;
        let timeout = if timeout.is_zero() { Duration::from_secs(7 * 24 * 3600) } else { timeout };
        let deadline = Instant::now() + timeout;
        for path in deleted {
            loop {
                match ctx.get(&path).await {
                    Err(e) if is_not_found(&e) => break,
                    _ if Instant::now() > deadline => {
                        errors.push(Error::Other(anyhow::anyhow!("timed out waiting for the deletion of {path}")));
                        break;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            }
        }
    }
    finish(errors)
}

/// `kubectl patch`.
#[derive(Debug, clap::Args)]
pub struct PatchArgs {
    /// TYPE NAME or TYPE/NAME.
    pub args: Vec<String>,
    /// The patch.
    #[arg(short, long)]
    pub patch: String,
    /// strategic, merge or json.
    #[arg(long = "type", default_value = "strategic")]
    pub patch_type: String,
    /// Patch a subresource (status, scale).
    #[arg(long)]
    pub subresource: Option<String>,
}

/// Runs `patch`.
pub async fn patch(ctx: &Ctx, args: PatchArgs) -> Result<()> {
    let discovery = Discovery::fetch(ctx).await?;
    let content_type = match args.patch_type.as_str() {
        "strategic" => "application/strategic-merge-patch+json",
        "merge" => "application/merge-patch+json",
        "json" => "application/json-patch+json",
        other => {
            return Err(Error::Other(anyhow::anyhow!("--type must be one of [json merge strategic], not {other:?}")));
        }
    };
    let body: Value = serde_saphyr::from_str(&args.patch)
        .map_err(|e| Error::Other(anyhow::anyhow!("unable to parse {:?}: {e}", args.patch)))?;
    let mut errors = Vec::new();
    for Target { resource, name } in targets(&discovery, &args.args)? {
        let Some(name) = name else {
            return Err(Error::Other(anyhow::anyhow!("resource name may not be empty")));
        };
        let mut path = resource.object(&ctx.namespace, &name);
        if let Some(sub) = &args.subresource {
            path = format!("{path}/{sub}");
        }
        let before = ctx.get(&path).await;
        let url = with_query(&path, &[("fieldManager", "kubectl-patch".into())]);
        match ctx.patch(&url, content_type, &body).await {
            Ok(after) => {
                let same = before.as_ref().ok().and_then(|b| b.pointer("/metadata/resourceVersion"))
                    == after.pointer("/metadata/resourceVersion");
                report(None, &resource, &after, if same { "patched (no change)" } else { "patched" });
            }
            Err(e) => errors.push(e),
        }
    }
    finish(errors)
}

/// `kubectl label` and `kubectl annotate`.
#[derive(Debug, clap::Args)]
pub struct MetaArgs {
    /// TYPE NAME... or TYPE/NAME..., then KEY=VALUE or KEY- ...
    pub args: Vec<String>,
    /// Replace values that are already set.
    #[arg(long)]
    pub overwrite: bool,
    /// Every object of the type.
    #[arg(long)]
    pub all: bool,
    /// Label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

/// Runs `label` (`field` = `labels`) or `annotate` (`annotations`).
pub async fn label(ctx: &Ctx, args: MetaArgs, field: &str) -> Result<()> {
    let discovery = Discovery::fetch(ctx).await?;
    let (changes, names): (Vec<String>, Vec<String>) = args
        .args
        .iter()
        .cloned()
        .partition(|a| a.contains('=') || (a.ends_with('-') && !a.contains('/') && a.len() > 1));
    if changes.is_empty() {
        return Err(Error::Other(anyhow::anyhow!("at least one {} update is required", &field[..field.len() - 1])));
    }
    let mut patch = serde_json::Map::new();
    for c in &changes {
        match c.split_once('=') {
            Some((k, v)) => patch.insert(k.to_owned(), json!(v)),
            None => patch.insert(c.trim_end_matches('-').to_owned(), Value::Null),
        };
    }
    let mut list = Vec::new();
    for Target { resource, name } in targets(&discovery, &names)? {
        match name {
            Some(n) => list.push((resource, n)),
            None => {
                let url = with_query(
                    &resource.collection(Some(&ctx.namespace)),
                    &[("labelSelector", args.selector.clone().unwrap_or_default())],
                );
                for obj in items(&resource, ctx.get(&url).await?) {
                    list.push((resource.clone(), name_of(&obj).to_owned()));
                }
            }
        }
    }
    let verb = if field == "labels" { "labeled" } else { "annotated" };
    let mut errors = Vec::new();
    for (resource, name) in list {
        let path = resource.object(&ctx.namespace, &name);
        let current = match ctx.get(&path).await {
            Ok(c) => c,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let existing = current.pointer(&format!("/metadata/{field}")).and_then(Value::as_object);
        if !args.overwrite {
            let clash = patch
                .iter()
                .find(|(k, v)| !v.is_null() && existing.and_then(|m| m.get(*k)).is_some_and(|old| old != *v));
            if let Some((k, _)) = clash {
                errors.push(Error::Other(anyhow::anyhow!(
                    "'{k}' already has a value ({}), and --overwrite is false",
                    existing.and_then(|m| m.get(k)).and_then(Value::as_str).unwrap_or_default()
                )));
                continue;
            }
        }
        let body = json!({"metadata": {field: patch}});
        let manager = if field == "labels" { "kubectl-label" } else { "kubectl-annotate" };
        match ctx
            .patch(&with_query(&path, &[("fieldManager", manager.into())]), "application/merge-patch+json", &body)
            .await
        {
            Ok(after) => report(None, &resource, &after, verb),
            Err(e) => errors.push(e),
        }
    }
    finish(errors)
}

/// `kubectl edit`.
#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// TYPE NAME or TYPE/NAME.
    pub args: Vec<String>,
}

/// Runs `edit`: the object as YAML in `$KUBE_EDITOR`/`$EDITOR`/`vi`, then an update.
pub async fn edit(ctx: &Ctx, args: EditArgs) -> Result<()> {
    let discovery = Discovery::fetch(ctx).await?;
    let mut errors = Vec::new();
    for Target { resource, name } in targets(&discovery, &args.args)? {
        let Some(name) = name else {
            return Err(Error::Other(anyhow::anyhow!("edit needs an object's name")));
        };
        let path = resource.object(&ctx.namespace, &name);
        let mut obj = ctx.get(&path).await?;
        print::hide_managed_fields(&mut obj);
        let before = crate::yaml::to_string(&obj);
        let file = tempfile::Builder::new()
            .prefix("kubectl-edit-")
            .suffix(".yaml")
            .tempfile()
            .map_err(|e| Error::Other(e.into()))?;
        let header = "# Please edit the object below. Lines beginning with a '#' will be ignored,\n# and an empty file will abort the edit.\n#\n";
        std::fs::write(file.path(), format!("{header}{before}")).map_err(|e| Error::Other(e.into()))?;
        let editor = std::env::var("KUBE_EDITOR").or_else(|_| std::env::var("EDITOR")).unwrap_or_else(|_| "vi".into());
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("sh")
            .arg(file.path())
            .status()
            .map_err(|e| Error::Other(anyhow::anyhow!("starting the editor {editor:?}: {e}")))?;
        if !status.success() {
            return Err(Error::Other(anyhow::anyhow!("there was a problem with the editor {editor:?}")));
        }
        let text = std::fs::read_to_string(file.path()).map_err(|e| Error::Other(e.into()))?;
        let body: String =
            text.lines().filter(|l| !l.trim_start().starts_with('#')).map(|l| format!("{l}\n")).collect();
        if body.trim().is_empty() {
            println!("Edit cancelled, no changes made.");
            continue;
        }
        let edited: Value = serde_saphyr::from_str(&body)
            .map_err(|e| Error::Other(anyhow::anyhow!("the edited file is not valid YAML: {e}")))?;
        if edited == obj {
            println!("Edit cancelled, no changes made.");
            continue;
        }
        let url = with_query(&path, &[("fieldManager", "kubectl-edit".into())]);
        match ctx.put(&url, &edited).await {
            Ok(after) => report(None, &resource, &after, "edited"),
            Err(e) => errors.push(e),
        }
    }
    finish(errors)
}
