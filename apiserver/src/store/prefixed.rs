//! `--etcd-prefix`: every key lives under a prefix, so several clusters (or test runs) can
//! share one etcd without seeing each other's objects.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{Event, KeyValue, ListRequest, ListResponse, Result, Store, WatchStream};

/// Puts every key of the inner store under `prefix`.
pub struct Prefixed {
    inner: Arc<dyn Store>,
    prefix: String,
}

impl Prefixed {
    /// Wraps `inner`; `prefix` has no trailing slash (`/cluster-a`).
    pub fn new(inner: Arc<dyn Store>, prefix: &str) -> Prefixed {
        Prefixed { inner, prefix: prefix.trim_end_matches('/').to_owned() }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn strip(prefix: &str, mut kv: KeyValue) -> KeyValue {
        if let Some(rest) = kv.key.strip_prefix(prefix) {
            kv.key = rest.to_owned();
        }
        kv
    }
}

#[async_trait]
impl Store for Prefixed {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.inner.get(&self.key(key)).await?.map(|kv| Self::strip(&self.prefix, kv)))
    }

    async fn list(&self, req: ListRequest) -> Result<ListResponse> {
        let start = if req.start.is_empty() { String::new() } else { self.key(&req.start) };
        let mut resp = self.inner.list(ListRequest { prefix: self.key(&req.prefix), start, ..req }).await?;
        resp.items = resp.items.into_iter().map(|kv| Self::strip(&self.prefix, kv)).collect();
        Ok(resp)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<i64> {
        self.inner.create(&self.key(key), value).await
    }

    async fn update(&self, key: &str, value: Bytes, expected: i64) -> Result<i64> {
        self.inner.update(&self.key(key), value, expected).await
    }

    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<(i64, KeyValue)> {
        let (rev, kv) = self.inner.delete(&self.key(key), expected).await?;
        Ok((rev, Self::strip(&self.prefix, kv)))
    }

    async fn watch(&self, prefix: &str, from: i64) -> Result<WatchStream> {
        let strip = self.prefix.clone();
        let inner = self.inner.watch(&self.key(prefix), from).await?;
        Ok(inner
            .map(move |ev| {
                ev.map(|ev| match ev {
                    Event::Put { kv } => Event::Put { kv: Self::strip(&strip, kv) },
                    Event::Delete { key, revision } => {
                        Event::Delete { key: key.strip_prefix(&strip).unwrap_or(&key).to_owned(), revision }
                    }
                })
            })
            .boxed())
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        self.inner.compact(revision).await
    }

    async fn current_revision(&self) -> Result<i64> {
        self.inner.current_revision().await
    }
}
