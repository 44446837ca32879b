//! One worker per pod drives it toward its spec: sandbox, init containers in order, app
//! containers, restarts per `restartPolicy` with upstream's back-off (10 s doubling to
//! 5 min, `CrashLoopBackOff`), probes, graceful termination, and the status written back
//! through `pods/status`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Container as Spec, Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::sync::watch;

use crate::Node;
use crate::network::PodRef;
use crate::probe::{self, ProbeState};
use crate::runtime::{
    Container, ContainerConfig, Error as RuntimeError, Mount, NetworkMode, Sandbox, SandboxConfig, State,
};

/// Why a container is waiting, in upstream's words.
#[derive(Debug, Clone, PartialEq)]
struct Waiting {
    reason: String,
    message: String,
}

/// Per-container memory of the worker.
#[derive(Default)]
struct Track {
    waiting: Option<Waiting>,
    exited_seen: HashMap<u32, Instant>,
    liveness: Option<(u32, ProbeState)>,
    readiness: Option<(u32, ProbeState)>,
    startup: Option<(u32, ProbeState)>,
}

/// Per-container memory by container name: a pod has a few containers, so a Vec (a
/// fraction of a map's footprint, which counts with thousands of pods per kubelet).
#[derive(Default)]
struct Tracks(Vec<(String, Track)>);

impl Tracks {
    fn get(&self, name: &str) -> Option<&Track> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    fn entry(&mut self, name: &str) -> &mut Track {
        let i = match self.0.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.0.reserve_exact(1);
                self.0.push((name.to_owned(), Track::default()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }
}

/// The worker's state between syncs.
struct Worker {
    node: Arc<Node>,
    uid: String,
    sandbox: Option<Sandbox>,
    /// The pod's `resolv.conf`, written with its sandbox.
    resolv_conf: Option<PathBuf>,
    tracks: Tracks,
    /// The status last written, serialized (compact: one string per pod).
    last_status: Option<Box<str>>,
    /// Whether that status said Ready.
    was_ready: bool,
    start_time: String,
    started: Instant,
    /// Containers started and stopped by this worker (to know when to look again).
    starts: u64,
    stops: u64,
    /// Containers of this pod counted in `kubelet_running_containers`.
    running: i64,
    /// Whether the tokens of volumes an earlier kubelet projected are kept fresh by this one.
    tokens_resumed: bool,
}

/// Back-off before restart number `n` (0-based): none for the first, then 10 s doubling to
/// 5 min.
pub fn backoff(restarts: u32) -> Duration {
    if restarts == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs(10u64 << (restarts - 1).min(5)).min(Duration::from_secs(300))
}

fn latest<'a>(containers: &'a [Container], name: &str) -> Option<&'a Container> {
    containers.iter().filter(|c| c.name == name).max_by_key(|c| c.attempt)
}

/// A pod as its worker keeps it between looks: serialized JSON, decoded at each look.
/// k8s-openapi's structs hold every optional field inline (a `Pod` and one `Container` take
/// over 4 KB before any of their contents), and a kubelet hosting simulated nodes keeps
/// thousands of pods; the JSON of a trimmed pod is a fraction of that.
#[derive(Clone)]
pub struct PodDoc(Arc<[u8]>);

impl PodDoc {
    /// Serializes `pod`.
    pub fn new(pod: &Pod) -> Result<PodDoc, serde_json::Error> {
        Ok(PodDoc(serde_json::to_vec(pod)?.into()))
    }

    /// The pod again.
    pub fn decode(&self) -> Result<Pod, serde_json::Error> {
        serde_json::from_slice(&self.0)
    }
}

/// Runs a pod's worker until the pod is gone (`None` on the channel).
pub async fn run(node: Arc<Node>, uid: String, mut rx: watch::Receiver<Option<PodDoc>>) {
    let mut w = Worker {
        node,
        uid,
        sandbox: None,
        resolv_conf: None,
        tracks: Tracks::default(),
        last_status: None,
        was_ready: false,
        start_time: crate::runtime::now(),
        started: Instant::now(),
        starts: 0,
        stops: 0,
        running: 0,
        tokens_resumed: false,
    };
    loop {
        let doc = rx.borrow_and_update().clone();
        // Boxed, so that a worker waiting for its next look (thousands of them on a sim
        // kubelet) holds a small future, not the largest of its await points.
        let Some(next) = Box::pin(w.look(doc)).await else { return };
        tokio::select! {
            // The kubelet is going away (not the pod): leave the containers running for
            // the next kubelet to adopt.
            changed = rx.changed() => if changed.is_err() { return; },
            _ = tokio::time::sleep(next) => {}
        }
    }
}

