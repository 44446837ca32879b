//! The garbage collector: dependents whose owners are gone are deleted (background
//! cascade); an owner deleted with `propagationPolicy=Orphan` has its dependents released
//! first; one deleted with `Foreground` waits until its dependents are gone. Owners are
//! confirmed gone with a live read, never from a cache that may lag.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::Context;
use crate::workqueue::Action;

/// A dependent of some owner: enough to patch or delete it.
struct Dependent {
    kind: &'static str,
    namespace: Option<String>,
    name: String,
    uid: String,
    owners: Vec<OwnerReference>,
}

fn dependent<K: Resource<DynamicType = ()>>(obj: &K) -> Dependent {
    Dependent {
        kind: match K::kind(&()).as_ref() {
            "Pod" => "Pod",
            "ReplicaSet" => "ReplicaSet",
            _ => "Deployment",
        },
        namespace: obj.namespace(),
        name: obj.name_any(),
        uid: obj.meta().uid.clone().unwrap_or_default(),
        owners: obj.owner_references().to_vec(),
    }
}

fn dependents_of(ctx: &Context, uid: &str) -> Vec<Dependent> {
    let mut out: Vec<Dependent> = ctx.pods.owned_by(uid).iter().map(|p| dependent(p.as_ref())).collect();
    out.extend(ctx.replica_sets.owned_by(uid).iter().map(|r| dependent(r.as_ref())));
    out.extend(ctx.deployments.owned_by(uid).iter().map(|d| dependent(d.as_ref())));
    out
}

/// The owner with this uid, from the caches: its metadata and kind.
fn cached_owner(ctx: &Context, uid: &str) -> Option<(ObjectMeta, &'static str)> {
    let is = |m: &ObjectMeta| m.uid.as_deref() == Some(uid);
    if let Some(d) = ctx.deployments.list().into_iter().find(|d| is(&d.metadata)) {
        return Some((d.metadata.clone(), "Deployment"));
    }
    if let Some(r) = ctx.replica_sets.list().into_iter().find(|r| is(&r.metadata)) {
        return Some((r.metadata.clone(), "ReplicaSet"));
    }
    if let Some(r) = ctx.replication_controllers.list().into_iter().find(|r| is(&r.metadata)) {
        return Some((r.metadata.clone(), "ReplicationController"));
    }
    // Pods own nothing here, but one deleted in the foreground waits for this collector.
    ctx.pods
        .list()
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_some() && is(&p.metadata))
        .map(|p| (p.metadata.clone(), "Pod"))
}

/// Whether the owner a reference names still exists (a live read; unknown kinds count as
/// existing, so nothing is deleted on a guess).
async fn owner_exists(ctx: &Context, namespace: Option<&str>, owner: &OwnerReference) -> anyhow::Result<bool> {
    let ns = namespace.unwrap_or_default();
    let meta = match owner.kind.as_str() {
        "Deployment" => {
            Api::<Deployment>::namespaced(ctx.client.clone(), ns).get_opt(&owner.name).await?.map(|o| o.metadata)
        }
        "ReplicaSet" => {
            Api::<ReplicaSet>::namespaced(ctx.client.clone(), ns).get_opt(&owner.name).await?.map(|o| o.metadata)
        }
        "ReplicationController" => Api::<ReplicationController>::namespaced(ctx.client.clone(), ns)
            .get_opt(&owner.name)
            .await?
            .map(|o| o.metadata),
        "Pod" => Api::<Pod>::namespaced(ctx.client.clone(), ns).get_opt(&owner.name).await?.map(|o| o.metadata),
        "Node" => Api::<Node>::all(ctx.client.clone()).get_opt(&owner.name).await?.map(|o| o.metadata),
        _ => return Ok(true),
    };
    Ok(meta.is_some_and(|m| m.uid.as_deref() == Some(owner.uid.as_str())))
}

async fn patch_dependent(ctx: &Context, d: &Dependent, patch: serde_json::Value) -> anyhow::Result<()> {
    let ns = d.namespace.clone().unwrap_or_default();
    let pp = PatchParams::default();
    let result = match d.kind {
        "Pod" => Api::<Pod>::namespaced(ctx.client.clone(), &ns)
            .patch(&d.name, &pp, &Patch::Strategic(patch))
            .await
            .map(|_| ()),
        "ReplicaSet" => Api::<ReplicaSet>::namespaced(ctx.client.clone(), &ns)
            .patch(&d.name, &pp, &Patch::Strategic(patch))
            .await
            .map(|_| ()),
        _ => Api::<Deployment>::namespaced(ctx.client.clone(), &ns)
            .patch(&d.name, &pp, &Patch::Strategic(patch))
            .await
            .map(|_| ()),
    };
    Ok(crate::tolerate(result, &[404])?)
}

async fn delete_dependent(ctx: &Context, d: &Dependent, policy: PropagationPolicy) -> anyhow::Result<()> {
    let ns = d.namespace.clone().unwrap_or_default();
    let dp = DeleteParams {
        propagation_policy: Some(policy),
        preconditions: Some(kube::api::Preconditions { uid: Some(d.uid.clone()), resource_version: None }),
        ..Default::default()
    };
    let result = match d.kind {
        "Pod" => Api::<Pod>::namespaced(ctx.client.clone(), &ns).delete(&d.name, &dp).await.map(|_| ()),
        "ReplicaSet" => Api::<ReplicaSet>::namespaced(ctx.client.clone(), &ns).delete(&d.name, &dp).await.map(|_| ()),
        _ => Api::<Deployment>::namespaced(ctx.client.clone(), &ns).delete(&d.name, &dp).await.map(|_| ()),
    };
    Ok(crate::tolerate(result, &[404, 409])?)
}

