//! The scheduling queue: pods waiting for a placement, in arrival order (active), pods that
//! fit nowhere until the cluster changes (unschedulable), and pods whose binding failed,
//! waiting out a back-off.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

/// A queued pod.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The latest version seen.
    pub pod: Arc<Pod>,
    /// Failed attempts so far (for the back-off).
    pub attempts: u32,
    /// The last unschedulable message written for it.
    pub reported: Option<String>,
}

/// The three queues, keyed by pod uid.
#[derive(Debug, Default)]
pub struct Queue {
    entries: HashMap<String, Entry>,
    active: VecDeque<String>,
    in_active: HashSet<String>,
    unschedulable: HashSet<String>,
    backoff: BTreeMap<(Instant, String), ()>,
}

/// Back-off after failed attempts: 1 s doubling to 10 s, as upstream's defaults.
pub fn backoff_for(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.saturating_sub(1).min(4)).min(Duration::from_secs(10))
}

impl Queue {
    /// Adds a new pending pod, or refreshes a queued one (an update may make it schedulable).
    pub fn upsert(&mut self, uid: &str, pod: Arc<Pod>) {
        match self.entries.get_mut(uid) {
            Some(e) => {
                e.pod = pod;
                if self.unschedulable.remove(uid) {
                    self.activate(uid);
                }
            }
            None => {
                self.entries.insert(uid.to_owned(), Entry { pod, attempts: 0, reported: None });
                self.activate(uid);
            }
        }
    }

    fn activate(&mut self, uid: &str) {
        if self.in_active.insert(uid.to_owned()) {
            self.active.push_back(uid.to_owned());
        }
    }

    /// Forgets a pod (bound, deleted, or no longer ours).
    pub fn remove(&mut self, uid: &str) -> Option<Entry> {
        self.unschedulable.remove(uid);
        self.in_active.remove(uid);
        self.entries.remove(uid)
    }

    /// The next pod to schedule.
    pub fn pop(&mut self) -> Option<Entry> {
        while let Some(uid) = self.active.pop_front() {
            if self.in_active.remove(&uid)
                && let Some(e) = self.entries.get(&uid)
            {
                return Some(e.clone());
            }
        }
        None
    }

    /// Whether a pod is waiting in the active queue.
    pub fn has_active(&self) -> bool {
        !self.in_active.is_empty()
    }

    /// Parks a pod until the cluster changes; returns whether `message` is new for it.
    pub fn park(&mut self, uid: &str, message: &str) -> bool {
        let Some(e) = self.entries.get_mut(uid) else { return false };
        e.attempts += 1;
        self.unschedulable.insert(uid.to_owned());
        let new = e.reported.as_deref() != Some(message);
        e.reported = Some(message.to_owned());
        new
    }

    /// Retries a pod after its back-off (a failed binding).
    pub fn back_off(&mut self, uid: &str, pod: Arc<Pod>) {
        let attempts = {
            let e = self.entries.entry(uid.to_owned()).or_insert(Entry { pod, attempts: 0, reported: None });
            e.attempts += 1;
            e.attempts
        };
        self.backoff.insert((Instant::now() + backoff_for(attempts), uid.to_owned()), ());
    }

    /// Moves pods whose back-off has passed into the active queue.
    pub fn flush_backoff(&mut self, now: Instant) {
        while let Some(((at, uid), ())) = self.backoff.first_key_value().map(|(k, v)| (k.clone(), *v)) {
            if at > now {
                break;
            }
            self.backoff.remove(&(at, uid.clone()));
            if self.entries.contains_key(&uid) {
                self.activate(&uid);
            }
        }
    }

    /// The cluster changed: every parked pod gets another try.
    pub fn retry_unschedulable(&mut self) {
        let parked: Vec<String> = self.unschedulable.drain().collect();
        for uid in parked {
            self.activate(&uid);
        }
    }

    /// Sizes of (active, backoff, unschedulable).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.in_active.len(), self.backoff.len(), self.unschedulable.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Arc<Pod> {
        Arc::new(Pod::default())
    }

    #[test]
    fn fifo_park_retry_and_backoff() {
        let mut q = Queue::default();
        q.upsert("a", pod());
        q.upsert("b", pod());
        q.upsert("a", pod());
        assert_eq!(q.sizes(), (2, 0, 0));
        assert!(q.pop().is_some());
        assert!(q.park("a", "0/1 nodes are available"));
        assert!(!q.park("a", "0/1 nodes are available"), "the same message is not reported twice");
        assert_eq!(q.sizes(), (1, 0, 1));
        q.retry_unschedulable();
        assert_eq!(q.sizes(), (2, 0, 0));
        while q.pop().is_some() {}
        q.back_off("b", pod());
        q.flush_backoff(Instant::now());
        assert!(!q.has_active(), "still backing off");
        q.flush_backoff(Instant::now() + Duration::from_secs(11));
        assert!(q.has_active());
        q.remove("b");
        assert!(q.pop().is_none());
        assert_eq!(backoff_for(1), Duration::from_secs(1));
        assert_eq!(backoff_for(3), Duration::from_secs(4));
        assert_eq!(backoff_for(9), Duration::from_secs(10));
    }
}
