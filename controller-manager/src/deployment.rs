//! The Deployment controller: one ReplicaSet per pod template (named
//! `<deployment>-<pod-template-hash>`), rolled with RollingUpdate (maxSurge/maxUnavailable)
//! or Recreate, revision annotations and history cleanup, pause, proportional scaling
//! mid-rollout, rollback by template (an old ReplicaSet becomes the newest revision again),
//! and the status and conditions `kubectl rollout status` reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::Context;
use crate::informer::controller_of;
use crate::replicaset::selects;
use crate::rollout::{self, DESIRED_REPLICAS, HASH_LABEL, MAX_REPLICAS, REVISION, Rs};
use crate::workqueue::Action;
use component_base::events::Recorder;

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations().get(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn status_of(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.as_ref();
    (
        s.map_or(0, |s| s.replicas),
        s.and_then(|s| s.ready_replicas).unwrap_or(0),
        s.and_then(|s| s.available_replicas).unwrap_or(0),
    )
}

fn owner_ref(d: &Deployment) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: d.name_any(),
        uid: d.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

struct Sync<'a> {
    ctx: &'a Context,
    d: &'a Deployment,
    api: Api<ReplicaSet>,
    recorder: Recorder,
    desired: i32,
    surge: i32,
    unavailable: i32,
}

impl Sync<'_> {
    /// Scales a ReplicaSet, stamping the deployment's size on it.
    async fn scale(&self, rs: &mut ReplicaSet, to: i32) -> anyhow::Result<()> {
        let from = replicas(rs);
        let desired = self.desired.to_string();
        let max = (self.desired + self.surge).to_string();
        let stamped = rs.annotations().get(DESIRED_REPLICAS) == Some(&desired)
            && rs.annotations().get(MAX_REPLICAS) == Some(&max);
        if from == to && stamped {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {DESIRED_REPLICAS: desired, MAX_REPLICAS: max}}, "spec": {"replicas": to}});
        *rs = self.api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
        if from != to {
            let way = if to > from { "up" } else { "down" };
            self.recorder.record(
                self.d,
                false,
                "ScalingReplicaSet",
                format!("Scaled {way} replica set {} from {from} to {to}", rs.name_any()),
            );
        }
        Ok(())
    }

    async fn create_new(
        &self,
        template: &k8s_openapi::api::core::v1::PodTemplateSpec,
        old_total: i32,
        max_revision: i64,
        recreate: bool,
    ) -> anyhow::Result<Option<ReplicaSet>> {
        let spec = self.d.spec.as_ref().cloned().unwrap_or_default();
        let collision = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = rollout::template_hash(template, collision);
        let mut template = template.clone();
        template
            .metadata
            .get_or_insert_default()
            .labels
            .get_or_insert_default()
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector.match_labels.get_or_insert_default().insert(HASH_LABEL.into(), hash.clone());
        let mut labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
        labels.insert(HASH_LABEL.into(), hash.clone());
        let start = if recreate {
            if old_total > 0 { 0 } else { self.desired }
        } else {
            rollout::new_rs_replicas(self.desired, self.surge, old_total, 0)
        };
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{}-{hash}", self.d.name_any())),
                namespace: self.d.namespace(),
                labels: Some(labels),
                annotations: Some({
                    let mut a = copied_annotations(self.d);
                    a.insert(REVISION.to_owned(), (max_revision + 1).to_string());
                    a.insert(DESIRED_REPLICAS.to_owned(), self.desired.to_string());
                    a.insert(MAX_REPLICAS.to_owned(), (self.desired + self.surge).to_string());
                    a
                }),
                owner_references: Some(vec![owner_ref(self.d)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(start),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template.clone()),
            }),
            status: None,
        };
        match self.api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                self.recorder.record(
                    self.d,
                    false,
                    "ScalingReplicaSet",
                    format!("Scaled up replica set {} from 0 to {start}", created.name_any()),
                );
                Ok(Some(created))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Ours, not in the cache yet, or a hash collision: look at it.
                let existing = self.api.get(&rs.name_any()).await?;
                let theirs = existing.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
                let ours_already =
                    controller_of(&existing).is_some_and(|o| Some(&o.uid) == self.d.metadata.uid.as_ref());
                if ours_already && rollout::same_template(&theirs, &template) {
                    return Ok(Some(existing));
                }
                let next = collision.unwrap_or(0) + 1;
                let d_api: Api<Deployment> =
                    Api::namespaced(self.ctx.client.clone(), &self.d.namespace().unwrap_or_default());
                d_api
                    .patch_status(
                        &self.d.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": {"collisionCount": next}})),
                    )
                    .await?;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Reconciles one Deployment.
