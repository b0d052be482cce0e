//! This gateway's membership: a lease, renewed on its own etcd client every TTL/4, and the
//! self-fence (docs/cluster.md "Self-fencing").
//!
//! The write deadline is `send time of the last acknowledged keepalive + TTL − margin` on the
//! local monotonic clock. etcd renews the lease when it *receives* the keepalive, which is after
//! we sent it, so etcd cannot expire the lease before `send time + TTL`; stopping writes `margin`
//! earlier leaves the backing store that long to finish a write submitted just before the
//! deadline. Past the deadline the write fence refuses writes by itself (the data path compares
//! the clock), and this task then reports the gateway Transitioning, waits for the writes already
//! admitted, and tries to rejoin: a fresh lease and membership key, every LUN definition read
//! and compared again, and only then writes are admitted again.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep, sleep_until, timeout_at, Instant};
use tracing::{debug, error, info, warn};

use super::identity::{agree, Agreement};
use super::pr_sync::ResyncHandle;
use super::records::{GatewayRecord, Keys, LunDefinition};
use super::status::{ClusterStatus, GatewayState};
use super::store::{ClusterStore, Created, LeaseId, StoreError};
use crate::scsi::alua::{AccessState, Alua};
use crate::scsi::{Lun, WriteFence};

/// Lease timing (`[cluster]` lease_ttl_secs, self_fence_margin_ms; keepalive every TTL/4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    pub ttl: Duration,
    pub margin: Duration,
    pub interval: Duration,
}

impl LeaseTiming {
    pub fn new(ttl: Duration, margin: Duration) -> LeaseTiming {
        LeaseTiming { ttl, margin, interval: ttl / 4 }
    }

    /// The write deadline for a lease last renewed by a keepalive sent at `sent`.
    fn deadline(&self, sent: Instant) -> Instant {
        sent + self.ttl.saturating_sub(self.margin)
    }
}

/// Why joining the cluster failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinError {
    Store(StoreError),
    /// Another live gateway holds our id.
    DuplicateGateway {
        holder: Option<GatewayRecord>,
    },
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinError::Store(e) => write!(f, "{e}"),
            JoinError::DuplicateGateway { holder: Some(h) } => write!(
                f,
                "gateway id {} is already live in the cluster (pid {}, portals {}): every gateway needs its own cluster.gateway_id",
                h.gateway_id,
                h.pid,
                h.portals.iter().map(|p| p.address.as_str()).collect::<Vec<_>>().join(", ")
            ),
            JoinError::DuplicateGateway { holder: None } => {
                f.write_str("this gateway id is already live in the cluster: every gateway needs its own cluster.gateway_id")
            }
        }
    }
}

impl From<StoreError> for JoinError {
    fn from(e: StoreError) -> Self {
        JoinError::Store(e)
    }
}

/// A LUN this gateway serves, with the definition it agreed on with the cluster.
pub struct ServedLun {
    pub definition: LunDefinition,
    pub lun: Arc<Lun>,
}

pub struct Membership<S: ClusterStore> {
    store: Arc<S>,
    keepalive_store: Arc<S>,
    keys: Keys,
    record: GatewayRecord,
    timing: LeaseTiming,
    fence: Arc<WriteFence>,
    alua: Arc<Alua>,
    served: Vec<ServedLun>,
    lease: LeaseId,
    /// The current lease, for whoever revokes it at shutdown (it changes on rejoin).
    lease_cell: Arc<AtomicI64>,
    /// Send time of the last acknowledged keepalive (or of the lease grant).
    acked_sent: Instant,
    /// What the admin socket shows.
    status: Arc<ClusterStatus>,
    /// Create revision of our membership key (changes on rejoin): reservation commits are
    /// conditioned on it.
    membership_revision: Arc<AtomicI64>,
    /// The reservation watcher, asked for a full re-read before a rejoined gateway serves.
    reservations: Option<ResyncHandle>,
}

