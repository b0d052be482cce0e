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
}
