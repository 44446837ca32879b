//! The pod network: every pod (but `hostNetwork` ones) in a network namespace of its own,
//! attached through CNI, as upstream's runtimes do it.
//!
//! - The configuration is the first file in `--cni-conf-dir`. When there is none, the
//!   kubelet writes one once the controller-manager gives its Node a `spec.podCIDR`: the
//!   standard `bridge` plugin (`--cni-bridge-name`, the node's gateway) with `host-local`
//!   addresses from the pod CIDR, then `portmap` for `hostPort` when `iptables` is there
//!   for it.
//! - `ADD` when the sandbox is made (`loopback` first, for `lo`), with the result kept under
//!   `<root-dir>/network/<pod uid>.json`, so that `DEL` (on removal, also of pods found
//!   orphaned after a restart) is given the same configuration and result, and no address
//!   leaks.
//! - Between nodes, [`routes`] sends each other node's pod CIDR to that node.

pub mod cni;
pub mod netns;
pub mod routes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node as NodeObject;
use kube::api::Api;
use kube::runtime::watcher;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use cni::{Attachment, Cni, ConfList};

/// The kubelet's own configuration file's name (sorts before most hand-written ones, so a
/// file a user puts beside it with a lower number wins).
pub const GENERATED: &str = "10-kubelet.conflist";

/// What the network needs to be told at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the configuration list is (`--cni-conf-dir`).
    pub conf_dir: PathBuf,
    /// Where the plugins are (`--cni-bin-dir`, `:`-separated).
    pub bin_dirs: Vec<PathBuf>,
    /// Where attachments and `host-local`'s leases are kept.
    pub state_dir: PathBuf,
    /// The bridge of the generated configuration.
    pub bridge: String,
}

/// What is kept of one pod's attachment, for its `DEL`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Kept {
    container_id: String,
    netns: PathBuf,
    args: Vec<(String, String)>,
    capabilities: Value,
    /// The configuration list it was made with (its file's text).
    conf: String,
    conf_path: PathBuf,
    result: Value,
}

/// A pod, as the network sees it.
#[derive(Debug, Clone)]
pub struct PodRef<'a> {
    /// uid (the attachment's container id).
    pub uid: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
    /// `hostPort` mappings for `portmap` (`[{hostPort, containerPort, protocol}]`).
    pub port_mappings: Vec<Value>,
}

/// The node's pod network.
pub struct PodNetwork {
    config: Config,
    cni: Cni,
    /// The configuration in use; `None` until there is one.
    current: Mutex<Option<Arc<ConfList>>>,
}

fn io_err(e: impl std::fmt::Display) -> cni::Error {
    cni::Error::Plugin { plugin: "kubelet".into(), command: "ADD", message: e.to_string() }
}

impl PodNetwork {
    /// A network over `config`; reads the configuration directory at once.
    pub fn new(config: Config) -> PodNetwork {
        let cni = Cni { bin_dirs: config.bin_dirs.clone(), timeout: Duration::from_secs(60) };
        let net = PodNetwork { config, cni, current: Mutex::new(None) };
        net.reload();
        net
    }

    /// Reads the configuration directory again.
    pub fn reload(&self) {
        match ConfList::load_dir(&self.config.conf_dir) {
            Ok(list) => *self.current.lock() = list.map(Arc::new),
            Err(e) => {
                tracing::error!(error = %e, "the CNI configuration cannot be used");
                *self.current.lock() = None;
            }
        }
    }

    /// The configuration in use.
    pub fn conf(&self) -> Option<Arc<ConfList>> {
        self.current.lock().clone()
    }

