//! The CRI-like runtime interface the kubelet drives pods through, and its three
//! implementations: [`docker`] (real containers through the Docker Engine API), [`process`]
//! (each container a host process group) and [`sim`] (no process at all, for scale tests).

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub mod docker;
pub mod process;
pub mod sim;

/// What can go wrong in a runtime call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image is not on this node and cannot be pulled here.
    #[error("image {0:?} is not present on this node")]
    ImageNotPresent(String),
    /// The container spec cannot run on this runtime.
    #[error("{0}")]
    Unsupported(String),
    /// No such container or sandbox.
    #[error("{0} not found")]
    NotFound(String),
    /// The runtime failed.
    #[error("runtime: {0}")]
    Runtime(String),
}

/// Result of a runtime call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a pod's sandbox is on the network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// Wherever the runtime puts it by itself (Docker's default bridge; the host, for host
    /// processes): the kubelet runs no pod network.
    #[default]
    Runtime,
    /// In the host's network namespace (`hostNetwork: true`).
    Host,
    /// In a new, empty network namespace of its own, which the kubelet's pod network then
    /// attaches (the sandbox's `netns`).
    Pod,
}

/// What a pod's sandbox needs.
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    /// The pod's uid.
    pub pod_uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its network.
    pub network: NetworkMode,
}

/// A running sandbox.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Runtime id.
    pub id: String,
    /// The pod's IP (empty until the pod network attaches a [`NetworkMode::Pod`] sandbox).
    pub ip: String,
    /// The sandbox's own network namespace ([`NetworkMode::Pod`]).
    pub netns: Option<PathBuf>,
}

/// A bind mount into a container.
#[derive(Debug, Clone)]
pub struct Mount {
    /// Directory or file on the host.
    pub host_path: PathBuf,
    /// Where it appears in the container.
    pub container_path: String,
    /// Read-only?
    pub read_only: bool,
}

/// What a container needs.
#[derive(Debug, Clone, Default)]
pub struct ContainerConfig {
    /// The pod's uid.
    pub pod_uid: String,
    /// `namespace/name` of the pod.
    pub pod_key: String,
    /// The container's name.
    pub name: String,
    /// Restart attempt (0 for the first run).
    pub attempt: u32,
    /// Image.
    pub image: String,
    /// `command` (overrides the image's entrypoint).
    pub command: Vec<String>,
    /// `args`.
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// Volume mounts.
    pub mounts: Vec<Mount>,
    /// The pod's `/etc/resolv.conf`, as the kubelet wrote it.
    pub resolv_conf: Option<PathBuf>,
    /// CPU limit in millicores.
    pub cpu_limit: Option<i64>,
    /// Memory limit in bytes.
    pub memory_limit: Option<i64>,
}

/// A container's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Created, not started.
    Created,
    /// Running since (RFC 3339).
    Running {
        /// Start time.
        started_at: String,
    },
    /// Exited.
    Exited {
        /// Exit code.
        code: i32,
        /// Start time.
        started_at: String,
        /// End time.
        finished_at: String,
        /// Killed for running out of memory.
        oom_killed: bool,
    },
}

/// One container the runtime knows, with the labels that tie it to a pod.
#[derive(Debug, Clone)]
pub struct Container {
    /// Runtime id.
    pub id: String,
    /// The pod's uid.
    pub pod_uid: String,
    /// The container's name in the pod.
    pub name: String,
    /// Restart attempt.
    pub attempt: u32,
    /// Image.
    pub image: String,
    /// State.
    pub state: State,
}

/// How to read logs.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Keep streaming.
    pub follow: bool,
    /// Only the last N lines.
    pub tail_lines: Option<usize>,
    /// Prefix each line with its time.
    pub timestamps: bool,
}

/// The runtime interface (CRI-like).
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// `docker`, `process` or `sim`.
    fn name(&self) -> &'static str;
    /// The version string for `nodeInfo.containerRuntimeVersion`.
    fn version(&self) -> String;
    /// Whether containers can change state by themselves (exit, crash), so the kubelet
    /// must look at them periodically.
    fn needs_polling(&self) -> bool {
        true
    }
    /// Whether containers run from their image. A runtime that runs host commands instead
    /// says so, and the kubelet tells the pod's events that the image is not used.
    fn uses_images(&self) -> bool {
        true
    }
    /// Whether an image is present locally.
    async fn image_present(&self, image: &str) -> Result<bool>;
    /// Creates (or finds) the pod's sandbox.
    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox>;
    /// Stops and removes a pod's sandbox and everything in it.
    async fn remove_sandbox(&self, pod_uid: &str) -> Result<()>;
    /// Creates a container in a sandbox.
    async fn create_container(&self, sandbox: &Sandbox, config: &ContainerConfig) -> Result<String>;
    /// Starts a created container.
    async fn start_container(&self, id: &str) -> Result<()>;
    /// Stops a container: SIGTERM, then SIGKILL after `grace`.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()>;
    /// Removes a stopped container.
    async fn remove_container(&self, id: &str) -> Result<()>;
    /// The containers of one pod (every attempt still known).
    async fn pod_containers(&self, pod_uid: &str) -> Result<Vec<Container>>;
    /// The uids of every pod with a sandbox or containers here.
    async fn pods(&self) -> Result<Vec<String>>;
    /// Runs a command in a container; its exit code.
    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<i32>;
    /// A container's logs.
    async fn logs(&self, id: &str, options: LogOptions) -> Result<BoxStream<'static, Bytes>>;
}

/// Keeps the last `n` lines of `text`.
pub fn tail(text: &[u8], n: usize) -> &[u8] {
    let mut newlines = 0;
    for (i, b) in text.iter().enumerate().rev() {
        if *b == b'\n' && i + 1 != text.len() {
            newlines += 1;
            if newlines == n {
                return &text[i + 1..];
            }
        }
    }
    text
}

/// The current time as the runtimes report it.
pub fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(super::tail(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(super::tail(b"a\nb\nc", 1), b"c");
        assert_eq!(super::tail(b"a\n", 5), b"a\n");
    }
}
