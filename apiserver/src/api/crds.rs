//! Serving CustomResourceDefinitions (upstream's apiextensions-apiserver controllers, in
//! the apiserver beside the storage they serve):
//!
//! - **naming**: a CRD's names are accepted unless another CRD of the same group, created
//!   earlier, or a built-in kind already uses them (`NamesAccepted`);
//! - **establishing**: the resource of each served version joins the registry, with a
//!   watch cache of its own, and only then is the CRD `Established`, so a client that
//!   waits for the condition finds the resource served, in discovery and in OpenAPI;
//! - **finalizing**: a deleted CRD is `Terminating` while its objects are deleted (their
//!   own finalizers honoured), then it loses its finalizer and goes, and its resource stops
//!   being served.
//!
//! Every apiserver runs this over the same storage; status writes happen only when the
//! status changes, so several servers agree without fighting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::delete::{DeleteOptions, delete_one};
use super::storage::{self, Change};
use super::{App, Target};
use crate::cache::WatchCache;
use crate::meta::now_rfc3339;
use crate::registry::customresourcedefinition::CLEANUP_FINALIZER;
use crate::registry::{Resource, custom};
use crate::store::ListRequest;

/// What is served for one CRD.
struct Served {
    /// The spec the rows were built from.
    spec: Value,
    storage: String,
    /// The watch cache's task.
    cache: JoinHandle<()>,
}

/// The controller: what it serves, by CRD name.
pub struct CustomResources {
    app: Arc<App>,
    served: HashMap<String, Served>,
}

/// Why a CRD's names were not accepted.
type Conflict = String;

impl CustomResources {
    /// A controller that serves nothing yet; [`CustomResources::sync`] catches up.
    pub fn new(app: Arc<App>) -> CustomResources {
        CustomResources { app, served: HashMap::new() }
    }

    fn definitions(&self) -> Option<Arc<Resource>> {
        self.app.registry.find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    }

    /// Serves the CRDs as stored, forever: a pass on every change to a CRD, and every 30 s
    /// (every second while a deletion is under way).
    pub async fn run(mut self) {
        let Some(definitions) = self.definitions() else { return };
        loop {
            let subscription = self.app.cache(&definitions).ok().and_then(|c| c.subscribe(None).ok());
            let Some(mut subscription) = subscription else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            loop {
                let pending = self.sync().await;
                let wait = if pending { Duration::from_secs(1) } else { Duration::from_secs(30) };
                match tokio::time::timeout(wait, subscription.live.recv()).await {
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => break,
                    // Let the events of one write (a create, then its status) arrive.
                    Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    Err(_) => {}
                }
                while subscription.live.try_recv().is_ok() {}
            }
        }
    }

    /// One pass over every stored CRD; returns whether one is still being deleted.
    pub async fn sync(&mut self) -> bool {
        match self.pass().await {
            Ok(pending) => pending,
            Err(e) => {
                tracing::warn!(error = %e, "serving custom resource definitions failed; retrying");
                true
            }
        }
    }

    async fn pass(&mut self) -> Result<bool, String> {
        let Some(definitions) = self.definitions() else { return Ok(false) };
        let page = self
            .app
            .store
            .list(ListRequest { prefix: definitions.prefix(), ..Default::default() })
            .await
            .map_err(|e| e.to_string())?;
        let mut crds: Vec<CustomResourceDefinition> = Vec::new();
        for kv in &page.items {
            match serde_json::from_slice(&kv.value) {
                Ok(crd) => crds.push(crd),
                Err(e) => {
                    tracing::warn!(key = %kv.key, error = %e, "a stored CustomResourceDefinition does not decode")
                }
            }
        }
        // The oldest CRD keeps names that two claim, as upstream's naming controller decides.
        crds.sort_by(|a, b| {
            (a.metadata.creation_timestamp.as_ref().map(|t| t.0), &a.metadata.name)
                .cmp(&(b.metadata.creation_timestamp.as_ref().map(|t| t.0), &b.metadata.name))
        });
        let mut pending = false;
        let mut claimed: Vec<&CustomResourceDefinition> = Vec::new();
        let mut wanted = Vec::new();
        for crd in &crds {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let conflict = self.conflict(crd, &claimed);
            if conflict.is_none() {
                claimed.push(crd);
            }
            let deleting = crd.metadata.deletion_timestamp.is_some();
            let established = match &conflict {
                None => self.serve(&name, crd).await,
                Some(_) => Err("the names are not accepted".to_owned()),
            };
            if established.is_ok() {
                wanted.push(name.clone());
            }
            if deleting {
                pending = true;
                if self.finalize(crd).await? {
                    continue;
                }
            }
            self.write_status(&definitions, crd, conflict.as_deref(), established.err().as_deref(), deleting).await;
        }
        let gone: Vec<String> = self.served.keys().filter(|n| !wanted.contains(n)).cloned().collect();
        for name in gone {
            self.stop(&name);
        }
        Ok(pending)
    }

