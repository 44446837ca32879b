//! The `kube-controller-manager` binary.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use controller_manager::{Config, leader, metrics::Metrics};

/// Runs the ReplicaSet, Deployment, node lifecycle and garbage collector controllers.
#[derive(Parser, Debug)]
#[command(name = "kube-controller-manager", version)]
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
    /// How long a lease is valid without renewal (Go duration: 15s, 1m).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops acting.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: Duration,
    /// How long a node's lease may go unrenewed before the node is Unknown.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
    /// The longest a pod stays on an unreachable node before it is evicted.
    #[arg(long, default_value = "5m0s", value_parser = parse_duration)]
    pod_eviction_timeout: Duration,
    /// Pods one ReplicaSet reconcile creates or deletes at most.
    #[arg(long, default_value_t = 500)]
    replicaset_burst: usize,
    /// Address of the metrics and health endpoints.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    /// Port of the metrics and health endpoints (plain HTTP; 0 disables).
    #[arg(long, alias = "port", default_value_t = 10257)]
    secure_port: u16,
}

/// Parses Go durations (`300ms`, `40s`, `5m0s`, `1h`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("an empty duration".into());
    }
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{text:?}: missing unit (s, m, h, ms)"))?;
        let (number, tail) = rest.split_at(split);
        let value: f64 = number.parse().map_err(|_| format!("{text:?}: {number:?} is not a number"))?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let seconds = match unit {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => return Err(format!("{text:?}: unknown unit {unit:?} (use ms, s, m or h)")),
        };
        total += Duration::from_secs_f64(seconds);
        rest = next;
    }
    Ok(total)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    if args.leader_elect && args.leader_elect_renew_deadline >= args.leader_elect_lease_duration {
        bail!("--leader-elect-renew-deadline must be shorter than --leader-elect-lease-duration");
    }
    let client = component_base::client(args.kubeconfig.as_deref(), args.master.as_deref()).await?;
    let metrics = Arc::new(Metrics::default());
    let m = metrics.clone();
    component_base::serve_health_and_metrics(
        SocketAddr::new(args.bind_address, args.secure_port),
        Arc::new(move || m.encode()),
    );
    let election = args.leader_elect.then(|| leader::Config {
        namespace: "kube-system".into(),
        name: "kube-controller-manager".into(),
        identity: component_base::identity(),
        lease_duration: args.leader_elect_lease_duration,
        renew_deadline: args.leader_elect_renew_deadline,
        retry_period: args.leader_elect_retry_period,
    });
    let config = Config {
        node_monitor_grace_period: args.node_monitor_grace_period,
        pod_eviction_timeout: args.pod_eviction_timeout,
        burst: args.replicaset_burst,
    };
    tokio::select! {
        r = controller_manager::run(client, config, election, metrics) => r.context("kube-controller-manager stopped"),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("40s"), Ok(Duration::from_secs(40)));
        assert_eq!(parse_duration("5m0s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
    }
}
