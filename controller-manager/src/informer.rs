//! Watch → cache: an informer keeps every object of one kind in memory from a kube-runtime
//! watcher, indexes them by owner uid, and tells a handler what changed so that the
//! controllers can queue the keys to reconcile. One task writes; everyone else reads.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};
use parking_lot::RwLock;
use serde::de::DeserializeOwned;

/// `namespace/name` (or `name` for cluster-scoped objects).
pub fn key_of<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", meta.name.as_deref().unwrap_or_default()),
        _ => meta.name.clone().unwrap_or_default(),
    }
}

/// What changed, for the handler: the object now (or last seen, when deleted) and before.
pub struct Change<'a, K> {
    /// The object.
    pub object: &'a K,
    /// The previous version, if there was one.
    pub old: Option<&'a K>,
    /// Whether it was deleted.
    pub deleted: bool,
}

type Handler<K> = Box<dyn Fn(Change<'_, K>) + Send + Sync>;

/// The in-memory copy of one kind.
pub struct Informer<K> {
    objects: RwLock<HashMap<String, Arc<K>>>,
    by_owner: RwLock<HashMap<String, HashSet<String>>>,
    synced: tokio::sync::watch::Sender<bool>,
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    /// Starts watching `api`; `handlers` hear of every change after the cache has it.
    pub fn start(tasks: &crate::Tasks, api: Api<K>, handlers: Vec<Handler<K>>) -> Arc<Informer<K>> {
        Self::start_trimmed(tasks, api, |_| {}, handlers)
    }

    /// As [`Informer::start`], keeping only what `trim` leaves of each object: the
    /// controllers must not need (or write back) what it drops.
    pub fn start_trimmed(
        tasks: &crate::Tasks,
        api: Api<K>,
        trim: fn(&mut K),
        handlers: Vec<Handler<K>>,
    ) -> Arc<Informer<K>> {
        let informer = Arc::new(Informer {
            objects: RwLock::new(HashMap::new()),
            by_owner: RwLock::new(HashMap::new()),
            synced: tokio::sync::watch::channel(false).0,
        });
        let me = informer.clone();
        tasks.spawn(async move {
            let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
            let mut relist: Option<HashSet<String>> = None;
            while let Some(event) = stream.next().await {
                let event = event.map(|e| {
                    e.modify(|obj| {
                        obj.meta_mut().managed_fields = None;
                        trim(obj);
                    })
                });
                match event {
                    Ok(Event::Init) => relist = Some(HashSet::new()),
                    Ok(Event::InitApply(obj)) => {
                        if let Some(seen) = &mut relist {
                            seen.insert(key_of(&obj));
                        }
                        me.apply(obj, &handlers);
                    }
                    Ok(Event::InitDone) => {
                        if let Some(seen) = relist.take() {
                            let gone: Vec<Arc<K>> = me
                                .objects
                                .read()
                                .iter()
                                .filter(|(k, _)| !seen.contains(*k))
                                .map(|(_, o)| o.clone())
                                .collect();
                            for obj in gone {
                                me.remove(&obj, &handlers);
                            }
                        }
                        me.synced.send_replace(true);
                    }
                    Ok(Event::Apply(obj)) => me.apply(obj, &handlers),
                    Ok(Event::Delete(obj)) => me.remove(&obj, &handlers),
                    Err(e) => tracing::warn!(error = %e, "watch error; the watcher retries"),
                }
            }
        });
        informer
    }

    fn owners(obj: &K) -> Vec<String> {
        obj.owner_references().iter().map(|r| r.uid.clone()).collect()
    }

    fn apply(&self, obj: K, handlers: &[Handler<K>]) {
        let key = key_of(&obj);
        let obj = Arc::new(obj);
        let old = self.objects.write().insert(key.clone(), obj.clone());
        {
            let mut index = self.by_owner.write();
            if let Some(old) = &old {
                for uid in Self::owners(old) {
                    if let Some(set) = index.get_mut(&uid) {
                        set.remove(&key);
                    }
                }
            }
            for uid in Self::owners(&obj) {
                index.entry(uid).or_default().insert(key.clone());
            }
        }
        for h in handlers {
            h(Change { object: &obj, old: old.as_deref(), deleted: false });
        }
    }

    fn remove(&self, obj: &K, handlers: &[Handler<K>]) {
        let key = key_of(obj);
        let old = self.objects.write().remove(&key);
        {
            let mut index = self.by_owner.write();
            for uid in Self::owners(obj) {
                if let Some(set) = index.get_mut(&uid) {
                    set.remove(&key);
                    if set.is_empty() {
                        index.remove(&uid);
                    }
                }
            }
        }
        for h in handlers {
            h(Change { object: old.as_deref().unwrap_or(obj), old: None, deleted: true });
        }
    }

    /// Waits until the first list is in.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// One object by key.
    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.objects.read().get(key).cloned()
    }

    /// Every object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.objects.read().values().cloned().collect()
    }

    /// The objects in one namespace.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let prefix = format!("{namespace}/");
        self.objects.read().iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(_, o)| o.clone()).collect()
    }

    /// The objects that name `uid` among their owners.
    pub fn owned_by(&self, uid: &str) -> Vec<Arc<K>> {
        let keys: Vec<String> = self.by_owner.read().get(uid).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        let objects = self.objects.read();
        keys.iter().filter_map(|k| objects.get(k).cloned()).collect()
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.objects.read().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The controller owner reference of an object, if any.
pub fn controller_of<K: Resource>(obj: &K) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    obj.meta().owner_references.as_ref()?.iter().find(|r| r.controller == Some(true))
}
