//! Shared reservations of several gateways over the in-memory store (paused clock): commits,
//! lost races, the barrier, exact effects on the other gateway, re-reads and power-on.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use super::membership::LeaseTiming;
use super::memory::MemoryStore;
use super::pr_sync::{power_on, PrSync, SyncedLun};
use super::records::Keys;
use super::reservations::{SharedLun, SyncContext};
use super::store::{ClusterStore, Created, LeaseId};
use crate::backend::{Backend, MemoryBackend};
use crate::pr::request::build as param;
use crate::pr::{PrError, PrType};
use crate::scsi::lun::LunIdentity;
use crate::scsi::{ItNexus, Lun, PrOutCall, SharedReservations};

const TARGET: &str = "iqn.2026-11.io.palisade:cluster";
const TTL: Duration = Duration::from_secs(2);

/// One gateway: its membership key and lease in the store, its LU, its watcher running.
struct Gateway {
    id: u16,
    lun: Arc<Lun>,
    shared: Arc<SharedLun<MemoryStore>>,
    lease: LeaseId,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

async fn member(store: &MemoryStore, keys: &Keys, id: u16) -> (LeaseId, i64) {
    let lease = store.grant_lease(TTL).await.unwrap();
    assert_eq!(store.create(&keys.gateway(id), b"{}".to_vec(), Some(lease)).await.unwrap(), Created::Created);
    (lease, store.get(&keys.gateway(id)).await.unwrap().unwrap().create_revision)
}

/// What gateway `id`'s shared LUs use, with its membership `lease` and key revision `joined`.
fn context(
    store: &Arc<MemoryStore>,
    keys: &Keys,
    id: u16,
    lease: LeaseId,
    joined: i64,
) -> Arc<SyncContext<MemoryStore>> {
    Arc::new(SyncContext {
        store: store.clone(),
        keys: keys.clone(),
        gateway_id: id,
        lease: Arc::new(AtomicI64::new(lease.0)),
        membership: Arc::new(AtomicI64::new(joined)),
        timing: LeaseTiming::new(TTL, Duration::from_millis(500)),
        barrier: true,
        stats: Arc::default(),
    })
}

/// A gateway that joins, loads the shared state and follows it. With `renew`, its lease is kept
/// alive; without, it expires one TTL after joining (a gateway that died).
async fn gateway(store: &Arc<MemoryStore>, id: u16, renew: bool) -> Gateway {
    let keys = Keys::new("/p");
    let (lease, joined) = member(store, &keys, id).await;
    let ctx = context(store, &keys, id, lease, joined);
    let backend = Backend::Memory(MemoryBackend::new(1 << 20));
    let lun = Arc::new(Lun::new(0, backend, 512, LunIdentity::new("d", "1", "S"), false).unwrap());
    let shared = Arc::new(SharedLun::new(ctx, TARGET, 0));
    let (sync, _) = PrSync::new(
        store.clone(),
        keys,
        vec![SyncedLun { shared: shared.clone(), lun: lun.clone() }],
        Duration::from_millis(500),
    );
    let from = sync.load().await.unwrap();
    lun.share_reservations(shared.clone());
    let mut tasks = vec![tokio::spawn(sync.run(from))];
    if renew {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(TTL / 4).await;
                let _ = store.keep_alive(lease).await;
            }
        }));
    }
    Gateway { id, lun, shared, lease, tasks }
}

fn nexus(host: &str, gateway: u16) -> ItNexus {
    let mut n = ItNexus::new(&format!("iqn.2026-11.test:{host}"), [0x80, 0, 0, 0, 0, 1], TARGET, 1);
    n.target.relative_port = gateway * 256 + 1;
    n
}

/// PERSISTENT RESERVE OUT through `gw` as the SCSI layer issues it.
async fn pr_out(gw: &Gateway, who: &ItNexus, action: u8, kind: Option<PrType>, bytes: Vec<u8>) -> Result<(), PrError> {
    let scope_type = kind.map_or(0, PrType::code);
    let request = crate::pr::request::decode(action, scope_type, &bytes)?;
    let call = PrOutCall { nexus: who, action, scope_type, param: &bytes, request: &request };
    let changed = gw.shared.change(&gw.lun, call).await?;
    changed.aborted.wait().await;
    Ok(())
}