pub async fn reconcile(ctx: Arc<Context>, key: String) -> anyhow::Result<Action> {
    let Some(d) = ctx.deployments.get(&key) else { return Ok(Action::Done) };
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::Done);
    }
    let Some(spec) = d.spec.clone() else { return Ok(Action::Done) };
    let namespace = d.namespace().unwrap_or_default();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let desired = spec.replicas.unwrap_or(1);
    let rolling = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) != Some("Recreate");
    let ru = spec.strategy.as_ref().and_then(|s| s.rolling_update.as_ref());
    let (surge, unavailable) = if rolling {
        rollout::fenceposts(ru.and_then(|r| r.max_surge.as_ref()), ru.and_then(|r| r.max_unavailable.as_ref()), desired)
    } else {
        (0, desired)
    };
    let sync = Sync {
        ctx: &ctx,
        d: &d,
        api: api.clone(),
        recorder: Recorder::new(ctx.client.clone(), "deployment-controller"),
        desired,
        surge,
        unavailable,
    };

    // Adopt matching orphan ReplicaSets.
    for rs in ctx.replica_sets.in_namespace(&namespace) {
        if controller_of(rs.as_ref()).is_none()
            && rs.metadata.deletion_timestamp.is_none()
            && selects(&spec.selector, rs.labels())
        {
            let patch = json!({"metadata": {"ownerReferences": [owner_ref(&d)], "uid": rs.metadata.uid}});
            let _ = api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Strategic(patch)).await;
        }
    }
    let mut rss: Vec<ReplicaSet> = ctx
        .replica_sets
        .owned_by(&uid)
        .into_iter()
        .filter(|rs| {
            controller_of(rs.as_ref()).is_some_and(|o| o.uid == uid) && rs.metadata.deletion_timestamp.is_none()
        })
        .map(|rs| (*rs).clone())
        .collect();
    rss.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .then(a.name_any().cmp(&b.name_any()))
    });
    let template = spec.template.clone();
    let mut new_idx = rss.iter().position(|rs| {
        rs.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| rollout::same_template(t, &template))
    });
    let max_old_revision =
        rss.iter().enumerate().filter(|(i, _)| Some(*i) != new_idx).map(|(_, rs)| revision(rs)).max().unwrap_or(0);
    let paused = spec.paused.unwrap_or(false);
    let mut created_new = false;

    if new_idx.is_none() && !paused {
        let old_total: i32 = rss.iter().map(replicas).sum();
        match sync.create_new(&template, old_total, max_old_revision, !rolling).await? {
            Some(rs) => {
                created_new = true;
                rss.push(rs);
                new_idx = Some(rss.len() - 1);
            }
            None => return Ok(Action::RequeueAfter(Duration::from_millis(100))),
        }
    } else if let Some(i) = new_idx {
        // A rollback (or a template that went back): the old ReplicaSet is the newest again.
        if revision(&rss[i]) <= max_old_revision {
            let previous = revision(&rss[i]);
            let mut annotations = serde_json::Map::new();
            for (k, v) in copied_annotations(&d) {
                annotations.insert(k, json!(v));
            }
            annotations.insert(REVISION.into(), json!((max_old_revision + 1).to_string()));
            annotations.insert("deployment.kubernetes.io/revision-history".into(), json!(previous.to_string()));
            let patch = json!({"metadata": {"annotations": annotations}});
            rss[i] = api.patch(&rss[i].name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
        }
    }

    let active: Vec<usize> = (0..rss.len()).filter(|i| replicas(&rss[*i]) > 0).collect();
    let scaling = active
        .iter()
        .any(|i| rss[*i].annotations().get(DESIRED_REPLICAS).and_then(|v| v.parse::<i32>().ok()) != Some(desired));
    if scaling || paused {
        scale_proportionally(&sync, &mut rss, new_idx, rolling).await?;
    } else if let Some(n) = new_idx {
        if rolling {
            roll(&sync, &mut rss, n).await?;
        } else {
            recreate(&sync, &ctx, &mut rss, n).await?;
        }
    }
    finish(&ctx, &sync, &mut rss, new_idx, created_new, paused).await
}

