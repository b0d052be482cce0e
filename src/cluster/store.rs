//! `ClusterStore`: the few etcd operations the cluster layer needs, so the membership and LUN
//! identity logic runs against real etcd (`etcd.rs`) in production and integration tests, and
//! against an in-memory linearizable fake (`memory.rs`) in unit tests with a paused clock.

use std::fmt;
use std::future::Future;
use std::time::Duration;

/// An etcd lease id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseId(pub i64);

/// A key's value with the revisions etcd tracks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    /// Revision of the transaction that created the key (changes when it is re-created).
    pub create_revision: i64,
    /// Revision of the last change to the key: the compare-and-swap token.
    pub mod_revision: i64,
    /// The lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// What `create` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The key did not exist and now holds our value.
    Created,
    /// The key exists; nothing was written. Its current value.
    Exists(Versioned),
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// etcd could not be reached or did not answer in time: the operation may or may not have
    /// taken effect.
    Unavailable(String),
    /// The lease named in the request no longer exists (expired or revoked).
    LeaseNotFound,
    /// etcd refused the request for another reason.
    Rejected(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(why) => write!(f, "etcd unavailable: {why}"),
            StoreError::LeaseNotFound => f.write_str("lease not found (expired or revoked)"),
            StoreError::Rejected(why) => write!(f, "etcd refused the request: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

pub type StoreResult<T> = Result<T, StoreError>;

/// The keys of a range with their values, ordered by key.
pub type KeyValues = Vec<(String, Versioned)>;

/// What a conditional write (`swap`) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swapped {
    /// Every condition held; the write took effect at this store revision.
    Done { revision: i64 },
    /// A condition failed; nothing was written. The key as it is now (None: absent) and whether
    /// the guard key still has the expected create revision (false: the caller's membership is
    /// gone, it must not retry until it rejoined).
    Stale { current: Option<Versioned>, guard_held: bool },
}

/// One change a watch reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    pub key: String,
    /// The new value; None when the key was deleted (or its lease expired).
    pub value: Option<Versioned>,
    /// The store revision of the change (for a delete: the revision of the deletion).
    pub revision: i64,
}

/// What a watch delivers, strictly in revision order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Changes of one store revision (one transaction may change several keys).
    Changes(Vec<KeyChange>),
    /// The revision asked to start from has been compacted away: the watcher must re-read
    /// everything (`get_prefix_at`) and watch again from after that read.
    Compacted { compact_revision: i64 },
    /// The watch ended (connection lost, cancelled by the server): re-read and watch again.
    Broken(StoreError),
}

/// A linearizable key-value store with leases (etcd v3 semantics).
pub trait ClusterStore: Send + Sync + 'static {
    /// Grants a lease that expires `ttl` after the store last heard a keepalive for it.
    fn grant_lease(&self, ttl: Duration) -> impl Future<Output = StoreResult<LeaseId>> + Send;

    /// One keepalive round trip: the remaining TTL the store granted, or `LeaseNotFound` once the
    /// lease has expired. The caller measures time from when it sent this (docs/cluster.md).
    fn keep_alive(&self, lease: LeaseId) -> impl Future<Output = StoreResult<Duration>> + Send;

    /// Revokes a lease, deleting the keys attached to it.
    fn revoke_lease(&self, lease: LeaseId) -> impl Future<Output = StoreResult<()>> + Send;

    /// Writes `value` at `key` only if the key does not exist (one transaction comparing its
    /// create revision with 0), attached to `lease` when given.
    fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> impl Future<Output = StoreResult<Created>> + Send;

    /// The key's current value (a linearizable read).
    fn get(&self, key: &str) -> impl Future<Output = StoreResult<Option<Versioned>>> + Send;

    /// Every key under `prefix`, ordered by key.
    fn get_prefix(&self, prefix: &str) -> impl Future<Output = StoreResult<Vec<(String, Versioned)>>> + Send;

    /// Every key under `prefix` and the store revision the read saw (etcd's response header
    /// revision): a watch from `revision + 1` misses nothing and repeats nothing.
    fn get_prefix_at(&self, prefix: &str) -> impl Future<Output = StoreResult<(i64, Vec<(String, Versioned)>)>> + Send;

    /// Every key under each of `prefixes` (one list per prefix, in the order given, each ordered
    /// by key) and the store revision the read saw: one round trip, every list as of that one
    /// revision (etcd: a transaction with no compares whose success branch ranges each prefix).
    fn get_prefixes_at(&self, prefixes: &[&str]) -> impl Future<Output = StoreResult<(i64, Vec<KeyValues>)>> + Send;

    /// Unconditional put, attached to `lease` when given; the revision of the write.
    fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> impl Future<Output = StoreResult<i64>> + Send;

    /// The compare-and-swap of one transaction: if `key`'s mod revision equals `expected_mod`
    /// (0: the key must be absent) and, when `guard` = (guard key, create revision) is given,
    /// the guard key exists with that create revision, then put `value` (None: delete the key);
    /// otherwise read back the key (and the guard) in the same transaction.
    fn swap(
        &self,
        key: &str,
        expected_mod: i64,
        guard: Option<(&str, i64)>,
        value: Option<Vec<u8>>,
    ) -> impl Future<Output = StoreResult<Swapped>> + Send;

    /// Watches every key under `prefix` from store revision `from_revision` on. Events arrive
    /// on the receiver strictly in revision order; after `Compacted` or `Broken` nothing more
    /// arrives. Dropping the receiver cancels the watch.
    fn watch_prefix(
        &self,
        prefix: &str,
        from_revision: i64,
    ) -> impl Future<Output = StoreResult<tokio::sync::mpsc::Receiver<WatchEvent>>> + Send;
}
