//! The embedded store: an on-disk, crash-safe key-value store with etcd's revision
//! semantics, built on redb, in the apiserver's own process (kine's idea without SQL).
//!
//! Layout:
//! - `log`: revision -> record (key, create revision, previous revision of the key,
//!   tombstone flag, value). Every write appends one record, so the log is both the
//!   history that watches replay and the multi-version store that old reads walk.
//! - `current`: key -> (revision of its latest record, tombstone?).
//! - `meta`: the current and the compacted revision.
//!
//! All writes go through one writer thread that commits whatever has queued up in one
//! transaction (group commit): one fsync serves many concurrent writers, and every
//! acknowledged write is on disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::RwLock;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::BroadcastStream;

use super::{Error, Event, KeyValue, ListRequest, ListResponse, Result, Store, WatchStream};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const CURRENT: TableDefinition<&str, (u64, bool)> = TableDefinition::new("current");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";

/// Memory for redb's page cache. Its default, 1 GiB, would let the store alone take the
/// apiserver past the memory it is meant to stay under; the watch cache serves the reads
/// that matter from memory already.
const CACHE_BYTES: usize = 128 << 20;

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 4096;

fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend(e.to_string())
}

/// One version of a key in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    key: String,
    create_revision: u64,
    /// The revision of this key's previous record, 0 when there is none.
    prev_revision: u64,
    deleted: bool,
    value: Bytes,
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(21 + self.key.len() + self.value.len());
        out.push(u8::from(self.deleted));
        out.extend_from_slice(&self.create_revision.to_le_bytes());
        out.extend_from_slice(&self.prev_revision.to_le_bytes());
        out.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        out.extend_from_slice(self.key.as_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Record> {
        let corrupt = || Error::Backend("corrupt record in the embedded store's log".into());
        let u64_at = |at: usize| -> Result<u64> {
            let raw = bytes.get(at..at + 8).ok_or_else(corrupt)?;
            Ok(u64::from_le_bytes(raw.try_into().map_err(|_| corrupt())?))
        };
        let deleted = *bytes.first().ok_or_else(corrupt)? != 0;
        let create_revision = u64_at(1)?;
        let prev_revision = u64_at(9)?;
        let key_len_raw = bytes.get(17..21).ok_or_else(corrupt)?;
        let key_len = u32::from_le_bytes(key_len_raw.try_into().map_err(|_| corrupt())?) as usize;
        let key = bytes.get(21..21 + key_len).ok_or_else(corrupt)?;
        let key = std::str::from_utf8(key).map_err(|_| corrupt())?.to_owned();
        let value = Bytes::copy_from_slice(bytes.get(21 + key_len..).ok_or_else(corrupt)?);
        Ok(Record { key, create_revision, prev_revision, deleted, value })
    }

    fn into_kv(self, revision: u64) -> KeyValue {
        KeyValue {
            key: self.key,
            value: self.value,
            create_revision: self.create_revision as i64,
            mod_revision: revision as i64,
        }
    }
}

enum Op {
    Create { key: String, value: Bytes },
    Update { key: String, value: Bytes, expected: i64 },
    Delete { key: String, expected: Option<i64> },
    Compact { revision: i64 },
}

enum Outcome {
    Written(i64),
    Deleted(i64, KeyValue),
    Compacted,
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Outcome>>,
}

/// The open database, or none while it is being reopened after an I/O error. redb refuses
/// every request after one failed write ("Previous I/O error occurred") until it is closed
/// and opened again, so the writer does that instead of failing forever.
struct Slot {
    path: PathBuf,
    db: RwLock<Option<Arc<Database>>>,
    /// False from a write that failed for I/O until one commits again: readiness says so
    /// (upstream's apiserver is not ready while etcd is out of space either).
    writable: std::sync::atomic::AtomicBool,
}

impl Slot {
    fn get(&self) -> Result<Arc<Database>> {
        self.db.read().clone().ok_or_else(|| {
            Error::Unavailable(format!(
                "the embedded store {} is reopening after an I/O error (is the disk full?)",
                self.path.display()
            ))
        })
    }
}

