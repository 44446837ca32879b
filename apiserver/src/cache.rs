//! The watch cache: one storage watch per stored resource, kept as an in-memory map plus a
//! window of recent events, fanned out to every client watch and serving lists at
//! `resourceVersion=0`. Each object is decoded once when its event arrives; lists and
//! watches then send the cached JSON bytes as they are.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::registry::{Resource, SelectableField};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{self, Event, ListRequest, Store};

/// One object as the cache holds it.
#[derive(Debug)]
pub struct Cached {
    /// The storage key.
    pub key: String,
    /// The revision of its last change (its `resourceVersion`).
    pub revision: i64,
    /// The stored form as JSON, `resourceVersion` included.
    pub json: Bytes,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its selectable fields.
    pub fields: Vec<(&'static str, String)>,
}

impl Cached {
    fn build(key: String, revision: i64, value: &[u8], fields: &[SelectableField]) -> Option<Cached> {
        let mut obj: Value = serde_json::from_slice(value).ok()?;
        let json = match crate::meta::splice_resource_version(value, revision) {
            Some(spliced) => Bytes::from(spliced),
            None => {
                crate::meta::set_resource_version(&mut obj, revision);
                Bytes::from(serde_json::to_vec(&obj).ok()?)
            }
        };
        let mut selectable = Vec::with_capacity(fields.len() + 2);
        selectable.push(("metadata.name", crate::meta::meta_str(&obj, "name").unwrap_or_default().to_owned()));
        selectable
            .push(("metadata.namespace", crate::meta::meta_str(&obj, "namespace").unwrap_or_default().to_owned()));
        for (name, path, default) in fields {
            selectable.push((*name, crate::selector::field_value(&obj, path).unwrap_or_else(|| (*default).to_owned())));
        }
        Some(Cached { key, revision, json, labels: crate::selector::labels(&obj), fields: selectable })
    }

    /// Decodes a stored object, with the selectable fields of `resource`.
    pub fn from_stored(key: String, revision: i64, value: &[u8], resource: &Resource) -> Option<Cached> {
        Cached::build(key, revision, value, resource.fields)
    }

    /// The value of a selectable field.
    pub fn field(&self, name: &str) -> Option<String> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
    }

    /// The object decoded.
    pub fn value(&self) -> Option<Value> {
        serde_json::from_slice(&self.json).ok()
    }
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl Kind {
    /// The watch event type.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Added => "ADDED",
            Kind::Modified => "MODIFIED",
            Kind::Deleted => "DELETED",
        }
    }
}

/// One change, with the object before it.
#[derive(Debug)]
pub struct CacheEvent {
    /// What happened.
    pub kind: Kind,
    /// The object after (for a deletion: the last state, at the deletion's revision).
    pub object: Arc<Cached>,
    /// The object before, if it existed.
    pub prev: Option<Arc<Cached>>,
    /// The watch line of this change as each kind of event, encoded once for every
    /// watcher that sees it so (a selector can make a change ADDED or DELETED for one
    /// watcher and MODIFIED for another).
    lines: [std::sync::OnceLock<Bytes>; 3],
}

impl CacheEvent {
    /// A change.
    pub fn new(kind: Kind, object: Arc<Cached>, prev: Option<Arc<Cached>>) -> CacheEvent {
        CacheEvent { kind, object, prev, lines: Default::default() }
    }

    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        self.object.revision
    }

    /// The stored object as a watch line of `kind`, built by `encode` the first time any
    /// watcher asks: thousands of watchers of one change share one buffer.
    pub fn line(&self, kind: Kind, encode: impl FnOnce() -> Bytes) -> Bytes {
        let slot = match kind {
            Kind::Added => 0,
            Kind::Modified => 1,
            Kind::Deleted => 2,
        };
        self.lines[slot].get_or_init(encode).clone()
    }
}

/// Which objects a list or watch wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this namespace's objects.
    pub namespace: Option<String>,
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
}

impl Filter {
    /// Whether an object passes.
    pub fn matches(&self, obj: &Cached) -> bool {
        if let Some(ns) = &self.namespace
            && obj.field("metadata.namespace").as_deref() != Some(ns.as_str())
        {
            return false;
        }
        self.labels.matches(&obj.labels) && self.fields.matches(&|f| obj.field(f))
    }

    /// What a watcher with this filter sees of an event, if anything: an object that
    /// starts matching is ADDED to it, one that stops matching is DELETED for it.
    pub fn view(&self, ev: &CacheEvent) -> Option<Kind> {
        let now = ev.kind != Kind::Deleted && self.matches(&ev.object);
        let before = match ev.kind {
            Kind::Deleted => self.matches(&ev.object),
            _ => ev.prev.as_ref().is_some_and(|p| self.matches(p)),
        };
        match (before, now) {
            (false, true) => Some(Kind::Added),
            (true, true) => Some(Kind::Modified),
            (true, false) => Some(Kind::Deleted),
            (false, false) => None,
        }
    }
}

