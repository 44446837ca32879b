//! The ReplicaSet controller: keeps `spec.replicas` pods running for each ReplicaSet,
//! creating and deleting them in large concurrent batches, adopting matching orphans,
//! releasing pods that no longer match, and writing status. The same code keeps core/v1
//! ReplicationControllers, each seen as the ReplicaSet it is equivalent to (as upstream's
//! replication controller runs the ReplicaSet controller through a conversion).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::Context;
use crate::informer::{controller_of, key_of};
use crate::workqueue::Action;
use component_base::events::Recorder;

/// Whether a label selector selects a set of labels (an empty selector selects nothing, as
/// for workload controllers).
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let mut any = false;
    for (k, v) in selector.match_labels.iter().flatten() {
        any = true;
        if labels.get(k) != Some(v) {
            return false;
        }
    }
    for e in selector.match_expressions.iter().flatten() {
        any = true;
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    any
}

/// Whether a pod counts toward replicas: not finished and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// Whether the pod's Ready condition is True, and since when.
pub fn ready_since(pod: &Pod) -> Option<jiff::Timestamp> {
    let cond = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(cond.last_transition_time.as_ref().map_or(jiff::Timestamp::UNIX_EPOCH, |t| t.0))
}

/// Whether the pod has been Ready for `min_ready` seconds (`Some(wait)` when it will be).
pub fn available(pod: &Pod, min_ready: i64, now: jiff::Timestamp) -> Result<(), Option<Duration>> {
    let Some(since) = ready_since(pod) else { return Err(None) };
    if min_ready <= 0 {
        return Ok(());
    }
    let ready_for = now.duration_since(since).as_secs();
    if ready_for >= min_ready { Ok(()) } else { Err(Some(Duration::from_secs((min_ready - ready_for) as u64))) }
}

/// The kinds this controller keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// apps/v1 ReplicaSet.
    ReplicaSet,
    /// core/v1 ReplicationController.
    ReplicationController,
}

impl Kind {
    /// The kind named in an owner reference.
    pub fn of_owner(kind: &str) -> Option<Kind> {
        match kind {
            "ReplicaSet" => Some(Kind::ReplicaSet),
            "ReplicationController" => Some(Kind::ReplicationController),
            _ => None,
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Kind::ReplicaSet => "apps/v1",
            Kind::ReplicationController => "v1",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::ReplicaSet => "ReplicaSet",
            Kind::ReplicationController => "ReplicationController",
        }
    }

    /// The key under which an object's outstanding creates and deletes are counted (the two
    /// kinds may share a namespace and a name).
    pub fn expectation_key(self, key: &str) -> String {
        match self {
            Kind::ReplicaSet => key.to_owned(),
            Kind::ReplicationController => format!("rc:{key}"),
        }
    }

    /// The queue of this kind's keys.
    pub fn queue(self, ctx: &Context) -> &Arc<crate::workqueue::WorkQueue> {
        match self {
            Kind::ReplicaSet => &ctx.queues.replica_sets,
            Kind::ReplicationController => &ctx.queues.replication_controllers,
        }
    }
}

/// A ReplicationController as the ReplicaSet it is equivalent to: its label map becomes
/// `matchLabels`, everything else carries over (upstream's replication conversion).
pub fn as_replica_set(rc: &ReplicationController) -> ReplicaSet {
    let spec = rc.spec.clone().unwrap_or_default();
    let status = rc.status.as_ref();
    ReplicaSet {
        metadata: rc.metadata.clone(),
        spec: Some(ReplicaSetSpec {
            replicas: spec.replicas,
            min_ready_seconds: spec.min_ready_seconds,
            selector: LabelSelector { match_labels: spec.selector, match_expressions: None },
            template: spec.template,
        }),
        status: status.map(|s| ReplicaSetStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas,
            ready_replicas: s.ready_replicas,
            available_replicas: s.available_replicas,
            observed_generation: s.observed_generation,
            conditions: None,
            terminating_replicas: None,
        }),
    }
}

/// The object a sync works on: its ReplicaSet view, and the object itself for events.
struct Owner {
    kind: Kind,
    view: ReplicaSet,
    rc: Option<Arc<ReplicationController>>,
    /// The expectations' key.
    key: String,
}

impl Owner {
    fn record(&self, recorder: &Recorder, warning: bool, reason: &str, message: String) {
        match &self.rc {
            Some(rc) => recorder.record(rc.as_ref(), warning, reason, message),
            None => recorder.record(&self.view, warning, reason, message),
        }
    }
}

