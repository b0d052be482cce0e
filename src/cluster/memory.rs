//! An in-memory, linearizable `ClusterStore` for unit tests: one mutex serialises every
//! operation (so each takes effect at one instant, as in etcd), revisions grow by one per
//! change, and leases expire on the tokio clock, so tests with a paused clock control time.
//! `set_reachable(false)` makes every call fail as a partition from etcd would.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

use super::store::{ClusterStore, Created, LeaseId, StoreError, StoreResult, Versioned};

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
            let before = self.keys.len();
            self.keys.retain(|_, v| v.lease != Some(LeaseId(id)));
            if self.keys.len() != before {
                self.revision += 1;
            }
        }
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Simulates a partition between this client and the store (or the store's quorum loss).
    pub fn set_reachable(&self, reachable: bool) {
        self.unreachable.store(!reachable, Ordering::SeqCst);
    }

    /// Writes `key` unconditionally (tests seed or change records with it).
    pub fn put(&self, key: &str, value: Vec<u8>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.revision += 1;
        let revision = inner.revision;
        let create_revision = inner.keys.get(key).map_or(revision, |v| v.create_revision);
        inner.keys.insert(key.to_string(), Versioned { value, create_revision, mod_revision: revision, lease: None });
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
            inner.revision += 1;
            let revision = inner.revision;
            let record = Versioned { value, create_revision: revision, mod_revision: revision, lease };
            inner.keys.insert(key.to_string(), record);
            Ok(Created::Created)
        })
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Versioned>> {
        self.with(|inner| Ok(inner.keys.get(key).cloned()))
    }

    async fn get_prefix(&self, prefix: &str) -> StoreResult<Vec<(String, Versioned)>> {
        self.with(|inner| {
            Ok(inner
                .keys
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
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
}
