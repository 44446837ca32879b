//! A pod's status as a pure function of its spec, what the runtime reports of its
//! containers, what the worker knows of them (why one waits, what its probes say) and the
//! time: phase, conditions, container states with restart counts, exit codes and reasons.
//! The pod worker writes what this returns; the tests below pin each rule to upstream's
//! (`pkg/kubelet/kubelet_pods.go`: `getPhase`, `convertToAPIContainerStatuses`, and
//! `pkg/kubelet/status/generate.go` for the conditions).

use k8s_openapi::api::core::v1::{Container as Spec, Pod};
use serde_json::{Value, json};

use crate::runtime::{Container, State};

/// What the probes of one container say.
#[derive(Debug, Clone, Copy, Default)]
pub struct Probes {
    /// The readiness probe's attempt and verdict, once it has run against an attempt.
    pub readiness: Option<(u32, Option<bool>)>,
    /// The startup probe's verdict, once it has run.
    pub startup: Option<Option<bool>>,
}

/// Everything besides the pod that its status depends on.
pub struct Observed<'a> {
    /// The runtime's name (`docker`, `process`, `sim`), for container ids.
    pub runtime: &'a str,
    /// Every attempt of every container the runtime knows for the pod.
    pub containers: &'a [Container],
    /// Why a container waits (reason, message), when the worker could not start it.
    pub waiting: &'a dyn Fn(&str) -> Option<(&'a str, &'a str)>,
    /// What a container's probes say.
    pub probes: &'a dyn Fn(&str) -> Probes,
    /// The sandbox's IP, once it exists.
    pub sandbox_ip: Option<&'a str>,
    /// Whether every init container has completed.
    pub initialized: bool,
    /// The node's address.
    pub host_ip: &'a str,
    /// When the worker first saw the pod (RFC 3339), unless the pod already says.
    pub start_time: &'a str,
    /// Now (RFC 3339), for conditions that change.
    pub now: &'a str,
}

fn latest<'a>(containers: &'a [Container], name: &str) -> Option<&'a Container> {
    containers.iter().filter(|c| c.name == name).max_by_key(|c| c.attempt)
}

fn previous<'a>(containers: &'a [Container], name: &str, attempt: u32) -> Option<&'a Container> {
    containers.iter().filter(|c| c.name == name && c.attempt < attempt).max_by_key(|c| c.attempt)
}

/// One container's status; whether it is ready; whether its latest attempt exited 0.
fn container_status(spec: &Spec, seen: &Observed, init: bool) -> (Value, bool, bool) {
    let current = latest(seen.containers, &spec.name);
    let terminated = |c: &Container| match &c.state {
        State::Exited { code, started_at, finished_at, oom_killed } => Some(json!({"terminated": {
            "exitCode": code, "reason": if *oom_killed { "OOMKilled" } else if *code == 0 { "Completed" } else { "Error" },
            "startedAt": started_at, "finishedAt": finished_at,
            "containerID": format!("{}://{}", seen.runtime, c.id)}})),
        _ => None,
    };
    let probes = (seen.probes)(&spec.name);
    let running = current.is_some_and(|c| matches!(c.state, State::Running { .. }));
    // Readiness counts only for the attempt it probed: a restarted container is not ready
    // until its own probe passes.
    let readiness_ok = match (&spec.readiness_probe, probes.readiness) {
        (None, _) => true,
        (Some(_), Some((attempt, passing))) => Some(attempt) == current.map(|c| c.attempt) && passing == Some(true),
        (Some(_), None) => false,
    };
    let startup_ok = spec.startup_probe.is_none() || probes.startup == Some(Some(true));
    let ready = running && readiness_ok && startup_ok && !init;
    let state = match ((seen.waiting)(&spec.name), current) {
        (Some((reason, message)), _) if !running => json!({"waiting": {"reason": reason, "message": message}}),
        (_, Some(c)) => match &c.state {
            State::Running { started_at } => json!({"running": {"startedAt": started_at}}),
            State::Created => json!({"waiting": {"reason": "ContainerCreating"}}),
            State::Exited { .. } => terminated(c).unwrap_or_else(|| json!({})),
        },
        (_, None) => json!({"waiting": {"reason": "ContainerCreating"}}),
    };
    let mut status = json!({
        "name": spec.name, "image": spec.image, "imageID": "",
        "ready": ready, "restartCount": current.map_or(0, |c| c.attempt), "started": running && startup_ok, "state": state,
    });
    if let Some(c) = current {
        status["containerID"] = json!(format!("{}://{}", seen.runtime, c.id));
        if let Some(prev) = previous(seen.containers, &spec.name, c.attempt).and_then(terminated) {
            status["lastState"] = prev;
        }
    }
    let done_ok = current.is_some_and(|c| matches!(c.state, State::Exited { code: 0, .. }));
    (status, ready, done_ok)
}

