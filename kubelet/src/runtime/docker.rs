//! The Docker runtime, through the Docker Engine API (`bollard`): a pause container per pod
//! holds its network and IPC namespaces and the app containers join it. Labels tie every
//! container to its pod uid, container name and attempt, so a restarted kubelet finds what
//! it was running. Images must be local (no registry is assumed reachable).
//!
//! Pod workers look at their containers every second. One relist of every container of
//! this node serves all of those looks for a second, and only containers whose state
//! changed are inspected, as upstream's PLEG relists: a list and an inspect per pod per
//! second kept dockerd at 58% of a core with 200 idle pods. A pod this kubelet just
//! changed (created, started, stopped or removed a container) is read afresh at its
//! next look.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::Docker as Client;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions, StopContainerOptions,
};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use parking_lot::Mutex;

use super::{
    Container, ContainerConfig, Error, LogOptions, NetworkMode, Result, Runtime, Sandbox, SandboxConfig, State,
};

const POD_UID: &str = "io.kubernetes.pod.uid";
const POD_NAME: &str = "io.kubernetes.pod.name";
const CONTAINER_NAME: &str = "io.kubernetes.container.name";
const ATTEMPT: &str = "io.kubernetes.container.restartCount";
const SANDBOX: &str = "io.kubernetes.sandbox";
const MANAGED: &str = "io.kubernetes.managed-by";

fn err(e: bollard::errors::Error) -> Error {
    match &e {
        bollard::errors::Error::DockerResponseServerError { status_code: 404, message } => {
            Error::NotFound(message.clone())
        }
        _ => Error::Runtime(e.to_string()),
    }
}

/// Container creations, starts and removals under way at once, by default. Unbounded,
/// a wave of pods makes dockerd interleave all of them and none is done until nearly all
/// are; bounded, pods finish (and turn Ready) one after another. On a 2-core machine, 200
/// pods all Running took 45 s unbounded, 46 s with 4, 38 s with 8, and a 200-pod rolling
/// update 89 s unbounded, 81 s with 4, 79 s with 8.
pub const DEFAULT_PARALLEL_OPS: usize = 8;

/// How long one relist serves the pod workers' looks.
const RELIST_EVERY: Duration = Duration::from_secs(1);

/// What the last relist saw, and what changed since.
#[derive(Default)]
struct Cache {
    /// When the last relist began.
    listed_at: Option<Instant>,
    /// The app containers of each pod.
    pods: HashMap<String, Vec<Container>>,
    /// The pod of each container id.
    owners: HashMap<String, String>,
    /// Pods this kubelet changed, and when: read afresh until a read that began later.
    changed: HashMap<String, Instant>,
    /// When each pod was last read on its own (a relist that began earlier keeps that).
    read_at: HashMap<String, Instant>,
}

/// Whether a container summary's state is the kind of state `known` records (then the
/// details an inspect gave, start and finish times, exit code, still hold).
fn same_kind(known: &State, now: Option<ContainerSummaryStateEnum>) -> bool {
    matches!(
        (known, now),
        (State::Running { .. }, Some(ContainerSummaryStateEnum::RUNNING))
            | (State::Created, Some(ContainerSummaryStateEnum::CREATED))
            | (State::Exited { .. }, Some(ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD))
    )
}

/// A container's state from what an inspect says of it.
fn state_of(s: bollard::models::ContainerState) -> State {
    let started_at = s.started_at.clone().unwrap_or_default();
    if s.running == Some(true) {
        State::Running { started_at }
    } else if started_at.starts_with("0001") || started_at.is_empty() {
        State::Created
    } else {
        State::Exited {
            code: s.exit_code.unwrap_or(0) as i32,
            started_at,
            finished_at: s.finished_at.unwrap_or_default(),
            oom_killed: s.oom_killed.unwrap_or(false),
        }
    }
}

/// Containers through a Docker daemon.
pub struct Docker {
    client: Client,
    pause_image: String,
    node: String,
    cache: Mutex<Cache>,
    /// Held by the one relist under way; looks that arrive meanwhile wait for its result.
    relisting: tokio::sync::Mutex<()>,
    /// Bounds the container creations, starts and removals under way at once.
    heavy: tokio::sync::Semaphore,
    /// How many those are.
    parallel_ops: usize,
}

impl Docker {
    /// Connects to the local daemon; `pause_image` runs each pod's sandbox; `node` labels
    /// what this kubelet owns (several simulated nodes may share one daemon).
    pub async fn connect(pause_image: &str, node: &str) -> Result<Docker> {
        let client = Client::connect_with_local_defaults().map_err(err)?.negotiate_version().await.map_err(err)?;
        client.ping().await.map_err(|e| Error::Runtime(format!("the Docker daemon does not answer: {e}")))?;
        Ok(Docker {
            client,
            pause_image: pause_image.to_owned(),
            node: node.to_owned(),
            cache: Mutex::default(),
            relisting: tokio::sync::Mutex::new(()),
            heavy: tokio::sync::Semaphore::new(DEFAULT_PARALLEL_OPS),
            parallel_ops: DEFAULT_PARALLEL_OPS,
        })
    }