/// One step of a rolling update: grow the new ReplicaSet within the surge, then shrink old
/// ones within the unavailability budget.
async fn roll(sync: &Sync<'_>, rss: &mut [ReplicaSet], n: usize) -> anyhow::Result<()> {
    // Count the pods an old ReplicaSet still has, not only what it was told to keep: its
    // controller may not have deleted them yet, and the surge bound is about pods.
    let total: i32 = rss.iter().map(|rs| replicas(rs).max(status_of(rs).0)).sum();
    let new_replicas = replicas(&rss[n]);
    let target = if new_replicas > sync.desired {
        sync.desired
    } else {
        rollout::new_rs_replicas(sync.desired, sync.surge, total, new_replicas)
    };
    if target != new_replicas {
        sync.scale(&mut rss[n], target).await?;
        return Ok(());
    }
    let view = |rs: &ReplicaSet| Rs { name: rs.name_any(), replicas: replicas(rs), available: status_of(rs).2 };
    let olds: Vec<usize> = (0..rss.len()).filter(|i| *i != n).collect();
    let old_views: Vec<Rs> = olds.iter().map(|i| view(&rss[*i])).collect();
    for (j, to) in rollout::scale_down_old(sync.desired, sync.unavailable, &view(&rss[n]), &old_views) {
        sync.scale(&mut rss[olds[j]], to).await?;
    }
    Ok(())
}

/// Recreate: every old pod goes before any new one starts.
async fn recreate(sync: &Sync<'_>, ctx: &Context, rss: &mut [ReplicaSet], n: usize) -> anyhow::Result<()> {
    for (i, rs) in rss.iter_mut().enumerate() {
        if i != n && replicas(rs) > 0 {
            sync.scale(rs, 0).await?;
        }
    }
    let old_pods_left = rss.iter().enumerate().filter(|(i, _)| *i != n).any(|(_, rs)| {
        ctx.pods
            .owned_by(rs.metadata.uid.as_deref().unwrap_or_default())
            .iter()
            .any(|p| crate::replicaset::is_active(p))
    });
    if !old_pods_left {
        sync.scale(&mut rss[n], sync.desired).await?;
    }
    Ok(())
}

/// A scale of the deployment (or a paused one): spread the change over the active
/// ReplicaSets in proportion to their sizes.
async fn scale_proportionally(
    sync: &Sync<'_>,
    rss: &mut [ReplicaSet],
    new_idx: Option<usize>,
    rolling: bool,
) -> anyhow::Result<()> {
    let mut active: Vec<usize> = (0..rss.len()).filter(|i| replicas(&rss[*i]) > 0).collect();
    if active.len() <= 1 {
        let target = active.first().copied().or(new_idx).or(if rss.is_empty() { None } else { Some(rss.len() - 1) });
        if let Some(i) = target {
            sync.scale(&mut rss[i], sync.desired).await?;
        }
        return Ok(());
    }
    let allowed = if rolling && sync.desired > 0 { sync.desired + sync.surge } else { sync.desired };
    let total: i32 = active.iter().map(|i| replicas(&rss[*i])).sum();
    active.sort_by_key(|i| std::cmp::Reverse(replicas(&rss[*i])));
    let sizes: Vec<i32> = active.iter().map(|i| replicas(&rss[*i])).collect();
    let next = rollout::proportional(&sizes, allowed - total);
    for (k, i) in active.iter().enumerate() {
        sync.scale(&mut rss[*i], next[k]).await?;
    }
    Ok(())
}

fn condition(type_: &str, status: &str, reason: &str, message: String, now: Time) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// Sets a condition, keeping its transition time when only the details changed.
fn set_condition(conditions: &mut Vec<DeploymentCondition>, mut c: DeploymentCondition, refresh: bool) {
    if let Some(old) = conditions.iter().find(|o| o.type_ == c.type_) {
        if old.status == c.status && old.reason == c.reason && !refresh {
            return;
        }
        if old.status == c.status {
            c.last_transition_time = old.last_transition_time.clone();
        }
    }
    conditions.retain(|o| o.type_ != c.type_);
    conditions.push(c);
}