fn controller_ref(rs: &ReplicaSet, kind: Kind) -> OwnerReference {
    OwnerReference {
        api_version: kind.api_version().into(),
        kind: kind.name().into(),
        name: rs.name_any(),
        uid: rs.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The pod a ReplicaSet's template describes.
fn pod_from_template(rs: &ReplicaSet, kind: Kind) -> Pod {
    let template = rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(rs, kind)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Running") => 2,
        _ => 1,
    }
}

/// Orders pods so that the first are the best to delete, as upstream ranks them:
/// unscheduled, then pending, then not ready, then the most recently ready, then newest.
pub fn deletion_order(pods: &mut [Arc<Pod>]) {
    pods.sort_by(|a, b| {
        let assigned = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
        assigned(a)
            .cmp(&assigned(b))
            .then(phase_rank(a).cmp(&phase_rank(b)))
            .then(ready_since(a).is_some().cmp(&ready_since(b).is_some()))
            .then(ready_since(b).cmp(&ready_since(a)))
            .then(
                b.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .cmp(&a.metadata.creation_timestamp.as_ref().map(|t| t.0)),
            )
    });
}

/// Reconciles one ReplicaSet (or, for `adopt:ns/pod`, finds the ReplicaSets and
/// ReplicationControllers an orphan might belong to).
pub async fn reconcile(ctx: Arc<Context>, key: String) -> anyhow::Result<Action> {
    if let Some(pod_key) = key.strip_prefix("adopt:") {
        if let Some(pod) = ctx.pods.get(pod_key) {
            let labels = pod.labels().clone();
            let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
            for rs in ctx.replica_sets.in_namespace(namespace) {
                if rs.spec.as_ref().is_some_and(|s| selects(&s.selector, &labels)) {
                    ctx.queues.replica_sets.add(key_of(rs.as_ref()));
                }
            }
            for rc in ctx.replication_controllers.in_namespace(namespace) {
                if as_replica_set(&rc).spec.as_ref().is_some_and(|s| selects(&s.selector, &labels)) {
                    ctx.queues.replication_controllers.add(key_of(rc.as_ref()));
                }
            }
        }
        return Ok(Action::Done);
    }
    let owner = ctx.replica_sets.get(&key).map(|rs| Owner {
        kind: Kind::ReplicaSet,
        view: (*rs).clone(),
        rc: None,
        key: Kind::ReplicaSet.expectation_key(&key),
    });
    sync(ctx, owner, &key).await
}

/// Reconciles one ReplicationController with the ReplicaSet code.
pub async fn reconcile_rc(ctx: Arc<Context>, key: String) -> anyhow::Result<Action> {
    let owner = ctx.replication_controllers.get(&key).map(|rc| Owner {
        kind: Kind::ReplicationController,
        view: as_replica_set(&rc),
        rc: Some(rc),
        key: Kind::ReplicationController.expectation_key(&key),
    });
    if owner.is_none() {
        ctx.expectations.forget(&Kind::ReplicationController.expectation_key(&key));
        return Ok(Action::Done);
    }
    sync(ctx, owner, &key).await
}

async fn sync(ctx: Arc<Context>, owner: Option<Owner>, key: &str) -> anyhow::Result<Action> {
    let Some(owner) = owner else {
        ctx.expectations.forget(key);
        return Ok(Action::Done);
    };
    let rs = &owner.view;
    if rs.metadata.deletion_timestamp.is_some() {
        return Ok(Action::Done);
    }
    let Some(spec) = rs.spec.clone() else { return Ok(Action::Done) };
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let namespace = rs.namespace().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let component = match owner.kind {
        Kind::ReplicaSet => "replicaset-controller",
        Kind::ReplicationController => "replication-controller",
    };
    let recorder = Recorder::new(ctx.client.clone(), component);

    // Adopt orphans that match, release owned pods that no longer do.
    for pod in ctx.pods.in_namespace(&namespace) {
        let matches = selects(&spec.selector, pod.labels());
        let controller = controller_of(pod.as_ref());
        if controller.is_none() && matches && is_active(&pod) {
            let patch =
                json!({"metadata": {"ownerReferences": [controller_ref(rs, owner.kind)], "uid": pod.metadata.uid}});
            if let Err(e) = pods_api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(patch)).await {
                tracing::debug!(pod = %pod.name_any(), error = %e, "adopting failed");
            }
        } else if controller.is_some_and(|o| o.uid == uid) && !matches {
            let patch =
                json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}], "uid": pod.metadata.uid}});
            if let Err(e) = pods_api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(patch)).await {
                tracing::debug!(pod = %pod.name_any(), error = %e, "releasing failed");
            }
        }
    }

    let owned: Vec<Arc<Pod>> = ctx
        .pods
        .owned_by(&uid)
        .into_iter()
        .filter(|p| controller_of(p.as_ref()).is_some_and(|o| o.uid == uid))
        .collect();
    let mut active: Vec<Arc<Pod>> = owned.iter().filter(|p| is_active(p)).cloned().collect();
    let want = i64::from(spec.replicas.unwrap_or(1));
    if ctx.expectations.satisfied(&owner.key) {
        let diff = want - active.len() as i64;
        if diff > 0 {
            create_pods(&ctx, &owner, &pods_api, &recorder, diff as usize).await?;
        } else if diff < 0 {
            deletion_order(&mut active);
            let victims: Vec<Arc<Pod>> = active.iter().take((-diff) as usize).cloned().collect();
            delete_pods(&ctx, &owner, &pods_api, &recorder, victims).await?;
        }
    }
    update_status(&ctx, &owner, &owned, spec.min_ready_seconds.unwrap_or(0)).await
}