impl<S: ClusterStore> Membership<S> {
    /// Takes this gateway's membership: a lease and the key `gateways/<id>` under it. A key held
    /// by another lease is waited for up to one TTL and a second (a previous run of this gateway
    /// that crashed leaves its key until its lease expires); a key still held then belongs to a
    /// live gateway with our id, and joining fails. The write fence stays closed.
    pub async fn join(
        store: Arc<S>,
        keepalive_store: Arc<S>,
        keys: Keys,
        record: GatewayRecord,
        timing: LeaseTiming,
        fence: Arc<WriteFence>,
        alua: Arc<Alua>,
    ) -> Result<Membership<S>, JoinError> {
        let status = ClusterStatus::new(record.gateway_id, timing, fence.clone());
        let mut membership = Membership {
            store,
            keepalive_store,
            keys,
            record,
            timing,
            fence,
            alua,
            served: Vec::new(),
            lease: LeaseId(0),
            lease_cell: Arc::new(AtomicI64::new(0)),
            acked_sent: Instant::now(),
            status,
            membership_revision: Arc::new(AtomicI64::new(0)),
            reservations: None,
        };
        let give_up = Instant::now() + timing.ttl + Duration::from_secs(1);
        // The holder last seen on our id: if etcd stops answering before the wait is over, that
        // is still the reason to refuse (it was live less than a TTL ago).
        let mut seen_holder = None;
        loop {
            let outcome = membership.acquire(None).await;
            let waiting = Instant::now() < give_up;
            match outcome {
                Ok(()) => return Ok(membership),
                Err(JoinError::DuplicateGateway { holder }) if waiting => {
                    info!(
                        gateway = membership.record.gateway_id,
                        holder_pid = holder.as_ref().map(|h| h.pid),
                        "gateway id held by another lease; waiting to see whether it expires"
                    );
                    seen_holder = Some(holder);
                }
                // A request that timed out (etcd busy, a leader election) says nothing about our
                // id: ask again until the wait is over rather than fail on one slow answer.
                Err(JoinError::Store(e @ (StoreError::Unavailable(_) | StoreError::LeaseNotFound))) if waiting => {
                    warn!(gateway = membership.record.gateway_id, "joining the cluster: {e}; trying again");
                }
                Err(JoinError::Store(StoreError::Unavailable(_) | StoreError::LeaseNotFound))
                    if seen_holder.is_some() =>
                {
                    return Err(JoinError::DuplicateGateway { holder: seen_holder.flatten() })
                }
                Err(e) => return Err(e),
            }
            sleep(timing.interval).await;
        }
    }

    /// Grants a fresh lease and creates our key under it. `previous`: our own earlier lease,
    /// whose key (if etcd still has it) is revoked first, so membership is always fresh.
    async fn acquire(&mut self, previous: Option<LeaseId>) -> Result<(), JoinError> {
        let key = self.keys.gateway(self.record.gateway_id);
        let value = serde_json::to_vec(&self.record).expect("a gateway record serialises");
        if let Some(old) = previous {
            self.store.revoke_lease(old).await?;
        }
        let sent = Instant::now();
        let lease = self.keepalive_store.grant_lease(self.timing.ttl).await?;
        match self.store.create(&key, value, Some(lease)).await {
            Ok(Created::Created) => {
                // The key's create revision tells our membership from a later one of the same id.
                let joined = match self.store.get(&key).await {
                    Ok(Some(found)) if found.lease == Some(lease) => found.create_revision,
                    Ok(_) => {
                        let _ = self.store.revoke_lease(lease).await;
                        return Err(JoinError::Store(StoreError::Rejected(
                            "membership key vanished after creation".into(),
                        )));
                    }
                    Err(e) => {
                        let _ = self.store.revoke_lease(lease).await;
                        return Err(e.into());
                    }
                };
                self.membership_revision.store(joined, Ordering::Release);
                self.lease = lease;
                self.lease_cell.store(lease.0, Ordering::Release);
                self.acked_sent = sent;
                self.status.acknowledged(lease.0, sent);
                Ok(())
            }
            Ok(Created::Exists(found)) => {
                let _ = self.store.revoke_lease(lease).await;
                let holder: Option<GatewayRecord> = serde_json::from_slice(&found.value).ok();
                match (holder, found.lease) {
                    // Our own key from an earlier attempt whose answer was lost (the create took
                    // effect, the revoke did not): not a duplicate. Revoke it and ask again.
                    (Some(h), Some(stale)) if h.boot_id == self.record.boot_id => {
                        self.store.revoke_lease(stale).await?;
                        Err(JoinError::Store(StoreError::Unavailable(
                            "an earlier attempt's membership key was left behind (now revoked)".into(),
                        )))
                    }
                    (holder, _) => Err(JoinError::DuplicateGateway { holder }),
                }
            }
            Err(e) => {
                let _ = self.store.revoke_lease(lease).await;
                Err(e.into())
            }
        }
    }

