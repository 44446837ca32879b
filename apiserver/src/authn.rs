//! Authentication: who sent a request. Upstream's union of authenticators, in its order:
//! an x509 client certificate the client CA signed (CN the user, O the groups), then a
//! bearer token from `--token-auth-file`, then a ServiceAccount token (a JWT this
//! cluster signed, see [`crate::serviceaccount`]). A request with no credentials is anonymous,
//! which only the health and version endpoints accept; anything else gets upstream's 401,
//! with the reason in the server's log and never in the answer.
//!
//! A server without TLS (`--insecure-serving`) authenticates nobody: every request is
//! `system:unsecured` in `system:masters`, as upstream's old insecure port was.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use component_base::tls::PeerCert;
use serde::Serialize;

use crate::status::ApiError;

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct UserInfo {
    /// The user name.
    pub username: String,
    /// A unique id, when the authenticator knows one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// The groups, `system:authenticated` among them for every authenticated user.
    pub groups: Vec<String>,
    /// More the authenticator says (a service account token's pod, say).
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub extra: HashMap<String, Vec<String>>,
}

/// The group every authenticated user is in.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The group whose members may do anything.
pub const MASTERS: &str = "system:masters";

impl UserInfo {
    /// A user an authenticator vouched for: in `system:authenticated` too.
    pub fn authenticated(username: String, uid: String, mut groups: Vec<String>) -> UserInfo {
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.to_owned());
        }
        UserInfo { username, uid, groups, extra: HashMap::new() }
    }

    /// The user of a server without authentication.
    pub fn unsecured() -> UserInfo {
        UserInfo::authenticated("system:unsecured".into(), String::new(), vec![MASTERS.into()])
    }

    /// The anonymous user.
    pub fn anonymous() -> UserInfo {
        UserInfo {
            username: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            ..Default::default()
        }
    }
}

/// How requests are authenticated.
#[derive(Clone, Default)]
pub struct Authenticator {
    /// No authentication at all (plain HTTP): everyone is [`UserInfo::unsecured`].
    pub insecure: bool,
    /// `--token-auth-file`: token → user.
    pub tokens: HashMap<String, UserInfo>,
    /// ServiceAccount tokens, when the server has their keys.
    pub service_accounts: Option<Arc<crate::serviceaccount::Tokens>>,
    /// Bootstrap tokens (`--enable-bootstrap-token-auth`): set once the secrets' cache is
    /// filled, when enabled.
    pub bootstrap_tokens: Option<Arc<crate::bootstrap_token::BootstrapTokens>>,
    /// Whether bootstrap tokens are honored.
    pub enable_bootstrap_tokens: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("insecure", &self.insecure)
            .field("tokens", &self.tokens.len())
            .field("service_accounts", &self.service_accounts.is_some())
            .field("bootstrap_tokens", &self.enable_bootstrap_tokens)
            .finish()
    }
}

impl Authenticator {
    /// The authenticator of a server that checks nothing.
    pub fn insecure() -> Authenticator {
        Authenticator { insecure: true, ..Default::default() }
    }

    /// The user of a bearer token meant for one of `audiences` (the API's when empty).
    pub fn authenticate_token(&self, token: &str, audiences: &[String]) -> Result<UserInfo, String> {
        if let Some(user) = self.tokens.get(token) {
            return Ok(user.clone());
        }
        if let Some(bootstrap) = &self.bootstrap_tokens
            && crate::bootstrap_token::BootstrapTokens::looks_like(token)
        {
            return bootstrap.authenticate(token);
        }
        match &self.service_accounts {
            Some(sa) if crate::serviceaccount::Tokens::looks_like_jwt(token) => {
                let audiences = if audiences.is_empty() { sa.audiences() } else { audiences };
                sa.authenticate(token, audiences)
            }
            _ => Err("invalid bearer token".into()),
        }
    }

    /// Reads upstream's static token file: `token,user,uid[,"group1,group2"]` per line.
    pub fn read_token_file(path: &Path) -> Result<HashMap<String, UserInfo>> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        parse_token_file(&text).with_context(|| format!("in {}", path.display()))
    }

    /// The user of a request with these credentials, `None` for a request with none, or
    /// why the credentials it has are refused.
    pub fn authenticate(&self, cert: &PeerCert, authorization: Option<&str>) -> Result<Option<UserInfo>, String> {
        let mut refused = Vec::new();
        match cert.identity_at(SystemTime::now()) {
            Ok(Some(id)) => {
                return Ok(Some(UserInfo::authenticated(id.user.clone(), String::new(), id.groups.clone())));
            }
            Ok(None) => {}
            Err(why) => refused.push(why),
        }
        if let Some(value) = authorization {
            match value.strip_prefix("Bearer ").map(str::trim) {
                Some(token) if !token.is_empty() => match self.authenticate_token(token, &[]) {
                    Ok(user) => return Ok(Some(user)),
                    Err(why) => refused.push(why),
                },
                _ => refused.push("the Authorization header is not a bearer token".into()),
            }
        }
        if refused.is_empty() { Ok(None) } else { Err(refused.join("; ")) }
    }
}

