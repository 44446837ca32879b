//! Liveness, readiness and startup probes: exec (through the runtime), httpGet and
//! tcpSocket, with upstream's defaults (period 10 s, timeout 1 s, thresholds 1 and 3).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::runtime::Runtime;

/// The running record of one probe of one container attempt.
#[derive(Debug, Clone)]
pub struct ProbeState {
    /// When the container was seen running (the initial delay counts from here).
    pub since: Instant,
    /// When the probe last ran.
    pub last: Option<Instant>,
    /// Consecutive successes.
    pub successes: i32,
    /// Consecutive failures.
    pub failures: i32,
    /// The probe's verdict so far (None until it has one).
    pub passing: Option<bool>,
}

impl ProbeState {
    /// A record for a container that started at `since`.
    pub fn new(since: Instant) -> ProbeState {
        ProbeState { since, last: None, successes: 0, failures: 0, passing: None }
    }
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(v.unwrap_or(default).max(0) as u64)
}

fn port(p: &IntOrString, container: &Container) -> Option<i32> {
    match p {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(name) => {
            container.ports.iter().flatten().find(|cp| cp.name.as_deref() == Some(name)).map(|cp| cp.container_port)
        }
    }
}

/// When the probe should run next, if it is not due now.
pub fn due_in(probe: &Probe, state: &ProbeState, now: Instant) -> Duration {
    let start = state.since + secs(probe.initial_delay_seconds, 0);
    let next = match state.last {
        None => start,
        Some(last) => last + secs(probe.period_seconds, 10),
    };
    next.saturating_duration_since(now)
}

/// Runs one probe; `true` on success.
pub async fn run(
    probe: &Probe,
    container: &Container,
    container_id: &str,
    pod_ip: &str,
    runtime: &dyn Runtime,
) -> bool {
    let timeout = secs(probe.timeout_seconds, 1).max(Duration::from_millis(100));
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        return matches!(runtime.exec(container_id, &command, timeout).await, Ok(0));
    }
    if let Some(http) = &probe.http_get {
        let Some(port) = port(&http.port, container) else { return false };
        let host = http.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| pod_ip.to_owned());
        let scheme = http.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
        let url = format!("{scheme}://{host}:{port}{}", http.path.as_deref().unwrap_or("/"));
        let client = reqwest::Client::builder().timeout(timeout).build();
        return match client {
            Ok(c) => c.get(&url).send().await.is_ok_and(|r| (200..400).contains(&r.status().as_u16())),
            Err(_) => false,
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let Some(port) = port(&tcp.port, container) else { return false };
        let host = tcp.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| pod_ip.to_owned());
        return matches!(
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port as u16))).await,
            Ok(Ok(_))
        );
    }
    true
}

/// Runs a container's `preStop` hook (exec, httpGet or sleep), for at most `within`;
/// what went wrong, if anything. As upstream, a failed hook does not stop the termination.
pub async fn pre_stop(
    container: &Container,
    container_id: &str,
    pod_ip: &str,
    runtime: &dyn Runtime,
    within: Duration,
) -> Result<(), String> {
    let Some(hook) = container.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) else { return Ok(()) };
    let run = async {
        if let Some(exec) = &hook.exec {
            let command = exec.command.clone().unwrap_or_default();
            return match runtime.exec(container_id, &command, within).await {
                Ok(0) => Ok(()),
                Ok(code) => Err(format!("exec {command:?} exited with {code}")),
                Err(e) => Err(e.to_string()),
            };
        }
        if let Some(http) = &hook.http_get {
            let port = port(&http.port, container).ok_or("httpGet: no such port")?;
            let host = http.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| pod_ip.to_owned());
            let scheme = http.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
            let url = format!("{scheme}://{host}:{port}{}", http.path.as_deref().unwrap_or("/"));
            let client = reqwest::Client::builder().timeout(within).build().map_err(|e| e.to_string())?;
            return match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("GET {url}: {}", r.status())),
                Err(e) => Err(format!("GET {url}: {e}")),
            };
        }
        if let Some(sleep) = &hook.sleep {
            tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64)).await;
        }
        Ok(())
    };
    tokio::time::timeout(within, run).await.unwrap_or_else(|_| Err(format!("still running after {within:?}")))
}

/// Folds one result into the record; returns the new verdict.
pub fn record(probe: &Probe, state: &mut ProbeState, ok: bool, now: Instant) -> Option<bool> {
    state.last = Some(now);
    if ok {
        state.successes += 1;
        state.failures = 0;
        if state.successes >= probe.success_threshold.unwrap_or(1).max(1) {
            state.passing = Some(true);
        }
    } else {
        state.failures += 1;
        state.successes = 0;
        if state.failures >= probe.failure_threshold.unwrap_or(3).max(1) {
            state.passing = Some(false);
        }
    }
    state.passing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_and_timing() {
        let probe: Probe = serde_json::from_value(
            serde_json::json!({"periodSeconds": 5, "initialDelaySeconds": 2, "failureThreshold": 2}),
        )
        .unwrap();
        let t0 = Instant::now();
        let mut s = ProbeState::new(t0);
        assert_eq!(due_in(&probe, &s, t0), Duration::from_secs(2));
        assert_eq!(record(&probe, &mut s, true, t0), Some(true));
        assert_eq!(due_in(&probe, &s, t0), Duration::from_secs(5));
        assert_eq!(record(&probe, &mut s, false, t0), Some(true), "one failure is below the threshold");
        assert_eq!(record(&probe, &mut s, false, t0), Some(false));
        assert_eq!(record(&probe, &mut s, true, t0), Some(true));
    }
}
