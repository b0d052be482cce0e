//! One reservation state per LU for the whole cluster (docs/cluster.md "One reservation state
//! per LUN"). The state lives in one etcd key per LU; its mod revision orders every change.
//!
//! - **PR OUT** (`change`): with the LU's fencing gate held for writing, apply the request to
//!   the state held at revision R and commit it with one transaction: "if the record is still at
//!   R and this gateway's membership key is still ours, put the new state". A lost race waits
//!   until the watch has brought the newer state and tries again; a refusal (RESERVATION
//!   CONFLICT, bad parameters) is returned only after a read shows the state it was judged on is
//!   current.
//! - **Apply in revision order** (`apply`): every gateway installs every change the watch
//!   delivers, under its gate (so no write of a fenced nexus is in its backend afterwards), runs
//!   the change's effects on its own nexuses, waits for the tasks it aborted, and only then
//!   acknowledges the revision in `pr-acks/<lun>/<gateway>` under its lease.
//! - **The barrier**: GOOD is returned once every gateway that was a member when the change was
//!   committed has acknowledged it, or has lost its membership — which, by the self-fence
//!   (membership.rs), means it stopped writing before its lease could expire.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep, timeout, Instant};
use tracing::{debug, error, warn};

use super::membership::LeaseTiming;
use super::pr_record::{self, LastOp, SharedRecord};
use super::records::Keys;
use super::status::PrOutStats;
use super::store::{ClusterStore, KeyValues, LeaseId, StoreError, Swapped, Versioned};
use crate::pr::{Effects, PrError, PrUnitAttention, State};
use crate::scsi::pr_out::apply_effects;
use crate::scsi::shared_pr::ChangeFuture;
use crate::scsi::{Changed, ItNexus, Lun, PrOutCall, SharedReservations};

/// A lost commit race is retried at most this often before the PR OUT gives up (NOT READY):
/// each retry means another gateway's change committed, so this only bounds a livelock.
const MAX_ATTEMPTS: u32 = 64;
/// How often the barrier re-reads the membership and acknowledgements when no acknowledgement
/// arrives: a gateway that dies mid-change never acknowledges; its key goes with its lease.
const BARRIER_RECHECK: Duration = Duration::from_millis(20);

/// What every LU of this gateway shares.
pub struct SyncContext<S: ClusterStore> {
    pub store: Arc<S>,
    pub keys: Keys,
    pub gateway_id: u16,
    /// This gateway's lease (acknowledgements live under it; it changes on rejoin).
    pub lease: Arc<AtomicI64>,
    /// Create revision of this gateway's membership key: every commit is conditioned on it.
    pub membership: Arc<AtomicI64>,
    pub timing: LeaseTiming,
    /// False only for the fencing test's negative control (PALISADE_UNSAFE_SKIP_PR_BARRIER).
    pub barrier: bool,
    pub stats: Arc<PrOutStats>,
}

/// How far a LU has applied the shared state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// Every change up to this store revision is applied.
    pub applied: i64,
    /// Mod revision of the record the LU's gate holds (0: no record).
    pub held: i64,
}

/// A LU's reservation state as this gateway shares it.
pub struct SharedLun<S: ClusterStore> {
    ctx: Arc<SyncContext<S>>,
    target: String,
    lun_id: u64,
    key: String,
    acks: String,
    /// Changed only with the LU's fencing gate held.
    position: watch::Sender<Position>,
    /// (lease, revision) of the last acknowledgement written: acknowledgements never go back
    /// (the watcher's and a commit's may race), and a new lease (a rejoin) writes afresh.
    acknowledged: tokio::sync::Mutex<(i64, i64)>,
    /// Bumped whenever the watch sees any gateway's acknowledgement of this LU.
    acknowledgements: watch::Sender<u64>,
}

impl<S: ClusterStore> std::fmt::Debug for SharedLun<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLun").field("key", &self.key).field("position", &*self.position.borrow()).finish()
    }
}

