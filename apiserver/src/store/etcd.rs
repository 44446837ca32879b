//! The etcd backend: the [`Store`] interface over etcd's v3 API through `etcd-client`.
//!
//! Compare-and-swap is an etcd transaction on the key's `mod_revision` (or
//! `create_revision == 0` for a create), exactly as upstream's storage layer does.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, EventType, GetOptions, KvClient, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures::StreamExt;

use super::{Error, Event, KeyValue, ListRequest, ListResponse, Result, Store, WatchStream, prefix_end};

/// A [`Store`] backed by an etcd cluster.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
}

/// etcd's error in our terms, with its message alone (not gRPC's debug dump of status,
/// details and metadata).
fn backend(e: etcd_client::Error) -> Error {
    let (text, code) = match &e {
        etcd_client::Error::GRpcStatus(s) => (s.message().to_owned(), Some(s.code())),
        other => (other.to_string(), None),
    };
    if text.contains("required revision has been compacted") {
        Error::Compacted { requested: 0, compacted: 0 }
    } else if text.contains("required revision is a future revision") {
        Error::FutureRevision { requested: 0, current: 0 }
    } else if text.contains("request is too large") {
        Error::TooLarge(format!("etcd: {text}"))
    } else if matches!(e, etcd_client::Error::TransportError(_)) || code == Some(tonic::Code::Unavailable) {
        Error::Unavailable(format!("etcd: {text}"))
    } else if code == Some(tonic::Code::DeadlineExceeded) {
        Error::Timeout { operation: "request", seconds: DEADLINE.as_secs() }
    } else {
        Error::Backend(format!("etcd: {text}"))
    }
}

/// How long one storage call may take, retries included: upstream's request timeout.
/// A frozen etcd then costs a request this long at most, never forever.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `call` with the [`DEADLINE`].
async fn deadline<T>(operation: &'static str, call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(DEADLINE, call).await.unwrap_or(Err(Error::Timeout { operation, seconds: DEADLINE.as_secs() }))
}

/// Whether a failed request may be sent again. etcd-client spreads requests over every
/// endpoint, a dead member's included: a request that failed because no connection to
/// its member could be made never reached etcd, so another member may take it. Reads may
/// be sent again after any `Unavailable`; writes only when nothing was sent.
fn retryable(e: &etcd_client::Error, read: bool) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::Unavailable => {
            read || s.message().contains("connect") || s.message().contains("no address")
        }
        _ => false,
    }
}

