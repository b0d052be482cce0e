//! An in-memory, linearizable `ClusterStore` for unit tests: one mutex serialises every
//! operation (so each takes effect at one instant, as in etcd), revisions grow by one per
//! change, and leases expire on the tokio clock, so tests with a paused clock control time.
//! `set_reachable(false)` makes every call fail, and breaks every watch, as a partition from
//! etcd would. Watches replay a history of every change (`compact` forgets its beginning).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::store::{
    ClusterStore, Created, KeyChange, KeyValues, LeaseId, StoreError, StoreResult, Swapped, Versioned, WatchEvent,
};

/// Events a watcher may have queued before the forwarding task waits for it (as for etcd).
const QUEUED_EVENTS: usize = 256;

#[derive(Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    unreachable: AtomicBool,
    /// Wakes the lease reaper when a lease is granted or renewed.
    leases_changed: Arc<Notify>,
    /// The reaper runs once something watches: only a watcher can tell a lazy expiry (at the
    /// next call) from etcd's timely one.
    reaper_started: AtomicBool,
}

#[derive(Default)]
struct Inner {
    revision: i64,
    next_lease: i64,
    keys: BTreeMap<String, Versioned>,
    /// Lease id → (TTL, expiry).
    leases: HashMap<i64, (Duration, Instant)>,
    /// Every change since the last compaction, in revision order: what watches replay.
    history: Vec<KeyChange>,
    /// Watches may not start below this revision (0: nothing compacted).
    compacted: i64,
    watchers: Vec<Watcher>,
}

/// An open watch: its prefix and the queue its forwarding task drains.
struct Watcher {
    prefix: String,
    events: mpsc::UnboundedSender<WatchEvent>,
}

/// One key's write in a transaction: the value and lease to put, or None to delete.
type Write = (String, Option<(Vec<u8>, Option<LeaseId>)>);

/// The changes of one revision under `prefix`, if any.
fn under(prefix: &str, changes: &[KeyChange]) -> Option<WatchEvent> {
    let mine: Vec<KeyChange> = changes.iter().filter(|c| c.key.starts_with(prefix)).cloned().collect();
    (!mine.is_empty()).then_some(WatchEvent::Changes(mine))
}

impl Inner {
    /// Expires every lease past its time and deletes its keys, as etcd's lessor does.
    fn expire(&mut self, now: Instant) {
        let expired: Vec<i64> = self.leases.iter().filter(|(_, (_, at))| *at <= now).map(|(id, _)| *id).collect();
        for id in expired {
            self.drop_lease(id);
        }
    }

    fn next_expiry(&self) -> Option<Instant> {
        self.leases.values().map(|(_, at)| *at).min()
    }

    /// Revokes a lease: its keys go in one revision, as etcd deletes them in one transaction.
    fn drop_lease(&mut self, id: i64) {
        if self.leases.remove(&id).is_some() {
            let attached = self.keys.iter().filter(|(_, v)| v.lease == Some(LeaseId(id)));
            let deletes = attached.map(|(k, _)| (k.clone(), None)).collect();
            self.commit(deletes);
        }
    }

    /// Applies one transaction's writes at the next revision, records them and tells the
    /// watchers; the revision they took effect at (unchanged when nothing changed, as etcd does
    /// for a delete of an absent key).
    fn commit(&mut self, writes: Vec<Write>) -> i64 {
        let revision = self.revision + 1;
        let mut changes = Vec::new();
        for (key, write) in writes {
            match write {
                Some((value, lease)) => {
                    let create_revision = self.keys.get(&key).map_or(revision, |v| v.create_revision);
                    let record = Versioned { value, create_revision, mod_revision: revision, lease };
                    self.keys.insert(key.clone(), record.clone());
                    changes.push(KeyChange { key, value: Some(record), revision });
                }
                None => {
                    if self.keys.remove(&key).is_some() {
                        changes.push(KeyChange { key, value: None, revision });
                    }
                }
            }
        }
        if changes.is_empty() {
            return self.revision;
        }
        self.revision = revision;
        // A watcher whose forwarding task ended (receiver dropped) is forgotten here.
        self.watchers.retain(|w| under(&w.prefix, &changes).is_none_or(|event| w.events.send(event).is_ok()));
        self.history.extend(changes);
        revision
    }