    async fn list(&self, filters: Vec<String>) -> Result<Vec<bollard::models::ContainerSummary>> {
        let mut labels = vec![format!("{MANAGED}={}", self.node)];
        labels.extend(filters);
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_owned(), labels)])),
            ..Default::default()
        };
        self.client.list_containers(Some(options)).await.map_err(err)
    }

    async fn sandbox_of(&self, pod_uid: &str) -> Result<Option<bollard::models::ContainerSummary>> {
        Ok(self.list(vec![format!("{POD_UID}={pod_uid}"), format!("{SANDBOX}=true")]).await?.into_iter().next())
    }

    /// Runs at most `n` container creations, starts and removals at once.
    pub fn with_parallel_ops(mut self, n: usize) -> Docker {
        self.parallel_ops = n.max(1);
        self.heavy = tokio::sync::Semaphore::new(self.parallel_ops);
        self
    }

    /// Marks a pod changed by this kubelet (after the change).
    fn touch(&self, pod_uid: &str) {
        self.cache.lock().changed.insert(pod_uid.to_owned(), Instant::now());
    }

    /// Marks the pod of container `id` changed.
    fn touch_container(&self, id: &str) {
        let mut cache = self.cache.lock();
        if let Some(uid) = cache.owners.get(id).cloned() {
            cache.changed.insert(uid, Instant::now());
        }
    }

    /// The app containers among `summaries`; only those whose state is not the kind
    /// `known` (by id) records are inspected. A container gone meanwhile is left out.
    async fn containers(
        &self,
        summaries: Vec<ContainerSummary>,
        known: &HashMap<String, Container>,
    ) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        for summary in summaries {
            let labels = summary.labels.unwrap_or_default();
            if labels.get(SANDBOX).is_some_and(|s| s == "true") {
                continue;
            }
            let id = summary.id.unwrap_or_default();
            let state = match known.get(&id).filter(|c| same_kind(&c.state, summary.state)) {
                Some(c) => c.state.clone(),
                None => match self.client.inspect_container(&id, None).await.map_err(err) {
                    Ok(info) => state_of(info.state.unwrap_or_default()),
                    Err(Error::NotFound(_)) => continue,
                    Err(e) => return Err(e),
                },
            };
            out.push(Container {
                id,
                pod_uid: labels.get(POD_UID).cloned().unwrap_or_default(),
                name: labels.get(CONTAINER_NAME).cloned().unwrap_or_default(),
                attempt: labels.get(ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(0),
                image: summary.image.unwrap_or_default(),
                state,
            });
        }
        Ok(out)
    }

    /// Lists every container of this node, unless a relist began less than
    /// [`RELIST_EVERY`] ago.
    async fn relist(&self) -> Result<()> {
        let _one = self.relisting.lock().await;
        if self.cache.lock().listed_at.is_some_and(|t| t.elapsed() < RELIST_EVERY) {
            return Ok(());
        }
        let began = Instant::now();
        let summaries = self.list(vec![]).await?;
        let known: HashMap<String, Container> =
            self.cache.lock().pods.values().flatten().map(|c| (c.id.clone(), c.clone())).collect();
        let containers = self.containers(summaries, &known).await?;
        let mut pods: HashMap<String, Vec<Container>> = HashMap::new();
        for c in containers {
            pods.entry(c.pod_uid.clone()).or_default().push(c);
        }
        let mut cache = self.cache.lock();
        let cache = &mut *cache;
        // A pod read on its own since this relist began keeps that newer read.
        for (uid, at) in &cache.read_at {
            if *at > began {
                match cache.pods.get(uid) {
                    Some(cs) => pods.insert(uid.clone(), cs.clone()),
                    None => pods.remove(uid),
                };
            }
        }
        cache.owners = pods.iter().flat_map(|(uid, cs)| cs.iter().map(|c| (c.id.clone(), uid.clone()))).collect();
        cache.pods = pods;
        cache.read_at.retain(|_, at| *at > began);
        // A change made before this relist began is in it.
        cache.changed.retain(|_, at| *at > began);
        cache.listed_at = Some(began);
        Ok(())
    }

    /// Reads one pod's containers now, and records them.
    async fn read_pod(&self, pod_uid: &str) -> Result<Vec<Container>> {
        let began = Instant::now();
        let summaries = self.list(vec![format!("{POD_UID}={pod_uid}")]).await?;
        let known: HashMap<String, Container> =
            self.cache.lock().pods.get(pod_uid).into_iter().flatten().map(|c| (c.id.clone(), c.clone())).collect();
        let containers = self.containers(summaries, &known).await?;
        let mut cache = self.cache.lock();
        if cache.changed.get(pod_uid).is_some_and(|at| *at <= began) {
            cache.changed.remove(pod_uid);
        }
        for c in &containers {
            cache.owners.insert(c.id.clone(), pod_uid.to_owned());
        }
        cache.read_at.insert(pod_uid.to_owned(), began);
        if containers.is_empty() {
            cache.pods.remove(pod_uid);
        } else {
            cache.pods.insert(pod_uid.to_owned(), containers.clone());
        }
        Ok(containers)
    }

    /// The running sandbox `id`, by its network mode: in a namespace of its own (`none`,
    /// which the pod network attaches through the pause process's namespace), the host's,
    /// or Docker's bridge.
    async fn sandbox(&self, id: &str) -> Result<Sandbox> {
        let info = self.client.inspect_container(id, None).await.map_err(err)?;
        let mode = info.host_config.as_ref().and_then(|h| h.network_mode.clone()).unwrap_or_default();
        let pid = info.state.as_ref().and_then(|s| s.pid).filter(|p| *p > 0);
        match mode.as_str() {
            "none" => {
                let pid = pid.ok_or_else(|| Error::Runtime(format!("sandbox {id} has no process")))?;
                Ok(Sandbox { id: id.to_owned(), ip: String::new(), netns: Some(format!("/proc/{pid}/ns/net").into()) })
            }
            "host" => Ok(Sandbox { id: id.to_owned(), ip: String::new(), netns: None }),
            _ => {
                let ip = info
                    .network_settings
                    .and_then(|n| n.networks)
                    .and_then(|nets| nets.values().find_map(|e| e.ip_address.clone().filter(|ip| !ip.is_empty())));
                Ok(Sandbox { id: id.to_owned(), ip: ip.unwrap_or_else(|| "127.0.0.1".into()), netns: None })
            }
        }
    }
}

