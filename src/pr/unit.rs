//! The fencing gate of one logical unit (architecture §2.6): the authoritative reservation
//! state behind a fair async RwLock. Data commands hold a read guard across their conflict
//! check and backend I/O; PERSISTENT RESERVE OUT takes the write guard, applies, persists when
//! APTPL requires it, runs its effects (aborts, unit attentions) and only then lets I/O resume.
//! Because Tokio's RwLock queues new readers behind a waiting writer, once a PREEMPT AND ABORT
//! has returned no write of a preempted nexus is in the backend and none can enter it.

use super::apply::{Effects, Transition, DEFAULT_MAX_REGISTRANTS};
use super::request::{PrError, Request};
use super::state::{ItNexus, State};
use super::store::Store;
use std::fmt;
use std::sync::{Arc, RwLock as StdRwLock};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

pub struct Unit {
    gate: RwLock<Arc<State>>,
    /// The last committed state, for synchronous readers (command admission, `pr show`).
    published: StdRwLock<Arc<State>>,
    store: Option<Arc<dyn Store>>,
    /// Registrations beyond this get INSUFFICIENT REGISTRATION RESOURCES.
    max_registrants: usize,
}

impl fmt::Debug for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unit").field("state", &self.snapshot()).field("store", &self.store).finish()
    }
}

impl Default for Unit {
    fn default() -> Self {
        Unit::with_state(State::default(), None)
    }
}

impl Unit {
    /// A unit holding `state`, persisting it to `store` whenever APTPL requires.
    pub fn with_state(state: State, store: Option<Arc<dyn Store>>) -> Self {
        let state = Arc::new(state);
        Unit {
            gate: RwLock::new(state.clone()),
            published: StdRwLock::new(state),
            store,
            max_registrants: DEFAULT_MAX_REGISTRANTS,
        }
    }

    /// Sets the registration limit (`[limits] max_registrants_per_lun`). A restored state
    /// holding more keeps them all; only new registrations are refused.
    pub fn set_max_registrants(&mut self, max: usize) {
        self.max_registrants = max;
    }

    pub fn max_registrants(&self) -> usize {
        self.max_registrants
    }

    /// A unit whose state lives in memory only (APTPL is accepted but cannot survive restart
    /// without a store).
    pub fn volatile() -> Self {
        Unit::default()
    }

    /// A unit restored from `store`. A record that cannot be read is reported and the unit
    /// starts empty rather than from a half-read state.
    pub fn restored(store: Arc<dyn Store>) -> (Self, Option<std::io::Error>) {
        match store.load() {
            Ok(state) => (Unit::with_state(state.unwrap_or_default(), Some(store)), None),
            Err(e) => (Unit::with_state(State::default(), Some(store)), Some(e)),
        }
    }

    /// The last committed state (no waiting; may be older than an in-progress change).
    pub fn snapshot(&self) -> Arc<State> {
        self.published.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The fencing read guard: hold it across the conflict check and the backend I/O.
    pub async fn read(&self) -> RwLockReadGuard<'_, Arc<State>> {
        self.gate.read().await
    }

    /// Waits until every command that holds the fencing gate now has finished its I/O (takes
    /// and drops the write side). A cluster gateway that closed its write fence calls it to know
    /// no admitted write is still on its way to the backing store (docs/cluster.md).
    pub async fn quiesce(&self) {
        drop(self.gate.write().await);
    }