    fn lease_exists(&self, lease: Option<LeaseId>) -> StoreResult<()> {
        match lease {
            Some(l) if !self.leases.contains_key(&l.0) => Err(StoreError::LeaseNotFound),
            _ => Ok(()),
        }
    }

    /// Every key under `prefix`, ordered by key.
    fn under_prefix(&self, prefix: &str) -> KeyValues {
        self.keys
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The history under `prefix` from `from_revision` on, one event per revision.
    fn replay(&self, prefix: &str, from_revision: i64) -> Vec<WatchEvent> {
        let from = self.history.partition_point(|c| c.revision < from_revision);
        self.history[from..]
            .chunk_by(|a, b| a.revision == b.revision)
            .filter_map(|revision| under(prefix, revision))
            .collect()
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|e| e.into_inner())
}

/// Deletes the keys of each lease when it expires, on the tokio clock, until the store is gone.
async fn reap_leases(inner: Weak<Mutex<Inner>>, leases_changed: Arc<Notify>) {
    loop {
        let next = {
            let Some(inner) = inner.upgrade() else { return };
            let mut inner = lock(&inner);
            inner.expire(Instant::now());
            inner.next_expiry()
        };
        match next {
            Some(at) => tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = leases_changed.notified() => {}
            },
            None => leases_changed.notified().await,
        }
    }
}

/// Moves a watch's events from its unbounded queue (filled under the store's lock, which must
/// not wait) to the watcher's bounded channel; ends after the last event or when the watcher
/// hangs up.
async fn forward(mut queued: mpsc::UnboundedReceiver<WatchEvent>, watcher: mpsc::Sender<WatchEvent>) {
    loop {
        let event = tokio::select! {
            _ = watcher.closed() => return,
            event = queued.recv() => event,
        };
        let Some(event) = event else { return };
        let last = !matches!(event, WatchEvent::Changes(_));
        if watcher.send(event).await.is_err() || last {
            return;
        }
    }
}

impl Drop for MemoryStore {
    fn drop(&mut self) {
        // Lets the reaper see the store is gone.
        self.leases_changed.notify_one();
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Simulates a partition between this client and the store (or the store's quorum loss):
    /// calls fail, and open watches end with `Broken`.
    pub fn set_reachable(&self, reachable: bool) {
        self.unreachable.store(!reachable, Ordering::SeqCst);
        if !reachable {
            for watcher in lock(&self.inner).watchers.drain(..) {
                let _ = watcher.events.send(WatchEvent::Broken(StoreError::Unavailable("partitioned (test)".into())));
            }
        }
    }

    /// Writes `key` unconditionally (tests seed or change records with it).
    pub fn put(&self, key: &str, value: Vec<u8>) {
        lock(&self.inner).commit(vec![(key.to_string(), Some((value, None)))]);
    }

    /// Forgets the history below `revision`, as etcd's compaction does: a watch from an older
    /// revision then reports `Compacted { compact_revision: revision }`. etcd keeps each key's
    /// version at the compaction revision but not a deletion there (its tombstone goes), so a
    /// watch from exactly `revision` misses that revision's deletes (tests/etcd_store.rs).
    pub fn compact(&self, revision: i64) {
        let mut inner = lock(&self.inner);
        assert!(revision <= inner.revision, "etcd refuses to compact a future revision");
        inner.compacted = inner.compacted.max(revision);
        inner.history.retain(|c| c.revision > revision || (c.revision == revision && c.value.is_some()));
    }

    /// The key as the store holds it now, whatever the reachability (tests look behind a
    /// simulated partition with it).
    pub fn peek(&self, key: &str) -> Option<Versioned> {
        let mut inner = lock(&self.inner);
        inner.expire(Instant::now());
        inner.keys.get(key).cloned()
    }

    fn with<T>(&self, op: impl FnOnce(&mut Inner) -> StoreResult<T>) -> StoreResult<T> {
        if self.unreachable.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("partitioned (test)".into()));
        }
        let mut inner = lock(&self.inner);
        inner.expire(Instant::now());
        op(&mut inner)
    }

    fn start_reaper(&self) {
        if !self.reaper_started.swap(true, Ordering::SeqCst) {
            tokio::spawn(reap_leases(Arc::downgrade(&self.inner), self.leases_changed.clone()));
        }
    }
}