impl Worker {
    /// One look at the pod; `None` when the worker is done (the pod is gone, or was
    /// terminated), else when to look again.
    async fn look(&mut self, doc: Option<PodDoc>) -> Option<Duration> {
        let pod = match doc.map(|d| d.decode()).transpose() {
            Ok(Some(pod)) => pod,
            Ok(None) => {
                self.cleanup().await;
                return None;
            }
            Err(e) => {
                // Not expected: the document is our own serialization of a typed pod.
                tracing::error!(uid = %self.uid, error = %e, "decoding the pod failed; waiting for a new version");
                return Some(Duration::from_secs(3600));
            }
        };
        if pod.metadata.deletion_timestamp.is_some() {
            self.terminate(&pod).await;
            return None;
        }
        if !self.tokens_resumed {
            self.tokens_resumed = true;
            self.resume_tokens(&pod);
        }
        match self.sync(&pod).await {
            Ok(next) => Some(next),
            Err(e) => {
                tracing::warn!(pod = %pod.name_any(), error = %e, "pod sync failed");
                Some(Duration::from_secs(2))
            }
        }
    }

    async fn cleanup(&mut self) {
        self.node.metrics.containers_running(-self.running);
        self.running = 0;
        if let Some(net) = &self.node.network
            && let Err(e) = net.detach(&self.uid).await
        {
            tracing::warn!(uid = %self.uid, error = %e, "detaching the pod from the network failed; tried again at the next start");
        }
        if let Err(e) = self.node.runtime.remove_sandbox(&self.uid).await {
            tracing::warn!(uid = %self.uid, error = %e, "removing the sandbox failed");
        }
        let _ = std::fs::remove_dir_all(self.node.root.join("volumes").join(&self.uid));
        let _ = std::fs::remove_dir_all(self.node.root.join("pods").join(&self.uid));
    }

