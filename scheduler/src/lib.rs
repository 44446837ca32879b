//! kube-scheduler: watches nodes and pods through the apiserver, places each pending pod
//! with a pure filter-and-score algorithm ([`plugins::schedule`]) over an incremental
//! cache ([`snapshot::Cache`]), and binds it. With leader election, only the replica that
//! holds the Lease acts.

pub mod metrics;
pub mod plugins;
pub mod quantity;
pub mod queue;
pub mod run;
pub mod snapshot;

use std::sync::Arc;

pub use component_base::leader;

/// Runs the scheduler: waits for the lease when `election` is given, then schedules until
/// the lease is lost (an error: the process should exit, as upstream's does), a watch
/// ends, or `shutdown` resolves (then the lease is released for a standby).
pub async fn start(
    client: kube::Client,
    config: run::Config,
    election: Option<leader::Config>,
    metrics: Arc<metrics::Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let Some(election) = election else {
        metrics.leader.set(1);
        return tokio::select! {
            r = run::run(client, config, metrics) => r,
            _ = &mut shutdown => Ok(()),
        };
    };
    let mut elector = leader::Elector::new(client.clone(), election);
    tokio::select! {
        _ = elector.acquire() => {}
        _ = &mut shutdown => return Ok(()),
    }
    metrics.leader.set(1);
    let result = tokio::select! {
        r = run::run(client, config, metrics.clone()) => r,
        lost = elector.hold() => Err(lost.into()),
        _ = &mut shutdown => {
            elector.release().await;
            Ok(())
        }
    };
    metrics.leader.set(0);
    result
}