impl ClusterStore for MemoryStore {
    async fn grant_lease(&self, ttl: Duration) -> StoreResult<LeaseId> {
        let granted = self.with(|inner| {
            inner.next_lease += 1;
            let id = inner.next_lease;
            inner.leases.insert(id, (ttl, Instant::now() + ttl));
            Ok(LeaseId(id))
        });
        self.leases_changed.notify_one();
        granted
    }

    async fn keep_alive(&self, lease: LeaseId) -> StoreResult<Duration> {
        let renewed = self.with(|inner| match inner.leases.get_mut(&lease.0) {
            Some((ttl, expiry)) => {
                *expiry = Instant::now() + *ttl;
                Ok(*ttl)
            }
            None => Err(StoreError::LeaseNotFound),
        });
        self.leases_changed.notify_one();
        renewed
    }

    async fn revoke_lease(&self, lease: LeaseId) -> StoreResult<()> {
        self.with(|inner| {
            inner.drop_lease(lease.0);
            Ok(())
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> StoreResult<Created> {
        self.with(|inner| {
            if let Some(existing) = inner.keys.get(key) {
                return Ok(Created::Exists(existing.clone()));
            }
            inner.lease_exists(lease)?;
            inner.commit(vec![(key.to_string(), Some((value, lease)))]);
            Ok(Created::Created)
        })
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Versioned>> {
        self.with(|inner| Ok(inner.keys.get(key).cloned()))
    }

    async fn get_prefix(&self, prefix: &str) -> StoreResult<Vec<(String, Versioned)>> {
        Ok(self.get_prefix_at(prefix).await?.1)
    }

    async fn get_prefix_at(&self, prefix: &str) -> StoreResult<(i64, Vec<(String, Versioned)>)> {
        self.with(|inner| Ok((inner.revision, inner.under_prefix(prefix))))
    }

    async fn get_prefixes_at(&self, prefixes: &[&str]) -> StoreResult<(i64, Vec<KeyValues>)> {
        // Under one lock: every list as of the same revision, as etcd's transaction reads.
        self.with(|inner| Ok((inner.revision, prefixes.iter().map(|p| inner.under_prefix(p)).collect())))
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> StoreResult<i64> {
        self.with(|inner| {
            inner.lease_exists(lease)?;
            Ok(inner.commit(vec![(key.to_string(), Some((value, lease)))]))
        })
    }

    async fn swap(
        &self,
        key: &str,
        expected_mod: i64,
        guard: Option<(&str, i64)>,
        value: Option<Vec<u8>>,
    ) -> StoreResult<Swapped> {
        self.with(|inner| {
            // etcd compares an absent key's revisions as 0.
            let current_mod = inner.keys.get(key).map_or(0, |v| v.mod_revision);
            let guard_held =
                guard.is_none_or(|(k, create)| inner.keys.get(k).map_or(0, |v| v.create_revision) == create);
            if current_mod != expected_mod || !guard_held {
                return Ok(Swapped::Stale { current: inner.keys.get(key).cloned(), guard_held });
            }
            let revision = inner.commit(vec![(key.to_string(), value.map(|v| (v, None)))]);
            Ok(Swapped::Done { revision })
        })
    }

    async fn watch_prefix(&self, prefix: &str, from_revision: i64) -> StoreResult<mpsc::Receiver<WatchEvent>> {
        let (live, queued) = mpsc::unbounded_channel();
        self.with(|inner| {
            // etcd's start revision 0 means "after the current revision".
            let from = if from_revision <= 0 { inner.revision + 1 } else { from_revision };
            if from < inner.compacted {
                let _ = live.send(WatchEvent::Compacted { compact_revision: inner.compacted });
                return Ok(());
            }
            // Replayed and registered under one lock: no change is missed or repeated.
            for event in inner.replay(prefix, from) {
                let _ = live.send(event);
            }
            inner.watchers.push(Watcher { prefix: prefix.to_string(), events: live });
            Ok(())
        })?;
        self.start_reaper();
        let (watcher, receiver) = mpsc::channel(QUEUED_EVENTS);
        tokio::spawn(forward(queued, watcher));
        Ok(receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn leases_expire_with_their_keys_and_create_is_exclusive() {
        let store = MemoryStore::new();
        let lease = store.grant_lease(Duration::from_secs(2)).await.unwrap();
        assert_eq!(store.create("/a/gw/1", b"one".to_vec(), Some(lease)).await.unwrap(), Created::Created);
        match store.create("/a/gw/1", b"two".to_vec(), None).await.unwrap() {
            Created::Exists(found) => assert_eq!((found.value, found.lease), (b"one".to_vec(), Some(lease))),
            other => panic!("second create must find the first: {other:?}"),
        }
        store.put("/a/lun/x", b"def".to_vec());
        assert_eq!(store.get_prefix("/a/").await.unwrap().len(), 2);
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(store.keep_alive(lease).await, Ok(Duration::from_secs(2)));
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert!(store.get("/a/gw/1").await.unwrap().is_some(), "renewed 1999 ms ago");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(store.get("/a/gw/1").await.unwrap(), None, "expired with its lease");
        assert_eq!(store.keep_alive(lease).await, Err(StoreError::LeaseNotFound));
        store.set_reachable(false);
        assert!(matches!(store.get("/a/lun/x").await, Err(StoreError::Unavailable(_))));
        store.set_reachable(true);
        assert!(store.get("/a/lun/x").await.unwrap().is_some(), "definitions have no lease");
    }

    /// The next event, which must come without the clock moving (nothing is waiting on a timer).
    async fn next(events: &mut mpsc::Receiver<WatchEvent>) -> WatchEvent {
        let before = Instant::now();
        let event = events.recv().await.expect("the watch ended without saying why");
        assert_eq!(Instant::now(), before, "{event:?} came only after the clock moved");
        event
    }

    fn put_change(key: &str, value: &str, create_revision: i64, revision: i64) -> KeyChange {
        let value = Versioned { value: value.into(), create_revision, mod_revision: revision, lease: None };
        KeyChange { key: key.into(), value: Some(value), revision }
    }

    fn delete_change(key: &str, revision: i64) -> KeyChange {
        KeyChange { key: key.into(), value: None, revision }
    }

    #[tokio::test(start_paused = true)]
    async fn swap_writes_on_the_expected_revision_and_reads_back_the_key_and_guard_otherwise() {
        let store = MemoryStore::new();
        let lease = store.grant_lease(Duration::from_secs(2)).await.unwrap();
        assert_eq!(store.create("/gw/1", b"me".to_vec(), Some(lease)).await, Ok(Created::Created));
        let guard = ("/gw/1", 1);
        assert_eq!(store.swap("/r", 0, Some(guard), Some(b"a".to_vec())).await, Ok(Swapped::Done { revision: 2 }));
        let written = store.get("/r").await.unwrap().expect("swap from absent created the key");
        assert_eq!((written.value.as_slice(), written.create_revision, written.lease), (&b"a"[..], 2, None));
        // A second "absent" swap and a swap on an older revision find the key as it is.
        for expected in [0, 1] {
            assert_eq!(
                store.swap("/r", expected, Some(guard), Some(b"b".to_vec())).await,
                Ok(Swapped::Stale { current: Some(written.clone()), guard_held: true })
            );
        }
        assert_eq!(store.swap("/r", 2, Some(guard), Some(b"b".to_vec())).await, Ok(Swapped::Done { revision: 3 }));
        // The guard's lease is revoked: its key is gone, no swap passes, whatever the revision.
        store.revoke_lease(lease).await.unwrap();
        let current = store.get("/r").await.unwrap();
        assert_eq!(
            store.swap("/r", 3, Some(guard), None).await,
            Ok(Swapped::Stale { current: current.clone(), guard_held: false })
        );
        // Without a guard, None deletes the key.
        assert_eq!(store.swap("/r", 3, None, None).await, Ok(Swapped::Done { revision: 5 }));
        assert_eq!(store.get("/r").await, Ok(None));
        store.set_reachable(false);
        assert!(matches!(store.swap("/r", 0, None, None).await, Err(StoreError::Unavailable(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn put_and_get_prefix_at_report_the_store_revision() {
        let store = MemoryStore::new();
        let lease = store.grant_lease(Duration::from_secs(2)).await.unwrap();
        assert_eq!(ClusterStore::put(&store, "/p/b", b"1".to_vec(), None).await, Ok(1));
        assert_eq!(ClusterStore::put(&store, "/p/a", b"2".to_vec(), Some(lease)).await, Ok(2));
        assert_eq!(ClusterStore::put(&store, "/q", b"3".to_vec(), None).await, Ok(3));
        assert_eq!(ClusterStore::put(&store, "/p/b", b"4".to_vec(), None).await, Ok(4));
        let (revision, found) = store.get_prefix_at("/p/").await.unwrap();
        assert_eq!(revision, 4, "the store's revision, not the newest under the prefix");
        let summary: Vec<_> =
            found.iter().map(|(k, v)| (k.as_str(), v.create_revision, v.mod_revision, v.lease)).collect();
        assert_eq!(summary, [("/p/a", 2, 2, Some(lease)), ("/p/b", 1, 4, None)]);
        store.revoke_lease(lease).await.unwrap();
        assert_eq!(ClusterStore::put(&store, "/p/c", vec![], Some(lease)).await, Err(StoreError::LeaseNotFound));
        assert_eq!(store.get_prefix_at("/p/").await.unwrap().0, 5, "the revocation deleted /p/a");
    }

    #[tokio::test(start_paused = true)]
    async fn get_prefixes_at_reads_each_prefix_in_the_order_given_at_one_revision() {
        let store = MemoryStore::new();
        let lease = store.grant_lease(Duration::from_secs(2)).await.unwrap();
        store.create("/gw/2", b"b".to_vec(), Some(lease)).await.unwrap(); // 1
        store.put("/gw/1", b"a".to_vec()); // 2
        ClusterStore::put(&store, "/acks/2", b"1".to_vec(), Some(lease)).await.unwrap(); // 3
        store.put("/other", b"x".to_vec()); // 4
        let keys = |lists: &[KeyValues]| -> Vec<Vec<String>> {
            lists.iter().map(|l| l.iter().map(|(k, _)| k.clone()).collect()).collect()
        };
        let (revision, lists) = store.get_prefixes_at(&["/gw/", "/acks/", "/none/"]).await.unwrap();
        assert_eq!(revision, 4, "the store's revision, not the newest under the prefixes");
        assert_eq!(keys(&lists), [vec!["/gw/1", "/gw/2"], vec!["/acks/2"], vec![]]);
        assert_eq!(lists[0], store.get_prefix("/gw/").await.unwrap(), "each list as get_prefix reads it");
        assert_eq!((lists[1][0].1.mod_revision, lists[1][0].1.lease), (3, Some(lease)));
        // The lease's keys go in one revision: both lists show it gone, at that revision.
        store.revoke_lease(lease).await.unwrap();
        let (revision, lists) = store.get_prefixes_at(&["/acks/", "/gw/"]).await.unwrap();
        assert_eq!((revision, keys(&lists)), (5, vec![vec![], vec!["/gw/1".to_string()]]));
        assert_eq!(store.get_prefixes_at(&[]).await, Ok((5, vec![])));
        store.set_reachable(false);
        assert!(matches!(store.get_prefixes_at(&["/gw/"]).await, Err(StoreError::Unavailable(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_replays_history_from_its_revision_then_follows_changes_by_revision() {
        let store = MemoryStore::new();
        let lease = store.grant_lease(Duration::from_secs(5)).await.unwrap();
        store.put("/w/a", b"1".to_vec()); // 1
        store.put("/other", b"x".to_vec()); // 2
        store.create("/w/b", b"2".to_vec(), Some(lease)).await.unwrap(); // 3
        ClusterStore::put(&store, "/w/c", b"3".to_vec(), Some(lease)).await.unwrap(); // 4
        let mut events = store.watch_prefix("/w/", 2).await.unwrap();
        let b = KeyChange {
            value: Some(Versioned { value: b"2".to_vec(), create_revision: 3, mod_revision: 3, lease: Some(lease) }),
            ..delete_change("/w/b", 3)
        };
        assert_eq!(next(&mut events).await, WatchEvent::Changes(vec![b]), "replayed from 2; /other is not watched");
        assert!(matches!(next(&mut events).await, WatchEvent::Changes(c) if c[0].key == "/w/c"));
        store.put("/other", b"y".to_vec()); // 5
        assert_eq!(store.swap("/w/a", 1, None, Some(b"one".to_vec())).await, Ok(Swapped::Done { revision: 6 }));
        assert_eq!(next(&mut events).await, WatchEvent::Changes(vec![put_change("/w/a", "one", 1, 6)]));
        // The lease's two keys go in one revision: one event with both.
        store.revoke_lease(lease).await.unwrap();
        assert_eq!(
            next(&mut events).await,
            WatchEvent::Changes(vec![delete_change("/w/b", 7), delete_change("/w/c", 7)])
        );
        // From 0: only what comes next.
        let mut from_now = store.watch_prefix("/w/", 0).await.unwrap();
        store.put("/w/d", b"4".to_vec()); // 8
        assert_eq!(next(&mut from_now).await, WatchEvent::Changes(vec![put_change("/w/d", "4", 8, 8)]));
        assert_eq!(next(&mut events).await, WatchEvent::Changes(vec![put_change("/w/d", "4", 8, 8)]));
        // A dropped receiver is forgotten at the next change under its prefix.
        drop(from_now);
        tokio::task::yield_now().await;
        store.put("/w/e", b"5".to_vec());
        assert_eq!(lock(&store.inner).watchers.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expiring_lease_deletes_its_keys_on_time_in_front_of_a_watch() {
        let store = MemoryStore::new();
        let lease = store.grant_lease(Duration::from_secs(2)).await.unwrap();
        store.create("/w/gw", b"me".to_vec(), Some(lease)).await.unwrap();
        let mut events = store.watch_prefix("/w/", 0).await.unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        store.keep_alive(lease).await.unwrap();
        let renewed = Instant::now();
        // Nobody calls the store: the expiry alone must produce the event, 2 s after the renewal.
        let waited = tokio::time::timeout(Duration::from_secs(10), events.recv()).await;
        let event = waited.expect("no event 10 s after the renewal").expect("the watch ended");
        assert_eq!(event, WatchEvent::Changes(vec![delete_change("/w/gw", 2)]));
        assert_eq!(Instant::now() - renewed, Duration::from_secs(2));
        assert_eq!(store.keep_alive(lease).await, Err(StoreError::LeaseNotFound));
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_below_the_compaction_reports_it_and_a_partition_breaks_open_watches() {
        let store = MemoryStore::new();
        for i in 1..=4 {
            store.put(&format!("/w/{i}"), vec![]);
        }
        assert_eq!(store.swap("/w/1", 1, None, None).await, Ok(Swapped::Done { revision: 5 }));
        store.put("/w/6", vec![]);
        store.compact(3);
        let mut too_old = store.watch_prefix("/w/", 2).await.unwrap();
        assert_eq!(next(&mut too_old).await, WatchEvent::Compacted { compact_revision: 3 });
        assert_eq!(too_old.recv().await, None, "nothing after Compacted");
        let mut kept = store.watch_prefix("/w/", 3).await.unwrap();
        assert_eq!(next(&mut kept).await, WatchEvent::Changes(vec![put_change("/w/3", "", 3, 3)]));
        assert_eq!(next(&mut kept).await, WatchEvent::Changes(vec![put_change("/w/4", "", 4, 4)]));
        assert_eq!(next(&mut kept).await, WatchEvent::Changes(vec![delete_change("/w/1", 5)]));
        // As etcd: a deletion at the compaction revision is gone, the watch goes on after it.
        store.compact(5);
        let mut from_delete = store.watch_prefix("/w/", 5).await.unwrap();
        assert_eq!(next(&mut from_delete).await, WatchEvent::Changes(vec![put_change("/w/6", "", 6, 6)]));
        assert_eq!(next(&mut kept).await, WatchEvent::Changes(vec![put_change("/w/6", "", 6, 6)]));
        store.set_reachable(false);
        assert!(matches!(next(&mut kept).await, WatchEvent::Broken(StoreError::Unavailable(_))));
        assert_eq!(kept.recv().await, None, "nothing after Broken");
        assert!(matches!(store.watch_prefix("/w/", 0).await, Err(StoreError::Unavailable(_))));
        store.set_reachable(true);
        let mut again = store.watch_prefix("/w/", 7).await.unwrap();
        store.put("/w/7", vec![]);
        assert_eq!(next(&mut again).await, WatchEvent::Changes(vec![put_change("/w/7", "", 7, 7)]));
    }
}