const REGISTER: u8 = 0x00;
const RESERVE: u8 = 0x01;
const PREEMPT_AND_ABORT: u8 = 0x05;

#[tokio::test(start_paused = true)]
async fn a_change_through_one_gateway_is_in_force_on_every_gateway_when_good_returns() {
    let store = Arc::new(MemoryStore::new());
    let (g1, g2) = (gateway(&store, 1, true).await, gateway(&store, 2, true).await);
    let (a, b) = (nexus("a", g1.id), nexus("b", g2.id));
    pr_out(&g1, &a, REGISTER, None, param::basic(0, 0xA, 0)).await.unwrap();
    // GOOD came after gateway 2 applied it: its own state shows the registration.
    assert!(g2.lun.pr().snapshot().is_registered(&a));
    pr_out(&g2, &b, REGISTER, None, param::basic(0, 0xB, 0)).await.unwrap();
    pr_out(&g1, &a, RESERVE, Some(PrType::WriteExclusiveRegistrantsOnly), param::basic(0xA, 0, 0)).await.unwrap();
    for gw in [&g1, &g2] {
        let state = gw.lun.pr().snapshot();
        assert_eq!((state.generation, state.registrants.len()), (2, 2), "PRgeneration is cluster-wide");
        assert!(state.is_holder(&a) && !state.is_holder(&b));
    }
    // Refused by the current state on the other gateway: RESERVATION CONFLICT, nothing changes.
    let err = pr_out(&g2, &b, RESERVE, Some(PrType::ExclusiveAccess), param::basic(0xB, 0, 0)).await;
    assert_eq!(err, Err(PrError::Conflict));
    // B preempts A through gateway 2: A's registration is gone on gateway 1 before GOOD.
    pr_out(&g2, &b, PREEMPT_AND_ABORT, Some(PrType::ExclusiveAccess), param::basic(0xB, 0xA, 0)).await.unwrap();
    let on_g1 = g1.lun.pr().snapshot();
    assert!(!on_g1.is_registered(&a) && on_g1.is_holder(&b));
    assert_eq!(on_g1.reservation.as_ref().map(|r| r.kind), Some(PrType::ExclusiveAccess));
    assert_eq!(g1.shared.position(), g2.shared.position());
}

#[tokio::test(start_paused = true)]
async fn concurrent_changes_through_two_gateways_both_commit_in_one_order() {
    let store = Arc::new(MemoryStore::new());
    let (g1, g2) = (gateway(&store, 1, true).await, gateway(&store, 2, true).await);
    let (a, b) = (nexus("a", g1.id), nexus("b", g2.id));
    let (r1, r2) = tokio::join!(
        pr_out(&g1, &a, REGISTER, None, param::basic(0, 1, 0)),
        pr_out(&g2, &b, REGISTER, None, param::basic(0, 2, 0))
    );
    r1.unwrap();
    r2.unwrap();
    for gw in [&g1, &g2] {
        let state = gw.lun.pr().snapshot();
        assert_eq!((state.generation, state.registrants.len()), (2, 2));
    }
}

#[tokio::test(start_paused = true)]
async fn the_barrier_waits_for_a_silent_member_until_its_lease_ends() {
    let store = Arc::new(MemoryStore::new());
    let g1 = gateway(&store, 1, true).await;
    // Gateway 3 joined and then stopped answering: it acknowledges nothing and its lease lapses.
    let keys = Keys::new("/p");
    let (_silent, _) = member(&store, &keys, 3).await;
    let started = tokio::time::Instant::now();
    pr_out(&g1, &nexus("a", 1), REGISTER, None, param::basic(0, 1, 0)).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= TTL - Duration::from_millis(100), "GOOD before the silent member's lease could end: {waited:?}");
    assert!(waited < TTL + Duration::from_millis(200), "waited {waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_gateway_whose_membership_ended_cannot_commit() {
    let store = Arc::new(MemoryStore::new());
    let g1 = gateway(&store, 1, false).await;
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;
    let err = pr_out(&g1, &nexus("a", 1), REGISTER, None, param::basic(0, 1, 0)).await;
    assert!(matches!(err, Err(PrError::Unavailable(_))), "{err:?}");
    assert!(store.peek(&Keys::new("/p").reservation(TARGET, 0)).is_none(), "nothing was written");
    let _ = g1.lease;
}