    /// The lease this gateway holds now (shared: it changes when the gateway rejoins).
    pub fn lease_cell(&self) -> Arc<AtomicI64> {
        self.lease_cell.clone()
    }

    /// The create revision of this gateway's current membership key (changes on rejoin).
    pub fn membership_cell(&self) -> Arc<AtomicI64> {
        self.membership_revision.clone()
    }

    /// Before serving again after a rejoin, the reservation state is read afresh through this.
    pub fn set_reservations(&mut self, handle: ResyncHandle) {
        self.reservations = Some(handle);
    }

    /// The view `palisade cluster status` shows.
    pub fn status(&self) -> Arc<ClusterStatus> {
        self.status.clone()
    }

    /// Publishes or checks a LU's definition (see `identity::agree`).
    pub async fn agree(&self, definition: &LunDefinition) -> Result<Agreement, StoreError> {
        agree(self.store.as_ref(), &self.keys, definition).await
    }

    /// Serves: opens the write fence until the current deadline, reports Active/Optimized, and
    /// runs the keepalive loop (with self-fencing and rejoining) until the task is aborted.
    pub fn start(mut self, served: Vec<ServedLun>) -> tokio::task::JoinHandle<()> {
        self.served = served;
        self.open();
        tokio::spawn(self.run())
    }

    fn deadline(&self) -> Instant {
        self.timing.deadline(self.acked_sent)
    }

    fn open(&self) {
        self.fence.open_until(self.deadline());
        self.alua.set_local_state(AccessState::ActiveOptimized);
        self.status.set_state(GatewayState::Serving);
    }

    async fn run(mut self) {
        loop {
            let why = self.renew_until_lost().await;
            self.self_fence(&why).await;
            self.rejoin().await;
        }
    }

    /// Sends a keepalive every `interval` and moves the deadline with each answer; returns why
    /// the membership is lost once the deadline passes without one.
    async fn renew_until_lost(&mut self) -> String {
        let mut next = self.acked_sent + self.timing.interval;
        let mut failures = 0u32;
        loop {
            let deadline = self.deadline();
            if Instant::now() >= deadline {
                return format!(
                    "no keepalive acknowledged for {} ms (TTL {} ms − margin {} ms)",
                    self.acked_sent.elapsed().as_millis(),
                    self.timing.ttl.as_millis(),
                    self.timing.margin.as_millis()
                );
            }
            sleep_until(next.min(deadline)).await;
            if Instant::now() >= deadline {
                continue;
            }
            let sent = Instant::now();
            match timeout_at(deadline, self.keepalive_store.keep_alive(self.lease)).await {
                Err(_) => {
                    self.status.keepalive(false);
                    continue;
                }
                Ok(Ok(granted)) => {
                    if failures > 0 {
                        info!(gateway = self.record.gateway_id, failures, "keepalives acknowledged again");
                    }
                    failures = 0;
                    self.status.keepalive(true);
                    debug!(
                        gateway = self.record.gateway_id,
                        rtt_us = sent.elapsed().as_micros() as u64,
                        "keepalive acknowledged"
                    );
                    // Never count on more than we asked for, whatever etcd answers.
                    let ttl = granted.min(self.timing.ttl);
                    self.acked_sent = sent;
                    self.status.acknowledged(self.lease.0, sent);
                    self.fence.open_until(sent + ttl.saturating_sub(self.timing.margin));
                    next = sent + self.timing.interval;
                }
                Ok(Err(StoreError::LeaseNotFound)) => {
                    return "etcd no longer has this gateway's lease".to_string();
                }
                Ok(Err(e)) => {
                    failures += 1;
                    self.status.keepalive(false);
                    if failures == 1 {
                        warn!(gateway = self.record.gateway_id, error = %e, "keepalive failed; retrying until the self-fence deadline");
                    } else {
                        debug!(gateway = self.record.gateway_id, error = %e, failures, "keepalive failed");
                    }
                    next = Instant::now() + (self.timing.interval / 4).max(Duration::from_millis(50));
                }
            }
        }
    }

