//! `kubectl expose`: a Service in front of a deployment, replica set, replication
//! controller, pod or service, its selector and ports read from the object (or given), as
//! stock kubectl builds it.

use serde_json::{Map, Value, json};

use super::{Target, targets};
use crate::client::{Ctx, Error, Result, with_query};
use crate::discovery::Discovery;

fn other(message: impl std::fmt::Display) -> Error {
    Error::Other(anyhow::anyhow!("{message}"))
}

/// `kubectl expose`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ExposeArgs {
    /// TYPE NAME or TYPE/NAME (deployment, replicaset, replicationcontroller, pod, service).
    pub args: Vec<String>,
    /// The service's port (by default the object's container ports).
    #[arg(long)]
    pub port: Option<i64>,
    /// The port (number or name) the pods serve on; by default the service port.
    #[arg(long)]
    pub target_port: Option<String>,
    /// TCP, UDP or SCTP.
    #[arg(long, default_value = "TCP")]
    pub protocol: String,
    /// The service's name (by default the object's).
    #[arg(long)]
    pub name: Option<String>,
    /// ClusterIP, NodePort, LoadBalancer or ExternalName.
    #[arg(long = "type")]
    pub type_: Option<String>,
    /// A cluster IP to ask for, or None for a headless service.
    #[arg(long)]
    pub cluster_ip: Option<String>,
    /// The selector (`k=v,...`), instead of the object's.
    #[arg(long)]
    pub selector: Option<String>,
    /// The service's labels (`k=v,...`), instead of the object's.
    #[arg(short = 'l', long)]
    pub labels: Option<String>,
    /// Print the service instead of creating it (`client`).
    #[arg(long)]
    pub dry_run: Option<String>,
    /// `-o yaml|json|name`.
    #[arg(short, long)]
    pub output: Option<String>,
}

/// `k=v,k2=v2` as a map.
fn parse_map(text: &str) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| other(format!("invalid label spec: {pair}")))?;
        out.insert(k.to_owned(), json!(v));
    }
    Ok(out)
}

/// The selector a Service needs to reach the object's pods.
fn selector_of(kind: &str, obj: &Value) -> Result<Map<String, Value>> {
    let map = |v: Option<&Value>| v.and_then(Value::as_object).cloned().unwrap_or_default();
    let selector = match kind {
        "Pod" => map(obj.pointer("/metadata/labels")),
        "Service" | "ReplicationController" => map(obj.pointer("/spec/selector")),
        "Deployment" | "ReplicaSet" => {
            if obj.pointer("/spec/selector/matchExpressions").and_then(Value::as_array).is_some_and(|e| !e.is_empty()) {
                return Err(other(format!(
                    "couldn't convert expressions of the {} selector to a map-based selector",
                    kind.to_lowercase()
                )));
            }
            map(obj.pointer("/spec/selector/matchLabels"))
        }
        other_kind => return Err(other(format!("cannot expose a {other_kind}"))),
    };
    if selector.is_empty() {
        return Err(other(format!(
            "couldn't retrieve selectors via --selector flag or introspection: the {} has no selector",
            kind.to_lowercase()
        )));
    }
    Ok(selector)
}

/// The ports the object's pods serve: (name, port, protocol).
fn ports_of(kind: &str, obj: &Value) -> Vec<(Option<String>, i64, String, Value)> {
    let containers = match kind {
        "Pod" => obj.pointer("/spec/containers"),
        "Service" => {
            return obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| {
                    let port = p.get("port").and_then(Value::as_i64).unwrap_or_default();
                    (
                        p.get("name").and_then(Value::as_str).map(str::to_owned),
                        port,
                        p.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_owned(),
                        p.get("targetPort").cloned().unwrap_or(json!(port)),
                    )
                })
                .collect();
        }
        _ => obj.pointer("/spec/template/spec/containers"),
    };
    containers
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| c.get("ports").and_then(Value::as_array).cloned().unwrap_or_default())
        .filter_map(|p| {
            let port = p.get("containerPort").and_then(Value::as_i64)?;
            Some((None, port, p.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_owned(), json!(port)))
        })
        .collect()
}

