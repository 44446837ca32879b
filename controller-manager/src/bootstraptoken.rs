//! Upstream's bootstrapsigner and tokencleaner: the `kube-public/cluster-info` ConfigMap
//! carries, for every live bootstrap token that may sign, a detached JWS of its kubeconfig
//! (`jws-kubeconfig-<id>`), so a node joining with that token can tell the information is
//! the cluster's; and a token's Secret is deleted once its expiration passes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use component_base::bootstrap::{self, Token};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::informer::Informer;
use crate::workqueue::{Action, WorkQueue};

/// A bootstrap token Secret's value under `key`, as text.
fn data(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// The token a Secret holds, if it is a bootstrap token's.
fn token_of(secret: &Secret) -> Option<Token> {
    if secret.type_.as_deref() != Some(bootstrap::SECRET_TYPE) {
        return None;
    }
    let id = data(secret, "token-id")?;
    if secret.metadata.name.as_deref() != Some(format!("{}{id}", bootstrap::SECRET_PREFIX).as_str()) {
        return None;
    }
    Token::parse(&format!("{id}.{}", data(secret, "token-secret")?))
}

/// When the token expires, if it says.
fn expiration(secret: &Secret) -> Option<jiff::Timestamp> {
    data(secret, "expiration")?.parse().ok()
}

/// The signatures `cluster-info` should carry for `kubeconfig`: one per live signing token.
pub fn signatures(kubeconfig: &str, secrets: &[Arc<Secret>], now: jiff::Timestamp) -> BTreeMap<String, String> {
    secrets
        .iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .filter(|s| data(s, "usage-bootstrap-signing").as_deref() == Some("true"))
        .filter(|s| expiration(s).is_none_or(|at| at > now))
        .filter_map(|s| token_of(s))
        .map(|t| (format!("{}{}", bootstrap::JWS_PREFIX, t.id), bootstrap::sign(kubeconfig, &t)))
        .collect()
}

/// Starts both; they run until `tasks` is dropped.
pub fn start(client: kube::Client, tasks: &crate::Tasks, metrics: Arc<crate::metrics::Metrics>) {
    let queue = WorkQueue::new("bootstrap-tokens", metrics);
    let (q1, q2) = (queue.clone(), queue.clone());
    let secrets = Informer::start(
        tasks,
        Api::<Secret>::namespaced(client.clone(), bootstrap::NAMESPACE),
        vec![Box::new(move |c| {
            if c.object.type_.as_deref() == Some(bootstrap::SECRET_TYPE) {
                q1.add("all");
            }
        })],
    );
    let infos = Informer::start(
        tasks,
        Api::<ConfigMap>::namespaced(client.clone(), bootstrap::CLUSTER_INFO_NAMESPACE),
        vec![Box::new(move |c| {
            if c.object.metadata.name.as_deref() == Some(bootstrap::CLUSTER_INFO) {
                q2.add("all");
            }
        })],
    );
    queue.run(tasks, 1, move |_| reconcile(client.clone(), secrets.clone(), infos.clone()));
}

async fn reconcile(
    client: kube::Client,
    secrets: Arc<Informer<Secret>>,
    infos: Arc<Informer<ConfigMap>>,
) -> anyhow::Result<Action> {
    secrets.wait_synced().await;
    infos.wait_synced().await;
    let now = jiff::Timestamp::now();
    let all: Vec<Arc<Secret>> =
        secrets.list().into_iter().filter(|s| s.type_.as_deref() == Some(bootstrap::SECRET_TYPE)).collect();
    // tokencleaner: expired tokens go.
    let api: Api<Secret> = Api::namespaced(client.clone(), bootstrap::NAMESPACE);
    let mut next_expiry: Option<jiff::Timestamp> = None;
    for s in &all {
        let Some(at) = expiration(s) else { continue };
        if at <= now {
            let name = s.metadata.name.clone().unwrap_or_default();
            crate::tolerate(api.delete(&name, &DeleteParams::default()).await, &[404, 409])?;
            tracing::info!(secret = name, "deleted an expired bootstrap token");
        } else {
            next_expiry = Some(next_expiry.map_or(at, |n| n.min(at)));
        }
    }
    // bootstrapsigner: cluster-info's signatures match the live signing tokens.
    let key = format!("{}/{}", bootstrap::CLUSTER_INFO_NAMESPACE, bootstrap::CLUSTER_INFO);
    if let Some(info) = infos.get(&key)
        && let Some(kubeconfig) = info.data.as_ref().and_then(|d| d.get("kubeconfig"))
    {
        let want = signatures(kubeconfig, &all, now);
        let have: BTreeMap<String, String> = info
            .data
            .iter()
            .flatten()
            .filter(|(k, _)| k.starts_with(bootstrap::JWS_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if want != have {
            let mut data = serde_json::Map::new();
            for k in have.keys().filter(|k| !want.contains_key(*k)) {
                data.insert(k.clone(), Value::Null);
            }
            for (k, v) in &want {
                data.insert(k.clone(), json!(v));
            }
            let configmaps: Api<ConfigMap> = Api::namespaced(client, bootstrap::CLUSTER_INFO_NAMESPACE);
            let patch = json!({"data": data});
            crate::tolerate(
                configmaps.patch(bootstrap::CLUSTER_INFO, &PatchParams::default(), &Patch::Merge(&patch)).await,
                &[404, 409],
            )?;
            tracing::info!(tokens = want.len(), "signed cluster-info");
        }
    }
    Ok(match next_expiry {
        Some(at) => {
            let wait = at.duration_since(now).unsigned_abs();
            Action::RequeueAfter(Duration::from_secs(wait.as_secs() + 1))
        }
        None => Action::Done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;

    fn secret(id: &str, extra: &[(&str, &str)]) -> Arc<Secret> {
        let mut data: BTreeMap<String, ByteString> =
            [("token-id", id), ("token-secret", "0123456789abcdef"), ("usage-bootstrap-signing", "true")]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect();
        for (k, v) in extra {
            data.insert((*k).to_owned(), ByteString(v.as_bytes().to_vec()));
        }
        Arc::new(Secret {
            metadata: ObjectMeta { name: Some(format!("bootstrap-token-{id}")), ..Default::default() },
            type_: Some(bootstrap::SECRET_TYPE.into()),
            data: Some(data),
            ..Default::default()
        })
    }

    #[test]
    fn live_signing_tokens_sign_and_the_rest_do_not() {
        let now = jiff::Timestamp::now();
        let all = vec![
            secret("aaaaaa", &[]),
            secret("bbbbbb", &[("expiration", "2000-01-01T00:00:00Z")]),
            secret("cccccc", &[("usage-bootstrap-signing", "false")]),
        ];
        let sigs = signatures("kubeconfig", &all, now);
        assert_eq!(sigs.keys().collect::<Vec<_>>(), vec!["jws-kubeconfig-aaaaaa"]);
        let token = Token::parse("aaaaaa.0123456789abcdef").expect("token");
        assert!(bootstrap::verify("kubeconfig", &sigs["jws-kubeconfig-aaaaaa"], &token));
    }
}