/// Why a cache read could not be served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The requested revision is older than the cache's window of events.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired {
        /// The revision asked for.
        requested: i64,
        /// The oldest revision the window can replay from.
        oldest: i64,
    },
    /// The cache has not finished its first list yet.
    #[error("the watch cache is not ready yet")]
    NotReady,
}

struct State {
    objects: BTreeMap<String, Arc<Cached>>,
    revision: i64,
    history: VecDeque<Arc<CacheEvent>>,
    /// About how many bytes the events in `history` keep alive.
    history_bytes: usize,
    /// Watches from this revision or later can be replayed from `history`.
    floor: i64,
    /// Live events go out as weak references: `history` alone keeps events alive, so its
    /// bounds (count and bytes) bound the memory of every watcher's backlog too. A watcher
    /// whose next event was dropped from `history` has fallen behind and is closed.
    tx: broadcast::Sender<Weak<CacheEvent>>,
    ready: bool,
}

/// The bytes an event keeps alive: the object after and before.
fn event_bytes(ev: &CacheEvent) -> usize {
    ev.object.json.len() + ev.prev.as_ref().map_or(0, |p| p.json.len())
}

/// Every object of a cache at one revision.
pub type Snapshot = [Arc<Cached>];

/// What a watch sends before the live events.
pub enum Initial {
    /// The current objects, as ADDED events: a snapshot shared by every watch that starts
    /// at the same revision (thousands of kubelets starting at once cost one copy).
    Objects(Arc<Snapshot>),
    /// The events after the watch's resource version.
    Events(Vec<Arc<CacheEvent>>),
}

/// The start of a client watch: events to send first, then the live receiver.
pub struct Subscription {
    /// What to send before the live events.
    pub initial: Initial,
    /// Live events; one that no longer upgrades was dropped from the history before this
    /// watcher got to it.
    pub live: broadcast::Receiver<Weak<CacheEvent>>,
    /// The cache's revision when the watch started.
    pub revision: i64,
}

/// How much history a cache keeps for watches that resume.
#[derive(Debug, Clone, Copy)]
pub struct HistoryLimit {
    /// Events (`--watch-cache-size`).
    pub events: usize,
    /// Bytes of the objects those events hold (`--watch-cache-bytes`); at least the newest
    /// event is always kept.
    pub bytes: usize,
}

/// The cache of one stored resource.
pub struct WatchCache {
    prefix: String,
    fields: Vec<SelectableField>,
    limit: HistoryLimit,
    state: RwLock<State>,
    /// The last snapshot handed to watches, while any of them still sends it.
    snapshot: Mutex<Option<(i64, Weak<Snapshot>)>>,
    ready: tokio::sync::watch::Sender<bool>,
    /// Why the last fill failed, when a stored value cannot be read (an encryption key
    /// that is not configured): a server that starts waits for this or for `ready`.
    unreadable: tokio::sync::watch::Sender<Option<String>>,
}

impl WatchCache {
    /// A cache for every resource stored under `resource.storage`; `fields` is the union of
    /// what their field selectors may name. Call [`WatchCache::run`] to fill it.
    pub fn new(resource: &Resource, fields: Vec<SelectableField>, limit: HistoryLimit) -> Arc<WatchCache> {
        let (tx, _) = broadcast::channel(limit.events.max(16));
        Arc::new(WatchCache {
            prefix: resource.prefix(),
            fields,
            limit,
            state: RwLock::new(State {
                objects: BTreeMap::new(),
                revision: 0,
                history: VecDeque::new(),
                history_bytes: 0,
                floor: 0,
                tx,
                ready: false,
            }),
            snapshot: Mutex::new(None),
            ready: tokio::sync::watch::channel(false).0,
            unreadable: tokio::sync::watch::channel(None).0,
        })
    }

