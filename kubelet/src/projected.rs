//! Projected volumes: files from ServiceAccount tokens, configmaps, secrets and the pod's
//! own fields, in one directory. This is how a pod gets its API credentials
//! (`/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}`): the token
//! is requested from the API bound to the pod (so it dies with it) and written again
//! before it expires, as upstream's kubelet does at 80% of its life.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, ProjectedVolumeSource, Secret};
use kube::ResourceExt;
use kube::api::Api;
use serde_json::{Value, json};

/// What a token request gave: the token and how long it lives.
struct Token {
    token: String,
    lifetime: Duration,
}

/// Asks the API for a token of the pod's service account, bound to the pod.
async fn request_token(
    client: &kube::Client,
    pod: &Pod,
    audience: Option<&str>,
    seconds: i64,
) -> Result<Token, String> {
    let ns = pod.namespace().unwrap_or_default();
    let account = pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
    let mut spec = json!({
        "expirationSeconds": seconds,
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod.name_any(), "uid": pod.uid().unwrap_or_default()},
    });
    if let Some(a) = audience.filter(|a| !a.is_empty()) {
        spec["audiences"] = json!([a]);
    }
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
    let url = format!("/api/v1/namespaces/{ns}/serviceaccounts/{account}/token");
    let request = http::Request::post(url)
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&body).unwrap_or_default())
        .map_err(|e| e.to_string())?;
    let answer: Value = client
        .request(request)
        .await
        .map_err(|e| format!("requesting a token of service account {ns}/{account}: {e}"))?;
    let token = answer.pointer("/status/token").and_then(Value::as_str).unwrap_or_default().to_owned();
    if token.is_empty() {
        return Err(format!("the token request for {ns}/{account} came back without a token"));
    }
    let expires = answer
        .pointer("/status/expirationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_second() - jiff::Timestamp::now().as_second())
        .unwrap_or(seconds);
    Ok(Token { token, lifetime: Duration::from_secs(u64::try_from(expires.max(60)).unwrap_or(60)) })
}

/// Writes `data` to `dir/name` through a temporary file, so a reader never sees half.
fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> Result<(), String> {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    let tmp = dir.join(format!(".{}.tmp", name.replace('/', "_")));
    std::fs::write(&tmp, data).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// A downward API field of the pod.
fn field(pod: &Pod, path: &str) -> Option<String> {
    match path {
        "metadata.namespace" => pod.namespace(),
        "metadata.name" => Some(pod.name_any()),
        "metadata.uid" => pod.uid(),
        "spec.nodeName" => pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => pod.spec.as_ref().and_then(|s| s.service_account_name.clone()),
        _ => None,
    }
}

/// The files of `keys` (all of `data` when no items are named) under their paths.
fn items(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<k8s_openapi::api::core::v1::KeyToPath>>,
) -> Vec<(String, Vec<u8>)> {
    match items {
        Some(list) if !list.is_empty() => {
            list.iter().filter_map(|i| data.get(&i.key).map(|d| (i.path.clone(), d.clone()))).collect()
        }
        _ => data.into_iter().collect(),
    }
}

/// Fills `dir` with the volume's files; a token source also keeps its file fresh until
/// `dir` is removed (with the pod).
pub async fn project(
    client: &kube::Client,
    pod: &Pod,
    volume: &ProjectedVolumeSource,
    dir: &Path,
) -> Result<(), String> {
    let ns = pod.namespace().unwrap_or_default();
    for source in volume.sources.iter().flatten() {
        if let Some(t) = &source.service_account_token {
            let seconds = t.expiration_seconds.unwrap_or(3600).max(600);
            let token = request_token(client, pod, t.audience.as_deref(), seconds).await?;
            write_atomic(dir, &t.path, token.token.as_bytes())?;
            tokio::spawn(refresh(
                client.clone(),
                pod.clone(),
                t.audience.clone(),
                seconds,
                dir.to_owned(),
                t.path.clone(),
                token.lifetime,
            ));
        }
        if let Some(cm) = &source.config_map {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
            match api.get_opt(&cm.name).await {
                Ok(Some(c)) => {
                    let data = c.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
                    for (path, bytes) in items(data, cm.items.as_ref()) {
                        write_atomic(dir, &path, &bytes)?;
                    }
                }
                _ if cm.optional == Some(true) => {}
                _ => return Err(format!("configmap \"{}\" not found", cm.name)),
            }
        }
        if let Some(s) = &source.secret {
            let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
            match api.get_opt(&s.name).await {
                Ok(Some(sec)) => {
                    let data = sec.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                    for (path, bytes) in items(data, s.items.as_ref()) {
                        write_atomic(dir, &path, &bytes)?;
                    }
                }
                _ if s.optional == Some(true) => {}
                _ => return Err(format!("secret \"{}\" not found", s.name)),
            }
        }
        if let Some(d) = &source.downward_api {
            for item in d.items.iter().flatten() {
                let Some(f) = &item.field_ref else { continue };
                let value = field(pod, &f.field_path)
                    .ok_or_else(|| format!("the downward API field {:?} is not supported", f.field_path))?;
                write_atomic(dir, &item.path, value.as_bytes())?;
            }
        }
    }
    Ok(())
}

/// Keeps the tokens of a volume an earlier kubelet projected fresh: each is requested
/// again at once, then before it expires.
pub fn resume(client: &kube::Client, pod: &Pod, volume: &ProjectedVolumeSource, dir: &Path) {
    for source in volume.sources.iter().flatten() {
        if let Some(t) = &source.service_account_token {
            let seconds = t.expiration_seconds.unwrap_or(3600).max(600);
            tokio::spawn(refresh(
                client.clone(),
                pod.clone(),
                t.audience.clone(),
                seconds,
                dir.to_owned(),
                t.path.clone(),
                Duration::ZERO,
            ));
        }
    }
}

/// Requests a new token at 80% of the last one's life and writes it, until the volume's
/// directory goes (with the pod). A failed request is tried again a minute later, while
/// the old token still works.
async fn refresh(
    client: kube::Client,
    pod: Pod,
    audience: Option<String>,
    seconds: i64,
    dir: PathBuf,
    path: String,
    mut lifetime: Duration,
) {
    loop {
        tokio::time::sleep(lifetime.mul_f64(0.8)).await;
        if !dir.exists() {
            return;
        }
        match request_token(&client, &pod, audience.as_deref(), seconds).await {
            Ok(token) => {
                if let Err(e) = write_atomic(&dir, &path, token.token.as_bytes()) {
                    tracing::warn!(pod = pod.name_any(), error = e, "writing a refreshed service account token");
                }
                lifetime = token.lifetime;
            }
            Err(e) => {
                tracing::warn!(pod = pod.name_any(), error = e, "refreshing a service account token");
                lifetime = Duration::from_secs(75);
            }
        }
    }
}