async fn create_pods(
    ctx: &Context,
    owner: &Owner,
    api: &Api<Pod>,
    recorder: &Recorder,
    count: usize,
) -> anyhow::Result<()> {
    let key = owner.key.as_str();
    let count = count.min(ctx.config.burst.max(1));
    let template = pod_from_template(&owner.view, owner.kind);
    // Expect them before creating: the watch may report a pod before its create returns.
    ctx.expectations.expect_adds(key, count);
    // Slow start: batches double from 16, and a failing batch stops the rest.
    let mut created = Vec::new();
    let mut batch = 16usize;
    let mut remaining = count;
    let mut failure = None;
    while remaining > 0 && failure.is_none() {
        let n = batch.min(remaining);
        let results: Vec<_> = stream::iter(0..n)
            .map(|_| {
                let pod = template.clone();
                async move { api.create(&PostParams::default(), &pod).await }
            })
            .buffer_unordered(n)
            .collect()
            .await;
        for r in results {
            match r {
                Ok(pod) => created.push(key_of(&pod)),
                Err(e) => {
                    ctx.expectations.lower_adds(key, 1);
                    failure = Some(e);
                }
            }
        }
        remaining -= n;
        batch *= 2;
    }
    // What was never attempted will not show up either.
    ctx.expectations.lower_adds(key, remaining);
    if !created.is_empty() {
        let names: Vec<&str> = created.iter().map(|k| k.rsplit('/').next().unwrap_or(k)).collect();
        let message = match names.len() {
            1 => format!("Created pod: {}", names[0]),
            n => format!("Created {n} pods: {}{}", names[..n.min(3)].join(", "), if n > 3 { ", ..." } else { "" }),
        };
        owner.record(recorder, false, "SuccessfulCreate", message);
    }
    if let Some(e) = failure {
        owner.record(recorder, true, "FailedCreate", format!("Error creating: {e}"));
        return Err(e.into());
    }
    Ok(())
}

async fn delete_pods(
    ctx: &Context,
    owner: &Owner,
    api: &Api<Pod>,
    recorder: &Recorder,
    victims: Vec<Arc<Pod>>,
) -> anyhow::Result<()> {
    let key = owner.key.as_str();
    let victims: Vec<Arc<Pod>> = victims.into_iter().take(ctx.config.burst.max(1)).collect();
    ctx.expectations.expect_deletes(key, victims.iter().map(|p| key_of(p.as_ref())));
    let results: Vec<_> = stream::iter(victims.iter().cloned())
        .map(|pod| async move {
            let dp = DeleteParams {
                preconditions: pod
                    .metadata
                    .uid
                    .clone()
                    .map(|uid| kube::api::Preconditions { uid: Some(uid), resource_version: None }),
                ..Default::default()
            };
            (pod.name_any(), api.delete(&pod.name_any(), &dp).await)
        })
        .buffer_unordered(victims.len().max(1))
        .collect()
        .await;
    let mut deleted = 0;
    let mut failure = None;
    let namespace = owner.view.namespace().unwrap_or_default();
    for (name, r) in results {
        match r {
            Ok(_) => deleted += 1,
            // Already gone, or replaced by another pod of that name: nothing to wait for.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                ctx.expectations.observed_delete(key, &format!("{namespace}/{name}"));
            }
            Err(e) => {
                ctx.expectations.observed_delete(key, &format!("{namespace}/{name}"));
                failure.get_or_insert(anyhow::anyhow!("deleting pod {name}: {e}"));
            }
        }
    }
    if deleted > 0 {
        owner.record(recorder, false, "SuccessfulDelete", format!("Deleted {deleted} pod(s)"));
    }
    failure.map_or(Ok(()), Err)
}