    /// Keeps the cache in step with storage forever: list, then watch; after any watch
    /// failure, list again (client watches are closed and resume from their revision).
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>) {
        loop {
            if let Err(e) = self.sync(store.as_ref()).await {
                if let store::Error::Unreadable(why) = &e {
                    self.unreadable.send_replace(Some(why.clone()));
                }
                tracing::warn!(prefix = %self.prefix, error = %e, "watch cache lost its storage watch; listing again");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn sync(&self, store: &dyn Store) -> Result<(), store::Error> {
        let mut objects = BTreeMap::new();
        let mut start = String::new();
        let mut revision = 0;
        loop {
            let page = store
                .list(ListRequest { prefix: self.prefix.clone(), start: start.clone(), limit: 10_000, revision })
                .await?;
            revision = page.revision;
            for kv in &page.items {
                if let Some(c) = Cached::build(kv.key.clone(), kv.mod_revision, &kv.value, &self.fields) {
                    objects.insert(kv.key.clone(), Arc::new(c));
                }
            }
            match page.items.last() {
                Some(last) if page.more => start = format!("{}\0", last.key),
                _ => break,
            }
        }
        let mut watch = store.watch(&self.prefix, revision + 1).await?;
        {
            let mut state = self.state.write();
            let (tx, _) = broadcast::channel(self.limit.events.max(16));
            // Replacing the sender ends every client watch on the old state.
            *state = State {
                objects,
                revision,
                history: VecDeque::new(),
                history_bytes: 0,
                floor: revision,
                tx,
                ready: true,
            };
        }
        *self.snapshot.lock() = None;
        self.ready.send_replace(true);
        while let Some(event) = watch.next().await {
            self.apply(event?);
        }
        Err(store::Error::Backend("storage watch ended".into()))
    }

    fn apply(&self, event: Event) {
        let revision = event.revision();
        let built = match &event {
            Event::Put { kv } => Cached::build(kv.key.clone(), revision, &kv.value, &self.fields),
            Event::Delete { .. } => None,
        };
        let mut state = self.state.write();
        let ev = match (event, built) {
            (Event::Put { kv }, Some(obj)) => {
                let obj = Arc::new(obj);
                let prev = state.objects.insert(kv.key, obj.clone());
                let kind = if prev.is_some() { Kind::Modified } else { Kind::Added };
                CacheEvent::new(kind, obj, prev)
            }
            (Event::Put { kv }, None) => {
                tracing::error!(key = %kv.key, "stored object is not valid JSON; the cache skips it");
                state.revision = revision;
                return;
            }
            (Event::Delete { key, .. }, _) => {
                let Some(prev) = state.objects.remove(&key) else {
                    state.revision = revision;
                    return;
                };
                let last = Cached::build(key.clone(), revision, &prev.json, &self.fields).unwrap_or_else(|| Cached {
                    key,
                    revision,
                    json: prev.json.clone(),
                    labels: prev.labels.clone(),
                    fields: prev.fields.clone(),
                });
                CacheEvent::new(Kind::Deleted, Arc::new(last), Some(prev))
            }
        };
        let ev = Arc::new(ev);
        state.revision = revision;
        state.history_bytes += event_bytes(&ev);
        let weak = Arc::downgrade(&ev);
        state.history.push_back(ev);
        while state.history.len() > self.limit.events
            || (state.history_bytes > self.limit.bytes && state.history.len() > 1)
        {
            if let Some(old) = state.history.pop_front() {
                state.history_bytes -= event_bytes(&old);
                state.floor = old.revision();
            }
        }
        let _ = state.tx.send(weak);
    }

    /// How many events and bytes the history holds now.
    pub fn history_size(&self) -> (usize, usize) {
        let state = self.state.read();
        (state.history.len(), state.history_bytes)
    }

    /// Waits until the first list has filled the cache.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// Waits for the first fill; an error says which stored value could not be read.
    pub async fn first_fill(&self) -> Result<(), String> {
        let mut ready = self.ready.subscribe();
        let mut unreadable = self.unreadable.subscribe();
        tokio::select! {
            _ = ready.wait_for(|ready| *ready) => Ok(()),
            why = unreadable.wait_for(Option::is_some) => {
                Err(why.ok().and_then(|w| w.clone()).unwrap_or_default())
            }
        }
    }

    /// The object under `key`, if the cache holds it.
    pub fn get(&self, key: &str) -> Option<Arc<Cached>> {
        self.state.read().objects.get(key).cloned()
    }

    /// Waits (up to `within`) until the cache has seen `revision`: a write that later
    /// requests check against the cache (namespace state) uses this to read its own write.
    pub async fn wait_for(&self, revision: i64, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.revision() < revision && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The key prefix of the objects it holds (`/registry/pods/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The revision the cache has seen up to.
    pub fn revision(&self) -> i64 {
        self.state.read().revision
    }

    /// How many objects it holds.
    pub fn len(&self) -> usize {
        self.state.read().objects.len()
    }

    /// Whether it holds no objects.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The objects that pass `filter`, in key order, and the revision they are at.
    pub fn list(&self, filter: &Filter) -> Result<(Vec<Arc<Cached>>, i64), Error> {
        let state = self.state.read();
        if !state.ready {
            return Err(Error::NotReady);
        }
        let range_start = match &filter.namespace {
            Some(ns) => format!("{}{ns}/", self.prefix),
            None => self.prefix.clone(),
        };
        let items = state
            .objects
            .range(range_start.clone()..)
            .take_while(|(k, _)| k.starts_with(&range_start))
            .filter(|(_, o)| filter.matches(o))
            .map(|(_, o)| o.clone())
            .collect();
        Ok((items, state.revision))
    }

    /// Starts a client watch: from `from` (replaying the events after it), or with the
    /// current objects as ADDED events when `from` is `None`.
    pub fn subscribe(&self, from: Option<i64>) -> Result<Subscription, Error> {
        let state = self.state.read();
        if !state.ready {
            return Err(Error::NotReady);
        }
        let initial = match from {
            None => {
                let mut memo = self.snapshot.lock();
                let shared = memo.as_ref().filter(|(rev, _)| *rev == state.revision).and_then(|(_, w)| w.upgrade());
                let objects = match shared {
                    Some(objects) => objects,
                    None => {
                        let objects: Arc<Snapshot> = state.objects.values().cloned().collect();
                        *memo = Some((state.revision, Arc::downgrade(&objects)));
                        objects
                    }
                };
                Initial::Objects(objects)
            }
            Some(rv) if rv < state.floor => return Err(Error::Expired { requested: rv, oldest: state.floor }),
            Some(rv) => {
                let skip = state.history.partition_point(|e| e.revision() <= rv);
                Initial::Events(state.history.iter().skip(skip).cloned().collect())
            }
        };
        Ok(Subscription { initial, live: state.tx.subscribe(), revision: state.revision })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KeyValue;

    fn cache(events: usize, bytes: usize) -> Arc<WatchCache> {
        let resource = crate::registry::Registry::default().find("", "v1", "configmaps").expect("configmaps");
        let cache = WatchCache::new(&resource, Vec::new(), HistoryLimit { events, bytes });
        cache.state.write().ready = true;
        cache
    }

    fn put(cache: &WatchCache, name: &str, revision: i64, size: usize) {
        let value =
            serde_json::json!({"metadata": {"name": name, "namespace": "default"}, "data": {"a": "x".repeat(size)}});
        let kv = KeyValue {
            key: format!("/registry/configmaps/default/{name}"),
            value: Bytes::from(value.to_string()),
            create_revision: revision,
            mod_revision: revision,
        };
        cache.apply(Event::Put { kv });
    }

    #[test]
    fn history_is_bounded_by_bytes_and_a_slow_watcher_is_let_go() {
        let cache = cache(1000, 1 << 20);
        let mut slow = cache.subscribe(Some(0)).expect("watch");
        for rev in 1..=50 {
            put(&cache, "big", rev, 100_000);
        }
        let (events, bytes) = cache.history_size();
        // Each event holds the object after and before: about 200 KB.
        assert!(events <= 6 && bytes <= 1 << 20, "{events} events, {bytes} bytes");
        assert!(cache.subscribe(Some(1)).is_err(), "a resume from before the window is 410");
        // The slow watcher's first events are gone: it sees a dead reference, not a
        // 100 KB object the history no longer pays for.
        let first = slow.live.try_recv().expect("an event");
        assert!(first.upgrade().is_none());
    }

    #[test]
    fn the_newest_event_stays_even_when_larger_than_the_budget() {
        let cache = cache(1000, 10);
        put(&cache, "huge", 1, 1000);
        assert_eq!(cache.history_size().0, 1);
        assert_eq!(
            cache.subscribe(Some(0)).map(|s| matches!(s.initial, Initial::Events(ref e) if e.len() == 1)).ok(),
            Some(true)
        );
    }

    #[test]
    fn watches_from_now_share_one_snapshot() {
        let cache = cache(1000, 1 << 20);
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            put(&cache, name, i as i64 + 1, 10);
        }
        let snapshot = |s: Subscription| match s.initial {
            Initial::Objects(o) => o,
            Initial::Events(_) => panic!("a watch from now starts with the objects"),
        };
        let one = snapshot(cache.subscribe(None).expect("watch"));
        let two = snapshot(cache.subscribe(None).expect("watch"));
        assert_eq!(one.len(), 3);
        assert!(Arc::ptr_eq(&one, &two), "the same snapshot");
        put(&cache, "d", 4, 10);
        let three = snapshot(cache.subscribe(None).expect("watch"));
        assert_eq!(three.len(), 4, "a new revision, a new snapshot");
    }
}
