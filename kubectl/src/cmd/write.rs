//! Commands that write objects: `create`, `apply` (client- and server-side), `delete`,
//! `edit`, `patch`, `label`, `annotate`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Target, check_namespace, finish, items, name_of, namespace_of, targets};
use crate::client::{Ctx, Error, Result, is_not_found, with_query};
use crate::discovery::{Discovery, Resource};
use crate::manifest;
use crate::print;
use crate::threeway::{self, LAST_APPLIED};

/// Prints what happened to an object: `-o name` prints only the name.
fn report(output: Option<&str>, resource: &Resource, obj: &Value, verb: &str) {
    let name = print::name_of(resource, obj);
    match output {
        Some("name") => println!("{name}"),
        _ => println!("{name} {verb}"),
    }
}

/// `kubectl create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Files, directories or `-` with the objects to create.
    #[arg(short, long = "filename")]
    pub filename: Vec<String>,
    /// Walk directories given with -f.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// `-o name` prints only the names.
    #[arg(short, long)]
    pub output: Option<String>,
    #[command(subcommand)]
    pub what: Option<CreateWhat>,
}

/// `kubectl create KIND ...`.
#[derive(Debug, clap::Subcommand)]
pub enum CreateWhat {
    /// Create a namespace.
    Namespace {
        /// Its name.
        name: String,
    },
    /// Create a deployment.
    Deployment {
        /// Its name.
        name: String,
        /// The image (repeat for several containers).
        #[arg(long, required = true)]
        image: Vec<String>,
        /// Replicas.
        #[arg(short, long, default_value_t = 1)]
        replicas: i64,
        /// The container port.
        #[arg(long)]
        port: Option<i64>,
    },
    /// Create a configmap from literals.
    Configmap {
        /// Its name.
        name: String,
        /// `key=value` (repeatable).
        #[arg(long)]
        from_literal: Vec<String>,
    },
    /// Create a secret.
    Secret {
        #[command(subcommand)]
        kind: SecretKind,
    },
    /// Create a role with rules in the namespace.
    Role(RoleArgs),
    /// Create a cluster role.
    Clusterrole(RoleArgs),
    /// Create a role binding in the namespace for a role or cluster role.
    Rolebinding(BindingArgs),
    /// Create a cluster role binding for a cluster role.
    Clusterrolebinding(BindingArgs),
    /// Request a service account token.
    Token(TokenArgs),
}

/// `create token SERVICEACCOUNT [--duration=1h] [--audience=A] [--bound-object-kind=Pod
/// --bound-object-name=NAME]`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The service account.
    name: String,
    /// How long the token lives (10m at least): 600s, 10m, 1h.
    #[arg(long)]
    duration: Option<String>,
    /// Audiences of the token (default: the API's).
    #[arg(long)]
    audience: Vec<String>,
    /// The kind the token is bound to: Pod, Secret or Node.
    #[arg(long, requires = "bound_object_name")]
    bound_object_kind: Option<String>,
    /// The name of the object the token is bound to.
    #[arg(long, requires = "bound_object_kind")]
    bound_object_name: Option<String>,
}

fn seconds_of(text: &str) -> Result<i64> {
    let bad = || {
        Error::Other(anyhow::anyhow!(
            "invalid argument {text:?} for \"--duration\" flag: a duration like 10m, 1h or 3600s"
        ))
    };
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: i64 = number.parse().map_err(|_| bad())?;
    Ok(match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(bad()),
    })
}

/// Runs `create token`: prints the token.
pub async fn create_token(ctx: &Ctx, args: &TokenArgs) -> Result<()> {
    let mut spec = json!({});
    if let Some(d) = &args.duration {
        spec["expirationSeconds"] = json!(seconds_of(d)?);
    }
    if !args.audience.is_empty() {
        spec["audiences"] = json!(args.audience);
    }
    if let (Some(kind), Some(name)) = (&args.bound_object_kind, &args.bound_object_name) {
        spec["boundObjectRef"] = json!({"kind": kind, "apiVersion": "v1", "name": name});
    }
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
    let url = format!("/api/v1/namespaces/{}/serviceaccounts/{}/token", ctx.namespace, args.name);
    let answer = ctx.post(&url, &body).await?;
    println!("{}", answer.pointer("/status/token").and_then(Value::as_str).unwrap_or_default());
    Ok(())
}