impl<S: ClusterStore> SharedLun<S> {
    pub fn new(ctx: Arc<SyncContext<S>>, target: &str, lun_id: u64) -> SharedLun<S> {
        SharedLun {
            key: ctx.keys.reservation(target, lun_id),
            acks: ctx.keys.reservation_acks(target, lun_id),
            ctx,
            target: target.to_string(),
            lun_id,
            position: watch::Sender::new(Position::default()),
            acknowledged: tokio::sync::Mutex::new((0, 0)),
            acknowledgements: watch::Sender::new(0),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn acks_prefix(&self) -> &str {
        &self.acks
    }

    /// The watch saw an acknowledgement of this LU: waiting barriers look again.
    pub fn acknowledgement_seen(&self) {
        self.acknowledgements.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn position(&self) -> Position {
        *self.position.borrow()
    }

    /// Installs the record at `revision` (None: the key was deleted) if it is newer than what
    /// the LU holds: under the gate, with its effects on this gateway's nexuses, then waits for
    /// the aborted tasks and acknowledges. Changes already applied (our own commits) are only
    /// acknowledged again.
    pub async fn apply(&self, lun: &Lun, revision: i64, value: Option<&Versioned>) {
        let mut gate = lun.pr().lock().await;
        let position = self.position();
        if revision <= position.applied {
            // Our own commit (applied when it was made): acknowledged here, off the path of
            // its PR OUT, for `palisade cluster status` — no barrier waits on a gateway's own.
            drop(gate);
            self.acknowledge(position.applied).await;
            return;
        }
        let held = value.map_or(0, |v| v.mod_revision);
        if held == position.held {
            // The record the LU holds (a full re-read found nothing new).
            self.position.send_replace(Position { applied: revision, held });
            drop(gate);
            self.acknowledge(revision).await;
            return;
        }
        let record = match value.map(|v| pr_record::decode(&v.value)).transpose() {
            Ok(record) => record.unwrap_or(SharedRecord { state: State::default(), op: None }),
            Err(e) => {
                // Never acknowledged: the barrier of whoever wrote it times out rather than
                // pretending this gateway fences by a state it cannot read.
                error!(key = %self.key, revision, error = %e, "unreadable reservation record; not applied");
                return;
            }
        };
        let old = gate.state().clone();
        let (effects, origin) = effects_of(&old, &record, position.held);
        let exact = origin.is_some();
        let next = Arc::new(record.state);
        gate.publish(next.clone());
        self.position.send_replace(Position { applied: revision, held });
        let aborted = apply_effects(lun, &effects, origin.as_ref());
        drop(gate);
        let aborted_tasks = aborted.len();
        aborted.wait().await;
        debug!(
            target = %self.target, lun = self.lun_id, revision, generation = next.generation,
            registrants = next.registrants.len(), origin = record.op.as_ref().map(|op| op.origin),
            exact, aborted_tasks, "applied a cluster reservation change"
        );
        if !exact && old.as_ref() != next.as_ref() {
            warn!(target = %self.target, lun = self.lun_id, revision, "reservation state re-read after missed changes; fenced conservatively (every lost registration treated as preempted)");
        }
        self.acknowledge(revision).await;
    }

    /// Every change up to `revision` is in (a full read at that revision found no more).
    pub fn caught_up(&self, revision: i64) {
        self.position.send_if_modified(|p| {
            let moved = revision > p.applied;
            p.applied = p.applied.max(revision);
            moved
        });
    }

    /// Tells the other gateways' barriers that this gateway has applied and drained `revision`.
    pub async fn acknowledge(&self, revision: i64) {
        let mut last = self.acknowledged.lock().await;
        let lease = self.ctx.lease.load(Ordering::Acquire);
        if last.0 == lease && last.1 >= revision {
            return;
        }
        let key = format!("{}{}", self.acks, self.ctx.gateway_id);
        // Until it is written, barriers wait for this gateway — or for its lease to end: retry
        // a few times within one keepalive interval rather than leave them waiting.
        for attempt in 1..=4 {
            match self.ctx.store.put(&key, revision.to_string().into_bytes(), Some(LeaseId(lease))).await {
                Ok(_) => {
                    *last = (lease, revision);
                    return;
                }
                Err(e) => debug!(key = %key, revision, attempt, error = %e, "acknowledgement not written"),
            }
            sleep(self.ctx.timing.interval / 4).await;
        }
    }

    /// Waits until the LU holds the record at mod revision `current` (0: absent) or newer.
    async fn wait_for_record(&self, current: i64) -> Result<(), PrError> {
        let mut rx = self.position.subscribe();
        let reached = |p: &Position| p.held == current || (current > 0 && p.applied >= current);
        let reached = timeout(self.ctx.timing.ttl, rx.wait_for(reached)).await.is_ok_and(|r| r.is_ok());
        match reached {
            true => Ok(()),
            false => Err(PrError::Unavailable(format!(
                "the reservation watch has not delivered revision {current} within {} ms",
                self.ctx.timing.ttl.as_millis()
            ))),
        }
    }

    /// Whether the record the LU holds is etcd's current one; if not, waits until it is.
    async fn is_current(&self, held: i64) -> Result<bool, PrError> {
        let found = self.ctx.store.get(&self.key).await.map_err(|e| PrError::Unavailable(e.to_string()))?;
        let current = found.map_or(0, |v| v.mod_revision);
        if current == held {
            return Ok(true);
        }
        self.wait_for_record(current).await?;
        Ok(false)
    }

    async fn commit(&self, lun: &Lun, call: PrOutCall<'_>) -> Result<Changed, PrError> {
        let result = self.try_commit(lun, call).await;
        if matches!(result, Err(PrError::Unavailable(_))) {
            self.ctx.stats.failed();
        }
        result
    }

    async fn try_commit(&self, lun: &Lun, call: PrOutCall<'_>) -> Result<Changed, PrError> {
        let started = Instant::now();
        for _ in 0..MAX_ATTEMPTS {
            let mut gate = lun.pr().lock().await;
            let base = self.position().held;
            let transition = match gate.state().apply_limited(call.nexus, call.request, lun.pr().max_registrants()) {
                Ok(t) => t,
                Err(refusal) => {
                    drop(gate);
                    if self.is_current(base).await? {
                        return Err(refusal);
                    }
                    continue;
                }
            };
            let op = LastOp::new(self.ctx.gateway_id, base, &call);
            let record = pr_record::encode(&transition.next, Some(&op));
            match self.swap(base, record, op.op_id).await? {
                Swapped::Done { revision } => {
                    let next = Arc::new(transition.next);
                    gate.publish(next.clone());
                    self.position.send_replace(Position { applied: revision, held: revision });
                    let aborted = apply_effects(lun, &transition.effects, Some(call.nexus));
                    drop(gate);
                    let committed = Instant::now();
                    self.barrier(revision).await?;
                    self.ctx.stats.committed(started.elapsed(), committed.elapsed());
                    return Ok(Changed { next, effects: transition.effects, aborted });
                }
                Swapped::Stale { guard_held: false, .. } => {
                    return Err(PrError::Unavailable("this gateway's cluster membership has ended".into()));
                }
                Swapped::Stale { current, guard_held: true } => {
                    drop(gate);
                    self.ctx.stats.lost_race();
                    self.wait_for_record(current.map_or(0, |v| v.mod_revision)).await?;
                }
            }
        }
        Err(PrError::Unavailable(format!("lost the commit race {MAX_ATTEMPTS} times")))
    }

    /// The commit transaction (reservations.rs header), retried for up to one TTL while etcd
    /// does not answer (a leader election): a retry after a lost answer finds the record
    /// already ours, and says so, instead of applying the request twice.
    async fn swap(&self, base: i64, record: Vec<u8>, op_id: u64) -> Result<Swapped, PrError> {
        let started = Instant::now();
        let guard_key = self.ctx.keys.gateway(self.ctx.gateway_id);
        loop {
            let guard = (guard_key.as_str(), self.ctx.membership.load(Ordering::Acquire));
            match self.ctx.store.swap(&self.key, base, Some(guard), Some(record.clone())).await {
                Ok(Swapped::Stale { current: Some(v), .. })
                    if pr_record::decode(&v.value).is_ok_and(|r| r.op.is_some_and(|op| op.op_id == op_id)) =>
                {
                    return Ok(Swapped::Done { revision: v.mod_revision });
                }
                Ok(outcome) => return Ok(outcome),
                Err(e) if started.elapsed() < self.ctx.timing.ttl => {
                    debug!(key = %self.key, error = %e, "reservation commit unanswered; retrying");
                    sleep(self.ctx.timing.interval / 4).await;
                }
                Err(e) => return Err(PrError::Unavailable(e.to_string())),
            }
        }
    }

    /// Returns once every gateway that was a member at `revision` has acknowledged it or has
    /// left (its membership key is gone: its lease expired or was revoked).
    async fn barrier(&self, revision: i64) -> Result<(), PrError> {
        if !self.ctx.barrier {
            return Ok(());
        }
        let started = Instant::now();
        // A member that neither acknowledges nor loses its lease is broken; after two TTLs the
        // initiator is told NOT READY rather than GOOD for fencing that may not hold.
        let give_up = started + self.ctx.timing.ttl * 2;
        let mut logged = false;
        // Subscribed before the first look: no acknowledgement written after it is missed.
        let mut acknowledgements = self.acknowledgements.subscribe();
        loop {
            let waiting = self.unacknowledged(revision).await;
            match waiting {
                Ok(w) if w.is_empty() => {
                    if logged {
                        warn!(target = %self.target, lun = self.lun_id, revision, waited_ms = started.elapsed().as_millis() as u64, "reservation change acknowledged cluster-wide");
                    }
                    return Ok(());
                }
                Ok(ref w) if !logged && started.elapsed() > self.ctx.timing.interval => {
                    logged = true;
                    warn!(target = %self.target, lun = self.lun_id, revision, gateways = ?w, "waiting for gateways to apply a reservation change (or for their leases to expire)");
                }
                _ => {}
            }
            if Instant::now() >= give_up {
                return Err(PrError::Unavailable(format!(
                    "gateways {:?} neither applied revision {revision} nor left the cluster",
                    waiting.clone().unwrap_or_default()
                )));
            }
            tokio::select! {
                _ = acknowledgements.changed() => {}
                () = sleep(BARRIER_RECHECK) => {}
            }
        }
    }

    /// Members (other than this gateway) that joined before `revision` and have not
    /// acknowledged it. Memberships and acknowledgements are read in one round trip, as of one
    /// store revision.
    async fn unacknowledged(&self, revision: i64) -> Result<Vec<u16>, StoreError> {
        let keys = &self.ctx.keys;
        let (_, read) = self.ctx.store.get_prefixes_at(&[&keys.gateways(), &self.acks]).await?;
        // A missing list must not read as "no members": that would pass the barrier.
        let [members, acks]: [KeyValues; 2] = read
            .try_into()
            .map_err(|read: Vec<_>| StoreError::Rejected(format!("asked for 2 prefixes, got {}", read.len())))?;
        let acked = |id: u16| {
            acks.iter()
                .find(|(k, _)| k.strip_prefix(&self.acks).and_then(|g| g.parse::<u16>().ok()) == Some(id))
                .and_then(|(_, v)| std::str::from_utf8(&v.value).ok()?.parse::<i64>().ok())
                .unwrap_or(0)
        };
        Ok(members
            .iter()
            .filter_map(|(k, v)| Some((keys.gateway_id_of(k)?, v.create_revision)))
            .filter(|&(id, joined)| id != self.ctx.gateway_id && joined < revision && acked(id) < revision)
            .map(|(id, _)| id)
            .collect())
    }
}

impl<S: ClusterStore> SharedReservations for SharedLun<S> {
    fn change<'a>(&'a self, lun: &'a Lun, call: PrOutCall<'a>) -> ChangeFuture<'a> {
        Box::pin(self.commit(lun, call))
    }
}

/// The effects of the change from `old` (held at mod revision `held`) to `record`, and the
/// nexus that made it: exact when `old` is the state the change was applied to (the same pure
/// `apply` on the same state gives the same effects), conservative otherwise.
fn effects_of(old: &State, record: &SharedRecord, held: i64) -> (Effects, Option<ItNexus>) {
    if let Some(op) = record.op.as_ref().filter(|op| op.base == held) {
        if let (Some(nexus), Some(request)) = (op.nexus(), op.request()) {
            // The originator enforced the registration limit already.
            if let Ok(t) = old.apply_limited(&nexus, &request, usize::MAX) {
                if t.next == record.state {
                    return (t.effects, Some(nexus));
                }
            }
        }
    }
    (conservative_effects(old, &record.state), None)
}

/// Missed changes (a compacted watch, a rejoin): every registration that is gone is treated as
/// preempted and aborted (SPC-4 §5.13.11.2.6 is the strongest outcome any change could have
/// had), and a reservation that changed is reported released to the registrants that remain.
fn conservative_effects(old: &State, new: &State) -> Effects {
    let mut effects = Effects::default();
    for r in old.registrants.iter().filter(|r| new.registrants.get(&r.id).is_none()) {
        effects.abort.push(r.id.clone());
        effects.ua.push((r.id.initiator.clone(), PrUnitAttention::RegistrationsPreempted));
    }
    if old.reservation.is_some() && old.reservation != new.reservation {
        for r in new.registrants.iter().filter(|r| old.registrants.get(&r.id).is_some()) {
            effects.ua.push((r.id.initiator.clone(), PrUnitAttention::ReservationsReleased));
        }
    }
    effects
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pr::request::build as param;
    use crate::pr::state::fixtures::nexus;
    use crate::pr::{PrType, Request};

    fn register(state: &State, who: &ItNexus, key: u64) -> State {
        state
            .apply(
                who,
                &Request::Register {
                    key: 0,
                    new_key: key,
                    ignore_existing: true,
                    all_tg_pt: false,
                    aptpl: false,
                    spec: vec![],
                },
            )
            .unwrap()
            .next
    }

    #[test]
    fn a_replayed_change_has_the_originators_effects() {
        let (a, b) = (nexus("a", 1), nexus("b", 1));
        let old = register(&register(&State::default(), &a, 1), &b, 2);
        let bytes = param::basic(1, 2, 0);
        let action = 0x05; // PREEMPT AND ABORT
        let scope_type = PrType::WriteExclusive.code();
        let request = crate::pr::request::decode(action, scope_type, &bytes).unwrap();
        let t = old.apply(&a, &request).unwrap();
        let call = PrOutCall { nexus: &a, action, scope_type, param: &bytes, request: &request };
        let record = SharedRecord { state: t.next.clone(), op: Some(LastOp::new(1, 7, &call)) };
        let (effects, origin) = effects_of(&old, &record, 7);
        assert_eq!((effects, origin), (t.effects.clone(), Some(a.clone())));
        assert!(!t.effects.abort.is_empty());
        // Held another revision: the conservative effects still abort the preempted nexus.
        let (effects, origin) = effects_of(&old, &record, 6);
        assert_eq!(origin, None);
        assert_eq!(effects.abort, vec![crate::pr::RegistrantId::of(&b, false)]);
    }

    #[test]
    fn conservative_effects_report_a_changed_reservation_as_released() {
        let (a, b) = (nexus("a", 1), nexus("b", 1));
        let both = register(&register(&State::default(), &a, 1), &b, 2);
        let reserved =
            both.apply(&a, &Request::Reserve { key: 1, kind: PrType::WriteExclusiveRegistrantsOnly }).unwrap().next;
        let effects = conservative_effects(&reserved, &both);
        assert!(effects.abort.is_empty());
        assert_eq!(effects.ua.len(), 2);
        assert!(effects.ua.iter().all(|(_, ua)| *ua == PrUnitAttention::ReservationsReleased));
    }
}
