//! The command-line flags the components share, with upstream's names: how to reach the
//! apiserver, and how to take part in leader election.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use crate::leader;

/// `--kubeconfig` and `--master`.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientFlags {
    /// kubeconfig of the cluster (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The apiserver URL, overriding the kubeconfig's.
    #[arg(long)]
    pub master: Option<String>,
}

impl ClientFlags {
    /// A client from these flags.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        crate::client(self.kubeconfig.as_deref(), self.master.as_deref()).await
    }

    /// A client from these flags with at most `max_inflight` requests in flight.
    pub async fn client_limited(&self, max_inflight: usize) -> anyhow::Result<kube::Client> {
        crate::client_limited(self.kubeconfig.as_deref(), self.master.as_deref(), max_inflight).await
    }
}

/// `--tls-cert-file`, `--tls-private-key-file` and `--client-ca-file`: how a component
/// serves TLS, and whose client certificates it accepts.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServingFlags {
    /// The serving certificate (PEM, with its intermediates); `kubeadm init phase certs`
    /// and `kubeadm init phase node` make them.
    #[arg(long, requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The serving certificate's private key.
    #[arg(long, requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// Client certificates signed by this CA authenticate as their CN (user) and O (groups).
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
}

impl ServingFlags {
    /// The serving identity, or `None` when no certificate was given.
    pub fn serving(&self) -> anyhow::Result<Option<crate::tls::Serving>> {
        match (&self.tls_cert_file, &self.tls_private_key_file) {
            (Some(cert), Some(key)) => {
                Ok(Some(crate::tls::Serving::from_files(cert, key, self.client_ca_file.as_deref())?))
            }
            _ if self.client_ca_file.is_some() => {
                bail!("--client-ca-file needs --tls-cert-file and --tls-private-key-file")
            }
            _ => Ok(None),
        }
    }
}

/// `--leader-elect*`.
#[derive(clap::Args, Debug, Clone)]
pub struct LeaderElectionFlags {
    /// Take part in leader election, so that only one replica acts.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// How long a lease is valid without renewal (a Go duration: 15s, 1m).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops acting.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: Duration,
    /// Namespace of the lease.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    /// Name of the lease (default: the component's name).
    #[arg(long)]
    pub leader_elect_resource_name: Option<String>,
}

impl LeaderElectionFlags {
    /// The election to take part in, if any; `component` names the lease by default.
    pub fn config(&self, component: &str) -> anyhow::Result<Option<leader::Config>> {
        if !self.leader_elect {
            return Ok(None);
        }
        if self.leader_elect_renew_deadline >= self.leader_elect_lease_duration {
            bail!("--leader-elect-renew-deadline must be shorter than --leader-elect-lease-duration");
        }
        Ok(Some(leader::Config {
            namespace: self.leader_elect_resource_namespace.clone(),
            name: self.leader_elect_resource_name.clone().unwrap_or_else(|| component.to_owned()),
            identity: crate::identity(),
            lease_duration: self.leader_elect_lease_duration,
            renew_deadline: self.leader_elect_renew_deadline,
            retry_period: self.leader_elect_retry_period,
        }))
    }
}

/// Parses Go durations (`300ms`, `40s`, `5m0s`, `1h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("an empty duration".into());
    }
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{text:?}: missing unit (ms, s, m or h)"))?;
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