/// `create role|clusterrole NAME --verb=... --resource=...`.
#[derive(Debug, clap::Args)]
pub struct RoleArgs {
    /// Its name.
    name: String,
    /// Verbs the rule allows (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', required = true)]
    verb: Vec<String>,
    /// Resources the rule applies to: `pods`, `deployments.apps`, `pods/log`.
    #[arg(long, value_delimiter = ',')]
    resource: Vec<String>,
    /// Names the rule is limited to.
    #[arg(long, value_delimiter = ',')]
    resource_name: Vec<String>,
    /// Paths the rule applies to (cluster roles only): `/healthz`, `/logs/*`.
    #[arg(long, value_delimiter = ',')]
    non_resource_url: Vec<String>,
}

/// `create rolebinding|clusterrolebinding NAME --clusterrole=R|--role=R --user=U ...`.
#[derive(Debug, clap::Args)]
pub struct BindingArgs {
    /// Its name.
    name: String,
    /// The cluster role it grants.
    #[arg(long)]
    clusterrole: Option<String>,
    /// The role (of the namespace) it grants.
    #[arg(long)]
    role: Option<String>,
    /// Users it grants to.
    #[arg(long, value_delimiter = ',')]
    user: Vec<String>,
    /// Groups it grants to.
    #[arg(long, value_delimiter = ',')]
    group: Vec<String>,
    /// Service accounts it grants to, as `namespace:name`.
    #[arg(long, value_delimiter = ',')]
    serviceaccount: Vec<String>,
}

fn role_object(kind: &str, args: &RoleArgs, namespace: &str) -> Result<Value> {
    let mut rules = Vec::new();
    if !args.resource.is_empty() {
        // One rule per API group, as stock kubectl writes them.
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for r in &args.resource {
            let (resource, sub) = r.split_once('/').map_or((r.as_str(), None), |(a, b)| (a, Some(b)));
            let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
            let full = match sub {
                Some(sub) => format!("{plural}/{sub}"),
                None => plural.to_owned(),
            };
            match groups.iter_mut().find(|(g, _)| g == group) {
                Some((_, list)) => list.push(full),
                None => groups.push((group.to_owned(), vec![full])),
            }
        }
        for (group, resources) in groups {
            let mut rule = json!({"verbs": args.verb, "apiGroups": [group], "resources": resources});
            if !args.resource_name.is_empty() {
                rule["resourceNames"] = json!(args.resource_name);
            }
            rules.push(rule);
        }
    }
    if !args.non_resource_url.is_empty() {
        if kind == "Role" {
            return Err(Error::Other(anyhow::anyhow!("--non-resource-url is only for cluster roles")));
        }
        rules.push(json!({"verbs": args.verb, "nonResourceURLs": args.non_resource_url}));
    }
    if rules.is_empty() {
        return Err(Error::Other(anyhow::anyhow!("at least one resource or non-resource URL is required")));
    }
    let mut meta = json!({"name": args.name});
    if kind == "Role" {
        meta["namespace"] = json!(namespace);
    }
    Ok(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta, "rules": rules}))
}

fn binding_object(kind: &str, args: &BindingArgs, namespace: &str) -> Result<Value> {
    let role_ref = match (&args.clusterrole, &args.role) {
        (Some(r), None) => json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": r}),
        (None, Some(r)) if kind == "RoleBinding" => {
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": r})
        }
        _ if kind == "RoleBinding" => {
            return Err(Error::Other(anyhow::anyhow!("exactly one of clusterrole or role must be specified")));
        }
        _ => return Err(Error::Other(anyhow::anyhow!("clusterrole must be specified"))),
    };
    let mut subjects = Vec::new();
    for u in &args.user {
        subjects.push(json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u}));
    }
    for g in &args.group {
        subjects.push(json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g}));
    }
    for sa in &args.serviceaccount {
        let (ns, name) = sa
            .split_once(':')
            .ok_or_else(|| Error::Other(anyhow::anyhow!("serviceaccount must be <namespace>:<name>")))?;
        subjects.push(json!({"kind": "ServiceAccount", "namespace": ns, "name": name}));
    }
    let mut meta = json!({"name": args.name});
    if kind == "RoleBinding" {
        meta["namespace"] = json!(namespace);
    }
    Ok(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta,
        "roleRef": role_ref, "subjects": subjects}))
}

