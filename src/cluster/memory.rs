//! An in-memory, linearizable `ClusterStore` for unit tests: one mutex serialises every
//! operation (so each takes effect at one instant, as in etcd), revisions grow by one per
//! change, and leases expire on the tokio clock, so tests with a paused clock control time.
//! `set_reachable(false)` makes every call fail as a partition from etcd would.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

use super::store::{
    ClusterStore, Created, KeyChange, LeaseId, StoreError, StoreResult, Swapped, Versioned, WatchEvent,
};
use tokio::sync::mpsc;

/// Events a watcher may have queued before it is dropped as too slow (its receiver then ends,
/// which a watcher answers with a full re-read, as for a broken etcd watch).
const WATCH_QUEUE: usize = 1024;

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    unreachable: AtomicBool,
}

#[derive(Default)]
struct Inner {
    revision: i64,
    next_lease: i64,
    keys: BTreeMap<String, Versioned>,
    /// Lease id → (TTL, expiry).
    leases: HashMap<i64, (Duration, Instant)>,
    /// Every change since `compacted`, in revision order (what a watch from the past replays).
    history: Vec<KeyChange>,
    /// Revisions up to this one are compacted away.
    compacted: i64,
    watchers: Vec<(String, mpsc::Sender<WatchEvent>)>,
}

impl Inner {
    /// Expires every lease past its time and deletes its keys, as etcd's lessor does.
    fn expire(&mut self, now: Instant) {
        let expired: Vec<i64> = self.leases.iter().filter(|(_, (_, at))| *at <= now).map(|(id, _)| *id).collect();
        for id in expired {
            self.drop_lease(id);
        }
    }

    fn drop_lease(&mut self, id: i64) {
        if self.leases.remove(&id).is_some() {
            let gone: Vec<String> =
                self.keys.iter().filter(|(_, v)| v.lease == Some(LeaseId(id))).map(|(k, _)| k.clone()).collect();
            if !gone.is_empty() {
                // One revision deletes every key of the lease, as etcd's lessor does.
                self.revision += 1;
                let revision = self.revision;
                let changes = gone
                    .into_iter()
                    .map(|key| {
                        self.keys.remove(&key);
                        KeyChange { key, value: None, revision }
                    })
                    .collect();
                self.publish(changes);
            }
        }
    }

    /// Writes or deletes `key` at a new revision and tells the watchers.
    fn write(&mut self, key: &str, value: Option<(Vec<u8>, Option<LeaseId>)>) -> i64 {
        self.revision += 1;
        let revision = self.revision;
        let stored = value.map(|(value, lease)| {
            let create_revision = self.keys.get(key).map_or(revision, |v| v.create_revision);
            let record = Versioned { value, create_revision, mod_revision: revision, lease };
            self.keys.insert(key.to_string(), record.clone());
            record
        });
        if stored.is_none() {
            self.keys.remove(key);
        }
        self.publish(vec![KeyChange { key: key.to_string(), value: stored, revision }]);
        revision
    }

    fn publish(&mut self, changes: Vec<KeyChange>) {
        self.history.extend(changes.iter().cloned());
        self.watchers.retain(|(prefix, tx)| {
            let seen: Vec<KeyChange> = changes.iter().filter(|c| c.key.starts_with(prefix.as_str())).cloned().collect();
            seen.is_empty() || tx.try_send(WatchEvent::Changes(seen)).is_ok()
        });
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Simulates a partition between this client and the store (or the store's quorum loss).
    pub fn set_reachable(&self, reachable: bool) {
        self.unreachable.store(!reachable, Ordering::SeqCst);
        if !reachable {
            // Open watches break, as their streams would.
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            for (_, tx) in inner.watchers.drain(..) {
                let _ = tx.try_send(WatchEvent::Broken(StoreError::Unavailable("partitioned (test)".into())));
            }
        }
    }

    /// Writes `key` unconditionally (tests seed or change records with it).
    pub fn put(&self, key: &str, value: Vec<u8>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.write(key, Some((value, None)));
    }

    /// Forgets the history up to `revision`: a watch from before it reports `Compacted`.
    pub fn compact(&self, revision: i64) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.compacted = inner.compacted.max(revision);
        inner.history.retain(|c| c.revision > revision);
    }

    /// The key as the store holds it now, whatever the reachability (tests look behind a
    /// simulated partition with it).
    pub fn peek(&self, key: &str) -> Option<Versioned> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.expire(Instant::now());
        inner.keys.get(key).cloned()
    }

    fn with<T>(&self, op: impl FnOnce(&mut Inner) -> StoreResult<T>) -> StoreResult<T> {
        if self.unreachable.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("partitioned (test)".into()));
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.expire(Instant::now());
        op(&mut inner)
    }
}

impl ClusterStore for MemoryStore {
    async fn grant_lease(&self, ttl: Duration) -> StoreResult<LeaseId> {
        self.with(|inner| {
            inner.next_lease += 1;
            let id = inner.next_lease;
            inner.leases.insert(id, (ttl, Instant::now() + ttl));
            Ok(LeaseId(id))
        })
    }

