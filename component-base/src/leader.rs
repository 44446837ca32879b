//! Leader election over a `coordination.k8s.io/v1` Lease, as client-go does it: the holder
//! renews the lease every retry period; a candidate takes it over once the holder has not
//! renewed it for a whole lease duration (judged by the candidate's own clock, from when it
//! last saw the lease change); a holder that cannot renew within the renew deadline stops
//! acting; a holder that stops releases the lease, so a standby need not wait it out.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};

/// How a candidate competes for the lease.
#[derive(Debug, Clone)]
pub struct Config {
    /// Lease namespace (`kube-system`).
    pub namespace: String,
    /// Lease name (`kube-scheduler`).
    pub name: String,
    /// This candidate's identity (hostname plus a unique suffix).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it gives up leadership.
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew.
    pub retry_period: Duration,
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lease could not be renewed within the renew deadline.
    #[error("lost the {0} lease: not renewed within the renew deadline")]
    Lost(String),
}

/// A candidate for one lease.
pub struct Elector {
    api: Api<Lease>,
    config: Config,
    observed: Option<(String, Instant)>,
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

impl Elector {
    /// A candidate using `client`.
    pub fn new(client: kube::Client, config: Config) -> Elector {
        Elector { api: Api::namespaced(client, &config.namespace), config, observed: None }
    }

    /// One attempt: takes or renews the lease; `true` when this candidate holds it now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let me = self.config.identity.clone();
        let duration = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.config.name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        // Expiry is judged from when *we* saw the record change, not the holder's clock.
        let seen_at = match &self.observed {
            Some((v, at)) if *v == version => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((version, at));
                at
            }
        };
        let held_by_other = !holder.is_empty() && holder != me;
        if held_by_other && seen_at.elapsed() < self.config.lease_duration {
            return Ok(false);
        }
        let mut next = spec.clone();
        next.holder_identity = Some(me);
        next.lease_duration_seconds = Some(duration);
        next.renew_time = Some(now());
        if holder != self.config.identity {
            next.acquire_time = Some(now());
            next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        lease.spec = Some(next);
        match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate holds the lease.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Gives the lease up, as client-go's `ReleaseOnCancel` does when a leader stops: the
    /// holder is cleared and the duration set to one second, so a standby takes over at its
    /// next attempt instead of waiting a whole lease duration. Best effort: a leader that
    /// cannot reach the apiserver lets the lease expire.
    pub async fn release(&mut self) {
        let released = async {
            let Some(mut lease) = self.api.get_opt(&self.config.name).await? else { return Ok(()) };
            let mut spec = lease.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(now());
            lease.spec = Some(spec);
            self.api.replace(&self.config.name, &PostParams::default(), &lease).await.map(|_| ())
        };
        match tokio::time::timeout(self.config.retry_period.max(Duration::from_secs(1)), released).await {
            Ok(Ok(())) => tracing::info!(lease = %self.config.name, "released the lease"),
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing the lease failed; it will expire"),
            Err(_) => tracing::warn!("releasing the lease timed out; it will expire"),
        }
    }

    /// Renews the lease until it cannot within the renew deadline; returns then. An attempt
    /// that hangs (a frozen apiserver) counts against the deadline too: like client-go's
    /// renew loop, every attempt is cut off when the deadline passes, so a leader stops
    /// acting before its lease can go to a standby.
    pub async fn hold(&mut self) -> Error {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let left = self.config.renew_deadline.saturating_sub(last_renewal.elapsed());
            match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => last_renewal = Instant::now(),
                Ok(Ok(false)) => return Error::Lost(self.config.name.clone()),
                Ok(Err(e)) => tracing::warn!(error = %e, "renewing the lease failed"),
                Err(_) => tracing::warn!("renewing the lease timed out"),
            }
            if last_renewal.elapsed() >= self.config.renew_deadline {
                return Error::Lost(self.config.name.clone());
            }
        }
    }
}