/// Removes one finalizer from an owner, guarded by its resourceVersion.
async fn remove_finalizer(ctx: &Context, meta: &ObjectMeta, kind: &str, finalizer: &str) -> anyhow::Result<()> {
    let rest: Vec<String> = meta.finalizers.iter().flatten().filter(|f| *f != finalizer).cloned().collect();
    let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": meta.resource_version}});
    let ns = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let pp = PatchParams::default();
    let result = match kind {
        "Deployment" => Api::<Deployment>::namespaced(ctx.client.clone(), &ns)
            .patch(&name, &pp, &Patch::Merge(patch))
            .await
            .map(|_| ()),
        "Pod" => {
            Api::<Pod>::namespaced(ctx.client.clone(), &ns).patch(&name, &pp, &Patch::Merge(patch)).await.map(|_| ())
        }
        "ReplicationController" => Api::<ReplicationController>::namespaced(ctx.client.clone(), &ns)
            .patch(&name, &pp, &Patch::Merge(patch))
            .await
            .map(|_| ()),
        _ => Api::<ReplicaSet>::namespaced(ctx.client.clone(), &ns)
            .patch(&name, &pp, &Patch::Merge(patch))
            .await
            .map(|_| ()),
    };
    Ok(crate::tolerate(result, &[404])?)
}

/// Looks at one owner uid: its dependents, its deletion, its finalizers.
pub async fn reconcile(ctx: Arc<Context>, uid: String) -> anyhow::Result<Action> {
    let dependents = dependents_of(&ctx, &uid);
    if let Some((meta, kind)) = cached_owner(&ctx, &uid) {
        if meta.deletion_timestamp.is_none() {
            return Ok(Action::Done);
        }
        let finalizers = meta.finalizers.clone().unwrap_or_default();
        if finalizers.iter().any(|f| f == "orphan") {
            for d in &dependents {
                patch_dependent(&ctx, d, json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}]}}))
                    .await?;
            }
            remove_finalizer(&ctx, &meta, kind, "orphan").await?;
        } else if finalizers.iter().any(|f| f == "foregroundDeletion") {
            if dependents.is_empty() {
                remove_finalizer(&ctx, &meta, kind, "foregroundDeletion").await?;
            } else {
                for d in &dependents {
                    delete_dependent(&ctx, d, PropagationPolicy::Foreground).await?;
                }
                return Ok(Action::RequeueAfter(Duration::from_millis(500)));
            }
        }
        return Ok(Action::Done);
    }
    // No owner in the caches: confirm with a live read before deleting anything.
    for d in dependents {
        let Some(reference) = d.owners.iter().find(|o| o.uid == uid).cloned() else { continue };
        if owner_exists(&ctx, d.namespace.as_deref(), &reference).await? {
            continue;
        }
        let mut alive = false;
        for other in d.owners.iter().filter(|o| o.uid != uid) {
            alive |= owner_exists(&ctx, d.namespace.as_deref(), other).await?;
        }
        if alive {
            patch_dependent(&ctx, &d, json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}]}}))
                .await?;
        } else {
            delete_dependent(&ctx, &d, PropagationPolicy::Background).await?;
        }
    }
    Ok(Action::Done)
}

/// Every 30 s, queues the owners that the caches do not hold, to catch missed events.
pub async fn resync(ctx: Arc<Context>) {
    loop {
        let mut known: HashSet<String> = HashSet::new();
        known.extend(ctx.deployments.list().iter().filter_map(|d| d.metadata.uid.clone()));
        known.extend(ctx.replica_sets.list().iter().filter_map(|r| r.metadata.uid.clone()));
        known.extend(ctx.replication_controllers.list().iter().filter_map(|r| r.metadata.uid.clone()));
        known.extend(ctx.pods.list().iter().filter_map(|p| p.metadata.uid.clone()));
        let mut owners: HashSet<String> = HashSet::new();
        for p in ctx.pods.list() {
            owners.extend(p.owner_references().iter().map(|o| o.uid.clone()));
        }
        for r in ctx.replica_sets.list() {
            owners.extend(r.owner_references().iter().map(|o| o.uid.clone()));
        }
        for uid in owners.difference(&known) {
            ctx.queues.gc.add(uid.clone());
        }
        for d in ctx.deployments.list().iter().filter(|d| d.metadata.deletion_timestamp.is_some()) {
            ctx.queues.gc.add(d.metadata.uid.clone().unwrap_or_default());
        }
        for r in ctx.replica_sets.list().iter().filter(|r| r.metadata.deletion_timestamp.is_some()) {
            ctx.queues.gc.add(r.metadata.uid.clone().unwrap_or_default());
        }
        for r in ctx.replication_controllers.list().iter().filter(|r| r.metadata.deletion_timestamp.is_some()) {
            ctx.queues.gc.add(r.metadata.uid.clone().unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
}