    /// Stops every container within the grace period, then confirms the deletion.
    async fn terminate(&mut self, pod: &Pod) {
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30)
            .max(0) as u64;
        let containers = self.node.runtime.pod_containers(&self.uid).await.unwrap_or_default();
        let running: Vec<&Container> = containers.iter().filter(|c| matches!(c.state, State::Running { .. })).collect();
        // preStop hooks first (all at once), within the grace period; what is left of it is
        // the containers' time to stop after SIGTERM.
        let started = Instant::now();
        let spec = pod.spec.clone().unwrap_or_default();
        let ip = self.sandbox.as_ref().map(|s| s.ip.clone()).unwrap_or_default();
        let hooks = running.iter().filter_map(|c| {
            let container = spec.containers.iter().find(|s| s.name == c.name)?;
            container.lifecycle.as_ref()?.pre_stop.as_ref()?;
            let runtime = self.node.runtime.clone();
            let ip = ip.clone();
            Some(async move {
                let r =
                    crate::probe::pre_stop(container, &c.id, &ip, runtime.as_ref(), Duration::from_secs(grace)).await;
                (container.name.clone(), r)
            })
        });
        for (name, r) in futures::future::join_all(hooks).await {
            if let Err(e) = r {
                self.node.recorder().record(
                    pod,
                    true,
                    "FailedPreStopHook",
                    format!("PreStopHook failed for {name}: {e}"),
                );
            }
        }
        let left = Duration::from_secs(grace).saturating_sub(started.elapsed());
        let stops = running.iter().map(|c| self.node.runtime.stop_container(&c.id, left));
        for r in futures::future::join_all(stops).await {
            if let Err(e) = r {
                tracing::warn!(pod = %pod.name_any(), error = %e, "stopping a container failed");
            }
        }
        self.cleanup().await;
        let api: Api<Pod> = Api::namespaced(self.node.client.clone(), &pod.namespace().unwrap_or_default());
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(self.uid.clone()), resource_version: None }),
            ..Default::default()
        };
        match api.delete(&pod.name_any(), &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(pod = %pod.name_any(), error = %e, "confirming the deletion failed"),
        }
        self.node.metrics.pod_stopped();
    }

    async fn env_of(&self, pod: &Pod, spec: &Spec, ip: &str) -> Result<Vec<(String, String)>, Waiting> {
        let ns = pod.namespace().unwrap_or_default();
        let fail = |message: String| Waiting { reason: "CreateContainerConfigError".into(), message };
        let mut env = Vec::new();
        let cms: Api<ConfigMap> = Api::namespaced(self.node.client.clone(), &ns);
        let secrets: Api<Secret> = Api::namespaced(self.node.client.clone(), &ns);
        for from in spec.env_from.iter().flatten() {
            let prefix = from.prefix.clone().unwrap_or_default();
            if let Some(r) = &from.config_map_ref {
                match cms.get_opt(&r.name).await {
                    Ok(Some(cm)) => {
                        env.extend(cm.data.unwrap_or_default().into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)))
                    }
                    _ if r.optional == Some(true) => {}
                    _ => return Err(fail(format!("configmap \"{}\" not found", r.name))),
                }
            }
            if let Some(r) = &from.secret_ref {
                match secrets.get_opt(&r.name).await {
                    Ok(Some(s)) => env.extend(
                        s.data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (format!("{prefix}{k}"), String::from_utf8_lossy(&v.0).into_owned())),
                    ),
                    _ if r.optional == Some(true) => {}
                    _ => return Err(fail(format!("secret \"{}\" not found", r.name))),
                }
            }
        }
        for e in spec.env.iter().flatten() {
            let value = match &e.value_from {
                None => e.value.clone().unwrap_or_default(),
                Some(from) => {
                    if let Some(f) = &from.field_ref {
                        match f.field_path.as_str() {
                            "metadata.name" => pod.name_any(),
                            "metadata.namespace" => ns.clone(),
                            "metadata.uid" => self.uid.clone(),
                            "spec.nodeName" => self.node.name.clone(),
                            "status.podIP" => ip.to_owned(),
                            "status.hostIP" => self.node.host_ip.clone(),
                            p => return Err(fail(format!("unsupported fieldRef {p:?}"))),
                        }
                    } else if let Some(r) = &from.config_map_key_ref {
                        match cms.get_opt(&r.name).await {
                            Ok(Some(cm)) => match cm.data.unwrap_or_default().get(&r.key) {
                                Some(v) => v.clone(),
                                None if r.optional == Some(true) => continue,
                                None => {
                                    return Err(fail(format!(
                                        "couldn't find key {} in ConfigMap {ns}/{}",
                                        r.key, r.name
                                    )));
                                }
                            },
                            _ if r.optional == Some(true) => continue,
                            _ => return Err(fail(format!("configmap \"{}\" not found", r.name))),
                        }
                    } else if let Some(r) = &from.secret_key_ref {
                        match secrets.get_opt(&r.name).await {
                            Ok(Some(s)) => match s.data.unwrap_or_default().get(&r.key) {
                                Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                                None if r.optional == Some(true) => continue,
                                None => {
                                    return Err(fail(format!("couldn't find key {} in Secret {ns}/{}", r.key, r.name)));
                                }
                            },
                            _ if r.optional == Some(true) => continue,
                            _ => return Err(fail(format!("secret \"{}\" not found", r.name))),
                        }
                    } else {
                        continue;
                    }
                }
            };
            env.push((e.name.clone(), value));
        }
        Ok(env)
    }

    /// A pod adopted from an earlier kubelet has its projected volumes already: their
    /// tokens are refreshed from now on by this one (at once, then before they expire).
    fn resume_tokens(&self, pod: &Pod) {
        let base = self.node.root.join("volumes").join(&self.uid);
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let dir = base.join(&v.name);
            if let Some(projected) = &v.projected
                && dir.join(".projected").exists()
            {
                crate::projected::resume(&self.node.client, pod, projected, &dir);
            }
        }
    }

    /// Prepares the pod's volumes on the host and the mounts of one container.
    async fn mounts_of(&self, pod: &Pod, spec: &Spec) -> Result<Vec<Mount>, Waiting> {
        let fail = |message: String| Waiting { reason: "CreateContainerConfigError".into(), message };
        // Simulated containers have no filesystem to mount into.
        if self.node.runtime.name() == "sim" {
            return Ok(Vec::new());
        }
        let ns = pod.namespace().unwrap_or_default();
        let volumes = pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default();
        let base = self.node.root.join("volumes").join(&self.uid);
        let mut out = Vec::new();
        for m in spec.volume_mounts.iter().flatten() {
            let Some(v) = volumes.iter().find(|v| v.name == m.name) else {
                return Err(fail(format!("volume {:?} is mounted but not defined", m.name)));
            };
            let dir: PathBuf = if let Some(hp) = &v.host_path {
                PathBuf::from(&hp.path)
            } else {
                let dir = base.join(&v.name);
                std::fs::create_dir_all(&dir).map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
                let files: BTreeMap<String, Vec<u8>> = if let Some(cm) = &v.config_map {
                    let api: Api<ConfigMap> = Api::namespaced(self.node.client.clone(), &ns);
                    match api.get_opt(&cm.name).await {
                        Ok(Some(c)) => {
                            c.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect()
                        }
                        _ => return Err(fail(format!("configmap \"{}\" not found", cm.name))),
                    }
                } else if let Some(s) = &v.secret {
                    let name = s.secret_name.clone().unwrap_or_default();
                    let api: Api<Secret> = Api::namespaced(self.node.client.clone(), &ns);
                    match api.get_opt(&name).await {
                        Ok(Some(sec)) => sec.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect(),
                        _ => return Err(fail(format!("secret \"{name}\" not found"))),
                    }
                } else if v.empty_dir.is_some() {
                    BTreeMap::new()
                } else if let Some(projected) = &v.projected {
                    // Made once per pod (a container's restart finds it there); the
                    // tokens in it are kept fresh from then on.
                    if !dir.join(".projected").exists() {
                        crate::projected::project(&self.node.client, pod, projected, &dir).await.map_err(fail)?;
                        let _ = std::fs::write(dir.join(".projected"), b"");
                    }
                    BTreeMap::new()
                } else {
                    return Err(fail(format!(
                        "volume {:?}: only emptyDir, hostPath, configMap, secret and projected volumes are supported",
                        v.name
                    )));
                };
                for (k, data) in files {
                    std::fs::write(dir.join(&k), data).map_err(|e| fail(format!("writing {k}: {e}")))?;
                }
                dir
            };
            out.push(Mount {
                host_path: dir,
                container_path: m.mount_path.clone(),
                read_only: m.read_only.unwrap_or(false),
            });
        }
        Ok(out)
    }

    /// Creates and starts attempt `attempt` of a container; a problem becomes its waiting reason.
    async fn start(&mut self, pod: &Pod, spec: &Spec, attempt: u32) {
        let sandbox = match &self.sandbox {
            Some(s) => s.clone(),
            None => return,
        };
        let image = spec.image.clone().unwrap_or_default();
        let waiting = match self.node.runtime.image_present(&image).await {
            Ok(true) => None,
            Ok(false) if spec.image_pull_policy.as_deref() == Some("Never") => Some(Waiting {
                reason: "ErrImageNeverPull".into(),
                message: format!("Container image \"{image}\" is not present with pull policy of Never"),
            }),
            Ok(false) => Some(Waiting {
                reason: "ImagePullBackOff".into(),
                message: format!(
                    "Back-off pulling image \"{image}\": no registry is reachable from this node; load or build the image locally"
                ),
            }),
            Err(e) => Some(Waiting { reason: "ErrImagePull".into(), message: e.to_string() }),
        };
        if let Some(w) = waiting {
            self.tracks.entry(&spec.name).waiting = Some(w);
            return;
        }
        let env = match self.env_of(pod, spec, &sandbox.ip).await {
            Ok(env) => env,
            Err(w) => {
                self.tracks.entry(&spec.name).waiting = Some(w);
                return;
            }
        };
        let mounts = match self.mounts_of(pod, spec).await {
            Ok(m) => m,
            Err(w) => {
                self.tracks.entry(&spec.name).waiting = Some(w);
                return;
            }
        };
        let limits = spec.resources.as_ref().and_then(|r| r.limits.as_ref());
        let config = ContainerConfig {
            pod_uid: self.uid.clone(),
            pod_key: format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()),
            name: spec.name.clone(),
            attempt,
            image,
            command: spec.command.clone().unwrap_or_default(),
            args: spec.args.clone().unwrap_or_default(),
            env,
            working_dir: spec.working_dir.clone(),
            mounts,
            resolv_conf: self.resolv_conf.clone(),
            cpu_limit: limits.and_then(|l| l.get("cpu")).and_then(|q| crate::quantity_milli(&q.0)),
            memory_limit: limits
                .and_then(|l| l.get("memory"))
                .and_then(|q| crate::quantity_milli(&q.0))
                .map(|m| m / 1000),
        };
        let started = Instant::now();
        self.starts += 1;
        let result = match self.node.runtime.create_container(&sandbox, &config).await {
            Ok(id) => self.node.runtime.start_container(&id).await.map_err(|e| ("RunContainerError", e)),
            Err(e @ RuntimeError::Unsupported(_)) => Err(("CreateContainerConfigError", e)),
            Err(e) => Err(("CreateContainerError", e)),
        };
        self.node.metrics.runtime_op("start_container", started.elapsed(), result.is_err());
        let waiting = match result {
            Ok(()) => {
                if !self.node.runtime.uses_images() {
                    // Said at each start, as upstream says `Pulled`/`Started`: the image
                    // field reads as if it were used, and a user should know it is not.
                    let argv = config.command.iter().chain(&config.args).cloned().collect::<Vec<_>>().join(" ");
                    let message = format!(
                        "the {} runtime does not use images: container {:?} runs {argv:?} on the host; image {:?} is ignored",
                        self.node.runtime.name(),
                        spec.name,
                        config.image
                    );
                    self.node.recorder().record(pod, false, "ImageNotUsed", message);
                }
                None
            }
            Err((reason, e)) => Some(Waiting { reason: reason.into(), message: e.to_string() }),
        };
        let track = self.tracks.entry(&spec.name);
        if let Some(w) = &waiting
            && track.waiting.as_ref() != Some(w)
        {
            // Once per new failure, not at every retry.
            self.node.recorder().record(pod, true, "Failed", format!("Error: {}", w.message));
        }
        track.waiting = waiting;
    }

    /// Makes the pod's sandbox and attaches it to the pod network; what went wrong, in
    /// the words the pod's status shows.
    async fn make_sandbox(&mut self, pod: &Pod, spec: &k8s_openapi::api::core::v1::PodSpec) -> Result<(), String> {
        let network = match (spec.host_network == Some(true), &self.node.network) {
            (true, _) => NetworkMode::Host,
            (false, Some(_)) => NetworkMode::Pod,
            (false, None) => NetworkMode::Runtime,
        };
        let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        let config =
            SandboxConfig { pod_uid: self.uid.clone(), namespace: namespace.clone(), name: name.clone(), network };
        // The sim runtime runs nothing that would read it.
        if self.node.runtime.name() != "sim" {
            let resolv = crate::dns::for_pod(spec, &namespace, &self.node.dns)
                .map_err(|e| format!("the pod's DNS settings: {e}"))?;
            let dir = self.node.root.join("pods").join(&self.uid);
            let path = dir.join("resolv.conf");
            std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(&path, resolv.render()))
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            self.resolv_conf = Some(path);
        }
        let mut sandbox =
            self.node.runtime.run_sandbox(&config).await.map_err(|e| format!("creating the pod sandbox: {e}"))?;
        if network == NetworkMode::Host {
            sandbox.ip = self.node.host_ip.clone();
        }
        if let (Some(net), Some(ns)) = (&self.node.network, &sandbox.netns) {
            let port_mappings = spec
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .filter_map(|p| {
                    let host_port = p.host_port.filter(|h| *h > 0)?;
                    Some(serde_json::json!({"hostPort": host_port, "containerPort": p.container_port,
                        "protocol": p.protocol.as_deref().unwrap_or("TCP").to_lowercase(), "hostIP": p.host_ip.clone().unwrap_or_default()}))
                })
                .collect();
            let pod_ref = PodRef { uid: &self.uid, namespace: &namespace, name: &name, port_mappings };
            match net.attach(&pod_ref, ns).await {
                Ok(ip) => sandbox.ip = ip,
                Err(e) => {
                    let message = format!("setting up the pod network: {e}");
                    // Once per new failure, not at every retry.
                    let shown = self.tracks.0.first().and_then(|(_, t)| t.waiting.as_ref()).map(|w| &w.message);
                    if shown != Some(&message) {
                        self.node.recorder().record(pod, true, "FailedCreatePodSandBox", message.clone());
                    }
                    return Err(message);
                }
            }
        }
        self.sandbox = Some(sandbox);
        Ok(())
    }

    /// One pass toward the spec; returns when to look again.
    async fn sync(&mut self, pod: &Pod) -> anyhow::Result<Duration> {
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        let mut next =
            if self.node.runtime.needs_polling() { Duration::from_secs(1) } else { Duration::from_secs(3600) };
        if self.sandbox.is_none()
            && let Err(message) = self.make_sandbox(pod, &spec).await
        {
            let waiting = Waiting { reason: "ContainerCreating".into(), message };
            for c in &spec.containers {
                self.tracks.entry(&c.name).waiting = Some(waiting.clone());
            }
            self.write_status(pod, &[], false).await?;
            return Ok(Duration::from_secs(2));
        }
        let mut containers = self.node.runtime.pod_containers(&self.uid).await?;
        let starts_before = self.starts;
        // Init containers, in order, each to completion.
        let mut initialized = true;
        for ic in spec.init_containers.iter().flatten() {
            match latest(&containers, &ic.name).map(|c| (c.attempt, c.state.clone(), c.id.clone())) {
                Some((_, State::Exited { code: 0, .. }, _)) => continue,
                Some((_, State::Running { .. }, _)) => {}
                Some((_, State::Created, id)) => {
                    self.starts += 1;
                    self.node.runtime.start_container(&id).await?;
                }
                Some((attempt, State::Exited { .. }, _)) => {
                    if policy == "Never" {
                        initialized = false;
                        break;
                    }
                    next = next.min(self.restart_if_due(pod, ic, attempt).await);
                }
                None => self.start(pod, ic, 0).await,
            }
            initialized = false;
            break;
        }
        if initialized {
            for c in &spec.containers {
                let current = latest(&containers, &c.name).map(|c| (c.attempt, c.state.clone(), c.id.clone()));
                match current {
                    None => self.start(pod, c, 0).await,
                    Some((_, State::Created, id)) => {
                        self.starts += 1;
                        self.node.runtime.start_container(&id).await?;
                    }
                    Some((attempt, State::Running { .. }, id)) => {
                        next = next.min(self.probe(pod, c, attempt, &id).await);
                    }
                    Some((attempt, State::Exited { code, .. }, _)) => {
                        let restart = policy == "Always" || (policy == "OnFailure" && code != 0);
                        if restart {
                            next = next.min(self.restart_if_due(pod, c, attempt).await);
                        }
                    }
                }
            }
        }
        // Look again only if this pass started or stopped something.
        if self.starts != starts_before || self.stops != 0 {
            self.stops = 0;
            containers = self.node.runtime.pod_containers(&self.uid).await?;
        }
        let running = containers.iter().filter(|c| matches!(c.state, State::Running { .. })).count() as i64;
        self.node.metrics.containers_running(running - self.running);
        self.running = running;
        self.write_status(pod, &containers, initialized).await?;
        if self.tracks.0.iter().any(|(_, t)| t.waiting.is_some()) {
            next = next.min(Duration::from_secs(5));
        }
        Ok(next)
    }

    async fn restart_if_due(&mut self, pod: &Pod, spec: &Spec, attempt: u32) -> Duration {
        let track = self.tracks.entry(&spec.name);
        let seen = *track.exited_seen.entry(attempt).or_insert_with(Instant::now);
        let wait = backoff(attempt);
        let left = wait.saturating_sub(seen.elapsed());
        if left.is_zero() {
            track.waiting = None;
            self.start(pod, spec, attempt + 1).await;
            Duration::from_secs(1)
        } else {
            track.waiting = Some(Waiting {
                reason: "CrashLoopBackOff".into(),
                message: format!(
                    "back-off {}s restarting failed container={} pod={}",
                    wait.as_secs(),
                    spec.name,
                    pod.name_any()
                ),
            });
            left
        }
    }

    /// Runs due probes of a running container; a failed liveness probe restarts it.
    async fn probe(&mut self, pod: &Pod, spec: &Spec, attempt: u32, id: &str) -> Duration {
        let now = Instant::now();
        let ip = self.sandbox.as_ref().map(|s| s.ip.clone()).unwrap_or_default();
        let mut next = Duration::from_secs(3600);
        let track = self.tracks.entry(&spec.name);
        for (kind, probe) in
            [("startup", &spec.startup_probe), ("liveness", &spec.liveness_probe), ("readiness", &spec.readiness_probe)]
        {
            let Some(probe) = probe else { continue };
            let slot = match kind {
                "startup" => &mut track.startup,
                "liveness" => &mut track.liveness,
                _ => &mut track.readiness,
            };
            if slot.as_ref().is_none_or(|(a, _)| *a != attempt) {
                *slot = Some((attempt, ProbeState::new(now)));
            }
            // Liveness and readiness wait for the startup probe.
            if kind != "startup"
                && spec.startup_probe.is_some()
                && track.startup.as_ref().and_then(|(_, s)| s.passing) != Some(true)
            {
                continue;
            }
            let Some((_, state)) = (match kind {
                "startup" => track.startup.as_mut(),
                "liveness" => track.liveness.as_mut(),
                _ => track.readiness.as_mut(),
            }) else {
                continue;
            };
            if kind == "startup" && state.passing == Some(true) {
                continue;
            }
            let due = probe::due_in(probe, state, now);
            if !due.is_zero() {
                next = next.min(due);
                continue;
            }
            let ok = probe::run(probe, spec, id, &ip, self.node.runtime.as_ref()).await;
            let verdict = probe::record(probe, state, ok, Instant::now());
            next = next.min(Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64));
            if verdict == Some(false) && kind != "readiness" {
                tracing::info!(pod = %pod.name_any(), container = %spec.name, probe = kind, "probe failed; restarting the container");
                let grace =
                    pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30).max(0) as u64;
                let _ = self.node.runtime.stop_container(id, Duration::from_secs(grace.min(10))).await;
                self.stops += 1;
                return Duration::from_millis(200);
            }
        }
        next
    }

    async fn write_status(&mut self, pod: &Pod, containers: &[Container], initialized: bool) -> anyhow::Result<()> {
        // The status is a pure function of what the worker knows (crate::status); the
        // borrows end before the write.
        let now = crate::runtime::now();
        let (status, ready) = {
            let observed = crate::status::Observed {
                runtime: self.node.runtime.name(),
                containers,
                waiting: &|name| {
                    self.tracks
                        .get(name)
                        .and_then(|t| t.waiting.as_ref())
                        .map(|w| (w.reason.as_str(), w.message.as_str()))
                },
                probes: &|name| {
                    let track = self.tracks.get(name);
                    crate::status::Probes {
                        readiness: track.and_then(|t| t.readiness.as_ref()).map(|(a, s)| (*a, s.passing)),
                        startup: track.and_then(|t| t.startup.as_ref()).map(|(_, s)| s.passing),
                    }
                },
                sandbox_ip: self.sandbox.as_ref().map(|s| s.ip.as_str()),
                initialized,
                host_ip: &self.node.host_ip,
                start_time: &self.start_time,
                now: &now,
            };
            crate::status::pod_status(pod, &observed)
        };
        let text = status.to_string();
        if self.last_status.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.node.client.clone(), &pod.namespace().unwrap_or_default());
        match api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await
        {
            Ok(_) => {
                if ready && !self.was_ready {
                    self.node.metrics.pod_started(self.started.elapsed());
                }
                self.was_ready = ready;
                self.last_status = Some(text.into_boxed_str());
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_from_ten_seconds_to_five_minutes() {
        let secs: Vec<u64> = (0..9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, vec![0, 10, 20, 40, 80, 160, 300, 300, 300]);
    }
}