    /// The configuration the kubelet writes for a pod CIDR.
    pub fn generated(&self, pod_cidr: &str, portmap: bool) -> Value {
        let mut plugins = vec![json!({
            "type": "bridge", "bridge": self.config.bridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]], "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.config.state_dir.join("ipam")},
        })];
        if portmap {
            plugins.push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
        }
        json!({"cniVersion": "1.0.0", "name": "kubelet", "plugins": plugins})
    }

    /// The node has its pod CIDR: writes the kubelet's configuration unless the directory
    /// holds one of the user's, and makes the node's kernel ready to forward pod traffic.
    pub fn pod_cidr_assigned(&self, pod_cidr: &str) -> std::io::Result<()> {
        let dir = &self.config.conf_dir;
        let ours = dir.join(GENERATED);
        let someone_elses = self.conf().is_some_and(|c| c.path != ours);
        if !someone_elses {
            let portmap = which("iptables");
            if !portmap {
                tracing::warn!("no iptables on PATH: the CNI portmap plugin is left out, so hostPort is not mapped");
            }
            let text =
                serde_json::to_string_pretty(&self.generated(pod_cidr, portmap)).map_err(std::io::Error::other)?;
            if std::fs::read_to_string(&ours).ok().as_deref() != Some(text.as_str()) {
                std::fs::create_dir_all(dir)?;
                let tmp = dir.join(".10-kubelet.conflist.tmp");
                std::fs::write(&tmp, &text)?;
                std::fs::rename(&tmp, &ours)?;
                tracing::info!(%pod_cidr, path = %ours.display(), "wrote the CNI configuration");
            }
        }
        self.reload();
        Ok(())
    }

    /// Makes the node's kernel ready for pod traffic: it forwards between pods and nodes,
    /// pods on one bridge reach each other's Services through the same DNAT as anyone
    /// (kube-proxy's rules see bridged traffic), and where the host's firewall drops what
    /// it forwards by default (Docker sets the `FORWARD` policy to `DROP`), traffic to and
    /// from the kubelet's bridge is let through, as flannel and upstream's docs do it.
    pub async fn prepare_node(&self) {
        for (knob, value) in
            [("/proc/sys/net/bridge/bridge-nf-call-iptables", "1"), ("/proc/sys/net/ipv4/ip_forward", "1")]
        {
            if std::fs::read_to_string(knob).is_ok_and(|v| v.trim() != value)
                && let Err(e) = std::fs::write(knob, value)
            {
                tracing::warn!(%knob, error = %e, "cannot set it; pod traffic between nodes or to Services may fail");
            }
        }
        if !self.conf().is_some_and(|c| c.path.ends_with(GENERATED)) || !which("iptables") {
            return;
        }
        let policy = iptables(&["-S", "FORWARD"]).await.unwrap_or_default();
        if !policy.lines().any(|l| l == "-P FORWARD DROP") {
            return;
        }
        for rule in forward_rules(&self.config.bridge) {
            let check = [&["-C", "FORWARD"][..], &rule].concat();
            if iptables(&check).await.is_err() {
                let add = [&["-I", "FORWARD", "1"][..], &rule].concat();
                match iptables(&add).await {
                    Ok(_) => {
                        tracing::info!(bridge = %self.config.bridge, "the host's FORWARD policy is DROP: the pod bridge's traffic is accepted")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot accept the pod bridge's forwarded traffic; pods may not reach each other")
                    }
                }
            }
        }
    }

    /// Detaches every pod this kubelet attached and removes its forward rules
    /// (`kubelet --cleanup-network`, for taking a node down).
    pub async fn cleanup(&self) -> Result<(), cni::Error> {
        let mut first_error = None;
        for uid in self.attached() {
            if let Err(e) = self.detach(&uid).await {
                tracing::warn!(%uid, error = %e, "detaching failed");
                first_error.get_or_insert(e);
            }
        }
        if which("iptables") {
            for rule in forward_rules(&self.config.bridge) {
                while iptables(&[&["-D", "FORWARD"][..], &rule].concat()).await.is_ok() {}
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn kept_path(&self, uid: &str) -> PathBuf {
        self.config.state_dir.join(format!("{uid}.json"))
    }

    /// Attaches a pod's namespace to the network; its IPv4 address. An attachment made
    /// before (by this kubelet or the one before it) is found, not made again.
    pub async fn attach(&self, pod: &PodRef<'_>, netns: &Path) -> Result<String, cni::Error> {
        let kept_path = self.kept_path(pod.uid);
        if let Ok(text) = std::fs::read_to_string(&kept_path) {
            match serde_json::from_str::<Kept>(&text) {
                Ok(kept) if kept.netns == netns && netns.exists() => {
                    if let Some(ip) = cni::first_ipv4(&kept.result) {
                        return Ok(ip);
                    }
                }
                // The sandbox was made again (its pause container died): what the old one
                // held is released before the new one is attached.
                _ => self.detach(pod.uid).await?,
            }
        }
        let list = self.conf().ok_or_else(|| cni::Error::NoConfig(self.config.conf_dir.clone()))?;
        let conf = std::fs::read_to_string(&list.path).map_err(io_err)?;
        let att = Attachment {
            container_id: pod.uid.to_owned(),
            netns: netns.to_path_buf(),
            ifname: "eth0".into(),
            args: vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("K8S_POD_NAMESPACE".into(), pod.namespace.into()),
                ("K8S_POD_NAME".into(), pod.name.into()),
                ("K8S_POD_INFRA_CONTAINER_ID".into(), pod.uid.into()),
                ("K8S_POD_UID".into(), pod.uid.into()),
            ],
            capabilities: json!({"portMappings": pod.port_mappings}),
        };
        // `lo` first, as containerd does.
        let lo = Self::loopback();
        self.cni.add(&lo, &Attachment { ifname: "lo".into(), ..att.clone() }).await?;
        std::fs::create_dir_all(&self.config.state_dir).map_err(io_err)?;
        let result = match self.cni.add(&list, &att).await {
            Ok(r) => r,
            Err(e) => {
                // Undo what the plugins that ran did, as a runtime does after a failed ADD.
                let _ = self.cni.del(&list, &att, None).await;
                return Err(e);
            }
        };
        let kept = Kept {
            container_id: att.container_id,
            netns: att.netns,
            args: att.args,
            capabilities: att.capabilities,
            conf,
            conf_path: list.path.clone(),
            result: result.clone(),
        };
        let text = serde_json::to_vec(&kept).map_err(io_err)?;
        std::fs::write(&kept_path, text).map_err(io_err)?;
        cni::first_ipv4(&result).ok_or_else(|| cni::Error::Plugin {
            plugin: list.plugins.last().and_then(|p| p["type"].as_str()).unwrap_or_default().to_owned(),
            command: "ADD",
            message: format!("its result has no IPv4 address: {result}"),
        })
    }

    /// Detaches a pod (`DEL` with what its `ADD` was given and answered); nothing when it
    /// was never attached. The record goes only once `DEL` succeeded, so a failed one is
    /// tried again at the next removal or restart.
    pub async fn detach(&self, uid: &str) -> Result<(), cni::Error> {
        let kept_path = self.kept_path(uid);
        let Ok(text) = std::fs::read_to_string(&kept_path) else { return Ok(()) };
        let kept: Kept = match serde_json::from_str(&text) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(%uid, error = %e, "an unreadable network record; removed");
                let _ = std::fs::remove_file(&kept_path);
                return Ok(());
            }
        };
        let list = ConfList::parse(&kept.conf_path, &kept.conf)?;
        // A namespace already gone (its pause container died) leaves only addresses to free.
        let netns = if kept.netns.exists() { kept.netns.clone() } else { PathBuf::new() };
        let att = Attachment {
            container_id: kept.container_id,
            netns,
            ifname: "eth0".into(),
            args: kept.args,
            capabilities: kept.capabilities,
        };
        self.cni.del(&list, &att, Some(&kept.result)).await?;
        let _ = std::fs::remove_file(&kept_path);
        Ok(())
    }

    /// The uids of every pod with an attachment here.
    pub fn attached(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.config.state_dir) else { return Vec::new() };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).map(str::to_owned))
            .collect()
    }

    fn loopback() -> ConfList {
        ConfList {
            path: PathBuf::from("(built in)"),
            name: "cni-loopback".into(),
            cni_version: "1.0.0".into(),
            plugins: vec![json!({"type": "loopback"})],
        }
    }
}