/// The embedded store; cheap to share behind an `Arc`.
pub struct EmbeddedStore {
    slot: Arc<Slot>,
    writes: mpsc::UnboundedSender<Request>,
    events: broadcast::Sender<Arc<[Event]>>,
}

/// Opens the database file, refusing one that cannot be ours: a zero-byte file is what a
/// truncation leaves (redb would silently make it a new, empty cluster), and a damaged
/// one must be an error, never a panic.
fn open_db(path: &Path) -> Result<Database> {
    let restore = "restore it from a backup, or move it away to start an empty cluster";
    if let Ok(meta) = std::fs::metadata(path)
        && meta.len() == 0
    {
        return Err(Error::Backend(format!(
            "the store file {} is empty (0 bytes): it was truncated, not written by the apiserver; {restore}",
            path.display()
        )));
    }
    let opened = std::panic::catch_unwind(|| Database::builder().set_cache_size(CACHE_BYTES).create(path));
    let db = match opened {
        Ok(Ok(db)) => db,
        Ok(Err(e)) => return Err(Error::Backend(format!("opening {}: {e}; {restore}", path.display()))),
        Err(_) => {
            return Err(Error::Backend(format!(
                "the store file {} is damaged (reading it failed); {restore}",
                path.display()
            )));
        }
    };
    let txn = db.begin_write().map_err(backend)?;
    {
        txn.open_table(LOG).map_err(backend)?;
        txn.open_table(CURRENT).map_err(backend)?;
        let mut meta = txn.open_table(META).map_err(backend)?;
        if meta.get(META_REVISION).map_err(backend)?.is_none() {
            meta.insert(META_REVISION, 1).map_err(backend)?;
            meta.insert(META_COMPACTED, 0).map_err(backend)?;
        }
    }
    txn.commit().map_err(backend)?;
    Ok(db)
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<EmbeddedStore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Backend(format!("creating data dir {}: {e}", dir.display())))?;
        let path = dir.join("store.redb");
        let db = open_db(&path)?;
        let slot = Arc::new(Slot {
            path,
            db: RwLock::new(Some(Arc::new(db))),
            writable: std::sync::atomic::AtomicBool::new(true),
        });
        let (writes, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        let writer_slot = slot.clone();
        let writer_events = events.clone();
        std::thread::Builder::new()
            .name("embedded-store-writer".into())
            .spawn(move || writer(writer_slot, rx, writer_events))
            .map_err(backend)?;
        Ok(EmbeddedStore { slot, writes, events })
    }

    async fn submit(&self, op: Op) -> Result<Outcome> {
        let (reply, rx) = oneshot::channel();
        self.writes
            .send(Request { op, reply })
            .map_err(|_| Error::Backend("the embedded store's writer has stopped".into()))?;
        rx.await.map_err(|_| Error::Backend("the embedded store's writer has stopped".into()))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.slot.get()?;
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(backend)?;
            f(&txn)
        })
        .await
        .map_err(backend)?
    }
}

fn meta_value(txn: &redb::ReadTransaction, name: &str) -> Result<u64> {
    let meta = txn.open_table(META).map_err(backend)?;
    let value = meta.get(name).map_err(backend)?.map(|v| v.value());
    Ok(value.unwrap_or(0))
}

fn read_record(log: &impl ReadableTable<u64, &'static [u8]>, revision: u64) -> Result<Option<Record>> {
    match log.get(revision).map_err(backend)? {
        Some(raw) => Ok(Some(Record::decode(raw.value())?)),
        None => Ok(None),
    }
}

/// Whether a failed batch failed for I/O (a full disk, a failing device): then the
/// database must be reopened before it takes writes again.
fn io_failure(e: &Error) -> bool {
    matches!(e, Error::Backend(text) if text.contains("I/O error"))
}

