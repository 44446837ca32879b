//! Requests a browser could send on a user's behalf. Until clients authenticate, anyone who
//! can reach the port can write, and a web page can reach a loopback port: a cross-site
//! `POST` with a text body, or a page whose own host name was made to resolve to us (DNS
//! rebinding). So every request must name a host this server answers for, and a write
//! from a browser (`Origin` set) must come from an origin allowed by
//! `--cors-allowed-origins`. Both stay after authentication lands: a browser carries the
//! user's credentials too.

use axum::http::{HeaderMap, Method, header};

use crate::status::{ApiError, ApiResult};

/// Which `Host` names and browser origins are accepted.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    /// Host names accepted besides IP literals, `localhost` and this machine's name
    /// (`--allowed-hosts`: the DNS names clients use for this server).
    pub allowed_hosts: Vec<String>,
    /// Browser origins that may write (`--cors-allowed-origins`, exact
    /// `scheme://host[:port]`, or `*` for any).
    pub cors_allowed_origins: Vec<String>,
    /// This machine's host name, lower case.
    pub hostname: String,
}

impl OriginPolicy {
    /// The policy with this machine's name filled in.
    pub fn new(allowed_hosts: Vec<String>, cors_allowed_origins: Vec<String>) -> OriginPolicy {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_lowercase();
        OriginPolicy { allowed_hosts, cors_allowed_origins, hostname }
    }

    /// Checks one request's `Host` and, for writes, its `Origin`.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> ApiResult<()> {
        if let Some(host) = headers.get(header::HOST) {
            let host = host.to_str().map_err(|_| ApiError::bad_request("the Host header is not ASCII"))?;
            let name = host_name(host);
            if !self.host_allowed(&name) {
                return Err(ApiError::forbidden(format!(
                    "host {name:?} is not a name this apiserver answers for; if clients reach it by that name, add it to --allowed-hosts"
                )));
            }
        }
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe && let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            let allowed = self.cors_allowed_origins.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin));
            if !allowed {
                return Err(ApiError::forbidden(format!(
                    "a {method} from the browser origin {origin:?} is refused: it is not in --cors-allowed-origins"
                )));
            }
        }
        Ok(())
    }

    fn host_allowed(&self, name: &str) -> bool {
        name.parse::<std::net::IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || (!self.hostname.is_empty() && name == self.hostname)
            || self.allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
    }
}

/// The name in a `Host` header, without its port and IPv6 brackets, lower case.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => host,
        }
    };
    name.trim_end_matches('.').to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), v.parse().expect("header value"));
        }
        h
    }

    fn policy() -> OriginPolicy {
        OriginPolicy {
            allowed_hosts: vec!["api.example".into()],
            cors_allowed_origins: vec!["https://dash.example".into()],
            hostname: "cp1".into(),
        }
    }

    #[test]
    fn hosts_clients_use_are_accepted() {
        for host in ["127.0.0.1:6443", "[::1]:6443", "localhost:6443", "10.0.0.11", "cp1:6443", "API.example:443"] {
            assert!(policy().check(&Method::GET, &headers(&[(header::HOST, host)])).is_ok(), "{host}");
        }
        assert!(policy().check(&Method::POST, &HeaderMap::new()).is_ok(), "HTTP/1.0 without Host");
    }

    #[test]
    fn a_rebound_name_is_refused_even_for_reads() {
        let e = policy().check(&Method::GET, &headers(&[(header::HOST, "attacker.example:6443")])).unwrap_err();
        assert_eq!(e.code, 403);
        assert!(e.message.contains("--allowed-hosts"), "{}", e.message);
    }

    #[test]
    fn browser_writes_need_an_allowed_origin() {
        let from = |origin: &str, method: Method| {
            policy().check(&method, &headers(&[(header::HOST, "127.0.0.1"), (header::ORIGIN, origin)]))
        };
        assert_eq!(from("https://evil.example", Method::POST).unwrap_err().code, 403);
        assert_eq!(from("null", Method::DELETE).unwrap_err().code, 403);
        assert!(from("https://dash.example", Method::POST).is_ok());
        assert!(from("https://evil.example", Method::GET).is_ok(), "reads are not writes; the Host check covers them");
    }
}