/// The rules that let a bridge's traffic through a `FORWARD` chain whose policy drops.
fn forward_rules(bridge: &str) -> [Vec<&str>; 2] {
    let comment = ["-m", "comment", "--comment", "kubelet pod network", "-j", "ACCEPT"];
    [[&["-i", bridge][..], &comment].concat(), [&["-o", bridge][..], &comment].concat()]
}

async fn iptables(args: &[&str]) -> Result<String, String> {
    command("iptables", &[&["-w", "5"][..], args].concat()).await
}

/// Runs a host tool (`ip`, `iptables`); its output, or what it said went wrong.
async fn command(program: &str, args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("running {program} {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// Follows the Node objects: this node's pod CIDR configures the network, the others'
/// become routes. Runs until aborted.
pub async fn run(node: Arc<crate::Node>, network: Arc<PodNetwork>) {
    let api: Api<NodeObject> = Api::all(node.client.clone());
    let mut store = std::collections::BTreeMap::<String, NodeObject>::new();
    let mut init = std::collections::BTreeMap::new();
    let mut cidr: Option<String> = None;
    let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
    // The kernel drops routes whose link went down; a look now and then puts them back.
    let mut resync = tokio::time::interval(Duration::from_secs(30));
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut synced = false;
    loop {
        let changed = tokio::select! {
            _ = resync.tick() => synced,
            event = events.next() => match event {
                None => return,
                Some(Ok(watcher::Event::Init)) => {
                    init.clear();
                    false
                }
                Some(Ok(watcher::Event::InitApply(n))) => {
                    init.insert(n.metadata.name.clone().unwrap_or_default(), n);
                    false
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    store = std::mem::take(&mut init);
                    synced = true;
                    true
                }
                Some(Ok(watcher::Event::Apply(n))) => {
                    store.insert(n.metadata.name.clone().unwrap_or_default(), n);
                    true
                }
                Some(Ok(watcher::Event::Delete(n))) => {
                    store.remove(n.metadata.name.as_deref().unwrap_or_default());
                    true
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "node watch error; it resumes");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    false
                }
            },
        };
        if !changed {
            continue;
        }
        let mine = store.get(&node.name).and_then(|n| n.spec.as_ref()).and_then(|s| s.pod_cidr.clone());
        if mine.is_some() && mine != cidr {
            let c = mine.clone().unwrap_or_default();
            match network.pod_cidr_assigned(&c) {
                Ok(()) => {
                    network.prepare_node().await;
                    cidr = mine;
                }
                Err(e) => tracing::error!(pod_cidr = %c, error = %e, "writing the CNI configuration failed"),
            }
        }
        let want = routes::desired(store.values(), &node.name, &node.host_ip);
        if let Err(e) = routes::apply(&want).await {
            tracing::warn!(error = %e, "updating the routes to other nodes' pods failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(dir: &Path) -> PodNetwork {
        PodNetwork::new(Config {
            conf_dir: dir.join("net.d"),
            bin_dirs: vec![PathBuf::from("/usr/lib/cni")],
            state_dir: dir.join("network"),
            bridge: "cni0".into(),
        })
    }

    #[test]
    fn the_generated_configuration_is_a_bridge_on_the_pod_cidr() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = net(dir.path());
        let conf = n.generated("10.244.3.0/24", true);
        let list = ConfList::parse(Path::new(GENERATED), &conf.to_string()).expect("a valid list");
        assert_eq!(list.plugins[0]["type"], "bridge");
        assert_eq!(list.plugins[0]["ipam"]["ranges"][0][0]["subnet"], "10.244.3.0/24");
        assert_eq!(list.plugins[1]["type"], "portmap");
        assert_eq!(n.generated("10.244.3.0/24", false)["plugins"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn a_users_configuration_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf_dir = dir.path().join("net.d");
        std::fs::create_dir_all(&conf_dir).expect("dir");
        std::fs::write(conf_dir.join("05-mine.conflist"), r#"{"name":"mine","plugins":[{"type":"ptp"}]}"#).expect("w");
        let n = net(dir.path());
        n.pod_cidr_assigned("10.244.3.0/24").expect("assigned");
        assert!(!conf_dir.join(GENERATED).exists());
        assert_eq!(n.conf().map(|c| c.name.clone()), Some("mine".into()));
    }

    #[test]
    fn a_pod_cidr_writes_the_configuration_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = net(dir.path());
        assert!(n.conf().is_none());
        n.pod_cidr_assigned("10.244.3.0/24").expect("assigned");
        assert_eq!(n.conf().map(|c| c.name.clone()), Some("kubelet".into()));
        let written = std::fs::metadata(dir.path().join("net.d").join(GENERATED)).and_then(|m| m.modified()).ok();
        n.pod_cidr_assigned("10.244.3.0/24").expect("again");
        let again = std::fs::metadata(dir.path().join("net.d").join(GENERATED)).and_then(|m| m.modified()).ok();
        assert_eq!(written, again);
    }

    #[tokio::test]
    async fn detaching_a_pod_never_attached_is_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        net(dir.path()).detach("no-such-uid").await.expect("nothing to do");
    }
}
