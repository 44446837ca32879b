//! One conformance suite for every [`Store`] backend. The embedded store always runs; the
//! etcd store runs when `ETCD_ENDPOINTS` names a running etcd, and under `CI=true` its
//! absence is a failure, not a skip.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::embedded::EmbeddedStore;
use super::etcd::EtcdStore;
use super::{Error, Event, ListRequest, Store};

/// A fresh store and a key prefix no other test uses.
pub(crate) struct Backend {
    pub store: Arc<dyn Store>,
    pub prefix: String,
    _dir: Option<tempfile::TempDir>,
}

pub(crate) fn embedded(test: &str) -> Backend {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path()).expect("open embedded store");
    Backend { store: Arc::new(store), prefix: format!("/{test}/"), _dir: Some(dir) }
}

/// Connects to the etcd named by `ETCD_ENDPOINTS`, or says why it cannot.
pub(crate) async fn etcd(test: &str) -> Option<Backend> {
    let Ok(endpoints) = std::env::var("ETCD_ENDPOINTS") else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but ETCD_ENDPOINTS is not set: .ci/run must start etcd");
        }
        eprintln!("skipping the etcd backend of {test}: ETCD_ENDPOINTS is not set (run ./test.sh to start etcd)");
        return None;
    };
    let endpoints: Vec<String> = endpoints.split(',').map(str::to_owned).collect();
    let store = EtcdStore::connect(&endpoints).await.expect("connect to etcd");
    let unique = uuid::Uuid::new_v4();
    Some(Backend { store: Arc::new(store), prefix: format!("/{test}-{unique}/"), _dir: None })
}

/// Compaction is global in a shared etcd: it must not run while another test reads history.
static HISTORY: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded_backend {
            $(#[tokio::test] async fn $name() { super::$name(super::embedded(stringify!($name))).await; })*
        }
        mod etcd_backend {
            $(#[tokio::test] async fn $name() {
                if let Some(b) = super::etcd(stringify!($name)).await {
                    if stringify!($name).starts_with("compaction") {
                        let _exclusive = super::HISTORY.write().await;
                        super::$name(b).await;
                    } else {
                        let _shared = super::HISTORY.read().await;
                        super::$name(b).await;
                    }
                }
            })*
        }
    };
}

conformance!(
    create_get_and_duplicate,
    update_is_compare_and_swap,
    delete_is_guarded_and_returns_the_value,
    list_pages_in_key_order,
    list_at_an_old_revision,
    watch_replays_then_follows,
    compaction_expires_old_revisions,
);

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn create_get_and_duplicate(t: Backend) {
    let key = format!("{}a", t.prefix);
    let rev = t.store.create(&key, b("one")).await.expect("create");
    let kv = t.store.get(&key).await.expect("get").expect("present");
    assert_eq!(kv.value, b("one"));
    assert_eq!(kv.mod_revision, rev);
    assert_eq!(kv.create_revision, rev);
    assert!(matches!(t.store.create(&key, b("two")).await, Err(Error::AlreadyExists { .. })));
    assert_eq!(t.store.get(&key).await.expect("get").expect("present").value, b("one"));
    assert!(t.store.get(&format!("{}missing", t.prefix)).await.expect("get").is_none());
    assert!(t.store.current_revision().await.expect("revision") >= rev);
}

async fn update_is_compare_and_swap(t: Backend) {
    let key = format!("{}a", t.prefix);
    let r1 = t.store.create(&key, b("one")).await.expect("create");
    let r2 = t.store.update(&key, b("two"), r1).await.expect("update");
    assert!(r2 > r1);
    match t.store.update(&key, b("three"), r1).await {
        Err(Error::Conflict { expected, actual, .. }) => assert_eq!((expected, actual), (r1, r2)),
        other => panic!("stale update: {other:?}"),
    }
    let kv = t.store.get(&key).await.expect("get").expect("present");
    assert_eq!((kv.value, kv.mod_revision, kv.create_revision), (b("two"), r2, r1));
    assert!(matches!(t.store.update(&format!("{}nope", t.prefix), b("x"), 1).await, Err(Error::NotFound { .. })));
}

async fn delete_is_guarded_and_returns_the_value(t: Backend) {
    let key = format!("{}a", t.prefix);
    let r1 = t.store.create(&key, b("one")).await.expect("create");
    assert!(matches!(t.store.delete(&key, Some(r1 - 1)).await, Err(Error::Conflict { .. })));
    let (rev, old) = t.store.delete(&key, Some(r1)).await.expect("delete");
    assert!(rev > r1);
    assert_eq!(old.value, b("one"));
    assert!(t.store.get(&key).await.expect("get").is_none());
    assert!(matches!(t.store.delete(&key, None).await, Err(Error::NotFound { .. })));
    // A key can be created again after deletion.
    let r3 = t.store.create(&key, b("again")).await.expect("re-create");
    assert_eq!(t.store.get(&key).await.expect("get").expect("present").create_revision, r3);
}

