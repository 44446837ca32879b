//! Storage behind the apiserver: a small key-value interface with etcd's semantics
//! (a global revision, compare-and-swap on a key's mod revision, watch from a revision,
//! compaction) and two backends, etcd and an embedded on-disk store.
//!
//! The apiserver is the only user: it keeps Kubernetes objects as JSON under keys like
//! `/registry/pods/default/web-1`, and `metadata.resourceVersion` is the revision returned here.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub mod embedded;
pub mod encrypted;
pub mod etcd;
pub mod metered;
pub mod prefixed;

#[cfg(test)]
mod conformance;

/// What can go wrong in a storage call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The key does not exist (update or delete of a missing key).
    #[error("key {key:?} not found")]
    NotFound {
        /// The key that was looked up.
        key: String,
    },
    /// A create found the key already present.
    #[error("key {key:?} already exists")]
    AlreadyExists {
        /// The key that was created.
        key: String,
    },
    /// The key's mod revision was not the one the caller expected.
    #[error("key {key:?} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        /// The key that was written.
        key: String,
        /// The mod revision the caller read.
        expected: i64,
        /// The mod revision in the store.
        actual: i64,
    },
    /// The requested revision has been compacted away.
    #[error("revision {requested} has been compacted (oldest available is {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// The compaction revision.
        compacted: i64,
    },
    /// The requested revision is newer than anything stored.
    #[error("revision {requested} is in the future (current is {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: i64,
        /// The current revision.
        current: i64,
    },
    /// The backend did not answer in time (a frozen or partitioned etcd).
    #[error("the storage did not answer a {operation} within {seconds} s")]
    Timeout {
        /// What was asked (`get`, `list`, `create`, ...).
        operation: &'static str,
        /// The deadline it missed.
        seconds: u64,
    },
    /// The backend cannot be reached at all (no etcd member answers).
    #[error("the storage is unavailable: {0}")]
    Unavailable(String),
    /// The backend refuses a value this large (etcd's `--max-request-bytes`).
    #[error("the storage refuses a value this large: {0}")]
    TooLarge(String),
    /// A stored value cannot be decrypted: no provider of the encryption configuration
    /// reads it, or it was altered.
    #[error("{0}")]
    Unreadable(String),
    /// The backend failed (I/O, connection, corruption).
    #[error("storage backend: {0}")]
    Backend(String),
}

/// Result of a storage call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One stored key at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key.
    pub key: String,
    /// The stored bytes (JSON for the apiserver).
    pub value: Bytes,
    /// Revision at which the key was created (since its last deletion).
    pub create_revision: i64,
    /// Revision of the last write to the key.
    pub mod_revision: i64,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The key was created or updated; `kv.mod_revision` is the event's revision.
    Put {
        /// The new value.
        kv: KeyValue,
    },
    /// The key was deleted at `revision`.
    Delete {
        /// The deleted key.
        key: String,
        /// The revision of the deletion.
        revision: i64,
    },
}

impl Event {
    /// The revision at which this change happened.
    pub fn revision(&self) -> i64 {
        match self {
            Event::Put { kv } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }

    /// The key that changed.
    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv } => &kv.key,
            Event::Delete { key, .. } => key,
        }
    }
}

/// A range read.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    /// Only keys that start with this prefix.
    pub prefix: String,
    /// Start at this key (inclusive); empty means the start of the prefix.
    pub start: String,
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
    /// Read at this revision; 0 means the latest.
    pub revision: i64,
}

/// The answer to a [`ListRequest`].
#[derive(Debug, Clone)]
pub struct ListResponse {
    /// The keys, in key order.
    pub items: Vec<KeyValue>,
    /// The revision the read was served at.
    pub revision: i64,
    /// Whether more keys follow the last one returned.
    pub more: bool,
}

/// A stream of changes, in revision order. It ends with an error when it cannot go on
/// (compaction, a lagging consumer, a lost connection): the consumer lists again.
pub type WatchStream = BoxStream<'static, Result<Event>>;

/// A key-value store with etcd's revision semantics.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key at the latest revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Reads a range of keys, at the latest or a given revision.
    async fn list(&self, req: ListRequest) -> Result<ListResponse>;

    /// Writes a key that must not exist yet; returns the new revision.
    async fn create(&self, key: &str, value: Bytes) -> Result<i64>;

    /// Overwrites a key whose mod revision is still `expected`; returns the new revision.
    async fn update(&self, key: &str, value: Bytes, expected: i64) -> Result<i64>;

    /// Deletes a key, if `expected` is given only while its mod revision is still that.
    /// Returns the revision of the deletion and the value that was deleted.
    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<(i64, KeyValue)>;

    /// Streams every change under `prefix` from revision `from` (inclusive) on.
    async fn watch(&self, prefix: &str, from: i64) -> Result<WatchStream>;

    /// Forgets history before `revision`: reads and watches from older revisions fail.
    async fn compact(&self, revision: i64) -> Result<()>;

    /// The latest revision of the whole store.
    async fn current_revision(&self) -> Result<i64>;
}

/// The first key after every key that starts with `prefix` (etcd's range end for a prefix).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // An empty prefix (or all 0xff) means "to the end of the keyspace": etcd spells it "\0".
    vec![0]
}

/// The resource a storage key belongs to, as upstream names it (`pods`, `deployments.apps`)
/// in the metrics' `type` label and in an encryption configuration; empty for no key.
pub fn resource_of(key: &str) -> String {
    let Some(rest) = key.strip_prefix("/registry/") else {
        return String::new();
    };
    let mut segments = rest.split('/');
    let first = segments.next().unwrap_or_default();
    // A group's resources are stored under `{group}/{plural}` (custom resources, CRDs).
    if first.contains('.') {
        let plural = segments.next().unwrap_or_default();
        return format!("{plural}.{first}");
    }
    let storage = first;
    static BUILT_IN: std::sync::OnceLock<std::collections::HashMap<String, String>> = std::sync::OnceLock::new();
    let labels = BUILT_IN
        .get_or_init(|| crate::registry::builtins().iter().map(|r| (r.storage.to_string(), r.qualified())).collect());
    labels.get(storage).cloned().unwrap_or_else(|| storage.to_owned())
}
