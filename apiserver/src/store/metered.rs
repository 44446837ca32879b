//! A [`Store`] wrapper that times every operation into the apiserver's metrics.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;

use super::{KeyValue, ListRequest, ListResponse, Result, Store, WatchStream};
use crate::metrics::Metrics;

/// Times each call of the inner store.
pub struct Metered {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl Metered {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Metered {
        Metered { inner, metrics }
    }

    async fn timed<T>(&self, op: &str, key: &str, fut: impl std::future::Future<Output = T>) -> T {
        let start = Instant::now();
        let out = fut.await;
        self.metrics.observe_storage(op, &super::resource_of(key), start.elapsed());
        out
    }
}

#[async_trait]
impl Store for Metered {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.timed("get", key, self.inner.get(key)).await
    }

    async fn list(&self, req: ListRequest) -> Result<ListResponse> {
        let prefix = req.prefix.clone();
        self.timed("list", &prefix, self.inner.list(req)).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<i64> {
        self.timed("create", key, self.inner.create(key, value)).await
    }

    async fn update(&self, key: &str, value: Bytes, expected: i64) -> Result<i64> {
        self.timed("update", key, self.inner.update(key, value, expected)).await
    }

    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<(i64, KeyValue)> {
        self.timed("delete", key, self.inner.delete(key, expected)).await
    }

    async fn watch(&self, prefix: &str, from: i64) -> Result<WatchStream> {
        self.timed("watch", prefix, self.inner.watch(prefix, from)).await
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        self.timed("compact", "", self.inner.compact(revision)).await
    }

    async fn current_revision(&self) -> Result<i64> {
        self.timed("current_revision", "", self.inner.current_revision()).await
    }
}