/// The pod's phase, by upstream's `getPhase` (pkg/kubelet/kubelet_pods.go): Failed when an
/// init container failed under `restartPolicy: Never`; Pending while init containers run
/// or a container has not started yet; Running while one runs; once every container has
/// stopped, Running if they will be restarted (Always, or OnFailure after a failure),
/// Succeeded if all exited 0, Failed otherwise.
fn phase(pod: &Pod, seen: &Observed) -> &'static str {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let init_failed = policy == "Never"
        && spec.init_containers.iter().flatten().any(|c| {
            latest(seen.containers, &c.name).is_some_and(|x| matches!(x.state, State::Exited { code, .. } if code != 0))
        });
    if init_failed {
        return "Failed";
    }
    if !seen.initialized {
        return "Pending";
    }
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in &spec.containers {
        match latest(seen.containers, &c.name).map(|c| &c.state) {
            None | Some(State::Created) => waiting += 1,
            Some(State::Running { .. }) => running += 1,
            Some(State::Exited { code, .. }) => {
                stopped += 1;
                if *code == 0 {
                    succeeded += 1;
                }
            }
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        }
    } else {
        "Pending"
    }
}

/// The pod's status, and whether it is Ready.
pub fn pod_status(pod: &Pod, seen: &Observed) -> (Value, bool) {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut statuses = Vec::new();
    let mut all_ready = true;
    for c in &spec.containers {
        let (s, ready, _) = container_status(c, seen, false);
        all_ready &= ready;
        statuses.push(s);
    }
    let init_statuses: Vec<Value> =
        spec.init_containers.iter().flatten().map(|c| container_status(c, seen, true).0).collect();
    let phase = phase(pod, seen);
    let old = pod.status.clone().unwrap_or_default();
    // A condition keeps its transition time while its status stays.
    let transition = |kind: &str, status: &str| -> String {
        old.conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind && c.status == status)
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| seen.now.to_owned())
    };
    let cond = |kind: &str, ok: bool| {
        let status = if ok { "True" } else { "False" };
        json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": transition(kind, status)})
    };
    let ready = all_ready && seen.initialized && phase == "Running";
    let start_time = old
        .start_time
        .as_ref()
        .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| seen.start_time.to_owned());
    let mut status = json!({
        "phase": phase,
        "conditions": [cond("PodReadyToStartContainers", seen.sandbox_ip.is_some()), cond("Initialized", seen.initialized),
            cond("Ready", ready), cond("ContainersReady", all_ready && seen.initialized), cond("PodScheduled", true)],
        "hostIP": seen.host_ip, "hostIPs": [{"ip": seen.host_ip}],
        "startTime": start_time,
        "containerStatuses": statuses,
        "qosClass": old.qos_class,
    });
    if let Some(ip) = seen.sandbox_ip.filter(|ip| !ip.is_empty()) {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    if !init_statuses.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    (status, ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).expect("pod")
    }

    fn running(name: &str, attempt: u32) -> Container {
        container(name, attempt, State::Running { started_at: "2026-11-29T10:00:00Z".into() })
    }

    fn exited(name: &str, attempt: u32, code: i32) -> Container {
        container(
            name,
            attempt,
            State::Exited {
                code,
                started_at: "2026-11-29T10:00:00Z".into(),
                finished_at: "2026-11-29T10:00:05Z".into(),
                oom_killed: false,
            },
        )
    }

    fn container(name: &str, attempt: u32, state: State) -> Container {
        Container {
            id: format!("{name}-{attempt}"),
            pod_uid: "u".into(),
            name: name.into(),
            attempt,
            image: "i".into(),
            state,
        }
    }

    /// The status of `pod` with these containers; probes and waiting reasons as given.
    fn status_with(pod: &Pod, containers: &[Container], initialized: bool, probes: Probes) -> (Value, bool) {
        let seen = Observed {
            runtime: "sim",
            containers,
            waiting: &|_| None,
            probes: &move |_| probes,
            sandbox_ip: Some("10.0.0.5"),
            initialized,
            host_ip: "192.0.2.1",
            start_time: "2026-11-29T09:59:59Z",
            now: "2026-11-29T10:00:10Z",
        };
        pod_status(pod, &seen)
    }

    fn status(pod: &Pod, containers: &[Container]) -> (Value, bool) {
        status_with(pod, containers, true, Probes::default())
    }

    fn condition(status: &Value, kind: &str) -> String {
        status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
            .and_then(|c| c["status"].as_str())
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn phases_follow_the_restart_policy() {
        let spec = |policy: &str| json!({"restartPolicy": policy, "containers": [{"name": "a", "image": "i"}]});
        // (policy, containers, phase)
        // getPhase: a stopped container that will be restarted keeps the pod Running
        // (a crash-looping pod is Running with a waiting container, not Pending).
        let table: Vec<(&str, Vec<Container>, &str)> = vec![
            ("Always", vec![], "Pending"),
            ("Always", vec![running("a", 0)], "Running"),
            ("Always", vec![exited("a", 0, 0)], "Running"),
            ("Always", vec![exited("a", 0, 1)], "Running"),
            ("Always", vec![exited("a", 0, 1), running("a", 1)], "Running"),
            ("Never", vec![exited("a", 0, 0)], "Succeeded"),
            ("Never", vec![exited("a", 0, 2)], "Failed"),
            ("OnFailure", vec![exited("a", 0, 0)], "Succeeded"),
            ("OnFailure", vec![exited("a", 0, 1)], "Running"),
            ("OnFailure", vec![exited("a", 0, 1), running("a", 1)], "Running"),
        ];
        for (policy, containers, want) in table {
            let (s, _) = status(&pod(spec(policy)), &containers);
            assert_eq!(s["phase"], want, "{policy} with {containers:?}");
        }
    }

    #[test]
    fn two_containers_fail_only_when_both_are_done() {
        let p = pod(
            json!({"restartPolicy": "Never", "containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]}),
        );
        assert_eq!(status(&p, &[exited("a", 0, 1), running("b", 0)]).0["phase"], "Running");
        assert_eq!(status(&p, &[exited("a", 0, 1), exited("b", 0, 0)]).0["phase"], "Failed");
        assert_eq!(status(&p, &[exited("a", 0, 0), exited("b", 0, 0)]).0["phase"], "Succeeded");
    }

    #[test]
    fn a_failed_init_container_fails_the_pod_under_never_only() {
        let spec = |policy: &str| {
            json!({"restartPolicy": policy, "initContainers": [{"name": "init", "image": "i"}],
                   "containers": [{"name": "a", "image": "i"}]})
        };
        let (s, ready) = status_with(&pod(spec("Never")), &[exited("init", 0, 1)], false, Probes::default());
        assert_eq!(s["phase"], "Failed");
        assert!(!ready);
        assert_eq!(condition(&s, "Initialized"), "False");
        assert_eq!(s["initContainerStatuses"][0]["state"]["terminated"]["exitCode"], 1);
        let (s, _) = status_with(&pod(spec("Always")), &[exited("init", 0, 1)], false, Probes::default());
        assert_eq!(s["phase"], "Pending", "retried under Always: still initializing");
        let (s, ready) = status(&pod(spec("Always")), &[exited("init", 0, 0), running("a", 0)]);
        assert_eq!((s["phase"].as_str(), ready), (Some("Running"), true));
        assert_eq!(s["initContainerStatuses"][0]["ready"], false, "init containers are never ready");
    }

    #[test]
    fn readiness_and_startup_probes_gate_ready() {
        let p = pod(json!({"containers": [{"name": "a", "image": "i",
            "readinessProbe": {"exec": {"command": ["true"]}}, "startupProbe": {"exec": {"command": ["true"]}}}]}));
        let c = [running("a", 1)];
        let with = |readiness, startup| status_with(&p, &c, true, Probes { readiness, startup });
        // No verdicts yet: not ready, not started.
        let (s, ready) = with(None, None);
        assert!(!ready);
        assert_eq!(s["containerStatuses"][0]["started"], false);
        assert_eq!(condition(&s, "Ready"), "False");
        // Startup passed, readiness failing: started, not ready.
        let (s, ready) = with(Some((1, Some(false))), Some(Some(true)));
        assert!(!ready);
        assert_eq!(s["containerStatuses"][0]["started"], true);
        assert_eq!(condition(&s, "ContainersReady"), "False");
        // Readiness passed for an older attempt: the restarted container is not ready yet.
        assert!(!with(Some((0, Some(true))), Some(Some(true))).1);
        // Both passing for this attempt: ready.
        let (s, ready) = with(Some((1, Some(true))), Some(Some(true)));
        assert!(ready);
        assert_eq!(condition(&s, "Ready"), "True");
    }

    #[test]
    fn container_states_carry_counts_reasons_and_last_state() {
        let p = pod(json!({"containers": [{"name": "a", "image": "i"}]}));
        let mut oom = exited("a", 1, 137);
        if let State::Exited { oom_killed, .. } = &mut oom.state {
            *oom_killed = true;
        }
        let (s, _) = status(&p, &[exited("a", 0, 1), oom.clone(), running("a", 2)]);
        let c = &s["containerStatuses"][0];
        assert_eq!(c["restartCount"], 2);
        assert_eq!(c["containerID"], "sim://a-2");
        assert_eq!(c["lastState"]["terminated"]["reason"], "OOMKilled");
        assert_eq!(c["lastState"]["terminated"]["containerID"], "sim://a-1");
        let (s, _) = status(&p, &[exited("a", 0, 0)]);
        assert_eq!(s["containerStatuses"][0]["state"]["terminated"]["reason"], "Completed");
        let (s, _) = status(&p, &[exited("a", 0, 3)]);
        assert_eq!(s["containerStatuses"][0]["state"]["terminated"]["reason"], "Error");
    }

    #[test]
    fn a_waiting_reason_shows_until_the_container_runs() {
        let p = pod(json!({"containers": [{"name": "a", "image": "nothere"}]}));
        let seen = |containers: &'static [Container]| Observed {
            runtime: "sim",
            containers,
            waiting: &|_| Some(("ErrImageNeverPull", "image nothere is not present")),
            probes: &|_| Probes::default(),
            sandbox_ip: None,
            initialized: true,
            host_ip: "192.0.2.1",
            start_time: "2026-11-29T09:59:59Z",
            now: "2026-11-29T10:00:10Z",
        };
        let (s, _) = pod_status(&p, &seen(&[]));
        assert_eq!(s["containerStatuses"][0]["state"]["waiting"]["reason"], "ErrImageNeverPull");
        assert_eq!(condition(&s, "PodReadyToStartContainers"), "False");
        assert!(s.get("podIP").is_none());
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let mut p = pod(json!({"containers": [{"name": "a", "image": "i"}]}));
        let (first, _) = status(&p, &[running("a", 0)]);
        assert_eq!(first["conditions"][2]["lastTransitionTime"], "2026-11-29T10:00:10Z");
        p.status = Some(
            serde_json::from_value(json!({"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-29T08:00:00Z"}]}))
            .expect("status"),
        );
        let (again, _) = status(&p, &[running("a", 0)]);
        assert_eq!(again["conditions"][2]["lastTransitionTime"], "2026-11-29T08:00:00Z");
        let (changed, _) = status(&p, &[exited("a", 0, 1)]);
        assert_eq!(changed["conditions"][2]["status"], "False");
        assert_eq!(changed["conditions"][2]["lastTransitionTime"], "2026-11-29T10:00:10Z");
    }
}