    /// Why `crd`'s names clash with a built-in kind or a CRD that claimed them first.
    fn conflict(&self, crd: &CustomResourceDefinition, claimed: &[&CustomResourceDefinition]) -> Option<Conflict> {
        let spec = &crd.spec;
        let storage = custom::storage_of(&spec.group, &spec.names.plural);
        for r in self.app.registry.all().iter().filter(|r| r.group == spec.group && r.storage != storage.as_str()) {
            if r.resource == spec.names.plural {
                return Some(format!("{:?} is already in use", spec.names.plural));
            }
            if r.kind == spec.names.kind {
                return Some(format!("{:?} is already in use", spec.names.kind));
            }
        }
        let mine = all_names(crd);
        for other in claimed.iter().filter(|o| o.spec.group == spec.group) {
            let theirs = all_names(other);
            if let Some(clash) = mine.iter().find(|n| theirs.contains(n)) {
                return Some(format!("{clash:?} is already in use"));
            }
        }
        None
    }

    /// Serves a CRD's versions as its spec says now.
    async fn serve(&mut self, name: &str, crd: &CustomResourceDefinition) -> Result<(), String> {
        let spec = serde_json::to_value(&crd.spec).map_err(|e| e.to_string())?;
        if self.served.get(name).is_some_and(|s| s.spec == spec) {
            return Ok(());
        }
        let rows = custom::resources(crd)?;
        let Some(first) = rows.first() else { return Err("no version is served".into()) };
        let storage = first.storage.to_string();
        let exists = self.app.caches.read().contains_key(&storage);
        let task = if exists {
            self.served.remove(name).map(|s| s.cache)
        } else {
            let cache = WatchCache::new(first, Vec::new(), self.app.watch_history);
            let task = tokio::spawn(cache.clone().run(self.app.store.clone()));
            if tokio::time::timeout(Duration::from_secs(10), cache.wait_ready()).await.is_err() {
                task.abort();
                return Err("the watch cache did not fill within 10 s".into());
            }
            self.app.caches.write().insert(storage.clone(), cache);
            Some(task)
        };
        let Some(cache) = task else { return Err("no watch cache".into()) };
        self.app.registry.replace_storage(&storage, rows);
        tracing::info!(crd = name, "serving custom resource");
        self.served.insert(name.to_owned(), Served { spec, storage, cache });
        Ok(())
    }

    /// Stops serving a CRD's resource.
    fn stop(&mut self, name: &str) {
        if let Some(served) = self.served.remove(name) {
            self.app.registry.replace_storage(&served.storage, Vec::new());
            self.app.caches.write().remove(&served.storage);
            served.cache.abort();
            tracing::info!(crd = name, "no longer serving custom resource");
        }
    }

