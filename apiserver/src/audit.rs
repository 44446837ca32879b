//! The audit log: `--audit-log-path` gets one `audit.k8s.io/v1` Event per request and
//! stage, as JSON lines, at the level `--audit-policy-file` gives it (upstream's Policy:
//! the first rule that matches the user, groups, verb, resource, namespace or path says
//! `None`, `Metadata`, `Request` or `RequestResponse`; no match is `None`).
//!
//! A request's event says who (user, groups, source address, user agent), what (verb,
//! URI, the object: group, version, resource, namespace, name, subresource), the answer
//! (code, and for failures the status's reason and message), the authorization decision
//! and its reason, and at `Request` the body sent, at `RequestResponse` the body answered
//! too. Stages: `RequestReceived`, `ResponseStarted` (watches, when they start),
//! `ResponseComplete` (when the answer, or the watch, ends), unless the policy omits them.
//! Requests that fail authentication (401) are logged too.

use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::authn::UserInfo;
use crate::authz::{Attributes, Decision};

/// How much of a request is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Level {
    /// Nothing.
    None,
    /// Who, what, when, the answer's code.
    Metadata,
    /// And the body sent.
    Request,
    /// And the body answered.
    RequestResponse,
}

/// A stage of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Stage {
    /// As it arrives.
    RequestReceived,
    /// A watch's headers are sent.
    ResponseStarted,
    /// The answer is complete (a watch ended).
    ResponseComplete,
    /// The handler failed.
    Panic,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::RequestReceived => "RequestReceived",
            Stage::ResponseStarted => "ResponseStarted",
            Stage::ResponseComplete => "ResponseComplete",
            Stage::Panic => "Panic",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GroupResources {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rule {
    level: Level,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    non_resource_u_r_ls: Vec<String>,
    #[serde(default)]
    omit_stages: Vec<Stage>,
    #[serde(default)]
    omit_managed_fields: Option<bool>,
}

/// A parsed `audit.k8s.io/v1` Policy.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default, rename = "metadata")]
    _metadata: Option<Value>,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    omit_stages: Vec<Stage>,
    #[serde(default)]
    omit_managed_fields: bool,
}

impl Policy {
    /// Parses a policy file's text (YAML or JSON), checking its kind and rules.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let policy: Policy = serde_saphyr::from_str(text).map_err(|e| format!("not an audit Policy: {e}"))?;
        if policy.kind != "Policy" || !matches!(policy.api_version.as_str(), "audit.k8s.io/v1") {
            return Err(format!(
                "expected apiVersion audit.k8s.io/v1 and kind Policy, found {:?} {:?}",
                policy.api_version, policy.kind
            ));
        }
        for (i, rule) in policy.rules.iter().enumerate() {
            if !rule.non_resource_u_r_ls.is_empty() && (!rule.resources.is_empty() || !rule.namespaces.is_empty()) {
                return Err(format!("rules[{i}]: a rule is for resources or for nonResourceURLs, not both"));
            }
            for url in &rule.non_resource_u_r_ls {
                if url.contains('*') && !url.ends_with('*') {
                    return Err(format!("rules[{i}].nonResourceURLs: {url:?}: '*' may only end a path"));
                }
            }
        }
        Ok(policy)
    }

    /// Reads `--audit-policy-file`.
    pub fn load(path: &Path) -> Result<Policy, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        Policy::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The level of a request and the stages it omits.
    fn decide(&self, user: Option<&UserInfo>, a: &Attributes) -> (Level, Vec<Stage>, bool) {
        for rule in &self.rules {
            if rule.matches(user, a) {
                let mut omit = self.omit_stages.clone();
                omit.extend(rule.omit_stages.iter().copied());
                return (rule.level, omit, rule.omit_managed_fields.unwrap_or(self.omit_managed_fields));
            }
        }
        (Level::None, Vec::new(), false)
    }
}