    async fn keep_alive(&self, lease: LeaseId) -> StoreResult<Duration> {
        self.with(|inner| match inner.leases.get_mut(&lease.0) {
            Some((ttl, expiry)) => {
                *expiry = Instant::now() + *ttl;
                Ok(*ttl)
            }
            None => Err(StoreError::LeaseNotFound),
        })
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
            if let Some(l) = lease {
                if !inner.leases.contains_key(&l.0) {
                    return Err(StoreError::LeaseNotFound);
                }
            }
            inner.write(key, Some((value, lease)));
            Ok(Created::Created)
        })
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Versioned>> {
        self.with(|inner| Ok(inner.keys.get(key).cloned()))
    }

    async fn get_prefix(&self, prefix: &str) -> StoreResult<Vec<(String, Versioned)>> {
        self.get_prefix_at(prefix).await.map(|(_, found)| found)
    }

    async fn get_prefix_at(&self, prefix: &str) -> StoreResult<(i64, Vec<(String, Versioned)>)> {
        self.with(|inner| {
            let found = inner
                .keys
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Ok((inner.revision, found))
        })
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> StoreResult<i64> {
        self.with(|inner| {
            if lease.is_some_and(|l| !inner.leases.contains_key(&l.0)) {
                return Err(StoreError::LeaseNotFound);
            }
            Ok(inner.write(key, Some((value, lease))))
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
            let current = inner.keys.get(key).cloned();
            let guard_held =
                guard.is_none_or(|(g, created)| inner.keys.get(g).is_some_and(|v| v.create_revision == created));
            if current.as_ref().map_or(0, |v| v.mod_revision) != expected_mod || !guard_held {
                return Ok(Swapped::Stale { current, guard_held });
            }
            let revision = inner.write(key, value.map(|v| (v, None)));
            Ok(Swapped::Done { revision })
        })
    }

    async fn watch_prefix(&self, prefix: &str, from_revision: i64) -> StoreResult<mpsc::Receiver<WatchEvent>> {
        self.with(|inner| {
            let (tx, rx) = mpsc::channel(WATCH_QUEUE);
            if from_revision <= inner.compacted {
                let _ = tx.try_send(WatchEvent::Compacted { compact_revision: inner.compacted });
                return Ok(rx);
            }
            // Replay, one event per revision, then follow.
            let mut past: Vec<KeyChange> = inner
                .history
                .iter()
                .filter(|c| c.revision >= from_revision && c.key.starts_with(prefix))
                .cloned()
                .collect();
            while !past.is_empty() {
                let revision = past[0].revision;
                let rest = past.split_off(past.iter().position(|c| c.revision != revision).unwrap_or(past.len()));
                if tx.try_send(WatchEvent::Changes(std::mem::replace(&mut past, rest))).is_err() {
                    return Ok(rx);
                }
            }
            inner.watchers.push((prefix.to_string(), tx));
            Ok(rx)
        })
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

    #[tokio::test(start_paused = true)]
    async fn swap_compares_and_watches_replay_follow_and_report_compaction() {
        let store = MemoryStore::new();
        let lease = store.grant_lease(Duration::from_secs(2)).await.unwrap();
        store.create("/g/1", b"gw".to_vec(), Some(lease)).await.unwrap();
        let joined = store.get("/g/1").await.unwrap().unwrap().create_revision;
        let first = match store.swap("/pr/x", 0, Some(("/g/1", joined)), Some(b"a".to_vec())).await.unwrap() {
            Swapped::Done { revision } => revision,
            other => panic!("{other:?}"),
        };
        // A stale expectation reads the key back; a foreign guard says so.
        match store.swap("/pr/x", 0, None, Some(b"b".to_vec())).await.unwrap() {
            Swapped::Stale { current: Some(v), guard_held: true } => assert_eq!(v.mod_revision, first),
            other => panic!("{other:?}"),
        }
        let stale_guard = store.swap("/pr/x", first, Some(("/g/1", joined + 1)), Some(b"c".to_vec())).await.unwrap();
        assert!(matches!(stale_guard, Swapped::Stale { guard_held: false, .. }));
        let ack = ClusterStore::put(&store, "/pr/ack", b"1".to_vec(), Some(lease)).await.unwrap();
        let mut watch = store.watch_prefix("/pr/", first).await.unwrap();
        let replayed = |e: Option<WatchEvent>| match e {
            Some(WatchEvent::Changes(c)) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(replayed(watch.recv().await)[0].revision, first);
        assert_eq!(replayed(watch.recv().await)[0].revision, ack);
        let deleted = store.swap("/pr/x", first, None, None).await.unwrap();
        let Swapped::Done { revision: gone } = deleted else { panic!("{deleted:?}") };
        assert_eq!(replayed(watch.recv().await), vec![KeyChange { key: "/pr/x".into(), value: None, revision: gone }]);
        // The lease ends: its keys go in one revision, and the watch sees the ack deleted.
        tokio::time::advance(Duration::from_secs(3)).await;
        let (now, _) = store.get_prefix_at("/").await.unwrap();
        let lapsed = replayed(watch.recv().await);
        assert_eq!(
            (lapsed.len(), lapsed[0].key.as_str(), lapsed[0].value.as_ref(), lapsed[0].revision),
            (1, "/pr/ack", None, now)
        );
        store.compact(now);
        let mut late = store.watch_prefix("/pr/", first).await.unwrap();
        assert_eq!(late.recv().await, Some(WatchEvent::Compacted { compact_revision: now }));
        store.set_reachable(false);
        assert!(matches!(watch.recv().await, Some(WatchEvent::Broken(_))));
    }
}