async fn list_pages_in_key_order(t: Backend) {
    for name in ["c", "a", "e", "b", "d"] {
        t.store.create(&format!("{}{name}", t.prefix), b(name)).await.expect("create");
    }
    // A sibling prefix must not leak into the list.
    let sibling = format!("{}x", t.prefix.trim_end_matches('/'));
    t.store.create(&sibling, b("sibling")).await.expect("create sibling");
    let all = t.store.list(ListRequest { prefix: t.prefix.clone(), ..Default::default() }).await.expect("list");
    let names: Vec<_> = all.items.iter().map(|kv| kv.value.clone()).collect();
    assert_eq!(names, vec![b("a"), b("b"), b("c"), b("d"), b("e")]);
    assert!(!all.more);

    let mut seen = Vec::new();
    let mut start = String::new();
    loop {
        let page = t
            .store
            .list(ListRequest { prefix: t.prefix.clone(), start: start.clone(), limit: 2, revision: all.revision })
            .await
            .expect("page");
        assert_eq!(page.revision, all.revision);
        seen.extend(page.items.iter().map(|kv| kv.value.clone()));
        match page.items.last() {
            Some(last) if page.more => start = format!("{}\0", last.key),
            _ => break,
        }
    }
    assert_eq!(seen, names);
}

async fn list_at_an_old_revision(t: Backend) {
    let p = &t.prefix;
    let ra = t.store.create(&format!("{p}a"), b("a1")).await.expect("create a");
    t.store.create(&format!("{p}b"), b("b1")).await.expect("create b");
    let snapshot = t.store.current_revision().await.expect("revision");
    t.store.update(&format!("{p}a"), b("a2"), ra).await.expect("update a");
    t.store.delete(&format!("{p}b"), None).await.expect("delete b");
    t.store.create(&format!("{p}c"), b("c1")).await.expect("create c");

    let old = t
        .store
        .list(ListRequest { prefix: p.clone(), revision: snapshot, ..Default::default() })
        .await
        .expect("old list");
    let values: Vec<_> = old.items.iter().map(|kv| kv.value.clone()).collect();
    assert_eq!(values, vec![b("a1"), b("b1")]);
    let now = t.store.list(ListRequest { prefix: p.clone(), ..Default::default() }).await.expect("list");
    let values: Vec<_> = now.items.iter().map(|kv| kv.value.clone()).collect();
    assert_eq!(values, vec![b("a2"), b("c1")]);
}

async fn watch_replays_then_follows(t: Backend) {
    let p = &t.prefix;
    let r1 = t.store.create(&format!("{p}a"), b("a1")).await.expect("create");
    let mut watch = t.store.watch(p, r1).await.expect("watch");
    t.store.update(&format!("{p}a"), b("a2"), r1).await.expect("update");
    t.store.create(&format!("{p}b"), b("b1")).await.expect("create b");
    t.store.create(&format!("{}other/x", p.trim_end_matches('/')), b("no")).await.expect("other prefix");
    t.store.delete(&format!("{p}a"), None).await.expect("delete");

    let mut got = Vec::new();
    while got.len() < 4 {
        let next = tokio::time::timeout(Duration::from_secs(5), watch.next()).await;
        let event = next.expect("event in time").expect("stream open").expect("event");
        got.push(event);
    }
    let revisions: Vec<_> = got.iter().map(Event::revision).collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "revisions in order: {revisions:?}");
    match (&got[0], &got[1], &got[2], &got[3]) {
        (Event::Put { kv: a1 }, Event::Put { kv: a2 }, Event::Put { kv: b1 }, Event::Delete { key, .. }) => {
            assert_eq!((a1.value.clone(), a2.value.clone(), b1.value.clone()), (b("a1"), b("a2"), b("b1")));
            assert_eq!(key, &format!("{p}a"));
        }
        other => panic!("unexpected events {other:?}"),
    }
}

async fn compaction_expires_old_revisions(t: Backend) {
    let p = &t.prefix;
    let r1 = t.store.create(&format!("{p}a"), b("a1")).await.expect("create");
    let r2 = t.store.update(&format!("{p}a"), b("a2"), r1).await.expect("update");
    t.store.create(&format!("{p}gone"), b("x")).await.expect("create");
    t.store.delete(&format!("{p}gone"), None).await.expect("delete");
    let r3 = t.store.update(&format!("{p}a"), b("a3"), r2).await.expect("update");
    t.store.compact(r3).await.expect("compact");

    let err = t.store.list(ListRequest { prefix: p.clone(), revision: r1, ..Default::default() }).await;
    assert!(matches!(err, Err(Error::Compacted { .. })), "old list: {err:?}");
    let watch = t.store.watch(p, r1).await;
    let first = match watch {
        Err(e) => Some(e),
        Ok(mut s) => match tokio::time::timeout(Duration::from_secs(5), s.next()).await {
            Ok(Some(Err(e))) => Some(e),
            _ => None,
        },
    };
    assert!(matches!(first, Some(Error::Compacted { .. })), "old watch: {first:?}");
    let now = t.store.list(ListRequest { prefix: p.clone(), ..Default::default() }).await.expect("list");
    assert_eq!(now.items.len(), 1);
    assert_eq!(now.items[0].value, b("a3"));
    let at =
        t.store.list(ListRequest { prefix: p.clone(), revision: r3, ..Default::default() }).await.expect("list at r3");
    assert_eq!(at.items.len(), 1);
}
