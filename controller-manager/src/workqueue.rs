//! A deduplicating work queue, as client-go's: a key is queued at most once, a key being
//! processed is never handed to a second worker, and a key added while it is processed
//! is processed again afterwards. Failed keys come back after an exponential back-off.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::metrics::Metrics;

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashSet<String>,
    failures: HashMap<String, u32>,
}

/// What a reconcile asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing until something changes.
    Done,
    /// Look again after this long (a timer, e.g. minReadySeconds or a progress deadline).
    RequeueAfter(Duration),
}

/// The queue of one controller.
pub struct WorkQueue {
    name: &'static str,
    state: Mutex<State>,
    notify: Notify,
    metrics: Arc<Metrics>,
}

impl WorkQueue {
    /// A queue named `name` (the `name` label of its metrics).
    pub fn new(name: &'static str, metrics: Arc<Metrics>) -> Arc<WorkQueue> {
        Arc::new(WorkQueue { name, state: Mutex::new(State::default()), notify: Notify::new(), metrics })
    }

    /// Queues a key (once).
    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut s = self.state.lock();
        if !s.dirty.insert(key.clone()) {
            return;
        }
        self.metrics.queue_add(self.name);
        if !s.processing.contains(&key) {
            s.queue.push_back(key);
            self.metrics.queue_depth(self.name, s.queue.len());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Queues a key after a delay.
    pub fn add_after(self: &Arc<Self>, key: String, delay: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            me.add(key);
        });
    }

    async fn next(&self) -> String {
        loop {
            {
                let mut s = self.state.lock();
                if let Some(key) = s.queue.pop_front() {
                    s.dirty.remove(&key);
                    s.processing.insert(key.clone());
                    self.metrics.queue_depth(self.name, s.queue.len());
                    if !s.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            self.notify.notified().await;
        }
    }

    fn done(&self, key: &str) {
        let mut s = self.state.lock();
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.queue.push_back(key.to_owned());
            drop(s);
            self.notify.notify_one();
        }
    }

    fn failed(self: &Arc<Self>, key: &str) -> Duration {
        let attempts = {
            let mut s = self.state.lock();
            let n = s.failures.entry(key.to_owned()).or_default();
            *n += 1;
            *n
        };
        self.metrics.queue_retry(self.name);
        // 50 ms doubling to 30 s.
        Duration::from_millis(50u64 << attempts.min(10)).min(Duration::from_secs(30))
    }

    fn forget(&self, key: &str) {
        self.state.lock().failures.remove(key);
    }

    /// Runs `workers` workers that reconcile keys until the process ends.
    pub fn run<F, Fut>(self: &Arc<Self>, tasks: &crate::Tasks, workers: usize, reconcile: F)
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<Action>> + Send + 'static,
    {
        let reconcile = Arc::new(reconcile);
        for _ in 0..workers {
            let (queue, reconcile) = (self.clone(), reconcile.clone());
            tasks.spawn(async move {
                loop {
                    let key = queue.next().await;
                    let started = Instant::now();
                    let result = reconcile(key.clone()).await;
                    queue.metrics.reconciled(queue.name, started.elapsed(), result.is_err());
                    match result {
                        Ok(action) => {
                            queue.forget(&key);
                            if let Action::RequeueAfter(d) = action {
                                queue.add_after(key.clone(), d);
                            }
                        }
                        Err(e) => {
                            let delay = queue.failed(&key);
                            tracing::warn!(controller = queue.name, %key, error = %e, retry_in = ?delay, "reconcile failed");
                            queue.add_after(key.clone(), delay);
                        }
                    }
                    queue.done(&key);
                }
            });
        }
    }
}
