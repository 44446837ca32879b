//! The Docker runtime, through the Docker Engine API (`bollard`): a pause container per pod
//! holds its network and IPC namespaces and the app containers join it. Labels tie every
//! container to its pod uid, container name and attempt, so a restarted kubelet finds what
//! it was running. Images must be local (no registry is assumed reachable).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker as Client;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions, StopContainerOptions,
};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::{Container, ContainerConfig, Error, LogOptions, Result, Runtime, Sandbox, SandboxConfig, State};

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

/// Containers through a Docker daemon.
pub struct Docker {
    client: Client,
    pause_image: String,
    node: String,
}

impl Docker {
    /// Connects to the local daemon; `pause_image` runs each pod's sandbox; `node` labels
    /// what this kubelet owns (several simulated nodes may share one daemon).
    pub async fn connect(pause_image: &str, node: &str) -> Result<Docker> {
        let client = Client::connect_with_local_defaults().map_err(err)?.negotiate_version().await.map_err(err)?;
        client.ping().await.map_err(|e| Error::Runtime(format!("the Docker daemon does not answer: {e}")))?;
        Ok(Docker { client, pause_image: pause_image.to_owned(), node: node.to_owned() })
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

    async fn ip_of(&self, id: &str) -> Result<String> {
        let info = self.client.inspect_container(id, None).await.map_err(err)?;
        let ip = info
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|nets| nets.values().find_map(|e| e.ip_address.clone().filter(|ip| !ip.is_empty())));
        Ok(ip.unwrap_or_else(|| "127.0.0.1".into()))
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
        if let Some(existing) = self.sandbox_of(&config.pod_uid).await? {
            let id = existing.id.unwrap_or_default();
            if existing.state.map(|s| s.to_string()).as_deref() != Some("running") {
                self.client.start_container(&id, None).await.map_err(err)?;
            }
            let ip = self.ip_of(&id).await?;
            return Ok(Sandbox { id, ip });
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
            hostname: Some(config.name.chars().take(63).collect()),
            labels: Some(labels),
            // The app containers join its IPC namespace as they join its network.
            host_config: Some(HostConfig { ipc_mode: Some("shareable".into()), ..Default::default() }),
            ..Default::default()
        };
        let name = format!("k8s_POD_{}_{}_{}_0", config.name, config.namespace, config.pod_uid);
        let created = self
            .client
            .create_container(Some(CreateContainerOptions { name: Some(name), ..Default::default() }), body)
            .await
            .map_err(err)?;
        self.client.start_container(&created.id, None).await.map_err(err)?;
        let ip = self.ip_of(&created.id).await?;
        Ok(Sandbox { id: created.id, ip })
    }

    async fn remove_sandbox(&self, pod_uid: &str) -> Result<()> {
        for c in self.list(vec![format!("{POD_UID}={pod_uid}")]).await? {
            let id = c.id.unwrap_or_default();
            let _ = self
                .client
                .remove_container(&id, Some(RemoveContainerOptions { force: true, ..Default::default() }))
                .await;
        }
        Ok(())
    }

    async fn create_container(&self, sandbox: &Sandbox, config: &ContainerConfig) -> Result<String> {
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
        self.client.start_container(id, None).await.map_err(err)
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let options = StopContainerOptions { t: Some(grace.as_secs() as i32), signal: None };
        match self.client.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304 | 404, .. }) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        match self.client.remove_container(id, Some(RemoveContainerOptions { force: true, ..Default::default() })).await
        {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    async fn pod_containers(&self, pod_uid: &str) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        for summary in self.list(vec![format!("{POD_UID}={pod_uid}")]).await? {
            let labels = summary.labels.clone().unwrap_or_default();
            if labels.get(SANDBOX).is_some_and(|s| s == "true") {
                continue;
            }
            let id = summary.id.clone().unwrap_or_default();
            let info = self.client.inspect_container(&id, None).await.map_err(err)?;
            let s = info.state.unwrap_or_default();
            let started_at = s.started_at.clone().unwrap_or_default();
            let state = if s.running == Some(true) {
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
            };
            out.push(Container {
                id,
                pod_uid: pod_uid.to_owned(),
                name: labels.get(CONTAINER_NAME).cloned().unwrap_or_default(),
                attempt: labels.get(ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(0),
                image: summary.image.unwrap_or_default(),
                state,
            });
        }
        Ok(out)
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