#[tokio::test(start_paused = true)]
async fn power_on_clears_state_without_aptpl_and_keeps_aptpl_state() {
    let store = Arc::new(MemoryStore::new());
    let keys = Keys::new("/p");
    {
        let g1 = gateway(&store, 1, true).await;
        pr_out(&g1, &nexus("a", 1), REGISTER, None, param::basic(0, 1, 0)).await.unwrap();
        store.revoke_lease(g1.lease).await.unwrap();
    }
    // The whole cluster restarts: the first gateway back is the LU's power-on.
    let restart = |aptpl_expected: bool| {
        let (store, keys) = (store.clone(), keys.clone());
        async move {
            let (lease, joined) = member(&store, &keys, 1).await;
            let shared = Arc::new(SharedLun::new(context(&store, &keys, 1, lease, joined), TARGET, 0));
            power_on(store.as_ref(), &keys, 1, joined, &[shared]).await.unwrap();
            assert_eq!(store.peek(&keys.reservation(TARGET, 0)).is_some(), aptpl_expected);
            store.revoke_lease(lease).await.unwrap();
        }
    };
    restart(false).await;
    // With APTPL the state survives the power-on.
    let g1 = gateway(&store, 1, true).await;
    let aptpl = 0x01;
    pr_out(&g1, &nexus("a", 1), REGISTER, None, param::basic(0, 1, aptpl)).await.unwrap();
    store.revoke_lease(g1.lease).await.unwrap();
    drop(g1);
    restart(true).await;
}

#[tokio::test(start_paused = true)]
async fn one_gateways_restart_while_another_lives_is_not_a_power_on() {
    let store = Arc::new(MemoryStore::new());
    let keys = Keys::new("/p");
    let g2 = gateway(&store, 2, true).await;
    let g1 = gateway(&store, 1, true).await;
    pr_out(&g1, &nexus("a", 1), REGISTER, None, param::basic(0, 1, 0)).await.unwrap();
    store.revoke_lease(g1.lease).await.unwrap();
    drop(g1);
    let (lease, joined) = member(&store, &keys, 1).await;
    let ctx = context(&store, &keys, 1, lease, joined);
    power_on(store.as_ref(), &keys, 1, joined, &[Arc::new(SharedLun::new(ctx, TARGET, 0))]).await.unwrap();
    assert!(store.peek(&keys.reservation(TARGET, 0)).is_some(), "gateway 2 stayed up: not a power-on");
    assert!(g2.lun.pr().snapshot().is_registered(&nexus("a", 1)));
}

#[tokio::test(start_paused = true)]
async fn a_broken_watch_is_followed_by_a_re_read_and_changes_keep_reaching_every_gateway() {
    let store = Arc::new(MemoryStore::new());
    let (g1, g2) = (gateway(&store, 1, true).await, gateway(&store, 2, true).await);
    let (a, b) = (nexus("a", 1), nexus("b", 2));
    pr_out(&g1, &a, REGISTER, None, param::basic(0, 0xA, 0)).await.unwrap();
    pr_out(&g2, &b, REGISTER, None, param::basic(0, 0xB, 0)).await.unwrap();
    // Every watch breaks (a partition that heals at once); the watchers re-read and re-watch.
    store.set_reachable(false);
    store.set_reachable(true);
    pr_out(&g1, &a, PREEMPT_AND_ABORT, Some(PrType::WriteExclusive), param::basic(0xA, 0xB, 0)).await.unwrap();
    assert!(!g2.lun.pr().snapshot().is_registered(&b), "gateway 2 re-read after its watch broke");
}