    /// Stops writes (the fence has already refused them since the deadline), reports the
    /// gateway Transitioning and waits for the writes admitted before the deadline.
    async fn self_fence(&mut self, why: &str) {
        self.fence.close(false);
        self.alua.set_local_state(AccessState::Transitioning);
        self.status.set_state(GatewayState::SelfFenced);
        error!(
            gateway = self.record.gateway_id,
            lease = %format_args!("{:x}", self.lease.0),
            "self-fenced: {why}; writes refused (NOT READY, ALUA transitioning) until this gateway rejoins"
        );
        let started = Instant::now();
        for served in &self.served {
            served.lun.pr().quiesce().await;
        }
        let lease_end = self.acked_sent + self.timing.ttl;
        let drained = Instant::now();
        if drained > lease_end {
            error!(
                gateway = self.record.gateway_id,
                late_ms = (drained - lease_end).as_millis() as u64,
                "in-flight writes finished after the lease could expire: raise cluster.self_fence_margin_ms"
            );
        }
        info!(
            gateway = self.record.gateway_id,
            drain_ms = (drained - started).as_millis() as u64,
            "self-fence: every admitted write has finished"
        );
    }

    /// Tries every `interval` to take a fresh membership; re-reads and compares every served
    /// LU's definition, then serves again.
    async fn rejoin(&mut self) {
        let previous = self.lease;
        let lease_end = self.acked_sent + self.timing.ttl;
        let mut unavailable = false;
        let mut attempts = 0u32;
        loop {
            if !unavailable && Instant::now() >= lease_end {
                // The other gateways may now treat this one as gone (SPC-4 §5.15.2.4.5).
                unavailable = true;
                self.fence.report_unavailable();
                self.alua.set_local_state(AccessState::Unavailable);
                self.status.set_state(GatewayState::Unavailable);
                info!(gateway = self.record.gateway_id, "membership lease expired; reporting ALUA unavailable");
            }
            attempts += 1;
            match self.try_rejoin(previous).await {
                Ok(()) => {
                    self.open();
                    self.status.rejoined();
                    info!(
                        gateway = self.record.gateway_id,
                        lease = %format_args!("{:x}", self.lease.0),
                        attempts,
                        "rejoined the cluster: fresh lease, LUN definitions re-read; serving again"
                    );
                    return;
                }
                Err(why) if attempts == 1 || attempts.is_multiple_of(20) => {
                    warn!(gateway = self.record.gateway_id, attempts, "cannot rejoin the cluster yet: {why}")
                }
                Err(why) => debug!(gateway = self.record.gateway_id, attempts, "cannot rejoin yet: {why}"),
            }
            sleep(self.timing.interval).await;
        }
    }

    async fn try_rejoin(&mut self, previous: LeaseId) -> Result<(), String> {
        self.acquire(Some(previous)).await.map_err(|e| e.to_string())?;
        for served in &self.served {
            let refused = match agree(self.store.as_ref(), &self.keys, &served.definition).await {
                Ok(Agreement::Published | Agreement::Matches) => None,
                Ok(Agreement::Differs(d)) => Some(format!(
                    "LUN {} of {} no longer matches the cluster's definition: {}",
                    served.definition.lun,
                    served.definition.target,
                    d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("; ")
                )),
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = refused {
                let _ = self.store.revoke_lease(self.lease).await;
                return Err(why);
            }
        }
        // Reservation changes made while we were away were not waited for by their barriers:
        // read every LU's state afresh (our new key exists, so later changes wait for us).
        let within = self.deadline().saturating_duration_since(Instant::now());
        if let Some(reservations) = &mut self.reservations {
            if !reservations.resync(within).await {
                let _ = self.store.revoke_lease(self.lease).await;
                return Err("could not re-read the reservation state in time".into());
            }
        }
        if Instant::now() >= self.deadline() {
            let _ = self.store.revoke_lease(self.lease).await;
            return Err("rejoining took longer than the lease allows".into());
        }
        Ok(())
    }

    /// Leaves the cluster at shutdown: revoking the lease deletes our key, so the other
    /// gateways see us go at once instead of after the TTL.
    pub async fn leave(store: &S, lease: LeaseId) {
        match store.revoke_lease(lease).await {
            Ok(()) => info!("left the cluster (lease revoked)"),
            Err(e) => warn!(error = %e, "could not revoke the membership lease; peers will see it expire"),
        }
    }
}
