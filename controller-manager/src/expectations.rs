//! Expectations, as upstream's ReplicaSet controller keeps them: before it creates or
//! deletes pods, a controller says how many creations and which deletions it expects to see
//! through its watch; the pod informer counts them off as the events arrive. Until they
//! have all arrived (or five minutes pass) the controller does not act on a pod count its
//! own writes have not reached yet, so watch lag never causes duplicates. Counting events
//! (not checking presence) also covers a pod created and deleted before anyone looked.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

const TIMEOUT: Duration = Duration::from_secs(300);

struct Pending {
    adds: i64,
    deletes: HashSet<String>,
    since: Instant,
}

/// Outstanding creates and deletes per controller key.
#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    fn entry<'a>(map: &'a mut HashMap<String, Pending>, key: &str) -> &'a mut Pending {
        map.entry(key.to_owned()).or_insert_with(|| Pending { adds: 0, deletes: HashSet::new(), since: Instant::now() })
    }

    /// Expects `count` pods to appear.
    pub fn expect_adds(&self, key: &str, count: usize) {
        let mut p = self.pending.lock();
        let e = Self::entry(&mut p, key);
        e.adds += count as i64;
        e.since = Instant::now();
    }

    /// Creations that will not happen after all (they failed).
    pub fn lower_adds(&self, key: &str, count: usize) {
        if let Some(e) = self.pending.lock().get_mut(key) {
            e.adds = (e.adds - count as i64).max(0);
        }
    }

    /// The pod informer saw a pod of `key` appear.
    pub fn observed_add(&self, key: &str) {
        if let Some(e) = self.pending.lock().get_mut(key) {
            e.adds = (e.adds - 1).max(0);
        }
    }

    /// Expects these pods (`namespace/name`) to go or be marked for deletion.
    pub fn expect_deletes(&self, key: &str, pods: impl IntoIterator<Item = String>) {
        let mut p = self.pending.lock();
        let e = Self::entry(&mut p, key);
        e.deletes.extend(pods);
        e.since = Instant::now();
    }

    /// The pod informer saw a pod of `key` go (or be marked for deletion), or the delete
    /// failed because it was already gone.
    pub fn observed_delete(&self, key: &str, pod: &str) {
        if let Some(e) = self.pending.lock().get_mut(key) {
            e.deletes.remove(pod);
        }
    }

    /// Whether every write made for `key` has been seen.
    pub fn satisfied(&self, key: &str) -> bool {
        let mut all = self.pending.lock();
        let Some(e) = all.get(key) else { return true };
        let done = e.adds <= 0 && e.deletes.is_empty();
        let expired = e.since.elapsed() > TIMEOUT;
        if expired && !done {
            tracing::warn!(%key, "expectations timed out; acting on the cache as it is");
        }
        if done || expired {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_creations_and_names_deletions() {
        let e = Expectations::default();
        assert!(e.satisfied("rs"));
        e.expect_adds("rs", 3);
        e.observed_add("rs");
        e.lower_adds("rs", 1);
        assert!(!e.satisfied("rs"));
        // A pod created and deleted before anyone looked still counts as seen.
        e.observed_add("rs");
        assert!(e.satisfied("rs"));
        e.expect_deletes("rs", ["ns/a".to_owned(), "ns/b".to_owned()]);
        e.observed_delete("rs", "ns/a");
        assert!(!e.satisfied("rs"));
        e.observed_delete("rs", "ns/b");
        assert!(e.satisfied("rs"));
    }
}