impl Rule {
    fn matches(&self, user: Option<&UserInfo>, a: &Attributes) -> bool {
        let name = user.map(|u| u.username.as_str()).unwrap_or_default();
        if !self.users.is_empty() && !self.users.iter().any(|u| u == name) {
            return false;
        }
        if !self.user_groups.is_empty() && !user.is_some_and(|u| u.groups.iter().any(|g| self.user_groups.contains(g)))
        {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.contains(&a.verb) {
            return false;
        }
        if !a.resource_request {
            // A rule that names resources or namespaces is not about paths.
            if !self.resources.is_empty() || !self.namespaces.is_empty() {
                return false;
            }
            return self.non_resource_u_r_ls.is_empty()
                || self.non_resource_u_r_ls.iter().any(|u| match u.strip_suffix('*') {
                    Some(prefix) => a.path.starts_with(prefix),
                    None => *u == a.path,
                });
        }
        if !self.non_resource_u_r_ls.is_empty() {
            return false;
        }
        if !self.namespaces.is_empty() && !self.namespaces.contains(&a.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let combined = a.combined_resource();
        self.resources.iter().any(|gr| {
            gr.group == a.api_group
                && (gr.resources.is_empty()
                    || gr.resources.iter().any(|r| {
                        r == &combined
                            || r == &a.resource && a.subresource.is_empty()
                            || r == "*"
                            || r.strip_prefix("*/").is_some_and(|sub| sub == a.subresource)
                            || r.strip_suffix("/*").is_some_and(|res| res == a.resource)
                    }))
                && (gr.resource_names.is_empty() || gr.resource_names.contains(&a.name))
        })
    }
}

/// Where events go: a writer thread, so a request waits on the disk only when the writer
/// is 65,536 events behind.
#[derive(Debug)]
pub struct Auditor {
    policy: Policy,
    lines: tokio::sync::mpsc::Sender<String>,
}

impl Auditor {
    /// Logs to `path` (`-` is standard output) by `policy`; the writer runs on its own.
    pub fn open(path: &Path, policy: Policy) -> std::io::Result<Arc<Auditor>> {
        use std::io::Write;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(65_536);
        let mut out: Box<dyn Write + Send> = if path == Path::new("-") {
            Box::new(std::io::stdout())
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            Box::new(std::io::BufWriter::with_capacity(1 << 20, file))
        };
        std::thread::Builder::new().name("audit-log".into()).spawn(move || {
            while let Some(line) = rx.blocking_recv() {
                let mut ok = writeln!(out, "{line}").is_ok();
                while let Ok(line) = rx.try_recv() {
                    ok &= writeln!(out, "{line}").is_ok();
                }
                ok &= out.flush().is_ok();
                if !ok {
                    tracing::error!("writing the audit log failed");
                }
            }
        })?;
        Ok(Arc::new(Auditor { policy, lines: tx }))
    }

    async fn write(&self, event: &Value) {
        // Waits when the writer is behind: upstream's blocking mode, so no event is lost.
        let _ = self.lines.send(event.to_string()).await;
    }
}

#[derive(Default)]
struct Record {
    user: Option<UserInfo>,
    attributes: Option<Attributes>,
    decision: Option<(&'static str, String)>,
    request_body: Option<Bytes>,
}

/// What the handlers tell the audit log about a request: who, what, the decision, and the
/// body sent. In every request's extensions when auditing is on.
#[derive(Clone, Default)]
pub struct Context(Arc<Mutex<Record>>);

impl Context {
    /// The request's user, what it asks and the authorizer's answer.
    pub fn authorized(&self, user: &UserInfo, attributes: &Attributes, decision: &Decision) {
        let mut r = self.0.lock();
        r.user = Some(user.clone());
        r.attributes = Some(attributes.clone());
        r.decision = Some(match decision {
            Decision::Allow(reason) => ("allow", reason.clone()),
            Decision::Deny(reason) | Decision::NoOpinion(reason) => ("forbid", reason.clone()),
        });
    }

    /// The body the request sent.
    pub fn request_body(&self, body: &Bytes) {
        self.0.lock().request_body = Some(body.clone());
    }
}

fn timestamp() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The object of a body of type `content_type`, as the event carries it
/// (`requestObject`, `responseObject`): JSON, YAML (apply patches) or protobuf, decoded.
fn object_of(body: &[u8], content_type: &str, omit_managed_fields: bool) -> Option<Value> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let mut value: Value = if media == "application/vnd.kubernetes.protobuf" {
        crate::protobuf::decode(body).ok()?
    } else if media.ends_with("yaml") {
        serde_saphyr::from_str(std::str::from_utf8(body).ok()?).ok()?
    } else {
        serde_json::from_slice(body).ok()?
    };
    if omit_managed_fields && let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    Some(value)
}

/// The middleware: outermost, so that every request is seen, 401s included.
pub async fn middleware(State(auditor): State<Arc<Auditor>>, mut request: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    let received = timestamp();
    let context = Context::default();
    request.extensions_mut().insert(context.clone());
    let method = request.method().as_str().to_ascii_lowercase();
    let path = request.uri().path().to_owned();
    let uri = request.uri().to_string();
    let source = request.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string());
    let (agent, content_type) = {
        let headers = request.headers();
        let header = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_owned);
        (header(axum::http::header::USER_AGENT), header(axum::http::header::CONTENT_TYPE).unwrap_or_default())
    };
    let mut response = next.run(request).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("audit-id", v);
    }
    let record = std::mem::take(&mut *context.0.lock());
    let attributes = record.attributes.clone().unwrap_or_else(|| Attributes::path(&method, &path));
    let (level, omit, omit_managed_fields) = auditor.policy.decide(record.user.as_ref(), &attributes);
    if level == Level::None {
        return response;
    }
    let code = response.status().as_u16();
    let mut event = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": format!("{level:?}"),
        "auditID": id,
        "requestURI": uri,
        "verb": attributes.verb,
        "user": record.user.as_ref().map(|u| json!(u)).unwrap_or_else(|| json!({})),
        "sourceIPs": source.into_iter().collect::<Vec<_>>(),
        "requestReceivedTimestamp": received,
    });
    if let Some(agent) = agent {
        event["userAgent"] = json!(agent);
    }
    if attributes.resource_request {
        let mut object = json!({"resource": attributes.resource});
        for (key, value) in [
            ("namespace", &attributes.namespace),
            ("name", &attributes.name),
            ("apiGroup", &attributes.api_group),
            ("subresource", &attributes.subresource),
        ] {
            if !value.is_empty() {
                object[key] = json!(value);
            }
        }
        if let Some(version) = version_of(&path, &attributes.api_group) {
            object["apiVersion"] = json!(version);
        }
        event["objectRef"] = object;
    }
    if let Some((decision, reason)) = &record.decision {
        let mut annotations = HashMap::new();
        annotations.insert("authorization.k8s.io/decision", decision.to_string());
        annotations.insert("authorization.k8s.io/reason", reason.clone());
        event["annotations"] = json!(annotations);
    }
    if level >= Level::Request
        && let Some(body) = record.request_body.as_ref().and_then(|b| object_of(b, &content_type, omit_managed_fields))
    {
        event["requestObject"] = body;
    }
    let watching = attributes.verb == "watch";
    // A failure's Status says why; the body of a success is logged only at RequestResponse.
    let wants_body = !watching && (code >= 400 || level == Level::RequestResponse);
    if wants_body {
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, crate::decode::MAX_BODY * 4).await.unwrap_or_default();
        let answered = object_of(&bytes, "application/json", omit_managed_fields);
        let mut status = json!({"metadata": {}, "code": code});
        if code >= 400
            && let Some(s) = &answered
        {
            for key in ["status", "message", "reason"] {
                if let Some(v) = s.get(key) {
                    status[key] = v.clone();
                }
            }
        }
        event["responseStatus"] = status;
        if level == Level::RequestResponse
            && let Some(answered) = answered
        {
            event["responseObject"] = answered;
        }
        response = Response::from_parts(parts, Body::from(bytes));
    } else {
        event["responseStatus"] = json!({"metadata": {}, "code": code});
    }
    let stages: Vec<Stage> = if watching {
        vec![Stage::RequestReceived, Stage::ResponseStarted]
    } else {
        vec![Stage::RequestReceived, Stage::ResponseComplete]
    };
    for stage in stages.into_iter().filter(|s| !omit.contains(s)) {
        let mut e = event.clone();
        if stage == Stage::RequestReceived {
            if let Some(o) = e.as_object_mut() {
                o.remove("responseStatus");
                o.remove("responseObject");
            }
            e["stageTimestamp"] = json!(received);
        } else {
            e["stageTimestamp"] = json!(timestamp());
        }
        e["stage"] = json!(stage.name());
        auditor.write(&e).await;
    }
    if watching && !omit.contains(&Stage::ResponseComplete) {
        let (parts, body) = response.into_parts();
        let ended = Ended { auditor: auditor.clone(), event: Some(event) };
        response = Response::from_parts(parts, Body::new(Watched { inner: body, ended }));
    }
    response
}

