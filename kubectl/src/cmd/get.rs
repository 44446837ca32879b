//! `get` (tables from the server, every `-o` format, `-w`) and `describe`.

use futures::StreamExt;
use serde_json::Value;

use super::{Target, finish, items, targets, typed};
use crate::client::{Ctx, Error, Result, with_query};
use crate::discovery::{Discovery, Resource};
use crate::print::{self, Format, TableOptions};

const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// `kubectl get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// TYPE[,TYPE...] [NAME...] or TYPE/NAME...
    pub args: Vec<String>,
    /// Output format: wide, yaml, json, name, jsonpath=..., custom-columns=...
    #[arg(short, long)]
    pub output: Option<String>,
    /// Label selector (`app=web,tier!=db`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector (`status.phase=Running`).
    #[arg(long)]
    pub field_selector: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// After listing, watch for changes.
    #[arg(short, long)]
    pub watch: bool,
    /// Watch only, without the initial list.
    #[arg(long)]
    pub watch_only: bool,
    /// Show the labels as a last column.
    #[arg(long)]
    pub show_labels: bool,
    /// Keep metadata.managedFields in yaml/json output.
    #[arg(long)]
    pub show_managed_fields: bool,
    /// Leave the table header out.
    #[arg(long)]
    pub no_headers: bool,
    /// A NotFound for a named object is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// GET this raw URI path and print the answer.
    #[arg(long)]
    pub raw: Option<String>,
}

fn list_path(ctx: &Ctx, resource: &Resource, args: &GetArgs) -> String {
    let ns = (!args.all_namespaces).then_some(ctx.namespace.as_str());
    with_query(
        &resource.collection(ns),
        &[
            ("labelSelector", args.selector.clone().unwrap_or_default()),
            ("fieldSelector", args.field_selector.clone().unwrap_or_default()),
        ],
    )
}

/// Runs `get`.
pub async fn get(ctx: &Ctx, args: GetArgs) -> Result<()> {
    if let Some(raw) = &args.raw {
        let text = ctx.text(http::Method::GET, raw, None, Some("application/json, */*"), Vec::new()).await?;
        println!("{text}");
        return Ok(());
    }
    let discovery = Discovery::fetch(ctx).await?;
    let targets = targets(&discovery, &args.args)?;
    let format = Format::parse(args.output.as_deref())?;
    if args.watch || args.watch_only {
        let [Target { resource, name }] = targets.as_slice() else {
            return Err(Error::Other(anyhow::anyhow!("you may only specify a single resource type with --watch")));
        };
        return watch(ctx, resource, name.as_deref(), &args, &format).await;
    }
    let kinds: Vec<&str> = targets.iter().map(|t| t.resource.plural.as_str()).collect();
    let several_kinds =
        kinds.windows(2).any(|w| w[0] != w[1]) || args.args.first().is_some_and(|a| a.contains('/') || a == "all");
    let mut errors = Vec::new();
    match &format {
        Format::Table { wide } => {
            let mut printed_any = false;
            // One table per resource: its header, then the rows of every target of it.
            let mut groups: Vec<(Resource, Vec<String>, Vec<Vec<String>>)> = Vec::new();
            for target in &targets {
                let path = match &target.name {
                    Some(n) => target.resource.object(&ctx.namespace, n),
                    None => list_path(ctx, &target.resource, &args),
                };
                let table = match ctx.text(http::Method::GET, &path, None, Some(TABLE), Vec::new()).await {
                    Ok(t) => t,
                    Err(e) if args.ignore_not_found && crate::client::is_not_found(&e) => continue,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                };
                let table: Value = serde_json::from_str(&table).map_err(|e| Error::Other(e.into()))?;
                let opts = TableOptions {
                    wide: *wide,
                    namespace: args.all_namespaces && target.resource.namespaced,
                    kind_prefix: several_kinds,
                    show_labels: args.show_labels,
                    no_headers: false,
                };
                let mut rows = print::table_rows(&table, &target.resource, opts);
                let header = rows.remove(0);
                match groups.last_mut() {
                    Some((r, _, existing)) if *r == target.resource => existing.extend(rows),
                    _ => groups.push((target.resource.clone(), header, rows)),
                }
            }
            for (_, header, rows) in groups.iter().filter(|(_, _, rows)| !rows.is_empty()) {
                if printed_any {
                    println!();
                }
                let mut all = Vec::with_capacity(rows.len() + 1);
                if !args.no_headers {
                    all.push(header.clone());
                }
                all.extend(rows.iter().cloned());
                print!("{}", print::tabulate(&all));
                printed_any = true;
            }
            if !printed_any && errors.is_empty() && targets.iter().all(|t| t.name.is_none()) {
                no_resources(ctx, &args, &targets);
            }
        }
        _ => {
            let mut found: Vec<(Resource, Value)> = Vec::new();
            let single = targets.len() == 1 && targets[0].name.is_some();
            for target in &targets {
                match &target.name {
                    Some(n) => match ctx.get(&target.resource.object(&ctx.namespace, n)).await {
                        Ok(obj) => found.push((target.resource.clone(), typed(&target.resource, obj))),
                        Err(e) if args.ignore_not_found && crate::client::is_not_found(&e) => {}
                        Err(e) => errors.push(e),
                    },
                    None => match ctx.get(&list_path(ctx, &target.resource, &args)).await {
                        Ok(list) => found
                            .extend(items(&target.resource, list).into_iter().map(|o| (target.resource.clone(), o))),
                        Err(e) => errors.push(e),
                    },
                }
            }
            if !args.show_managed_fields {
                found.iter_mut().for_each(|(_, o)| print::hide_managed_fields(o));
            }
            let refs: Vec<(&Resource, Value)> = found.iter().map(|(r, v)| (r, v.clone())).collect();
            if !(found.is_empty() && matches!(format, Format::Name)) {
                print!("{}", print::objects(&format, &refs, single)?);
            }
        }
    }
    finish(errors)
}

