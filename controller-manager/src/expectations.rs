//! Expectations: the pods a controller created or deleted and has not yet seen through its
//! watch. Until they show up (or five minutes pass), the controller does not act on a pod
//! count that its own writes have not reached yet, so watch lag never causes duplicates.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use parking_lot::Mutex;

use crate::informer::Informer;

const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Pending {
    adds: HashSet<String>,
    deletes: HashSet<String>,
    since: Option<Instant>,
}

/// Outstanding creates and deletes per controller key.
#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    /// Expects pods (by `namespace/name`) to appear.
    pub fn expect_adds(&self, key: &str, pods: impl IntoIterator<Item = String>) {
        let mut p = self.pending.lock();
        let e = p.entry(key.to_owned()).or_default();
        e.adds.extend(pods);
        e.since.get_or_insert_with(Instant::now);
    }

    /// Expects pods to go (or to be marked for deletion).
    pub fn expect_deletes(&self, key: &str, pods: impl IntoIterator<Item = String>) {
        let mut p = self.pending.lock();
        let e = p.entry(key.to_owned()).or_default();
        e.deletes.extend(pods);
        e.since.get_or_insert_with(Instant::now);
    }

    /// Whether the cache has caught up with every write made for `key`.
    pub fn satisfied(&self, key: &str, pods: &Informer<Pod>) -> bool {
        let mut all = self.pending.lock();
        let Some(e) = all.get_mut(key) else { return true };
        e.adds.retain(|p| pods.get(p).is_none());
        e.deletes.retain(|p| pods.get(p).is_some_and(|pod| pod.metadata.deletion_timestamp.is_none()));
        let expired = e.since.is_some_and(|s| s.elapsed() > TIMEOUT);
        if (e.adds.is_empty() && e.deletes.is_empty()) || expired {
            if expired {
                tracing::warn!(%key, "expectations timed out; acting on the cache as it is");
            }
            all.remove(key);
            return true;
        }
        false
    }

    /// Drops what was expected for a deleted controller.
    pub fn forget(&self, key: &str) {
        self.pending.lock().remove(key);
    }
}