/// The API version in a resource path (`/apis/apps/v1/...`, `/api/v1/...`).
fn version_of(path: &str, group: &str) -> Option<String> {
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    match segments.next()? {
        "api" => segments.next().map(str::to_owned),
        "apis" if segments.next()? == group => segments.next().map(str::to_owned),
        _ => None,
    }
}

/// Writes a watch's `ResponseComplete` when its body ends (the client left or the server
/// closed it).
struct Ended {
    auditor: Arc<Auditor>,
    event: Option<Value>,
}

impl Drop for Ended {
    fn drop(&mut self) {
        let Some(mut event) = self.event.take() else { return };
        event["stage"] = json!(Stage::ResponseComplete.name());
        event["stageTimestamp"] = json!(timestamp());
        let lines = self.auditor.lines.clone();
        // Dropped in a runtime thread or not: try_send never blocks; a full queue loses
        // this one event rather than stall a connection's teardown.
        if lines.try_send(event.to_string()).is_err() {
            tracing::warn!("the audit log is behind: a watch's ResponseComplete was dropped");
        }
    }
}

struct Watched {
    inner: Body,
    #[allow(dead_code)]
    ended: Ended,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: ["system:kube-proxy"]
  verbs: ["watch"]
- level: None
  nonResourceURLs: ["/healthz*", "/readyz", "/livez"]
- level: Metadata
  resources:
  - group: ""
    resources: ["secrets", "configmaps/*"]
- level: Request
  verbs: ["create", "update", "patch"]
  namespaces: ["shop"]
- level: RequestResponse
  resources:
  - group: rbac.authorization.k8s.io
- level: Metadata
"#;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: name.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let p = Policy::parse(POLICY).expect("parse");
        let alice = user("alice", &["devs"]);
        let level = |u: &UserInfo, a: &Attributes| p.decide(Some(u), a).0;
        let proxy = user("system:kube-proxy", &[]);
        let watch = Attributes::resource("watch", "", "services", "", "", "");
        assert_eq!(level(&proxy, &watch), Level::None);
        assert_eq!(level(&alice, &watch), Level::Metadata);
        assert_eq!(level(&alice, &Attributes::path("get", "/healthz/etcd")), Level::None);
        assert_eq!(level(&alice, &Attributes::path("get", "/metrics")), Level::Metadata);
        let secret = Attributes::resource("get", "", "secrets", "", "shop", "db");
        assert_eq!(level(&alice, &secret), Level::Metadata);
        let create_secret = Attributes::resource("create", "", "secrets", "", "shop", "");
        assert_eq!(level(&alice, &create_secret), Level::Metadata, "the secrets rule comes first");
        let create_pod = Attributes::resource("create", "", "pods", "", "shop", "");
        assert_eq!(level(&alice, &create_pod), Level::Request);
        let elsewhere = Attributes::resource("create", "", "pods", "", "default", "");
        assert_eq!(level(&alice, &elsewhere), Level::Metadata);
        let binding = Attributes::resource("create", "rbac.authorization.k8s.io", "rolebindings", "", "default", "");
        assert_eq!(level(&alice, &binding), Level::RequestResponse);
        assert_eq!(p.decide(Some(&alice), &secret).1, vec![Stage::RequestReceived]);
        assert_eq!(level(&alice, &Attributes::resource("get", "", "configmaps", "status", "x", "y")), Level::Metadata);
    }

    #[test]
    fn bad_policies_say_what_is_wrong() {
        assert!(Policy::parse("apiVersion: v1\nkind: ConfigMap\n").expect_err("kind").contains("expected"));
        assert!(Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Loud}]\n").is_err());
        let both = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None, nonResourceURLs: [/x], resources: [{group: ''}]}]\n";
        assert!(Policy::parse(both).expect_err("both").contains("not both"));
        let typo = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None, user: [x]}]\n";
        assert!(Policy::parse(typo).is_err());
    }

    #[test]
    fn the_version_comes_from_the_path() {
        assert_eq!(version_of("/api/v1/namespaces/a/pods", "").as_deref(), Some("v1"));
        assert_eq!(version_of("/apis/apps/v1/deployments", "apps").as_deref(), Some("v1"));
        assert_eq!(version_of("/healthz", ""), None);
    }
}
