//! `version`, `api-resources`, `cluster-info`, `config` and `completion`.

use serde_json::{Value, json};

use crate::client::{Ctx, Error, Globals, Result, kubeconfig_path};
use crate::discovery::Discovery;

/// Runs `version`.
pub async fn version(ctx: &Ctx, client_only: bool) -> Result<()> {
    println!("Client Version: v{}", env!("CARGO_PKG_VERSION"));
    if client_only {
        return Ok(());
    }
    let v = ctx.get("/version").await?;
    println!("Server Version: {}", v.get("gitVersion").and_then(Value::as_str).unwrap_or("unknown"));
    Ok(())
}

/// Runs `api-resources`.
pub async fn api_resources(ctx: &Ctx, namespaced: Option<bool>) -> Result<()> {
    let discovery = Discovery::fetch(ctx).await?;
    let mut rows =
        vec![vec!["NAME".to_owned(), "SHORTNAMES".into(), "APIVERSION".into(), "NAMESPACED".into(), "KIND".into()]];
    let mut resources: Vec<_> =
        discovery.resources.iter().filter(|r| namespaced.is_none_or(|n| n == r.namespaced)).collect();
    // As stock: by group name (core, the empty one, first), then by resource name.
    resources.sort_by(|a, b| (&a.group, &a.plural).cmp(&(&b.group, &b.plural)));
    for r in resources {
        rows.push(vec![
            r.plural.clone(),
            r.short_names.join(","),
            r.api_version(),
            r.namespaced.to_string(),
            r.kind.clone(),
        ]);
    }
    print!("{}", crate::print::tabulate(&rows));
    Ok(())
}

/// Runs `cluster-info`.
pub async fn cluster_info(ctx: &Ctx) -> Result<()> {
    ctx.get("/version").await?;
    println!("Kubernetes control plane is running at {}", ctx.server.trim_end_matches('/'));
    println!("\nTo further debug and diagnose cluster problems, use 'kubectl cluster-info dump'.");
    Ok(())
}

/// `kubectl config`.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the kubeconfig (credentials redacted unless --raw).
    View {
        /// Keep certificate and key data.
        #[arg(long)]
        raw: bool,
        /// Only what the current context uses.
        #[arg(long)]
        minify: bool,
    },
    /// Make a context the current one.
    UseContext {
        /// The context.
        name: String,
    },
    /// List the contexts.
    GetContexts,
    /// Print the current context's name.
    CurrentContext,
}

fn read_file(globals: &Globals) -> Result<(std::path::PathBuf, Value)> {
    let path = kubeconfig_path(globals);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Other(anyhow::anyhow!("reading the kubeconfig {}: {e}", path.display())))?;
    let value: Value = serde_saphyr::from_str(&text)
        .map_err(|e| Error::Other(anyhow::anyhow!("the kubeconfig {} is not valid YAML: {e}", path.display())))?;
    Ok((path, value))
}

fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k.ends_with("-data") || k == "token" {
                    *x = json!("DATA+OMITTED");
                } else {
                    redact(x);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Runs a `config` command.
pub fn config(globals: &Globals, command: ConfigCommand) -> Result<()> {
    let (path, mut kc) = read_file(globals)?;
    let current = globals
        .context
        .clone()
        .or_else(|| kc.get("current-context").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    match command {
        ConfigCommand::View { raw, minify } => {
            if minify {
                let ctx =
                    kc["contexts"].as_array().and_then(|l| l.iter().find(|c| c["name"] == current.as_str())).cloned();
                let Some(ctx) = ctx else {
                    return Err(Error::Other(anyhow::anyhow!("current-context must exist in order to minify")));
                };
                let pick = |list: &str, name: &Value| -> Value {
                    json!(
                        kc[list]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|x| x["name"] == *name)
                            .cloned()
                            .collect::<Vec<_>>()
                    )
                };
                let clusters = pick("clusters", &ctx["context"]["cluster"]);
                let users = pick("users", &ctx["context"]["user"]);
                kc["contexts"] = json!([ctx]);
                kc["clusters"] = clusters;
                kc["users"] = users;
            }
            if !raw {
                redact(&mut kc);
            }
            print!("{}", crate::yaml::to_string(&kc));
        }
        ConfigCommand::UseContext { name } => {
            let exists = kc["contexts"].as_array().is_some_and(|l| l.iter().any(|c| c["name"] == name.as_str()));
            if !exists {
                return Err(Error::Other(anyhow::anyhow!("no context exists with the name: {name:?}")));
            }
            kc["current-context"] = json!(name);
            std::fs::write(&path, crate::yaml::to_string(&kc))
                .map_err(|e| Error::Other(anyhow::anyhow!("writing {}: {e}", path.display())))?;
            println!("Switched to context {name:?}.");
        }
        ConfigCommand::GetContexts => {
            let mut rows = vec![vec![
                "CURRENT".to_owned(),
                "NAME".into(),
                "CLUSTER".into(),
                "AUTHINFO".into(),
                "NAMESPACE".into(),
            ]];
            for c in kc["contexts"].as_array().into_iter().flatten() {
                let name = c["name"].as_str().unwrap_or_default();
                let field = |f: &str| c["context"][f].as_str().unwrap_or_default().to_owned();
                rows.push(vec![
                    if name == current { "*".into() } else { String::new() },
                    name.to_owned(),
                    field("cluster"),
                    field("user"),
                    field("namespace"),
                ]);
            }
            print!("{}", crate::print::tabulate(&rows));
        }
        ConfigCommand::CurrentContext => {
            if current.is_empty() {
                return Err(Error::Other(anyhow::anyhow!("current-context is not set")));
            }
            println!("{current}");
        }
    }
    Ok(())
}