fn no_resources(ctx: &Ctx, args: &GetArgs, targets: &[Target]) {
    if args.all_namespaces || targets.iter().all(|t| !t.resource.namespaced) {
        eprintln!("No resources found");
    } else {
        eprintln!("No resources found in {} namespace.", ctx.namespace);
    }
}

async fn watch(ctx: &Ctx, resource: &Resource, name: Option<&str>, args: &GetArgs, format: &Format) -> Result<()> {
    let table = matches!(format, Format::Table { .. });
    let accept = if table { TABLE } else { "application/json" };
    let mut params = vec![
        ("labelSelector", args.selector.clone().unwrap_or_default()),
        ("fieldSelector", args.field_selector.clone().unwrap_or_default()),
    ];
    if let Some(n) = name {
        params.push(("fieldSelector", format!("metadata.name={n}")));
    }
    let ns = (!args.all_namespaces).then_some(ctx.namespace.as_str());
    let list_url = with_query(&resource.collection(ns), &params);
    let opts = |no_headers| TableOptions {
        wide: matches!(format, Format::Table { wide: true }),
        namespace: args.all_namespaces && resource.namespaced,
        kind_prefix: false,
        show_labels: args.show_labels,
        no_headers,
    };
    let list: Value =
        serde_json::from_str(&ctx.text(http::Method::GET, &list_url, None, Some(accept), Vec::new()).await?)
            .map_err(|e| Error::Other(e.into()))?;
    let revision = list.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("0").to_owned();
    let mut header: Option<Vec<String>> = None;
    if table {
        let rows = print::table_rows(&list, resource, opts(args.no_headers));
        if !args.no_headers {
            header = rows.first().cloned();
        }
        if !args.watch_only {
            print!("{}", print::tabulate(&rows));
        } else if let Some(h) = &header {
            print!("{}", print::tabulate(std::slice::from_ref(h)));
        }
    } else if !args.watch_only {
        for obj in items(resource, list.clone()) {
            print_one(resource, format, obj, args.show_managed_fields)?;
        }
    }
    params.push(("watch", "true".into()));
    params.push(("resourceVersion", revision));
    let url = with_query(&resource.collection(ns), &params);
    let mut lines = ctx.lines(&url, Some(accept)).await?;
    while let Some(line) = lines.next().await {
        let line = line.map_err(|e| Error::Other(e.into()))?;
        let Ok(event) = serde_json::from_str::<Value>(&line) else { continue };
        if event.get("type").and_then(Value::as_str) == Some("ERROR") {
            let message = event.pointer("/object/message").and_then(Value::as_str).unwrap_or("watch failed");
            return Err(Error::Other(anyhow::anyhow!("{message}")));
        }
        let object = event.get("object").cloned().unwrap_or(Value::Null);
        if table {
            let rows = print::table_rows(&object, resource, opts(true));
            let mut all: Vec<Vec<String>> = header.iter().cloned().collect();
            let skip = all.len();
            all.extend(rows);
            let text = print::tabulate(&all);
            for line in text.lines().skip(skip) {
                println!("{line}");
            }
        } else {
            print_one(resource, format, typed(resource, object), args.show_managed_fields)?;
        }
    }
    Ok(())
}

fn print_one(resource: &Resource, format: &Format, mut obj: Value, show_managed: bool) -> Result<()> {
    if !show_managed {
        print::hide_managed_fields(&mut obj);
    }
    let text = print::objects(format, &[(resource, obj)], true)?;
    match format {
        Format::Yaml => print!("---\n{text}"),
        _ => print!("{text}"),
    }
    Ok(())
}

/// `kubectl describe`.
#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    /// TYPE [NAME...] or TYPE/NAME...
    pub args: Vec<String>,
    /// Label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// Runs `describe`.
pub async fn describe(ctx: &Ctx, args: DescribeArgs) -> Result<()> {
    let discovery = Discovery::fetch(ctx).await?;
    let mut errors = Vec::new();
    let mut first = true;
    for target in targets(&discovery, &args.args)? {
        let objects = match &target.name {
            Some(n) => match ctx.get(&target.resource.object(&ctx.namespace, n)).await {
                Ok(o) => vec![o],
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            },
            None => {
                let ns = (!args.all_namespaces).then_some(ctx.namespace.as_str());
                let url = with_query(
                    &target.resource.collection(ns),
                    &[("labelSelector", args.selector.clone().unwrap_or_default())],
                );
                items(&target.resource, ctx.get(&url).await?)
            }
        };
        for obj in objects {
            if !first {
                println!("\n");
            }
            first = false;
            let events = events_of(ctx, &obj).await.unwrap_or_default();
            print!("{}", crate::describe::describe(&target.resource, &obj, &events));
        }
    }
    finish(errors)
}

async fn events_of(ctx: &Ctx, obj: &Value) -> Result<Vec<Value>> {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
    let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
    let url = with_query(
        &format!("/api/v1/namespaces/{ns}/events"),
        &[("fieldSelector", format!("involvedObject.name={name},involvedObject.uid={uid}"))],
    );
    let list = ctx.get(&url).await?;
    let mut events = list.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    events.sort_by_key(|e| e.get("lastTimestamp").and_then(Value::as_str).unwrap_or_default().to_owned());
    Ok(events)
}