async fn update_status(ctx: &Context, owner: &Owner, owned: &[Arc<Pod>], min_ready: i32) -> anyhow::Result<Action> {
    let rs = &owner.view;
    let now = jiff::Timestamp::now();
    let template_labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let active: Vec<&Arc<Pod>> = owned.iter().filter(|p| is_active(p)).collect();
    let mut next_check: Option<Duration> = None;
    let mut available_count = 0;
    for p in &active {
        match available(p, i64::from(min_ready), now) {
            Ok(()) => available_count += 1,
            Err(Some(wait)) => next_check = Some(next_check.map_or(wait, |n| n.min(wait))),
            Err(None) => {}
        }
    }
    let status = ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(
            active.iter().filter(|p| template_labels.iter().all(|(k, v)| p.labels().get(k) == Some(v))).count() as i32,
        ),
        ready_replicas: Some(active.iter().filter(|p| ready_since(p).is_some()).count() as i32),
        available_replicas: Some(available_count),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: None,
    };
    if rs.status.as_ref() != Some(&status) {
        // The two kinds' statuses share these fields' names.
        let namespace = rs.namespace().unwrap_or_default();
        let (name, pp, patch) = (rs.name_any(), PatchParams::default(), Patch::Merge(json!({"status": status})));
        let result = match owner.kind {
            Kind::ReplicaSet => Api::<ReplicaSet>::namespaced(ctx.client.clone(), &namespace)
                .patch_status(&name, &pp, &patch)
                .await
                .map(|_| ()),
            Kind::ReplicationController => Api::<ReplicationController>::namespaced(ctx.client.clone(), &namespace)
                .patch_status(&name, &pp, &patch)
                .await
                .map(|_| ()),
        };
        crate::tolerate(result, &[404])?;
    }
    Ok(next_check.map_or(Action::Done, |d| Action::RequeueAfter(d + Duration::from_millis(100))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready_at: Option<i64>, created: i64) -> Arc<Pod> {
        let mut p = json!({"metadata": {"name": name, "creationTimestamp": jiff::Timestamp::from_second(created).unwrap().to_string()},
            "spec": {"containers": []}, "status": {"phase": phase}});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        if let Some(t) = ready_at {
            p["status"]["conditions"] = json!([{"type": "Ready", "status": "True", "lastTransitionTime": jiff::Timestamp::from_second(t).unwrap().to_string()}]);
        }
        Arc::new(serde_json::from_value(p).unwrap())
    }

    #[test]
    fn deletes_unscheduled_then_pending_then_unready_then_newest() {
        let mut pods = vec![
            pod("ready-old", Some("n"), "Running", Some(100), 10),
            pod("ready-new", Some("n"), "Running", Some(200), 20),
            pod("unready", Some("n"), "Running", None, 5),
            pod("pending", Some("n"), "Pending", None, 1),
            pod("unscheduled", None, "Pending", None, 0),
        ];
        deletion_order(&mut pods);
        let names: Vec<_> = pods.iter().map(|p| p.name_any()).collect();
        assert_eq!(names, vec!["unscheduled", "pending", "unready", "ready-new", "ready-old"]);
    }

    #[test]
    fn selectors_and_availability() {
        let sel: LabelSelector = serde_json::from_value(json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]})).unwrap();
        let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert!(selects(&sel, &labels(&[("app", "web")])));
        assert!(!selects(&sel, &labels(&[("app", "web"), ("tier", "db")])));
        assert!(!selects(&LabelSelector::default(), &labels(&[("app", "web")])), "empty selects nothing");
        let p = pod("p", Some("n"), "Running", Some(1000), 0);
        let now = jiff::Timestamp::from_second(1005).unwrap();
        assert_eq!(available(&p, 0, now), Ok(()));
        assert_eq!(available(&p, 10, now), Err(Some(Duration::from_secs(5))));
        assert_eq!(available(&pod("q", None, "Pending", None, 0), 0, now), Err(None));
    }
}
