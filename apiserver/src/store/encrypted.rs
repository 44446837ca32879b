//! A [`Store`] wrapper that encrypts the values of the resources an
//! [`Encryption`](crate::encryption::Encryption) configuration names on the way in and
//! decrypts them on the way out, so the backend (etcd, or the embedded store's file)
//! never holds their plaintext.
//!
//! It sits above `--etcd-prefix`, so the key that AES-GCM binds a value to is the key the
//! apiserver names (`/registry/secrets/ns/name`), the same as upstream's with its default
//! prefix.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{Error, Event, KeyValue, ListRequest, ListResponse, Result, Store, WatchStream};
use crate::encryption::Encryption;

/// Encrypts what the configuration names.
pub struct Encrypted {
    inner: Arc<dyn Store>,
    encryption: Arc<Encryption>,
}

impl Encrypted {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, encryption: Arc<Encryption>) -> Encrypted {
        Encrypted { inner, encryption }
    }
}

fn seal(encryption: &Encryption, key: &str, value: &[u8]) -> Result<Bytes> {
    encryption.seal(key, value).map(Bytes::from).map_err(|e| Error::Backend(e.to_string()))
}

fn open(encryption: &Encryption, mut kv: KeyValue) -> Result<KeyValue> {
    kv.value = encryption.open(&kv.key, &kv.value).map(Bytes::from).map_err(|e| Error::Unreadable(e.to_string()))?;
    Ok(kv)
}

#[async_trait]
impl Store for Encrypted {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner.get(key).await?.map(|kv| open(&self.encryption, kv)).transpose()
    }

    async fn list(&self, req: ListRequest) -> Result<ListResponse> {
        let mut resp = self.inner.list(req).await?;
        resp.items = resp.items.into_iter().map(|kv| open(&self.encryption, kv)).collect::<Result<_>>()?;
        Ok(resp)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<i64> {
        self.inner.create(key, seal(&self.encryption, key, &value)?).await
    }

    async fn update(&self, key: &str, value: Bytes, expected: i64) -> Result<i64> {
        self.inner.update(key, seal(&self.encryption, key, &value)?, expected).await
    }

    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<(i64, KeyValue)> {
        let (revision, kv) = self.inner.delete(key, expected).await?;
        Ok((revision, open(&self.encryption, kv)?))
    }

    async fn watch(&self, prefix: &str, from: i64) -> Result<WatchStream> {
        let encryption = self.encryption.clone();
        let inner = self.inner.watch(prefix, from).await?;
        Ok(inner
            .map(move |ev| match ev? {
                Event::Put { kv } => Ok(Event::Put { kv: open(&encryption, kv)? }),
                delete => Ok(delete),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    #[tokio::test]
    async fn the_backend_holds_no_plaintext_and_every_read_path_decrypts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).expect("open"));
        let encryption = Encryption::parse(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys: [{name: k1, secret: MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=}]\n  - identity: {}\n",
        )
        .expect("config");
        let store = Encrypted::new(raw.clone(), Arc::new(encryption));
        let key = "/registry/secrets/default/db";
        let value = Bytes::from_static(br#"{"data":{"password":"aHVudGVyMg=="}}"#);
        let mut watch = store.watch("/registry/secrets/", 1).await.expect("watch");
        let rev = store.create(key, value.clone()).await.expect("create");
        let cm = "/registry/configmaps/default/plain";
        store.create(cm, value.clone()).await.expect("create configmap");

        let stored = raw.get(key).await.expect("raw get").expect("present");
        assert!(stored.value.starts_with(b"k8s:enc:aesgcm:v1:k1:"));
        assert!(!stored.value.windows(8).any(|w| w == b"aHVudGVy"));
        assert_eq!(raw.get(cm).await.expect("raw").expect("present").value, value, "configmaps stay plain");

        assert_eq!(store.get(key).await.expect("get").expect("present").value, value);
        let listed = store.list(ListRequest { prefix: "/registry/secrets/".into(), ..Default::default() }).await;
        assert_eq!(listed.expect("list").items[0].value, value);
        match watch.next().await {
            Some(Ok(Event::Put { kv })) => assert_eq!(kv.value, value),
            other => panic!("expected the put, got {other:?}"),
        }
        store.update(key, value.clone(), rev).await.expect("update");
        let (_, deleted) = store.delete(key, None).await.expect("delete");
        assert_eq!(deleted.value, value);
    }
}
