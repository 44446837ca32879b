//! The service account controller: every active namespace has a `default` ServiceAccount,
//! created when the namespace appears and again if it is deleted (upstream's
//! serviceaccounts-controller), and, with `--root-ca-file`, the ConfigMap
//! `kube-root-ca.crt` holding the cluster's CA (upstream's root-ca-cert-publisher): what
//! a pod's mounted credentials take `ca.crt` from.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

use crate::Context;
use crate::workqueue::Action;

/// The account every namespace gets.
pub const DEFAULT: &str = "default";

/// Whether a namespace should have its default account: it exists and is not going away.
pub fn wants_default(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

/// Ensures the default account of one namespace (the key is the namespace's name).
pub async fn reconcile(ctx: Arc<Context>, namespace: String) -> anyhow::Result<Action> {
    let Some(ns) = ctx.namespaces.get(&namespace) else { return Ok(Action::Done) };
    if !wants_default(&ns) {
        return Ok(Action::Done);
    }
    if let Some(ca) = &ctx.config.root_ca {
        publish_root_ca(&ctx.client, &namespace, ca).await?;
    }
    if ctx.service_accounts.get(&format!("{namespace}/{DEFAULT}")).is_some() {
        return Ok(Action::Done);
    }
    let account = ServiceAccount {
        metadata: ObjectMeta { name: Some(DEFAULT.into()), ..Default::default() },
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &namespace);
    // 409: it exists already (the cache lags); 403: the namespace began terminating.
    crate::tolerate(api.create(&PostParams::default(), &account).await, &[409, 403])?;
    Ok(Action::Done)
}

/// The ConfigMap with the cluster's CA.
pub const ROOT_CA: &str = "kube-root-ca.crt";

/// Creates `kube-root-ca.crt` in `namespace`, or brings its `ca.crt` back to `ca`.
async fn publish_root_ca(client: &kube::Client, namespace: &str, ca: &str) -> anyhow::Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(ROOT_CA).await? {
        Some(cm) if cm.data.as_ref().and_then(|d| d.get("ca.crt")).map(String::as_str) == Some(ca) => Ok(()),
        Some(_) => {
            let patch = serde_json::json!({"data": {"ca.crt": ca}});
            crate::tolerate(api.patch(ROOT_CA, &PatchParams::default(), &Patch::Merge(&patch)).await, &[404, 403])?;
            Ok(())
        }
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(ROOT_CA.into()),
                    annotations: Some(
                        [("kubernetes.io/description".to_owned(), "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.".to_owned())]
                            .into(),
                    ),
                    ..Default::default()
                },
                data: Some([("ca.crt".to_owned(), ca.to_owned())].into()),
                ..Default::default()
            };
            // 409: made already; 403: the namespace began terminating.
            crate::tolerate(api.create(&PostParams::default(), &cm).await, &[409, 403])?;
            Ok(())
        }
    }
}
