//! The `kube-controller-manager` binary.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use component_base::flags::{ClientFlags, LeaderElectionFlags, parse_duration};
use controller_manager::{Config, metrics::Metrics};

/// Runs the ReplicaSet, Deployment, node lifecycle and garbage collector controllers.
#[derive(Parser, Debug)]
#[command(name = "kube-controller-manager", version)]
struct Args {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    election: LeaderElectionFlags,
    /// How long a node's lease may go unrenewed before the node is Unknown.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
    /// The longest a pod stays on an unreachable node before it is evicted.
    #[arg(long, default_value = "5m0s", value_parser = parse_duration)]
    pod_eviction_timeout: Duration,
    /// Pods one ReplicaSet reconcile creates or deletes at most.
    #[arg(long, default_value_t = 500)]
    replicaset_burst: usize,
    /// Give every node a pod CIDR out of --cluster-cidr (on by default here: the kubelets'
    /// pod network needs one per node).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    allocate_node_cidrs: bool,
    /// The pods' network, cut into one range per node.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: String,
    /// The prefix length of each node's range.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// The cluster's CA certificate, published in every namespace as the ConfigMap
    /// kube-root-ca.crt (pods find it beside their service account token).
    #[arg(long)]
    root_ca_file: Option<std::path::PathBuf>,
    /// The CA certificate that signs approved CertificateSigningRequests (kubeadm's
    /// ca.crt); without it and the key, nothing is signed.
    #[arg(long, requires = "cluster_signing_key_file")]
    cluster_signing_cert_file: Option<std::path::PathBuf>,
    /// Its private key.
    #[arg(long, requires = "cluster_signing_cert_file")]
    cluster_signing_key_file: Option<std::path::PathBuf>,
    /// The longest a signed certificate lives (a request may ask for less).
    #[arg(long, default_value = "8760h", value_parser = component_base::flags::parse_duration)]
    cluster_signing_duration: std::time::Duration,
    /// Address of the metrics and health endpoints.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    /// Port of the metrics and health endpoints (HTTPS; 0 disables). `/metrics` answers
    /// only clients the API server lets `get /metrics` (a certificate of --client-ca-file,
    /// or a bearer token it accepts).
    #[arg(long, alias = "port", default_value_t = 10257)]
    secure_port: u16,
    /// The endpoint's certificate (default: a self-signed one made at start) and the CA
    /// whose client certificates it accepts.
    #[command(flatten)]
    serving: component_base::flags::ServingFlags,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    component_base::init_logging();
    let args = Args::parse();
    let election = args.election.config("kube-controller-manager")?;
    let client = args.client.client().await?;
    let metrics = Arc::new(Metrics::default());
    let m = metrics.clone();
    component_base::serve_secure_health_and_metrics(
        SocketAddr::new(args.bind_address, args.secure_port),
        Arc::new(move || m.encode()),
        &args.serving,
        client.clone(),
        "kube-controller-manager",
    )?;
    let config = Config {
        node_monitor_grace_period: args.node_monitor_grace_period,
        pod_eviction_timeout: args.pod_eviction_timeout,
        burst: args.replicaset_burst,
        cluster_cidr: args.allocate_node_cidrs.then(|| (args.cluster_cidr.clone(), args.node_cidr_mask_size)),
        root_ca: match &args.root_ca_file {
            Some(path) => Some(
                std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("--root-ca-file {}: {e}", path.display()))?,
            ),
            None => None,
        },
        signing: match (&args.cluster_signing_cert_file, &args.cluster_signing_key_file) {
            (Some(cert), Some(key)) => {
                let read = |p: &std::path::Path| {
                    std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
                };
                let ca = component_base::pki::Ca::from_pem(&read(cert)?, &read(key)?)
                    .map_err(|e| anyhow::anyhow!("--cluster-signing-cert-file: {e:#}"))?;
                Some(Arc::new(controller_manager::certificates::Signing {
                    ca,
                    duration: args.cluster_signing_duration,
                }))
            }
            _ => None,
        },
    };
    if let Some((cidr, bits)) = &config.cluster_cidr {
        controller_manager::nodeipam::CidrSet::parse(cidr, *bits)
            .map_err(|e| anyhow::anyhow!("--cluster-cidr {cidr} with --node-cidr-mask-size {bits}: {e}"))?;
    }
    controller_manager::run(client, config, election, metrics, component_base::shutdown_signal())
        .await
        .context("kube-controller-manager stopped")
}