/// Runs `request` until it succeeds, fails for a reason other than an unreachable member,
/// or has been tried 8 times (about 2 s).
async fn retried<T, F, Fut>(read: bool, mut request: F) -> std::result::Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
{
    let mut delay = std::time::Duration::from_millis(10);
    let mut attempt = 1;
    loop {
        match request().await {
            Err(e) if attempt < 8 && retryable(&e, read) => {
                tracing::debug!(error = %e, attempt, "an etcd member is unreachable; trying again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_millis(500));
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn to_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    Ok(KeyValue {
        key: kv.key_str().map_err(|_| Error::Backend("etcd returned a key that is not UTF-8".into()))?.to_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<i64> {
    header.map(|h| h.revision()).ok_or_else(|| Error::Backend("etcd response without a header".into()))
}

impl EtcdStore {
    /// Connects to the given endpoints (`http://127.0.0.1:2379,...`).
    pub async fn connect(endpoints: &[String]) -> Result<EtcdStore> {
        let client = Client::connect(endpoints, None).await.map_err(backend)?;
        let store = EtcdStore { client };
        // Fail at start, not at the first request, when etcd is unreachable.
        deadline("current_revision", store.current_revision_now()).await?;
        Ok(store)
    }

    fn kv(&self) -> KvClient {
        self.client.kv_client()
    }

    /// Reads the key's current mod revision, to explain why a guarded write failed.
    async fn explain_failure(&self, key: &str, expected: i64) -> Error {
        match self.get_now(key).await {
            Ok(Some(kv)) => Error::Conflict { key: key.to_owned(), expected, actual: kv.mod_revision },
            Ok(None) => Error::NotFound { key: key.to_owned() },
            Err(e) => e,
        }
    }
}

impl EtcdStore {
    async fn get_now(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = retried(true, || {
            let mut kv = self.kv();
            async move { kv.get(key, None).await }
        })
        .await
        .map_err(backend)?;
        resp.kvs().first().map(to_kv).transpose()
    }

    async fn list_now(&self, req: ListRequest) -> Result<ListResponse> {
        let start = if req.start.as_str() > req.prefix.as_str() { req.start.clone() } else { req.prefix.clone() };
        let mut opts = GetOptions::new().with_range(prefix_end(&req.prefix));
        if req.limit > 0 {
            opts = opts.with_limit(req.limit as i64);
        }
        if req.revision > 0 {
            opts = opts.with_revision(req.revision);
        }
        let resp = retried(true, || {
            let (mut kv, start, opts) = (self.kv(), start.clone(), opts.clone());
            async move { kv.get(start, Some(opts)).await }
        })
        .await
        .map_err(|e| match backend(e) {
            Error::Compacted { .. } => Error::Compacted { requested: req.revision, compacted: 0 },
            Error::FutureRevision { .. } => Error::FutureRevision { requested: req.revision, current: 0 },
            other => other,
        })?;
        let items = resp.kvs().iter().map(to_kv).collect::<Result<Vec<_>>>()?;
        let revision = if req.revision > 0 { req.revision } else { header_revision(resp.header())? };
        Ok(ListResponse { items, revision, more: resp.more() })
    }

    async fn create_now(&self, key: &str, value: Bytes) -> Result<i64> {
        let txn = Txn::new().when(vec![Compare::create_revision(key, CompareOp::Equal, 0)]).and_then(vec![TxnOp::put(
            key,
            value.to_vec(),
            None,
        )]);
        let resp = retried(false, || {
            let (mut kv, txn) = (self.kv(), txn.clone());
            async move { kv.txn(txn).await }
        })
        .await
        .map_err(backend)?;
        if !resp.succeeded() {
            return Err(Error::AlreadyExists { key: key.to_owned() });
        }
        header_revision(resp.header())
    }

    async fn update_now(&self, key: &str, value: Bytes, expected: i64) -> Result<i64> {
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then(vec![TxnOp::put(key, value.to_vec(), None)]);
        let resp = retried(false, || {
            let (mut kv, txn) = (self.kv(), txn.clone());
            async move { kv.txn(txn).await }
        })
        .await
        .map_err(backend)?;
        if !resp.succeeded() {
            return Err(self.explain_failure(key, expected).await);
        }
        header_revision(resp.header())
    }

    async fn delete_now(&self, key: &str, expected: Option<i64>) -> Result<(i64, KeyValue)> {
        let guard = match expected {
            Some(rev) => Compare::mod_revision(key, CompareOp::Equal, rev),
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        };
        let txn =
            Txn::new().when(vec![guard]).and_then(vec![TxnOp::delete(key, Some(DeleteOptions::new().with_prev_key()))]);
        let resp = retried(false, || {
            let (mut kv, txn) = (self.kv(), txn.clone());
            async move { kv.txn(txn).await }
        })
        .await
        .map_err(backend)?;
        if !resp.succeeded() {
            return Err(self.explain_failure(key, expected.unwrap_or_default()).await);
        }
        let revision = header_revision(resp.header())?;
        for op in resp.op_responses() {
            if let TxnOpResponse::Delete(del) = op
                && let Some(prev) = del.prev_kvs().first()
            {
                return Ok((revision, to_kv(prev)?));
            }
        }
        Err(Error::NotFound { key: key.to_owned() })
    }

    async fn watch_now(&self, prefix: &str, from: i64) -> Result<WatchStream> {
        let opts = WatchOptions::new().with_range(prefix_end(prefix)).with_start_revision(from.max(1));
        let stream = retried(true, || {
            let (mut watch, opts) = (self.client.watch_client(), opts.clone());
            async move { watch.watch(prefix, Some(opts)).await }
        })
        .await
        .map_err(backend)?;
        let (sender, responses) = stream.split();
        let events =
            futures::stream::unfold((responses, sender, false), move |(mut responses, sender, done)| async move {
                if done {
                    return None;
                }
                let batch: Vec<Result<Event>> = match responses.message().await {
                    Ok(Some(resp)) if resp.compact_revision() > 0 => {
                        vec![Err(Error::Compacted { requested: from, compacted: resp.compact_revision() })]
                    }
                    Ok(Some(resp)) if resp.canceled() => {
                        vec![Err(Error::Backend(format!("etcd cancelled the watch: {}", resp.cancel_reason())))]
                    }
                    Ok(Some(resp)) => resp
                        .events()
                        .iter()
                        .filter_map(|ev| {
                            let kv = ev.kv()?;
                            Some(match ev.event_type() {
                                EventType::Put => to_kv(kv).map(|kv| Event::Put { kv }),
                                EventType::Delete => match kv.key_str() {
                                    Ok(key) => Ok(Event::Delete { key: key.to_owned(), revision: kv.mod_revision() }),
                                    Err(_) => Err(Error::Backend("etcd returned a key that is not UTF-8".into())),
                                },
                            })
                        })
                        .collect(),
                    Ok(None) => vec![Err(Error::Backend("etcd closed the watch".into()))],
                    Err(e) => vec![Err(backend(e))],
                };
                let failed = batch.iter().any(|e| e.is_err());
                Some((futures::stream::iter(batch), (responses, sender, failed)))
            })
            .flatten();
        Ok(events.boxed())
    }

    async fn compact_now(&self, revision: i64) -> Result<()> {
        self.kv().compact(revision, None).await.map_err(backend)?;
        Ok(())
    }

    async fn current_revision_now(&self) -> Result<i64> {
        let resp = retried(true, || {
            let mut kv = self.kv();
            async move { kv.get("/", Some(GetOptions::new().with_count_only())).await }
        })
        .await
        .map_err(backend)?;
        header_revision(resp.header())
    }
}

/// Every call has the [`DEADLINE`].
#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        deadline("get", self.get_now(key)).await
    }

    async fn list(&self, req: ListRequest) -> Result<ListResponse> {
        deadline("list", self.list_now(req)).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<i64> {
        deadline("create", self.create_now(key, value)).await
    }

    async fn update(&self, key: &str, value: Bytes, expected: i64) -> Result<i64> {
        deadline("update", self.update_now(key, value, expected)).await
    }

    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<(i64, KeyValue)> {
        deadline("delete", self.delete_now(key, expected)).await
    }

    async fn watch(&self, prefix: &str, from: i64) -> Result<WatchStream> {
        deadline("watch", self.watch_now(prefix, from)).await
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        deadline("compact", self.compact_now(revision)).await
    }

    async fn current_revision(&self) -> Result<i64> {
        deadline("current_revision", self.current_revision_now()).await
    }
}
