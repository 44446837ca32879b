//! The service account controller: every active namespace has a `default` ServiceAccount,
//! created when the namespace appears and again if it is deleted (upstream's
//! serviceaccounts-controller).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};

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
    if !wants_default(&ns) || ctx.service_accounts.get(&format!("{namespace}/{DEFAULT}")).is_some() {
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