fn parse_token_file(text: &str) -> Result<HashMap<String, UserInfo>> {
    let mut tokens = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = split_csv(line);
        if fields.len() < 3 {
            bail!("line {}: want token,user,uid[,\"group1,group2\"], got {} fields", n + 1, fields.len());
        }
        let (token, user, uid) = (fields[0].clone(), fields[1].clone(), fields[2].clone());
        if token.is_empty() || user.is_empty() {
            bail!("line {}: the token and the user name must not be empty", n + 1);
        }
        let groups = fields
            .get(3)
            .map(|g| g.split(',').map(str::trim).filter(|g| !g.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        if tokens.insert(token, UserInfo::authenticated(user, uid, groups)).is_some() {
            bail!("line {}: a token is listed twice", n + 1);
        }
    }
    Ok(tokens)
}

/// Splits one CSV line, honouring double quotes (a field may hold commas).
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                if let Some(f) = fields.last_mut() {
                    f.push('"');
                }
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields.into_iter().map(|f| f.trim().to_owned()).collect()
}

/// The paths an anonymous request may read: upstream's `system:public-info-viewer` ones,
/// and the `cluster-info` a joining node starts from (what it may do there RBAC decides,
/// as for everyone).
fn public(path: &str) -> bool {
    let base = path.split('/').nth(1).unwrap_or_default();
    matches!(base, "healthz" | "livez" | "readyz" | "version")
        || path == "/api/v1/namespaces/kube-public/configmaps/cluster-info"
}

/// The middleware: the request's user in its extensions, or 401.
pub async fn authenticate(State(auth): State<Arc<Authenticator>>, mut request: Request, next: Next) -> Response {
    if auth.insecure {
        request.extensions_mut().insert(UserInfo::unsecured());
        return next.run(request).await;
    }
    let cert = request.extensions().get::<PeerCert>().cloned().unwrap_or_default();
    let authorization = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let user = match auth.authenticate(&cert, authorization) {
        Ok(Some(user)) => user,
        Ok(None) if public(request.uri().path()) => UserInfo::anonymous(),
        Ok(None) => return unauthorized("no credentials"),
        Err(why) => return unauthorized(&why),
    };
    request.extensions_mut().insert(user);
    next.run(request).await
}

fn unauthorized(why: &str) -> Response {
    tracing::info!(reason = why, "unable to authenticate the request");
    ApiError::new(401, "Unauthorized", "Unauthorized").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_file_reads_upstreams_format() {
        let tokens = parse_token_file("# comment\nt1,alice,1001,\"devs,ops\"\nt2,bob,1002\n").expect("parse");
        assert_eq!(tokens["t1"].username, "alice");
        assert_eq!(tokens["t1"].groups, vec!["devs", "ops", AUTHENTICATED]);
        assert_eq!(tokens["t2"].groups, vec![AUTHENTICATED]);
        assert!(parse_token_file("t1,alice\n").is_err());
        assert!(parse_token_file("t1,alice,1\nt1,bob,2\n").is_err());
    }

    #[test]
    fn a_known_token_authenticates_and_an_unknown_one_is_refused() {
        let auth = Authenticator { tokens: parse_token_file("secret,alice,1\n").expect("parse"), ..Default::default() };
        let none = PeerCert::None;
        assert_eq!(auth.authenticate(&none, Some("Bearer secret")).expect("ok").expect("user").username, "alice");
        assert!(auth.authenticate(&none, Some("Bearer forged")).is_err());
        assert!(auth.authenticate(&none, Some("Basic YTpi")).is_err());
        assert_eq!(auth.authenticate(&none, None), Ok(None));
        let bad = PeerCert::Invalid("x509: certificate signed by unknown authority".into());
        assert!(auth.authenticate(&bad, None).is_err());
        assert_eq!(auth.authenticate(&bad, Some("Bearer secret")).expect("ok").expect("user").username, "alice");
    }

    #[test]
    fn only_health_and_version_are_public() {
        for p in ["/healthz", "/livez", "/readyz", "/version", "/readyz/etcd"] {
            assert!(public(p), "{p}");
        }
        for p in ["/api", "/apis", "/metrics", "/api/v1/pods", "/openapi/v3", "/versions"] {
            assert!(!public(p), "{p}");
        }
    }
}