    /// Deletes a terminating CRD's objects; once none is left, drops the finalizer (and
    /// with it the CRD). Returns whether the CRD is gone.
    async fn finalize(&mut self, crd: &CustomResourceDefinition) -> Result<bool, String> {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let holds = crd.metadata.finalizers.iter().flatten().any(|f| f == CLEANUP_FINALIZER);
        if !holds {
            return Ok(false);
        }
        let storage = custom::storage_of(&crd.spec.group, &crd.spec.names.plural);
        let rows = self.app.registry.all();
        let resource = rows.iter().find(|r| r.storage == storage.as_str()).cloned();
        let prefix = format!("/registry/{storage}/");
        let page = self
            .app
            .store
            .list(ListRequest { prefix: prefix.clone(), ..Default::default() })
            .await
            .map_err(|e| e.to_string())?;
        if !page.items.is_empty() {
            let Some(resource) = resource else {
                return Err(format!("{name} has objects left but is not served"));
            };
            for kv in page.items {
                let rest = kv.key.strip_prefix(&prefix).unwrap_or_default();
                let (namespace, object) = match rest.split_once('/') {
                    Some((ns, n)) => (Some(ns.to_owned()), n.to_owned()),
                    None => (None, rest.to_owned()),
                };
                let target = Target { resource: resource.clone(), namespace, name: Some(object), sub: None };
                let opts = DeleteOptions { propagation: Some("Background".into()), ..Default::default() };
                if let Err(e) = delete_one(&self.app, &target, &opts).await
                    && e.code != 404
                {
                    return Err(e.to_string());
                }
            }
            return Ok(false);
        }
        self.stop(&name);
        let Some(definitions) = self.definitions() else { return Ok(false) };
        let target = Target { resource: definitions.clone(), namespace: None, name: Some(name.clone()), sub: None };
        let removed = storage::guaranteed_update(&self.app, &target, None, false, |mut current| {
            if let Some(list) = current.pointer_mut("/metadata/finalizers").and_then(Value::as_array_mut) {
                list.retain(|f| f != CLEANUP_FINALIZER);
            }
            Ok(if storage::ready_to_remove(&definitions, &current) {
                Change::Remove(current)
            } else {
                Change::Write(current)
            })
        })
        .await;
        match removed {
            Ok(_) => {
                tracing::info!(crd = %name, "custom resource definition deleted");
                Ok(true)
            }
            Err(e) if e.code == 404 => Ok(true),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Writes the conditions and accepted names, when they differ from what is stored.
    async fn write_status(
        &self,
        definitions: &Arc<Resource>,
        crd: &CustomResourceDefinition,
        conflict: Option<&str>,
        not_served: Option<&str>,
        deleting: bool,
    ) {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let names = serde_json::to_value(&crd.spec.names).unwrap_or_default();
        let storage = crd.spec.versions.iter().find(|v| v.storage).map(|v| v.name.clone());
        let mut conditions = vec![match conflict {
            None => condition("NamesAccepted", "True", "NoConflicts", "no conflicts found"),
            Some(why) => condition("NamesAccepted", "False", "NameConflict", why),
        }];
        conditions.push(match (conflict, not_served) {
            (None, None) => {
                condition("Established", "True", "InitialNamesAccepted", "the initial names have been accepted")
            }
            (Some(_), _) => condition("Established", "False", "NotAccepted", "not all names are accepted"),
            (None, Some(why)) => condition("Established", "False", "NotServed", why),
        });
        if deleting {
            conditions.push(condition(
                "Terminating",
                "True",
                "InstanceDeletionInProgress",
                "CustomResource deletion is in progress",
            ));
        }
        let target = Target { resource: definitions.clone(), namespace: None, name: Some(name.clone()), sub: None };
        let result = storage::guaranteed_update(&self.app, &target, None, false, |current| {
            let mut next = current.clone();
            let status = &mut next["status"];
            if conflict.is_none() {
                status["acceptedNames"] = names.clone();
            }
            let mut stored: Vec<Value> =
                status.get("storedVersions").and_then(Value::as_array).cloned().unwrap_or_default();
            if let Some(v) = &storage
                && !stored.iter().any(|s| s == v)
            {
                stored.push(json!(v));
            }
            status["storedVersions"] = json!(stored);
            let old = current.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
            status["conditions"] = json!(conditions.iter().map(|c| keep_transition_time(c, &old)).collect::<Vec<_>>());
            Ok(if next == current { Change::Unchanged(current) } else { Change::Write(next) })
        })
        .await;
        if let Err(e) = result
            && e.code != 404
        {
            tracing::warn!(crd = %name, error = %e, "writing a custom resource definition's status failed");
        }
    }
}

/// Every name a CRD claims in its group.
fn all_names(crd: &CustomResourceDefinition) -> Vec<String> {
    let n = &crd.spec.names;
    let mut out = vec![n.plural.clone(), n.kind.clone()];
    out.extend(n.singular.clone().filter(|s| !s.is_empty()));
    out.extend(n.list_kind.clone().filter(|s| !s.is_empty()));
    out.extend(n.short_names.iter().flatten().cloned());
    out
}

fn condition(kind: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({ "type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": now_rfc3339() })
}

/// A condition keeps its transition time while its status stays the same.
fn keep_transition_time(new: &Value, old: &[Value]) -> Value {
    let mut out = new.clone();
    if let Some(previous) = old.iter().find(|c| c["type"] == new["type"])
        && previous["status"] == new["status"]
    {
        out["lastTransitionTime"] = previous["lastTransitionTime"].clone();
    }
    out
}
