//! The `kube-scheduler` binary.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use scheduler::{leader, metrics, run};

/// Places pending pods on nodes.
#[derive(Parser, Debug)]
#[command(name = "kube-scheduler", version)]
struct Args {
    /// kubeconfig of the cluster (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The apiserver URL, overriding the kubeconfig's.
    #[arg(long)]
    master: Option<String>,
    /// Take part in leader election, so that only one replica acts.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Seconds a lease is valid without renewal.
    #[arg(long, default_value_t = 15)]
    leader_elect_lease_duration: u64,
    /// Seconds the leader keeps trying to renew before it stops acting.
    #[arg(long, default_value_t = 10)]
    leader_elect_renew_deadline: u64,
    /// Seconds between attempts to acquire or renew.
    #[arg(long, default_value_t = 2)]
    leader_elect_retry_period: u64,
    /// Namespace of the lease.
    #[arg(long, default_value = "kube-system")]
    leader_elect_resource_namespace: String,
    /// Name of the lease.
    #[arg(long, default_value = "kube-scheduler")]
    leader_elect_resource_name: String,
    /// The `spec.schedulerName` this scheduler serves.
    #[arg(long, default_value = "default-scheduler")]
    scheduler_name: String,
    /// Bindings in flight at once.
    #[arg(long, default_value_t = 256)]
    binding_concurrency: usize,
    /// Address of the metrics and health endpoints.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    /// Port of the metrics and health endpoints (plain HTTP; 0 disables).
    #[arg(long, alias = "port", default_value_t = 10259)]
    secure_port: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let client = component_base::client(args.kubeconfig.as_deref(), args.master.as_deref()).await?;
    let metrics = Arc::new(metrics::Metrics::default());
    let m = metrics.clone();
    component_base::serve_health_and_metrics(
        SocketAddr::new(args.bind_address, args.secure_port),
        Arc::new(move || m.encode()),
    );
    let election = args.leader_elect.then(|| leader::Config {
        namespace: args.leader_elect_resource_namespace.clone(),
        name: args.leader_elect_resource_name.clone(),
        identity: component_base::identity(),
        lease_duration: Duration::from_secs(args.leader_elect_lease_duration),
        renew_deadline: Duration::from_secs(args.leader_elect_renew_deadline),
        retry_period: Duration::from_secs(args.leader_elect_retry_period),
    });
    let config = run::Config {
        scheduler_name: args.scheduler_name,
        binding_concurrency: args.binding_concurrency,
        ..Default::default()
    };
    tokio::select! {
        r = scheduler::start(client, config, election, metrics) => r.context("kube-scheduler stopped"),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
