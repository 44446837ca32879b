//! Who may read a component's `/metrics`, decided by the API server, as upstream's
//! kube-scheduler and kube-controller-manager decide it ("delegated" authentication and
//! authorization): a client certificate of `--client-ca-file` names its user; a bearer
//! token (a Prometheus ServiceAccount's, say) is checked with a TokenReview; then a
//! SubjectAccessReview asks whether that user may `get` the path. Answers are kept for
//! ten seconds, as upstream's caches keep them, so a scrape costs no API call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use parking_lot::Mutex;

use crate::tls::PeerCert;

/// How long an answer is kept.
const TTL: Duration = Duration::from_secs(10);

/// A user as the API server knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The name.
    pub name: String,
    /// The groups.
    pub groups: Vec<String>,
    /// The uid, when known.
    pub uid: Option<String>,
}

/// Asks the API server, through the component's own client.
pub struct Delegated {
    client: kube::Client,
    tokens: Mutex<HashMap<String, (Instant, Option<User>)>>,
    decisions: Mutex<HashMap<(String, String), (Instant, bool)>>,
}

impl Delegated {
    /// Checks with the API server `client` reaches.
    pub fn new(client: kube::Client) -> Arc<Delegated> {
        Arc::new(Delegated { client, tokens: Mutex::default(), decisions: Mutex::default() })
    }

    /// The user of a bearer token, `None` if the API server refuses it.
    pub async fn authenticate(&self, token: &str) -> anyhow::Result<Option<User>> {
        if let Some((at, user)) = self.tokens.lock().get(token).cloned()
            && at.elapsed() < TTL
        {
            return Ok(user);
        }
        let review = TokenReview {
            spec: TokenReviewSpec { token: Some(token.to_owned()), ..Default::default() },
            ..Default::default()
        };
        let answer = Api::<TokenReview>::all(self.client.clone()).create(&PostParams::default(), &review).await?;
        let status = answer.status.unwrap_or_default();
        let user = match (status.authenticated, status.user) {
            (Some(true), Some(u)) => {
                Some(User { name: u.username.unwrap_or_default(), groups: u.groups.unwrap_or_default(), uid: u.uid })
            }
            _ => None,
        };
        let mut cache = self.tokens.lock();
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(token.to_owned(), (Instant::now(), user.clone()));
        Ok(user)
    }

    /// Whether `user` may `verb` the path `path`.
    pub async fn authorize(&self, user: &User, verb: &str, path: &str) -> anyhow::Result<bool> {
        let key = (format!("{}\u{0}{}\u{0}{}", user.name, user.groups.join(","), verb), path.to_owned());
        if let Some((at, allowed)) = self.decisions.lock().get(&key).copied()
            && at.elapsed() < TTL
        {
            return Ok(allowed);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                groups: Some(user.groups.clone()),
                uid: user.uid.clone(),
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(path.to_owned()),
                    verb: Some(verb.to_owned()),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer =
            Api::<SubjectAccessReview>::all(self.client.clone()).create(&PostParams::default(), &review).await?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        let mut cache = self.decisions.lock();
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(key, (Instant::now(), allowed));
        Ok(allowed)
    }
}

fn refuse(code: StatusCode, why: &str) -> Response {
    tracing::info!(reason = why, "refused a request for the metrics endpoint");
    (code, format!("{}\n", code.canonical_reason().unwrap_or_default())).into_response()
}

/// The middleware in front of every path but the health checks.
pub async fn guard(State(delegated): State<Arc<Delegated>>, request: Request, next: Next) -> Response {
    let cert = request.extensions().get::<PeerCert>().cloned().unwrap_or_default();
    let user = match cert.identity_at(SystemTime::now()) {
        Ok(Some(id)) => Some(User { name: id.user.clone(), groups: id.groups.clone(), uid: None }),
        Ok(None) => None,
        Err(why) => return refuse(StatusCode::UNAUTHORIZED, &why),
    };
    let user = match user {
        Some(user) => user,
        None => {
            let token = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty());
            let Some(token) = token else { return refuse(StatusCode::UNAUTHORIZED, "no credentials") };
            match delegated.authenticate(token).await {
                Ok(Some(user)) => user,
                Ok(None) => return refuse(StatusCode::UNAUTHORIZED, "the API server refused the token"),
                Err(e) => return refuse(StatusCode::UNAUTHORIZED, &format!("the token could not be checked: {e}")),
            }
        }
    };
    let verb = request.method().as_str().to_ascii_lowercase();
    let path = request.uri().path().to_owned();
    match delegated.authorize(&user, &verb, &path).await {
        Ok(true) => next.run(request).await,
        Ok(false) => {
            (StatusCode::FORBIDDEN, format!("Forbidden (user={}, verb={verb}, resource=, subresource=)\n", user.name))
                .into_response()
        }
        Err(e) => refuse(StatusCode::FORBIDDEN, &format!("the request could not be authorized: {e}")),
    }
}