/// Secret types.
#[derive(Debug, clap::Subcommand)]
pub enum SecretKind {
    /// An Opaque secret from literals.
    Generic {
        /// Its name.
        name: String,
        /// `key=value` (repeatable).
        #[arg(long)]
        from_literal: Vec<String>,
    },
}

fn literals(pairs: &[String]) -> Result<serde_json::Map<String, Value>> {
    let mut data = serde_json::Map::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| Error::Other(anyhow::anyhow!("invalid literal source {p}, expected key=value")))?;
        data.insert(k.to_owned(), json!(v));
    }
    Ok(data)
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The object `create KIND` makes.
pub fn generated(what: &CreateWhat, namespace: &str) -> Result<Value> {
    Ok(match what {
        CreateWhat::Namespace { name } => json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        CreateWhat::Deployment { name, image, replicas, port } => {
            let containers: Vec<Value> = image
                .iter()
                .map(|img| {
                    // Container names come from the image's last path element, as stock does.
                    let base = img.rsplit('/').next().unwrap_or(img).split([':', '@']).next().unwrap_or(img);
                    let mut c = json!({"name": base, "image": img});
                    if let Some(p) = port {
                        c["ports"] = json!([{"containerPort": p}]);
                    }
                    c
                })
                .collect();
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}}}
            })
        }
        CreateWhat::Configmap { name, from_literal } => json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": literals(from_literal)?
        }),
        CreateWhat::Secret { kind: SecretKind::Generic { name, from_literal } } => {
            let data: serde_json::Map<String, Value> = literals(from_literal)?
                .into_iter()
                .map(|(k, v)| (k, json!(base64(v.as_str().unwrap_or_default().as_bytes()))))
                .collect();
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": name, "namespace": namespace}, "data": data})
        }
        CreateWhat::Role(args) => role_object("Role", args, namespace)?,
        CreateWhat::Clusterrole(args) => role_object("ClusterRole", args, namespace)?,
        CreateWhat::Rolebinding(args) => binding_object("RoleBinding", args, namespace)?,
        CreateWhat::Clusterrolebinding(args) => binding_object("ClusterRoleBinding", args, namespace)?,
        CreateWhat::Token(_) => return Err(Error::Other(anyhow::anyhow!("a token is requested, not created"))),
    })
}

/// Runs `create`.
pub async fn create(ctx: &Ctx, args: CreateArgs) -> Result<()> {
    if let Some(CreateWhat::Token(token)) = &args.what {
        return create_token(ctx, token).await;
    }
    let discovery = Discovery::fetch(ctx).await?;
    let objects: Vec<Value> = match &args.what {
        Some(what) => vec![generated(what, &ctx.namespace)?],
        None if args.filename.is_empty() => {
            return Err(Error::Other(anyhow::anyhow!("must specify one of -f and -k, or a kind to create")));
        }
        None => manifest::read(&args.filename, args.recursive)?.into_iter().map(|d| d.object).collect(),
    };
    let mut errors = Vec::new();
    for obj in objects {
        let resource = discovery.by_kind(s(&obj, "apiVersion"), s(&obj, "kind"))?;
        check_namespace(ctx, resource, &obj)?;
        let url = with_query(
            &resource.collection(Some(namespace_of(ctx, &obj))),
            &[("fieldManager", "kubectl-create".into())],
        );
        match ctx.post(&url, &obj).await {
            Ok(created) => report(args.output.as_deref(), resource, &created, "created"),
            Err(e) => errors.push(e),
        }
    }
    finish(errors)
}

fn s<'a>(obj: &'a Value, field: &str) -> &'a str {
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
