//! `create`: objects from files, and the objects `kubectl create KIND` generates
//! (namespaces, configmaps, secrets, deployments, roles and bindings, tokens).

use serde_json::{Value, json};

use super::write::{report, s};
use super::{check_namespace, finish, namespace_of};
use crate::client::{Ctx, Error, Result, with_query};
use crate::discovery::Discovery;
use crate::manifest;

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