/// The deployment's annotations its new ReplicaSet carries, as upstream copies them (so
/// `kubernetes.io/change-cause` shows in `rollout history`): all but the controller's own
/// and client-side apply's copy of the object.
fn copied_annotations(d: &Deployment) -> BTreeMap<String, String> {
    const SKIPPED: &[&str] = &[
        REVISION,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deployment.kubernetes.io/revision-history",
        "kubectl.kubernetes.io/last-applied-configuration",
    ];
    d.annotations()
        .iter()
        .filter(|(k, _)| !SKIPPED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Status, conditions, the deployment's revision annotation and history cleanup.
async fn finish(
    ctx: &Context,
    sync: &Sync<'_>,
    rss: &mut [ReplicaSet],
    new_idx: Option<usize>,
    created_new: bool,
    paused: bool,
) -> anyhow::Result<Action> {
    let d = sync.d;
    let spec = d.spec.clone().unwrap_or_default();
    let progress = Progress { new_idx, created_new, paused, desired: sync.desired, unavailable: sync.unavailable };
    let (status, requeue) = compute_status(d, rss, &progress, jiff::Timestamp::now());
    let complete = is_complete(&status, sync.desired);
    let d_api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default());
    if d.status.as_ref() != Some(&status) {
        d_api.patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
    }
    if let Some(i) = new_idx {
        let rev = revision(&rss[i]).to_string();
        if d.annotations().get(REVISION) != Some(&rev) {
            d_api
                .patch(
                    &d.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": {REVISION: rev}}})),
                )
                .await?;
        }
    }
    if complete && !paused {
        for name in history_to_delete(rss, new_idx, spec.revision_history_limit.unwrap_or(10)) {
            crate::tolerate(sync.api.delete(&name, &DeleteParams::default()).await, &[404])?;
        }
    }
    Ok(requeue.map_or(Action::Done, Action::RequeueAfter))
}

/// Where a sync left the rollout, for [`compute_status`].
struct Progress {
    new_idx: Option<usize>,
    created_new: bool,
    paused: bool,
    desired: i32,
    unavailable: i32,
}

/// Every replica updated and available, and no old one left.
fn is_complete(status: &DeploymentStatus, desired: i32) -> bool {
    status.updated_replicas == Some(desired)
        && status.replicas == Some(desired)
        && status.available_replicas == Some(desired)
}

/// The deployment's status from its ReplicaSets at `now`, as upstream's sync and progress
/// code computes it (pkg/controller/deployment/progress.go, sync.go): counts, `Available`,
/// `Progressing` with its reasons, and `ProgressDeadlineExceeded` once
/// `progressDeadlineSeconds` pass without progress. Also says when to look again for the
/// deadline.
fn compute_status(
    d: &Deployment,
    rss: &[ReplicaSet],
    p: &Progress,
    now: jiff::Timestamp,
) -> (DeploymentStatus, Option<Duration>) {
    let spec = d.spec.clone().unwrap_or_default();
    let old = d.status.clone().unwrap_or_default();
    let now = Time(now);
    let (mut replicas_sum, mut ready, mut available) = (0, 0, 0);
    for rs in rss {
        let (r, re, a) = status_of(rs);
        replicas_sum += r;
        ready += re;
        available += a;
    }
    let spec_total: i32 = rss.iter().map(replicas).sum();
    let updated = p.new_idx.map_or(0, |i| status_of(&rss[i]).0);
    let new_name = p.new_idx.map(|i| rss[i].name_any()).unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(replicas_sum),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((spec_total - available).max(0)),
        conditions: old.conditions.clone(),
        collision_count: old.collision_count,
        terminating_replicas: None,
    };
    let mut conditions = status.conditions.take().unwrap_or_default();
    let min_available = p.desired - p.unavailable;
    let availability = if available >= min_available {
        condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            now.clone(),
        )
    } else {
        condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            now.clone(),
        )
    };
    set_condition(&mut conditions, availability, false);
    let complete = is_complete(&status, p.desired);
    let deadline = spec.progress_deadline_seconds.map(i64::from);
    let mut requeue = None;
    if p.paused {
        set_condition(
            &mut conditions,
            condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused".into(), now.clone()),
            false,
        );
    } else if p.created_new {
        set_condition(
            &mut conditions,
            condition(
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                format!("Created new replica set \"{new_name}\""),
                now.clone(),
            ),
            true,
        );
    } else if complete {
        set_condition(
            &mut conditions,
            condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                now.clone(),
            ),
            false,
        );
    } else {
        let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
        let progressing = updated > old.updated_replicas.unwrap_or(0)
            || ready > old.ready_replicas.unwrap_or(0)
            || available > old.available_replicas.unwrap_or(0)
            || old_old > replicas_sum - updated
            || conditions
                .iter()
                .find(|c| c.type_ == "Progressing")
                .is_some_and(|c| c.reason.as_deref() == Some("DeploymentPaused"));
        if progressing {
            set_condition(
                &mut conditions,
                condition(
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    format!("ReplicaSet \"{new_name}\" is progressing."),
                    now.clone(),
                ),
                true,
            );
        }
        let last = conditions.iter().find(|c| c.type_ == "Progressing").and_then(|c| c.last_update_time.clone());
        if let (Some(deadline), Some(last)) = (deadline, last) {
            let elapsed = now.0.duration_since(last.0).as_secs();
            if elapsed >= deadline {
                set_condition(
                    &mut conditions,
                    condition(
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                        now.clone(),
                    ),
                    false,
                );
            } else {
                requeue = Some(Duration::from_secs((deadline - elapsed) as u64 + 1));
            }
        }
    }
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    status.conditions = Some(conditions);
    (status, requeue)
}

