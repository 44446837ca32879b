//! The `kubelet` binary.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use component_base::flags::ClientFlags;
use component_base::rotating::Rotating;
use kubelet::network::{self, PodNetwork};
use kubelet::runtime::{Runtime, docker::Docker, process::Process, sim::Sim};
use kubelet::{Node, metrics::Metrics, node, parse_labels, parse_taints};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum RuntimeKind {
    /// Real containers through the local Docker daemon.
    Docker,
    /// Each container's command as a host process.
    Process,
    /// No processes at all (for scale tests).
    Sim,
}

/// Runs the pods bound to this node.
#[derive(Parser, Debug)]
#[command(name = "kubelet", version)]
struct Args {
    #[command(flatten)]
    client: ClientFlags,
    /// The node's name (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// The container runtime (default: docker when a daemon answers, else process).
    #[arg(long, value_enum)]
    runtime: Option<RuntimeKind>,
    /// With --runtime sim: how many nodes this process hosts (named NODE-NAME-0..N-1).
    #[arg(long, default_value_t = 1)]
    sim_nodes: usize,
    /// CPU of each simulated node (cores).
    #[arg(long, default_value = "32")]
    sim_cpu: String,
    /// Memory of each simulated node (Gi).
    #[arg(long, default_value_t = 128)]
    sim_memory_gi: i64,
    /// Pods per node.
    #[arg(long, default_value_t = 110)]
    max_pods: i64,
    /// Where volumes and the process runtime's state live.
    #[arg(long, default_value = "/var/lib/kubelet")]
    root_dir: PathBuf,
    /// The node's IP (pods' hostIP, and where the apiserver reaches the log endpoint).
    #[arg(long, default_value = "127.0.0.1")]
    node_ip: String,
    /// Address of the log, health and metrics endpoint.
    #[arg(long, default_value = "127.0.0.1")]
    address: IpAddr,
    /// Port of the log, health and metrics endpoint.
    #[arg(long, default_value_t = 10250)]
    port: u16,
    /// The endpoint's TLS (without a certificate it serves plain HTTP to anyone, and a
    /// warning is logged); with a client CA only its certificates (the apiserver's) are
    /// answered, others get 401.
    #[command(flatten)]
    serving: component_base::flags::ServingFlags,
    /// A kubeconfig with a bootstrap token: when --kubeconfig does not exist (or its
    /// certificate has expired), the kubelet asks the cluster for a certificate of its own
    /// with it, and writes --kubeconfig (`kubeadm join` writes this file).
    #[arg(long, requires = "kubeconfig")]
    bootstrap_kubeconfig: Option<PathBuf>,
    /// Where the certificates from the cluster are kept (default: <root-dir>/pki).
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    /// Renew the client certificate from the cluster before it expires, without a restart.
    #[arg(long)]
    rotate_certificates: bool,
    /// Serve the endpoint with a certificate from the cluster (a kubelet-serving request an
    /// admin approves), renewed before it expires; instead of --tls-cert-file.
    #[arg(long, conflicts_with = "tls_cert_file")]
    rotate_server_certificates: bool,
    /// Labels to add to the node (k=v,k2=v2).
    #[arg(long, default_value = "")]
    node_labels: String,
    /// Taints to register the node with (key=value:Effect,...).
    #[arg(long, default_value = "")]
    register_with_taints: String,
    /// How long the node's lease lasts; it is renewed every quarter of that. The
    /// controller-manager's --node-monitor-grace-period must be longer.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    node_lease_duration_seconds: u32,
    /// Requests to the apiserver waiting for their response at once; more queue. This
    /// bounds the kubelet's connections (and their buffers) however many pods and nodes
    /// it runs, as upstream's --kube-api-burst bounds its request rate.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    kube_api_max_inflight: u32,
    /// Container creations, starts and removals the docker runtime runs at once (more
    /// wait their turn, so each pod is done sooner).
    #[arg(long, default_value_t = kubelet::runtime::docker::DEFAULT_PARALLEL_OPS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_parallel_container_operations: usize,
    /// The image of each pod's sandbox (pause) container, docker runtime; must be local.
    #[arg(long, default_value = "busybox:local")]
    pod_infra_container_image: String,
    /// How pods get their network: `cni` puts each pod in a network namespace of its own
    /// on the node's pod CIDR through the CNI plugins; `none` leaves them where the
    /// runtime puts them (Docker's bridge, or the host for host processes). The sim
    /// runtime has no network.
    #[arg(long, value_enum, default_value_t = NetworkPlugin::Cni)]
    network_plugin: NetworkPlugin,
    /// The CNI configuration directory (the first file by name is used; with none, the
    /// kubelet writes its own for the node's pod CIDR). Default: <root-dir>/cni/net.d.
    #[arg(long)]
    cni_conf_dir: Option<PathBuf>,
    /// Where the CNI plugins are (`:`-separated, searched in order).
    #[arg(long, default_value = "/usr/lib/cni:/opt/cni/bin")]
    cni_bin_dir: String,
    /// The cluster DNS server(s) pods with dnsPolicy ClusterFirst use (comma-separated IPs;
    /// upstream's is the kube-dns Service, the range's 10th address: 10.96.0.10).
    #[arg(long, value_delimiter = ',')]
    cluster_dns: Vec<std::net::IpAddr>,
    /// The cluster's DNS domain, searched by pods.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The host's resolver file, for dnsPolicy Default and the search list's tail.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Detach every pod this kubelet attached to the pod network (CNI DEL: addresses, host
    /// ports) and remove its forward rules, then exit; for taking a node down.
    #[arg(long)]
    cleanup_network: bool,
    /// The bridge of the kubelet's own CNI configuration (one per node; several nodes on
    /// one host need different names).
    #[arg(long, default_value = "cni0")]
    cni_bridge_name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum NetworkPlugin {
    /// Pod network namespaces attached through CNI.
    Cni,
    /// The runtime's own networking.
    None,
}

fn network_config(args: &Args) -> network::Config {
    network::Config {
        conf_dir: args.cni_conf_dir.clone().unwrap_or_else(|| args.root_dir.join("cni").join("net.d")),
        bin_dirs: std::env::split_paths(&args.cni_bin_dir).collect(),
        state_dir: args.root_dir.join("network"),
        bridge: args.cni_bridge_name.clone(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    component_base::init_logging();
    let args = Args::parse();
    let labels = parse_labels(&args.node_labels).map_err(anyhow::Error::msg).context("--node-labels")?;
    let taints =
        parse_taints(&args.register_with_taints).map_err(anyhow::Error::msg).context("--register-with-taints")?;
    let name = match &args.node_name {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_else(|_| "localhost".into())
            .trim()
            .to_lowercase(),
    };
    if args.sim_nodes > 1 && args.runtime != Some(RuntimeKind::Sim) {
        bail!("--sim-nodes needs --runtime sim");
    }
    if args.cleanup_network {
        let network = PodNetwork::new(network_config(&args));
        return network.cleanup().await.context("detaching the pods from the network");
    }
    let cert_dir = args.cert_dir.clone().unwrap_or_else(|| args.root_dir.join("pki"));
    let max_inflight = args.kube_api_max_inflight as usize;
    let (client, rotating) = match (&args.bootstrap_kubeconfig, &args.client.kubeconfig) {
        (Some(bootstrap), Some(kubeconfig)) => {
            kubelet::certificate::bootstrap(&name, bootstrap, kubeconfig, &cert_dir).await?;
            let (client, rotating) = Rotating::client(kubeconfig, max_inflight).await?;
            (client, Some(rotating))
        }
        (None, Some(kubeconfig)) if args.rotate_certificates => {
            let (client, rotating) = Rotating::client(kubeconfig, max_inflight).await?;
            (client, Some(rotating))
        }
        _ => (args.client.client_limited(max_inflight).await?, None),
    };
    if let (true, Some(rotating)) = (args.rotate_certificates, rotating) {
        kubelet::certificate::rotate_client(client.clone(), name.clone(), cert_dir.clone(), rotating);
    }
    let metrics = Arc::new(Metrics::default());
    let kind = match args.runtime {
        Some(k) => k,
        None => match Docker::connect(&args.pod_infra_container_image, &name).await {
            Ok(_) => RuntimeKind::Docker,
            Err(e) => {
                tracing::info!(error = %e, "no Docker daemon; using the process runtime");
                RuntimeKind::Process
            }
        },
    };
    let network = (kind != RuntimeKind::Sim && args.network_plugin == NetworkPlugin::Cni)
        .then(|| Arc::new(PodNetwork::new(network_config(&args))));
    let dns = kubelet::dns::ClusterDns {
        servers: args.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
        domain: args.cluster_domain.clone(),
        // A host with no resolver file gives pods none of its resolvers, as upstream.
        host: std::fs::read_to_string(&args.resolv_conf).unwrap_or_else(|e| {
            tracing::warn!(path = %args.resolv_conf.display(), error = %e, "no host resolver file");
            String::new()
        }),
    };
    let (host_cpu, host_memory) = node::host_capacity();
    let mut nodes = Vec::new();
    let count = if kind == RuntimeKind::Sim { args.sim_nodes.max(1) } else { 1 };
    let sim_cpu = kubelet::quantity_milli(&args.sim_cpu).context("--sim-cpu")?;
    for i in 0..count {
        let node_name = if count > 1 { format!("{name}-{i}") } else { name.clone() };
        let runtime: Arc<dyn Runtime> = match kind {
            RuntimeKind::Docker => Arc::new(
                Docker::connect(&args.pod_infra_container_image, &node_name)
                    .await
                    .context("connecting to Docker")?
                    .with_parallel_ops(args.max_parallel_container_operations),
            ),
            RuntimeKind::Process => {
                Arc::new(Process::new(&args.root_dir.join("process")).context("the process runtime's directory")?)
            }
            RuntimeKind::Sim => Arc::new(Sim::default()),
        };
        let (cpu, memory) =
            if kind == RuntimeKind::Sim { (sim_cpu, args.sim_memory_gi << 30) } else { (host_cpu, host_memory) };
        nodes.push(Arc::new(Node {
            name: node_name,
            client: client.clone(),
            runtime,
            root: args.root_dir.clone(),
            host_ip: args.node_ip.clone(),
            metrics: metrics.clone(),
            registration: node::Registration {
                cpu_millis: cpu,
                memory_bytes: memory,
                max_pods: args.max_pods,
                labels: labels.clone(),
                taints: taints.clone(),
                port: args.port,
                lease_seconds: args.node_lease_duration_seconds,
            },
            network: network.clone(),
            dns: dns.clone(),
            pods: Default::default(),
        }));
    }
    tracing::info!(runtime = ?kind, nodes = nodes.len(), "kubelet starting");
    let _tasks = kubelet::start_all(nodes.clone());
    let addr = SocketAddr::new(args.address, args.port);
    let tls = if args.rotate_server_certificates {
        let slot = Arc::new(component_base::tls::CertSlot::default());
        let ips: Vec<IpAddr> = args.node_ip.parse().into_iter().collect();
        kubelet::certificate::rotate_server(
            client.clone(),
            name.clone(),
            (vec![name.clone()], ips),
            cert_dir,
            slot.clone(),
        );
        let client_ca =
            args.serving.client_ca_file.as_deref().map(component_base::tls::ClientCa::from_file).transpose()?;
        Some(component_base::tls::Serving::rotating(slot, client_ca)?)
    } else {
        args.serving.serving()?
    };
    if tls.is_none() {
        tracing::warn!(%addr, "no --tls-cert-file: the log and metrics endpoint serves plain HTTP to anyone");
    }
    tokio::select! {
        r = kubelet::server::serve(addr, nodes, metrics, tls) => r.with_context(|| format!("serving on {addr}")),
        _ = component_base::shutdown_signal() => Ok(()),
    }
}
