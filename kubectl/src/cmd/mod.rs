//! The commands, and what several of them share: turning `TYPE NAME...`, `TYPE/NAME` and
//! `-f FILE` arguments into objects on the server.

pub mod auth;
pub mod certificate;
pub mod create;
pub mod expose;
pub mod get;
pub mod info;
pub mod logs;
pub mod nodes;
pub mod workloads;
pub mod write;

use serde_json::Value;

use crate::client::{Ctx, Error, Result};
use crate::discovery::{Discovery, Resource};

/// One thing a command acts on: a resource and, unless the whole collection is meant, a name.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resource.
    pub resource: Resource,
    /// The object's name; `None` for every object (of the selector).
    pub name: Option<String>,
}

/// Reads `TYPE[,TYPE...] [NAME...]` or `TYPE/NAME...` arguments.
pub fn targets(discovery: &Discovery, args: &[String]) -> Result<Vec<Target>> {
    let Some(first) = args.first() else {
        return Err(Error::Other(anyhow::anyhow!(
            "You must specify the type of resource to get. Use \"kubectl api-resources\" for a complete list of supported resources."
        )));
    };
    if first.contains('/') {
        let mut out = Vec::new();
        for arg in args {
            let Some((kind, name)) = arg.split_once('/') else {
                return Err(Error::Other(anyhow::anyhow!(
                    "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'kubectl get resource/<resource_name>' instead of 'kubectl get resource resource/<resource_name>'"
                )));
            };
            out.push(Target { resource: discovery.resolve(kind)?.clone(), name: Some(name.to_owned()) });
        }
        return Ok(out);
    }
    let mut resources = Vec::new();
    for kind in first.split(',').filter(|k| !k.is_empty()) {
        let found = discovery.category(kind);
        if !found.is_empty() {
            resources.extend(found.into_iter().cloned());
        } else {
            resources.push(discovery.resolve(kind)?.clone());
        }
    }
    let names = &args[1..];
    let mut out = Vec::new();
    for resource in resources {
        if names.is_empty() {
            out.push(Target { resource, name: None });
        } else {
            out.extend(names.iter().map(|n| Target { resource: resource.clone(), name: Some(n.clone()) }));
        }
    }
    Ok(out)
}

/// Items of a list response lack `apiVersion` and `kind`; kubectl fills them in.
pub fn typed(resource: &Resource, mut obj: Value) -> Value {
    if let Some(m) = obj.as_object_mut() {
        m.entry("apiVersion").or_insert_with(|| Value::String(resource.api_version()));
        m.entry("kind").or_insert_with(|| Value::String(resource.kind.clone()));
    }
    obj
}

/// The items of a list response, typed.
pub fn items(resource: &Resource, list: Value) -> Vec<Value> {
    match list {
        Value::Object(mut m) => match m.remove("items") {
            Some(Value::Array(items)) => items.into_iter().map(|i| typed(resource, i)).collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// The namespace an object from a manifest goes to: its own, else `-n`/the context's.
pub fn namespace_of<'a>(ctx: &'a Ctx, obj: &'a Value) -> &'a str {
    obj.pointer("/metadata/namespace").and_then(Value::as_str).filter(|n| !n.is_empty()).unwrap_or(&ctx.namespace)
}

/// The `matchLabels` of an object's `spec.selector` as a label selector (`app=web,tier=db`).
pub fn selector_of(obj: &Value) -> String {
    obj.pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The name of an object.
pub fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
}

/// A manifest object's namespace must agree with `-n` when both are given.
pub fn check_namespace(ctx: &Ctx, resource: &Resource, obj: &Value) -> Result<()> {
    let given = obj.pointer("/metadata/namespace").and_then(Value::as_str).filter(|n| !n.is_empty());
    if let (Some(given), Some(flag)) = (given, ctx.globals.namespace.as_deref())
        && resource.namespaced
        && given != flag
    {
        return Err(Error::Other(anyhow::anyhow!(
            "the namespace from the provided object \"{given}\" does not match the namespace \"{flag}\". You must pass '--namespace={given}' to perform this operation."
        )));
    }
    Ok(())
}

/// A command that ran into errors for some objects after finishing the others: every
/// error but the last is printed, the last decides the exit.
pub fn finish(mut errors: Vec<Error>) -> Result<()> {
    let Some(last) = errors.pop() else { return Ok(()) };
    for e in errors {
        eprintln!("{e}");
    }
    Err(last)
}