    /// The write side of the gate, for a cluster gateway that commits changes to the shared
    /// store itself (cluster/reservations.rs): while it is held no command is between its
    /// conflict check and the end of its backend I/O, and none can start.
    pub async fn lock(&self) -> UnitLock<'_> {
        UnitLock { guard: self.gate.write().await, published: &self.published }
    }

    /// Applies `request` under the write guard. `commit` runs after the new state is durable
    /// and published but before any I/O may pass the gate again: it aborts the preempted
    /// tasks and queues unit attentions.
    pub async fn change(
        &self,
        nexus: &ItNexus,
        request: &Request,
        commit: impl FnOnce(&State, &Effects),
    ) -> Result<(Arc<State>, Effects), PrError> {
        let mut guard = self.gate.write().await;
        let Transition { next, effects } = guard.apply_limited(nexus, request, self.max_registrants)?;
        let next = Arc::new(next);
        if effects.persist {
            if let Some(store) = &self.store {
                let (store, previous, next) = (store.clone(), guard.clone(), next.clone());
                // The gate stays closed during the fsync: PR OUT is rare, and I/O must not
                // observe a state that a crash could still take back.
                tokio::task::spawn_blocking(move || store.save(&previous, &next))
                    .await
                    .map_err(|e| PrError::Store(e.to_string()))?
                    .map_err(|e| PrError::Store(e.to_string()))?;
            }
        }
        *guard = next.clone();
        *self.published.write().unwrap_or_else(|p| p.into_inner()) = next.clone();
        commit(&next, &effects);
        drop(guard);
        Ok((next, effects))
    }
}

/// The fencing gate held for writing (`Unit::lock`).
pub struct UnitLock<'a> {
    guard: RwLockWriteGuard<'a, Arc<State>>,
    published: &'a StdRwLock<Arc<State>>,
}

impl UnitLock<'_> {
    pub fn state(&self) -> &Arc<State> {
        &self.guard
    }

    /// Makes `next` the state every later command sees (once the lock is dropped).
    pub fn publish(&mut self, next: Arc<State>) {
        *self.guard = next.clone();
        *self.published.write().unwrap_or_else(|p| p.into_inner()) = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pr::state::fixtures::nexus;
    use crate::pr::state::PrType;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    fn register(key: u64) -> Request {
        Request::Register { key: 0, new_key: key, ignore_existing: true, all_tg_pt: false, aptpl: false, spec: vec![] }
    }

    #[tokio::test]
    async fn a_change_waits_for_io_in_flight_and_blocks_new_io_until_committed() {
        let unit = Arc::new(Unit::volatile());
        let (a, b) = (nexus("a", 1), nexus("b", 1));
        unit.change(&a, &register(1), |_, _| {}).await.unwrap();
        unit.change(&b, &register(2), |_, _| {}).await.unwrap();
        unit.change(&a, &Request::Reserve { key: 1, kind: PrType::WriteExclusiveRegistrantsOnly }, |_, _| {})
            .await
            .unwrap();

        let io = unit.read().await; // a write of B is "in the backend"
        let committed = Arc::new(AtomicBool::new(false));
        let preempt = {
            let (unit, committed) = (unit.clone(), committed.clone());
            let req = Request::Preempt { key: 1, victim: 2, kind: PrType::WriteExclusiveRegistrantsOnly, abort: true };
            tokio::spawn(async move {
                unit.change(&nexus("a", 1), &req, |_, fx| {
                    assert_eq!(fx.abort.len(), 1);
                    committed.store(true, Ordering::SeqCst);
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!committed.load(Ordering::SeqCst), "the change must wait for I/O holding the gate");
        // A new command of B queues behind the writer and then sees the new state.
        let late = {
            let unit = unit.clone();
            tokio::spawn(async move { unit.read().await.is_registered(&nexus("b", 1)) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(io);
        preempt.await.unwrap().unwrap();
        assert!(committed.load(Ordering::SeqCst));
        assert!(!late.await.unwrap(), "I/O admitted after the preempt must see it");
        assert!(!unit.snapshot().is_registered(&b));
    }

    #[tokio::test]
    async fn a_failed_request_changes_nothing_and_runs_no_effects() {
        let unit = Unit::volatile();
        let err = unit.change(&nexus("a", 1), &Request::Clear { key: 5 }, |_, _| panic!("no commit")).await;
        assert_eq!(err.unwrap_err(), PrError::Conflict);
        assert_eq!(*unit.snapshot(), State::default());
    }
}