/// The oldest empty old ReplicaSets beyond `revisionHistoryLimit`, to delete.
fn history_to_delete(rss: &[ReplicaSet], new_idx: Option<usize>, limit: i32) -> Vec<String> {
    let mut old: Vec<&ReplicaSet> = rss
        .iter()
        .enumerate()
        .filter(|(i, rs)| Some(*i) != new_idx && replicas(rs) == 0 && status_of(rs).0 == 0)
        .map(|(_, rs)| rs)
        .collect();
    let excess = old.len().saturating_sub(limit.max(0) as usize);
    old.sort_by_key(|rs| revision(rs));
    old.into_iter().take(excess).map(|rs| rs.name_any()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, revision: i64, spec: i32, (replicas, ready, available): (i32, i32, i32)) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {REVISION: revision.to_string()}},
            "spec": {"replicas": spec, "selector": {}},
            "status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": available},
        }))
        .unwrap()
    }

    fn deploy(deadline: Option<i32>, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": 3},
            "spec": {"replicas": 4, "selector": {}, "template": {}, "progressDeadlineSeconds": deadline},
            "status": status,
        }))
        .unwrap()
    }

    fn progress(new_idx: Option<usize>) -> Progress {
        // 4 replicas, maxUnavailable 1: at least 3 must be available.
        Progress { new_idx, created_new: false, paused: false, desired: 4, unavailable: 1 }
    }

    fn cond<'a>(s: &'a DeploymentStatus, type_: &str) -> &'a DeploymentCondition {
        s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == type_).unwrap()
    }

    fn at(t: &str) -> jiff::Timestamp {
        t.parse().unwrap()
    }

    #[test]
    fn counts_and_availability_follow_the_replica_sets() {
        let d = deploy(None, json!({}));
        let rss = [rs("old", 1, 2, (2, 2, 2)), rs("new", 2, 2, (2, 1, 0))];
        let (s, _) = compute_status(&d, &rss, &progress(Some(1)), at("2026-01-01T00:00:00Z"));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(
            (s.replicas, s.updated_replicas, s.ready_replicas, s.available_replicas, s.unavailable_replicas),
            (Some(4), Some(2), Some(3), Some(2), Some(2))
        );
        let available = cond(&s, "Available");
        assert_eq!(
            (available.status.as_str(), available.reason.as_deref()),
            ("False", Some("MinimumReplicasUnavailable"))
        );

        let rss = [rs("old", 1, 1, (1, 1, 1)), rs("new", 2, 3, (3, 3, 2))];
        let (s, _) = compute_status(&d, &rss, &progress(Some(1)), at("2026-01-01T00:00:00Z"));
        let available = cond(&s, "Available");
        assert_eq!(
            (available.status.as_str(), available.reason.as_deref()),
            ("True", Some("MinimumReplicasAvailable"))
        );
        assert_eq!(available.message.as_deref(), Some("Deployment has minimum availability."));
    }

    #[test]
    fn a_rollout_without_progress_past_its_deadline_is_marked_exceeded() {
        let stalled = json!({"replicas": 4, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2,
            "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        let rss = [rs("old", 1, 2, (2, 2, 2)), rs("new", 2, 2, (2, 0, 0))];
        let d = deploy(Some(600), stalled);

        // 400 s in: still progressing, look again when the deadline would pass.
        let (s, requeue) = compute_status(&d, &rss, &progress(Some(1)), at("2026-01-01T00:06:40Z"));
        assert_eq!(cond(&s, "Progressing").reason.as_deref(), Some("ReplicaSetUpdated"));
        assert_eq!(requeue, Some(Duration::from_secs(201)));

        // 600 s in, nothing changed: False, ProgressDeadlineExceeded, in upstream's words.
        let (s, requeue) = compute_status(&d, &rss, &progress(Some(1)), at("2026-01-01T00:10:00Z"));
        let p = cond(&s, "Progressing");
        assert_eq!((p.status.as_str(), p.reason.as_deref()), ("False", Some("ProgressDeadlineExceeded")));
        assert_eq!(p.message.as_deref(), Some("ReplicaSet \"new\" has timed out progressing."));
        assert_eq!(p.last_transition_time, Some(Time(at("2026-01-01T00:10:00Z"))));
        assert_eq!(requeue, None);

        // One more pod became ready: progress, and the deadline starts again.
        let moved = [rs("old", 1, 2, (2, 2, 2)), rs("new", 2, 2, (2, 1, 0))];
        let (s, requeue) = compute_status(&d, &moved, &progress(Some(1)), at("2026-01-01T00:10:00Z"));
        let p = cond(&s, "Progressing");
        assert_eq!((p.status.as_str(), p.reason.as_deref()), ("True", Some("ReplicaSetUpdated")));
        assert_eq!(p.last_update_time, Some(Time(at("2026-01-01T00:10:00Z"))));
        assert_eq!(p.last_transition_time, Some(Time(at("2026-01-01T00:00:00Z"))), "same status: transition kept");
        assert_eq!(requeue, Some(Duration::from_secs(601)));

        // No deadline: never exceeded.
        let d = deploy(None, d.status.as_ref().map(|s| serde_json::to_value(s).unwrap()).unwrap());
        let (s, requeue) = compute_status(&d, &rss, &progress(Some(1)), at("2027-01-01T00:00:00Z"));
        assert_eq!(cond(&s, "Progressing").status, "True");
        assert_eq!(requeue, None);
    }

    #[test]
    fn every_progress_signal_restarts_the_deadline() {
        // upstream's util.DeploymentProgressing: more updated, ready or available replicas,
        // fewer old ones, or a resume from pause.
        let status = |reason: &str| {
            json!({"replicas": 4, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2,
                "conditions": [{"type": "Progressing", "status": "True", "reason": reason,
                    "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
        };
        let now = at("2026-01-01T00:11:40Z");
        let cases = [
            ("nothing", (2, 2, 2), (2, 0, 0), "ReplicaSetUpdated", false),
            ("more updated", (2, 2, 2), (3, 0, 0), "ReplicaSetUpdated", true),
            ("more ready", (2, 2, 2), (2, 1, 0), "ReplicaSetUpdated", true),
            ("more available", (2, 2, 2), (2, 0, 1), "ReplicaSetUpdated", true),
            ("fewer old", (1, 1, 1), (2, 0, 0), "ReplicaSetUpdated", true),
            ("fewer old, and fewer new", (1, 1, 1), (1, 0, 0), "ReplicaSetUpdated", true),
            ("resumed", (2, 2, 2), (2, 0, 0), "DeploymentPaused", true),
        ];
        for (what, old, new, reason, moved) in cases {
            let d = deploy(Some(600), status(reason));
            let rss = [rs("old", 1, 2, old), rs("new", 2, 2, new)];
            let (s, _) = compute_status(&d, &rss, &progress(Some(1)), now);
            let p = cond(&s, "Progressing");
            let expected = if moved { "ReplicaSetUpdated" } else { "ProgressDeadlineExceeded" };
            assert_eq!(p.reason.as_deref(), Some(expected), "{what}");
            if moved {
                assert_eq!(p.last_update_time, Some(Time(now)), "{what}: the deadline starts again");
            }
        }
    }

    #[test]
    fn unavailable_counts_what_the_spec_wants_minus_what_is_available() {
        let d = deploy(None, json!({}));
        let (s, _) = compute_status(&d, &[rs("one", 1, 6, (6, 2, 2))], &progress(Some(0)), at("2026-01-01T00:00:00Z"));
        assert_eq!(s.unavailable_replicas, Some(4));
        let (s, _) = compute_status(&d, &[rs("one", 1, 1, (3, 3, 3))], &progress(Some(0)), at("2026-01-01T00:00:00Z"));
        assert_eq!(s.unavailable_replicas, Some(0), "never negative");
    }

    #[test]
    fn complete_paused_and_new_replica_set_reasons() {
        let d = deploy(Some(600), json!({}));
        let done = [rs("old", 1, 0, (0, 0, 0)), rs("new", 2, 4, (4, 4, 4))];
        let (s, _) = compute_status(&d, &done, &progress(Some(1)), at("2026-01-01T00:00:00Z"));
        assert!(is_complete(&s, 4));
        assert_eq!(cond(&s, "Progressing").reason.as_deref(), Some("NewReplicaSetAvailable"));
        assert_eq!(cond(&s, "Progressing").message.as_deref(), Some("ReplicaSet \"new\" has successfully progressed."));

        let half = [rs("old", 1, 2, (2, 2, 2)), rs("new", 2, 2, (2, 2, 2))];
        let paused = Progress { paused: true, ..progress(Some(1)) };
        let (s, requeue) = compute_status(&d, &half, &paused, at("2026-01-01T00:00:00Z"));
        assert!(!is_complete(&s, 4));
        let p = cond(&s, "Progressing");
        assert_eq!((p.status.as_str(), p.reason.as_deref()), ("Unknown", Some("DeploymentPaused")));
        assert_eq!(requeue, None, "a paused rollout has no deadline");

        let created = Progress { created_new: true, ..progress(Some(1)) };
        let (s, _) = compute_status(&d, &half, &created, at("2026-01-01T00:00:00Z"));
        assert_eq!(cond(&s, "Progressing").message.as_deref(), Some("Created new replica set \"new\""));
        let names: Vec<_> = s.conditions.unwrap().iter().map(|c| c.type_.clone()).collect();
        assert_eq!(names, ["Available", "Progressing"], "conditions in a stable order");
    }

    #[test]
    fn history_keeps_the_newest_empty_revisions_up_to_the_limit() {
        let rss = [
            rs("r3", 3, 0, (0, 0, 0)),
            rs("r1", 1, 0, (0, 0, 0)),
            rs("r2", 2, 0, (0, 0, 0)),
            rs("draining", 4, 0, (1, 0, 0)),
            rs("scaled", 5, 1, (1, 1, 1)),
            rs("new", 6, 0, (0, 0, 0)),
        ];
        assert_eq!(history_to_delete(&rss, Some(5), 1), ["r1", "r2"]);
        assert_eq!(history_to_delete(&rss, Some(5), 0), ["r1", "r2", "r3"], "never the new one, nor one with pods");
        assert!(history_to_delete(&rss, Some(5), 3).is_empty());
        assert!(history_to_delete(&rss, Some(5), 10).is_empty());
        assert_eq!(history_to_delete(&rss, Some(5), -1), ["r1", "r2", "r3"]);
    }

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_holds() {
        let t0 = Time(at("2026-01-01T00:00:00Z"));
        let t1 = Time(at("2026-01-01T00:01:00Z"));
        let mut cs = vec![condition("Progressing", "True", "ReplicaSetUpdated", "a".into(), t0.clone())];
        set_condition(&mut cs, condition("Progressing", "True", "ReplicaSetUpdated", "b".into(), t1.clone()), false);
        assert_eq!(cs[0].message.as_deref(), Some("a"), "same status and reason, no refresh: unchanged");
        set_condition(&mut cs, condition("Progressing", "True", "ReplicaSetUpdated", "b".into(), t1.clone()), true);
        assert_eq!((cs[0].message.as_deref(), cs[0].last_transition_time.as_ref()), (Some("b"), Some(&t0)));
        set_condition(
            &mut cs,
            condition("Progressing", "False", "ProgressDeadlineExceeded", "c".into(), t1.clone()),
            false,
        );
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].last_transition_time.as_ref(), Some(&t1));
    }
}