#[async_trait]
impl Runtime for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn version(&self) -> String {
        "docker://20.10".into()
    }

    async fn image_present(&self, image: &str) -> Result<bool> {
        match self.client.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox> {
        let _permit = self.heavy.acquire().await;
        if let Some(existing) = self.sandbox_of(&config.pod_uid).await? {
            let id = existing.id.unwrap_or_default();
            if existing.state.map(|s| s.to_string()).as_deref() != Some("running") {
                self.client.start_container(&id, None).await.map_err(err)?;
            }
            return self.sandbox(&id).await;
        }
        if !self.image_present(&self.pause_image).await? {
            return Err(Error::ImageNotPresent(self.pause_image.clone()));
        }
        let labels = HashMap::from([
            (POD_UID.to_owned(), config.pod_uid.clone()),
            (POD_NAME.to_owned(), format!("{}/{}", config.namespace, config.name)),
            (SANDBOX.to_owned(), "true".to_owned()),
            (MANAGED.to_owned(), self.node.clone()),
        ]);
        let body = ContainerCreateBody {
            image: Some(self.pause_image.clone()),
            cmd: Some(vec!["sleep".into(), "2147483647".into()]),
            // A host-network pod has the host's name, as upstream's.
            hostname: (config.network != NetworkMode::Host).then(|| config.name.chars().take(63).collect()),
            labels: Some(labels),
            // The app containers join its IPC namespace as they join its network.
            host_config: Some(HostConfig {
                ipc_mode: Some("shareable".into()),
                network_mode: match config.network {
                    NetworkMode::Runtime => None,
                    NetworkMode::Host => Some("host".into()),
                    NetworkMode::Pod => Some("none".into()),
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = format!("k8s_POD_{}_{}_{}_0", config.name, config.namespace, config.pod_uid);
        let created = self
            .client
            .create_container(Some(CreateContainerOptions { name: Some(name), ..Default::default() }), body)
            .await
            .map_err(err)?;
        self.client.start_container(&created.id, None).await.map_err(err)?;
        self.sandbox(&created.id).await
    }

    async fn remove_sandbox(&self, pod_uid: &str) -> Result<()> {
        let _permit = self.heavy.acquire().await;
        let listed = self.list(vec![format!("{POD_UID}={pod_uid}")]).await;
        for c in listed.iter().flatten() {
            let id = c.id.clone().unwrap_or_default();
            let _ = self
                .client
                .remove_container(&id, Some(RemoveContainerOptions { force: true, ..Default::default() }))
                .await;
        }
        self.touch(pod_uid);
        listed.map(|_| ())
    }

    async fn create_container(&self, sandbox: &Sandbox, config: &ContainerConfig) -> Result<String> {
        let _permit = self.heavy.acquire().await;
        let labels = HashMap::from([
            (POD_UID.to_owned(), config.pod_uid.clone()),
            (POD_NAME.to_owned(), config.pod_key.clone()),
            (CONTAINER_NAME.to_owned(), config.name.clone()),
            (ATTEMPT.to_owned(), config.attempt.to_string()),
            (MANAGED.to_owned(), self.node.clone()),
        ]);
        let join = format!("container:{}", sandbox.id);
        let host = HostConfig {
            network_mode: Some(join.clone()),
            ipc_mode: Some(join),
            binds: Some(
                config
                    .mounts
                    .iter()
                    .map(|m| {
                        format!(
                            "{}:{}{}",
                            m.host_path.display(),
                            m.container_path,
                            if m.read_only { ":ro" } else { "" }
                        )
                    })
                    .chain(config.resolv_conf.iter().map(|r| format!("{}:/etc/resolv.conf:ro", r.display())))
                    .collect(),
            ),
            nano_cpus: config.cpu_limit.map(|m| m * 1_000_000),
            memory: config.memory_limit,
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(config.image.clone()),
            entrypoint: (!config.command.is_empty()).then(|| config.command.clone()),
            cmd: (!config.args.is_empty()).then(|| config.args.clone()),
            env: Some(config.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: config.working_dir.clone(),
            labels: Some(labels),
            host_config: Some(host),
            ..Default::default()
        };
        let (ns, pod) = config.pod_key.split_once('/').unwrap_or(("", &config.pod_key));
        let name = format!("k8s_{}_{pod}_{ns}_{}_{}", config.name, config.pod_uid, config.attempt);
        let created = self
            .client
            .create_container(Some(CreateContainerOptions { name: Some(name), ..Default::default() }), body)
            .await;
        if let Ok(c) = &created {
            self.cache.lock().owners.insert(c.id.clone(), config.pod_uid.clone());
        }
        self.touch(&config.pod_uid);
        match created {
            Ok(c) => Ok(c.id),
            // The image went away between the kubelet's check and the create.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                Err(Error::ImageNotPresent(config.image.clone()))
            }
            Err(e) => Err(err(e)),
        }
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let _permit = self.heavy.acquire().await;
        let started = self.client.start_container(id, None).await;
        self.touch_container(id);
        match started {
            // Already running.
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let options = StopContainerOptions { t: Some(grace.as_secs() as i32), signal: None };
        let stopped = self.client.stop_container(id, Some(options)).await;
        self.touch_container(id);
        match stopped {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304 | 404, .. }) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let _permit = self.heavy.acquire().await;
        let removed =
            self.client.remove_container(id, Some(RemoveContainerOptions { force: true, ..Default::default() })).await;
        self.touch_container(id);
        match removed {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    async fn pod_containers(&self, pod_uid: &str) -> Result<Vec<Container>> {
        if self.cache.lock().changed.contains_key(pod_uid) {
            return self.read_pod(pod_uid).await;
        }
        self.relist().await?;
        Ok(self.cache.lock().pods.get(pod_uid).cloned().unwrap_or_default())
    }

    async fn pods(&self) -> Result<Vec<String>> {
        let mut uids: Vec<String> = self
            .list(vec![])
            .await?
            .into_iter()
            .filter_map(|c| c.labels.and_then(|l| l.get(POD_UID).cloned()))
            .collect();
        uids.sort();
        uids.dedup();
        Ok(uids)
    }

    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<i32> {
        let exec = self
            .client
            .create_exec(
                id,
                CreateExecOptions {
                    cmd: Some(command.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(err)?;
        let run = async {
            if let StartExecResults::Attached { mut output, .. } =
                self.client.start_exec(&exec.id, None).await.map_err(err)?
            {
                while output.next().await.is_some() {}
            }
            let info = self.client.inspect_exec(&exec.id).await.map_err(err)?;
            Ok::<_, Error>(info.exit_code.unwrap_or(1) as i32)
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| Error::Runtime(format!("{command:?} timed out after {timeout:?}")))?
    }

    async fn logs(&self, id: &str, options: LogOptions) -> Result<BoxStream<'static, Bytes>> {
        let opts = LogsOptions {
            follow: options.follow,
            stdout: true,
            stderr: true,
            timestamps: options.timestamps,
            tail: options.tail_lines.map_or_else(|| "all".to_owned(), |n| n.to_string()),
            ..Default::default()
        };
        let stream = self.client.logs(id, Some(opts));
        Ok(stream.filter_map(|chunk| async move { chunk.ok().map(|c| c.into_bytes()) }).boxed())
    }
}