/// The writer thread: drains the queue into one transaction per batch.
fn writer(slot: Arc<Slot>, mut rx: mpsc::UnboundedReceiver<Request>, events: broadcast::Sender<Arc<[Event]>>) {
    use std::sync::atomic::Ordering;
    loop {
        let first = if slot.writable.load(Ordering::Relaxed) {
            match rx.blocking_recv() {
                Some(first) => first,
                None => return,
            }
        } else {
            // After an I/O failure: try a small commit every 200 ms while no request
            // comes, so that readiness returns once the disk has room even when nobody
            // writes.
            match rx.try_recv() {
                Ok(first) => first,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
                Err(mpsc::error::TryRecvError::Empty) => {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    if let Ok(db) = slot.get() {
                        match apply_batch(&db, &[], &mut Vec::new()) {
                            Ok(_) => slot.writable.store(true, Ordering::Relaxed),
                            Err(e) if io_failure(&e) => reopen(&slot, db, &mut rx),
                            Err(_) => {}
                        }
                    }
                    continue;
                }
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let db = match slot.get() {
            Ok(db) => db,
            Err(e) => {
                for req in batch {
                    let _ = req.reply.send(Err(e.clone()));
                }
                continue;
            }
        };
        let mut changes = Vec::new();
        match apply_batch(&db, &batch, &mut changes) {
            Ok(outcomes) => {
                slot.writable.store(true, Ordering::Relaxed);
                if !changes.is_empty() {
                    // Nobody listening is fine: watches subscribe when they start.
                    let _ = events.send(changes.into());
                }
                for (req, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = req.reply.send(outcome);
                }
            }
            Err(e) if io_failure(&e) => {
                slot.writable.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, path = %slot.path.display(), "the embedded store could not write; reopening it");
                let refused = Error::Unavailable(format!(
                    "the embedded store could not write ({e}); nothing was written, and it reopens itself once the disk has room"
                ));
                for req in batch {
                    let _ = req.reply.send(Err(refused.clone()));
                }
                reopen(&slot, db, &mut rx);
            }
            Err(e) => {
                for req in batch {
                    let _ = req.reply.send(Err(Error::Backend(e.to_string())));
                }
            }
        }
    }
}

/// Closes the database (once the reads under way have let go of it) and opens it again,
/// once a second until that works; writes meanwhile are refused at once, so that no
/// client waits on a disk that is full.
fn reopen(slot: &Slot, db: Arc<Database>, rx: &mut mpsc::UnboundedReceiver<Request>) {
    *slot.db.write() = None;
    let waited = std::time::Instant::now();
    while Arc::strong_count(&db) > 1 && waited.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(db);
    loop {
        match open_db(&slot.path) {
            Ok(db) => {
                tracing::info!(path = %slot.path.display(), "the embedded store is open again");
                *slot.db.write() = Some(Arc::new(db));
                return;
            }
            Err(e) => tracing::warn!(error = %e, "reopening the embedded store failed; trying again in 1 s"),
        }
        let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while std::time::Instant::now() < until {
            while let Ok(req) = rx.try_recv() {
                let _ = req.reply.send(Err(slot.get().err().unwrap_or(Error::Unavailable("reopening".into()))));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

fn apply_batch(db: &Database, batch: &[Request], changes: &mut Vec<Event>) -> Result<Vec<Result<Outcome>>> {
    let txn = db.begin_write().map_err(backend)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut log = txn.open_table(LOG).map_err(backend)?;
        let mut current = txn.open_table(CURRENT).map_err(backend)?;
        let mut meta = txn.open_table(META).map_err(backend)?;
        let mut revision = meta.get(META_REVISION).map_err(backend)?.map(|v| v.value()).unwrap_or(1);
        let compacted = meta.get(META_COMPACTED).map_err(backend)?.map(|v| v.value()).unwrap_or(0);
        let mut new_compacted = compacted;
        for req in batch {
            let outcome = match &req.op {
                Op::Create { key, value } => {
                    let prev = current.get(key.as_str()).map_err(backend)?.map(|v| v.value());
                    match prev {
                        Some((_, false)) => Err(Error::AlreadyExists { key: key.clone() }),
                        _ => {
                            revision += 1;
                            let rec = Record {
                                key: key.clone(),
                                create_revision: revision,
                                prev_revision: prev.map(|(r, _)| r).unwrap_or(0),
                                deleted: false,
                                value: value.clone(),
                            };
                            log.insert(revision, rec.encode().as_slice()).map_err(backend)?;
                            current.insert(key.as_str(), (revision, false)).map_err(backend)?;
                            changes.push(Event::Put { kv: rec.into_kv(revision) });
                            Ok(Outcome::Written(revision as i64))
                        }
                    }
                }
                Op::Update { key, value, expected } => {
                    let prev = current.get(key.as_str()).map_err(backend)?.map(|v| v.value());
                    match prev {
                        None | Some((_, true)) => Err(Error::NotFound { key: key.clone() }),
                        Some((rev, false)) if rev as i64 != *expected => {
                            Err(Error::Conflict { key: key.clone(), expected: *expected, actual: rev as i64 })
                        }
                        Some((rev, false)) => {
                            let old = read_record(&log, rev)?
                                .ok_or_else(|| Error::Backend(format!("log record {rev} of {key:?} is missing")))?;
                            revision += 1;
                            let rec = Record {
                                key: key.clone(),
                                create_revision: old.create_revision,
                                prev_revision: rev,
                                deleted: false,
                                value: value.clone(),
                            };
                            log.insert(revision, rec.encode().as_slice()).map_err(backend)?;
                            current.insert(key.as_str(), (revision, false)).map_err(backend)?;
                            changes.push(Event::Put { kv: rec.into_kv(revision) });
                            Ok(Outcome::Written(revision as i64))
                        }
                    }
                }
                Op::Delete { key, expected } => {
                    let prev = current.get(key.as_str()).map_err(backend)?.map(|v| v.value());
                    match prev {
                        None | Some((_, true)) => Err(Error::NotFound { key: key.clone() }),
                        Some((rev, false)) if expected.is_some_and(|e| e != rev as i64) => Err(Error::Conflict {
                            key: key.clone(),
                            expected: expected.unwrap_or_default(),
                            actual: rev as i64,
                        }),
                        Some((rev, false)) => {
                            let old = read_record(&log, rev)?
                                .ok_or_else(|| Error::Backend(format!("log record {rev} of {key:?} is missing")))?;
                            revision += 1;
                            let tombstone = Record {
                                key: key.clone(),
                                create_revision: 0,
                                prev_revision: rev,
                                deleted: true,
                                value: Bytes::new(),
                            };
                            log.insert(revision, tombstone.encode().as_slice()).map_err(backend)?;
                            current.insert(key.as_str(), (revision, true)).map_err(backend)?;
                            changes.push(Event::Delete { key: key.clone(), revision: revision as i64 });
                            Ok(Outcome::Deleted(revision as i64, old.into_kv(rev)))
                        }
                    }
                }
                Op::Compact { revision: target } => {
                    let target = *target as u64;
                    if target > revision {
                        Err(Error::FutureRevision { requested: target as i64, current: revision as i64 })
                    } else if target <= new_compacted {
                        Err(Error::Compacted { requested: target as i64, compacted: new_compacted as i64 })
                    } else {
                        compact(&mut log, &mut current, new_compacted, target)?;
                        new_compacted = target;
                        Ok(Outcome::Compacted)
                    }
                }
            };
            outcomes.push(outcome);
        }
        meta.insert(META_REVISION, revision).map_err(backend)?;
        if new_compacted != compacted {
            meta.insert(META_COMPACTED, new_compacted).map_err(backend)?;
        }
    }
    txn.commit().map_err(backend)?;
    Ok(outcomes)
}

/// Drops every record in `[from, to)` that no read at revision `to` or later can see:
/// records superseded by a newer record below `to`, and tombstones.
fn compact(
    log: &mut redb::Table<u64, &[u8]>,
    current: &mut redb::Table<&str, (u64, bool)>,
    from: u64,
    to: u64,
) -> Result<()> {
    let mut last_per_key: BTreeMap<String, (u64, bool)> = BTreeMap::new();
    let mut superseded = Vec::new();
    for entry in log.range(from..to).map_err(backend)? {
        let (rev, raw) = entry.map_err(backend)?;
        let rec = Record::decode(raw.value())?;
        if rec.prev_revision != 0 {
            superseded.push(rec.prev_revision);
        }
        last_per_key.insert(rec.key, (rev.value(), rec.deleted));
    }
    for rev in superseded {
        log.remove(rev).map_err(backend)?;
    }
    for (key, (rev, deleted)) in last_per_key {
        if deleted {
            log.remove(rev).map_err(backend)?;
            let latest = current.get(key.as_str()).map_err(backend)?.map(|v| v.value());
            if latest == Some((rev, true)) {
                current.remove(key.as_str()).map_err(backend)?;
            }
        }
    }
    Ok(())
}

fn list_at(txn: &redb::ReadTransaction, req: &ListRequest) -> Result<ListResponse> {
    let latest = meta_value(txn, META_REVISION)?;
    let compacted = meta_value(txn, META_COMPACTED)?;
    let at = if req.revision <= 0 { latest } else { req.revision as u64 };
    if at > latest {
        return Err(Error::FutureRevision { requested: at as i64, current: latest as i64 });
    }
    if at < compacted {
        return Err(Error::Compacted { requested: at as i64, compacted: compacted as i64 });
    }
    let log = txn.open_table(LOG).map_err(backend)?;
    let current = txn.open_table(CURRENT).map_err(backend)?;
    // Keys written after `at`: their version at `at` is the record before the first such write.
    let mut changed: BTreeMap<String, u64> = BTreeMap::new();
    if at < latest {
        for entry in log.range(at + 1..).map_err(backend)? {
            let (_, raw) = entry.map_err(backend)?;
            let rec = Record::decode(raw.value())?;
            if rec.key.starts_with(&req.prefix) {
                changed.entry(rec.key).or_insert(rec.prev_revision);
            }
        }
    }
    let start = if req.start.as_str() > req.prefix.as_str() { req.start.as_str() } else { req.prefix.as_str() };
    let mut items = Vec::new();
    let mut more = false;
    for entry in current.range(start..).map_err(backend)? {
        let (key, value) = entry.map_err(backend)?;
        let key = key.value();
        if !key.starts_with(&req.prefix) {
            break;
        }
        let (rev, deleted) = value.value();
        let visible = match changed.get(key) {
            Some(0) => None,
            Some(prev) => Some(*prev),
            None if deleted => None,
            None => Some(rev),
        };
        let Some(rev) = visible else { continue };
        let Some(rec) = read_record(&log, rev)? else { continue };
        if rec.deleted {
            continue;
        }
        if req.limit > 0 && items.len() == req.limit {
            more = true;
            break;
        }
        items.push(rec.into_kv(rev));
    }
    Ok(ListResponse { items, revision: at as i64, more })
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.read(move |txn| {
            let current = txn.open_table(CURRENT).map_err(backend)?;
            let Some((rev, false)) = current.get(key.as_str()).map_err(backend)?.map(|v| v.value()) else {
                return Ok(None);
            };
            let log = txn.open_table(LOG).map_err(backend)?;
            Ok(read_record(&log, rev)?.map(|rec| rec.into_kv(rev)))
        })
        .await
    }

    async fn list(&self, req: ListRequest) -> Result<ListResponse> {
        self.read(move |txn| list_at(txn, &req)).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<i64> {
        match self.submit(Op::Create { key: key.to_owned(), value }).await? {
            Outcome::Written(rev) => Ok(rev),
            _ => Err(Error::Backend("unexpected answer to a create".into())),
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected: i64) -> Result<i64> {
        match self.submit(Op::Update { key: key.to_owned(), value, expected }).await? {
            Outcome::Written(rev) => Ok(rev),
            _ => Err(Error::Backend("unexpected answer to an update".into())),
        }
    }

    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<(i64, KeyValue)> {
        match self.submit(Op::Delete { key: key.to_owned(), expected }).await? {
            Outcome::Deleted(rev, kv) => Ok((rev, kv)),
            _ => Err(Error::Backend("unexpected answer to a delete".into())),
        }
    }

    async fn watch(&self, prefix: &str, from: i64) -> Result<WatchStream> {
        // Subscribe before reading the log so no event falls between replay and live.
        let live = BroadcastStream::new(self.events.subscribe());
        let prefix = prefix.to_owned();
        let replay_prefix = prefix.clone();
        let from = from.max(1) as u64;
        let replayed = self
            .read(move |txn| {
                let compacted = meta_value(txn, META_COMPACTED)?;
                if from < compacted {
                    return Err(Error::Compacted { requested: from as i64, compacted: compacted as i64 });
                }
                let log = txn.open_table(LOG).map_err(backend)?;
                let mut events = Vec::new();
                for entry in log.range(from..).map_err(backend)? {
                    let (rev, raw) = entry.map_err(backend)?;
                    let rec = Record::decode(raw.value())?;
                    if !rec.key.starts_with(&replay_prefix) {
                        continue;
                    }
                    let rev = rev.value();
                    events.push(if rec.deleted {
                        Event::Delete { key: rec.key, revision: rev as i64 }
                    } else {
                        Event::Put { kv: rec.into_kv(rev) }
                    });
                }
                let latest = meta_value(txn, META_REVISION)?;
                Ok((events, latest as i64))
            })
            .await?;
        let (events, replayed_to) = replayed;
        let min_live = replayed_to.max(from as i64 - 1);
        let live = live
            .map(move |batch| match batch {
                Ok(batch) => Ok(batch
                    .iter()
                    .filter(|e| e.revision() > min_live && e.key().starts_with(&prefix))
                    .cloned()
                    .collect::<Vec<_>>()),
                Err(_) => Err(Error::Backend("watch fell too far behind the store".into())),
            })
            .take_while_inclusive_ok()
            .flat_map(|batch: Result<Vec<Event>>| match batch {
                Ok(events) => futures::stream::iter(events.into_iter().map(Ok).collect::<Vec<_>>()),
                Err(e) => futures::stream::iter(vec![Err(e)]),
            });
        Ok(futures::stream::iter(events.into_iter().map(Ok)).chain(live).boxed())
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        self.submit(Op::Compact { revision }).await.map(|_| ())
    }

    async fn current_revision(&self) -> Result<i64> {
        if !self.slot.writable.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::Unavailable(format!(
                "the embedded store {} cannot write: its last write failed for I/O (is the disk full?)",
                self.slot.path.display()
            )));
        }
        self.read(|txn| Ok(meta_value(txn, META_REVISION)? as i64)).await
    }
}

/// Ends a stream right after its first error.
trait TakeWhileInclusiveOk: futures::Stream + Sized {
    fn take_while_inclusive_ok(self) -> futures::stream::BoxStream<'static, Self::Item>
    where
        Self: Send + 'static;
}

impl<S, T> TakeWhileInclusiveOk for S
where
    S: futures::Stream<Item = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    fn take_while_inclusive_ok(self) -> futures::stream::BoxStream<'static, Self::Item> {
        futures::stream::unfold((self.boxed(), false), |(mut s, done)| async move {
            if done {
                return None;
            }
            let item = s.next().await?;
            let failed = item.is_err();
            Some((item, (s, failed)))
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_rejects_truncation() {
        let rec = Record {
            key: "/registry/pods/default/a".into(),
            create_revision: 7,
            prev_revision: 3,
            deleted: false,
            value: Bytes::from_static(b"{\"a\":1}"),
        };
        let bytes = rec.encode();
        assert_eq!(Record::decode(&bytes).ok(), Some(rec));
        for cut in 0..21 {
            assert!(Record::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn a_zero_byte_store_is_refused_not_made_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("store.redb"), b"").expect("empty file");
        let e = EmbeddedStore::open(dir.path()).err().expect("refused");
        assert!(e.to_string().contains("is empty (0 bytes)"), "{e}");
        assert!(e.to_string().contains("restore it from a backup"), "{e}");
    }

    #[tokio::test]
    async fn a_truncated_store_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let store = EmbeddedStore::open(dir.path()).expect("open");
            for i in 0..200 {
                store.create(&format!("/registry/k{i}"), Bytes::from(vec![b'x'; 1000])).await.expect("create");
            }
        }
        let path = dir.path().join("store.redb");
        let len = std::fs::metadata(&path).expect("file").len();
        for keep in [len / 2, 100, 1] {
            let file = std::fs::OpenOptions::new().write(true).open(&path).expect("open file");
            file.set_len(keep).expect("truncate");
            drop(file);
            // Whatever redb makes of it, opening returns (an error or a store), never panics.
            let _ = EmbeddedStore::open(dir.path());
        }
    }
}