/// The Service `expose` creates for `obj` (of `kind`).
pub fn service_for(kind: &str, obj: &Value, args: &ExposeArgs) -> Result<Value> {
    let selector = match &args.selector {
        Some(s) => parse_map(s)?,
        None => selector_of(kind, obj)?,
    };
    let name = match &args.name {
        Some(n) => n.clone(),
        None => obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned(),
    };
    let labels = match &args.labels {
        Some(l) => parse_map(l)?,
        None => obj.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default(),
    };
    let target = |fallback: Value| match &args.target_port {
        Some(t) => t.parse::<i64>().map(|n| json!(n)).unwrap_or_else(|_| json!(t)),
        None => fallback,
    };
    let ports: Vec<Value> = match args.port {
        Some(port) => vec![json!({"port": port, "protocol": args.protocol, "targetPort": target(json!(port))})],
        None => {
            let found = ports_of(kind, obj);
            if found.is_empty() {
                return Err(other("couldn't find port via --port flag or introspection"));
            }
            if found.len() > 1 && args.target_port.is_some() {
                return Err(other("cannot use --target-port with multiple ports"));
            }
            let several = found.len() > 1;
            found
                .into_iter()
                .enumerate()
                .map(|(i, (port_name, port, protocol, target_port))| {
                    let mut p = json!({"port": port, "protocol": protocol, "targetPort": target(target_port)});
                    if several {
                        p["name"] = json!(port_name.unwrap_or_else(|| format!("port-{}", i + 1)));
                    }
                    p
                })
                .collect()
        }
    };
    let mut spec = json!({"ports": ports, "selector": selector});
    if let Some(t) = &args.type_ {
        spec["type"] = json!(t);
    }
    if let Some(ip) = &args.cluster_ip {
        spec["clusterIP"] = json!(ip);
    }
    let mut metadata = json!({"name": name});
    if !labels.is_empty() {
        metadata["labels"] = Value::Object(labels);
    }
    if let Some(ns) = obj.pointer("/metadata/namespace") {
        metadata["namespace"] = ns.clone();
    }
    Ok(json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}))
}

/// Creates (or with `--dry-run=client` prints) a Service; `verb` is what the line says.
pub async fn create_service(
    ctx: &Ctx,
    discovery: &Discovery,
    service: &Value,
    args: &ExposeArgs,
    verb: &str,
) -> Result<()> {
    let resource = discovery.by_kind("v1", "Service")?;
    if args.dry_run.is_some() {
        let format = crate::print::Format::parse(args.output.as_deref().or(Some("yaml")))?;
        print!("{}", crate::print::objects(&format, &[(resource, service.clone())], true)?);
        return Ok(());
    }
    let url = with_query(&resource.collection(Some(&ctx.namespace)), &[("fieldManager", "kubectl-expose".into())]);
    let created = ctx.post(&url, service).await?;
    match args.output.as_deref() {
        Some("name") => println!("{}", crate::print::name_of(resource, &created)),
        _ => println!("{} {verb}", crate::print::name_of(resource, &created)),
    }
    Ok(())
}

/// Runs `expose`.
pub async fn expose(ctx: &Ctx, args: ExposeArgs) -> Result<()> {
    let discovery = Discovery::fetch(ctx).await?;
    let list = targets(&discovery, &args.args)?;
    let [Target { resource, name: Some(name) }] = list.as_slice() else {
        return Err(other("You must provide one resource and its name to expose (TYPE NAME or TYPE/NAME)."));
    };
    let obj = ctx.get(&resource.object(&ctx.namespace, name)).await?;
    let service = service_for(&resource.kind, &obj, &args)?;
    create_service(ctx, &discovery, &service, &args, "exposed").await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({"kind": "Deployment", "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"spec": {"containers": [
                {"name": "c", "ports": [{"containerPort": 8080}]}]}}}})
    }

    #[test]
    fn a_deployment_is_exposed_on_its_selector_and_container_port() {
        let svc =
            service_for("Deployment", &deployment(), &ExposeArgs { protocol: "TCP".into(), ..Default::default() })
                .unwrap();
        assert_eq!(
            svc,
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
                "spec": {"ports": [{"port": 8080, "protocol": "TCP", "targetPort": 8080}], "selector": {"app": "web"}}})
        );
        let args = ExposeArgs {
            port: Some(80),
            target_port: Some("http".into()),
            protocol: "TCP".into(),
            name: Some("front".into()),
            type_: Some("NodePort".into()),
            ..Default::default()
        };
        let svc = service_for("Deployment", &deployment(), &args).unwrap();
        assert_eq!(svc["metadata"]["name"], "front");
        assert_eq!(svc["spec"]["ports"], json!([{"port": 80, "protocol": "TCP", "targetPort": "http"}]));
        assert_eq!(svc["spec"]["type"], "NodePort");
    }

    #[test]
    fn what_cannot_be_exposed_says_why() {
        let args = ExposeArgs { protocol: "TCP".into(), ..Default::default() };
        let mut no_ports = deployment();
        no_ports["spec"]["template"]["spec"]["containers"][0].as_object_mut().unwrap().remove("ports");
        let e = service_for("Deployment", &no_ports, &args).unwrap_err().to_string();
        assert!(e.contains("couldn't find port via --port flag or introspection"), "{e}");
        let e = service_for("Node", &json!({}), &args).unwrap_err().to_string();
        assert!(e.contains("cannot expose a Node"), "{e}");
        let e = service_for("Pod", &json!({"metadata": {"name": "p"}}), &args).unwrap_err().to_string();
        assert!(e.contains("couldn't retrieve selectors"), "{e}");
        let mut two = deployment();
        two["spec"]["template"]["spec"]["containers"][0]["ports"] =
            json!([{"containerPort": 80}, {"containerPort": 443}]);
        let svc = service_for("Deployment", &two, &args).unwrap();
        assert_eq!(
            svc["spec"]["ports"][1],
            json!({"name": "port-2", "port": 443, "protocol": "TCP", "targetPort": 443})
        );
        let with_target = ExposeArgs { target_port: Some("8080".into()), ..args };
        assert!(service_for("Deployment", &two, &with_target).is_err());
    }
}
