//! The membership state machine against the in-memory store, on a paused clock.

use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use super::membership::{JoinError, LeaseTiming, Membership, ServedLun};
use super::memory::MemoryStore;
use super::records::{GatewayRecord, Keys, LunDefinition, PortalRecord};
use crate::backend::{Backend, MemoryBackend};
use crate::scsi::alua::{AccessState, Alua};
use crate::scsi::{Lun, LunIdentity, SenseReason, WriteFence};

const TTL: Duration = Duration::from_secs(2);
const MARGIN: Duration = Duration::from_millis(500);

fn record(id: u16, boot_id: u64) -> GatewayRecord {
    let portal = PortalRecord { address: "127.0.0.1:3260".into(), tpgt: 1, relative_port: id * 256 + 1 };
    GatewayRecord { gateway_id: id, portals: vec![portal], pid: 42, boot_id }
}

struct Gateway {
    fence: Arc<WriteFence>,
    alua: Arc<Alua>,
}

async fn join(
    store: &Arc<MemoryStore>,
    id: u16,
    boot_id: u64,
) -> (Result<Membership<MemoryStore>, JoinError>, Gateway) {
    let fence = Arc::new(WriteFence::default());
    let alua = Alua::single_node(id, vec![id * 256 + 1]);
    let joined = Membership::join(
        store.clone(),
        store.clone(),
        Keys::new("/t"),
        record(id, boot_id),
        LeaseTiming::new(TTL, MARGIN),
        fence.clone(),
        alua.clone(),
    )
    .await;
    (joined, Gateway { fence, alua })
}

/// Lets the spawned membership task run for `total`, in 10 ms steps.
async fn run_for(total: Duration) {
    let steps = total.as_millis() / 10;
    for _ in 0..steps {
        tokio::time::advance(Duration::from_millis(10)).await;
        tokio::task::yield_now().await;
    }
}

fn served_lun() -> ServedLun {
    let backend = Backend::Memory(MemoryBackend::new(1 << 20));
    let lun = Lun::new(0, backend, 512, LunIdentity::new("P", "1", "PAL1"), false).expect("LUN");
    let definition = super::definition_of("iqn.2026-11.io.palisade:t", &lun);
    ServedLun { definition, lun: Arc::new(lun) }
}

#[tokio::test(start_paused = true)]
async fn a_second_gateway_with_a_live_id_is_refused() {
    let store = Arc::new(MemoryStore::new());
    let (first, _gw1) = join(&store, 1, 1).await;
    let first = first.expect("first join");
    let _running = first.start(Vec::new());
    let started = Instant::now();
    let (second, gw) = join(&store, 1, 2).await;
    match second {
        Err(JoinError::DuplicateGateway { holder: Some(h) }) => assert_eq!(h.boot_id, 1, "names the live holder"),
        Err(e) => panic!("expected a duplicate refusal, got {e}"),
        Ok(_) => panic!("a second gateway with a live id must not join"),
    }
    assert!(started.elapsed() >= TTL, "waited a TTL for a possibly dead holder first");
    assert_eq!(gw.fence.admit(), Err(SenseReason::AsymmetricAccessStateTransition), "never opened");
    let message = JoinError::DuplicateGateway { holder: Some(record(1, 1)) }.to_string();
    assert!(message.contains("gateway id 1 is already live") && message.contains("cluster.gateway_id"), "{message}");
    // Another id joins at once.
    assert!(join(&store, 2, 3).await.0.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_restarted_gateway_takes_its_id_back_once_the_old_lease_expires() {
    let store = Arc::new(MemoryStore::new());
    let (crashed, _) = join(&store, 1, 1).await;
    drop(crashed.expect("first join")); // never renewed: a crash right after joining
    let (restarted, _) = join(&store, 1, 2).await;
    assert!(restarted.is_ok(), "the crashed run's key expires within one TTL");
}

#[tokio::test(start_paused = true)]
async fn a_join_asks_again_through_a_short_outage_instead_of_failing() {
    let store = Arc::new(MemoryStore::new());
    store.set_reachable(false);
    let joining = tokio::spawn({
        let store = store.clone();
        async move { join(&store, 1, 1).await.0.map(|_| ()) }
    });
    run_for(TTL / 2).await;
    assert!(!joining.is_finished(), "one unanswered request is not a verdict");
    store.set_reachable(true);
    run_for(TTL / 2).await;
    assert_eq!(joining.await.unwrap().map_err(|e| e.to_string()), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_join_that_etcd_never_answers_fails_after_the_wait() {
    let store = Arc::new(MemoryStore::new());
    store.set_reachable(false);
    let started = Instant::now();
    match join(&store, 1, 1).await.0 {
        Err(JoinError::Store(e)) => assert!(e.to_string().contains("partitioned"), "{e}"),
        Err(e) => panic!("expected the store's error, got {e}"),
        Ok(_) => panic!("joined without etcd"),
    }
    assert!(started.elapsed() >= TTL, "asked again for a TTL first");
}

#[tokio::test(start_paused = true)]
async fn a_live_holder_seen_before_etcd_stops_answering_is_still_the_refusal() {
    let store = Arc::new(MemoryStore::new());
    let (first, _gw1) = join(&store, 1, 1).await;
    let _running = first.expect("first join").start(Vec::new());
    let joining = tokio::spawn({
        let store = store.clone();
        async move { join(&store, 1, 2).await.0.map(|_| ()) }
    });
    run_for(TTL / 2).await;
    store.set_reachable(false);
    run_for(TTL * 2).await;
    match joining.await.unwrap() {
        Err(JoinError::DuplicateGateway { holder: Some(h) }) => assert_eq!(h.boot_id, 1),
        other => panic!("expected the duplicate refusal, got {:?}", other.map_err(|e| e.to_string())),
    }
}

#[tokio::test(start_paused = true)]
async fn our_own_key_left_by_a_lost_answer_is_not_a_duplicate() {
    let store = Arc::new(MemoryStore::new());
    // The same boot id: what an earlier attempt of this very process leaves behind when its
    // create took effect but the answer (and the revoke after it) were lost.
    let (earlier, _gw) = join(&store, 1, 7).await;
    let _running = earlier.expect("first attempt").start(Vec::new());
    let started = Instant::now();
    let (again, _) = join(&store, 1, 7).await;
    assert!(again.is_ok(), "{:?}", again.err().map(|e| e.to_string()));
    assert!(started.elapsed() < TTL, "did not wait for its own key to expire");
}

#[tokio::test(start_paused = true)]
async fn partitioned_gateway_fences_before_its_lease_expires_and_rejoins_after_heal() {
    let store = Arc::new(MemoryStore::new());
    let (joined, gw) = join(&store, 1, 1).await;
    let membership = joined.expect("join");
    let served = served_lun();
    store.put(&Keys::new("/t").lun(&served.definition.target, 0), serde_json::to_vec(&served.definition).unwrap());
    let _running = membership.start(vec![served]);
    assert_eq!(gw.alua.local_state(), AccessState::ActiveOptimized);

    run_for(Duration::from_secs(10)).await;
    assert_eq!(gw.fence.admit(), Ok(()), "keepalives every TTL/4 keep the fence open");
    let key = Keys::new("/t").gateway(1);
    let old_lease = store.peek(&key).expect("member").lease;

    store.set_reachable(false);
    let cut = Instant::now();
    while gw.fence.admit().is_ok() {
        run_for(Duration::from_millis(10)).await;
        assert!(cut.elapsed() < TTL, "must fence within TTL − margin of the last acknowledged keepalive");
    }
    let fenced_after = cut.elapsed();
    assert!(fenced_after <= TTL - MARGIN, "fenced {fenced_after:?} after the cut");
    assert!(store.peek(&key).is_some(), "etcd still holds the lease: fencing came first");
    run_for(Duration::from_millis(20)).await;
    assert_eq!(gw.alua.local_state(), AccessState::Transitioning);
    assert_eq!(gw.fence.admit(), Err(SenseReason::AsymmetricAccessStateTransition));

    run_for(TTL).await;
    assert!(store.peek(&key).is_none(), "the lease expired on the store side");
    assert_eq!(gw.alua.local_state(), AccessState::Unavailable);
    assert_eq!(gw.fence.admit(), Err(SenseReason::TargetPortInUnavailableState));

    store.set_reachable(true);
    run_for(TTL / 2).await;
    assert_eq!(gw.fence.admit(), Ok(()), "rejoined");
    assert_eq!(gw.alua.local_state(), AccessState::ActiveOptimized);
    let rejoined = store.peek(&key).expect("member again");
    assert_ne!(rejoined.lease, old_lease, "a fresh lease");
}

#[tokio::test(start_paused = true)]
async fn a_gateway_whose_lun_definition_changed_while_away_stays_fenced() {
    let store = Arc::new(MemoryStore::new());
    let (joined, gw) = join(&store, 1, 1).await;
    let served = served_lun();
    let lun_key = Keys::new("/t").lun(&served.definition.target, 0);
    let mut changed: LunDefinition = served.definition.clone();
    store.put(&lun_key, serde_json::to_vec(&changed).unwrap());
    let _running = joined.expect("join").start(vec![served]);
    store.set_reachable(false);
    run_for(TTL + MARGIN).await;
    assert!(gw.fence.admit().is_err());
    changed.capacity_blocks += 1;
    store.put(&lun_key, serde_json::to_vec(&changed).unwrap());
    store.set_reachable(true);
    run_for(TTL * 2).await;
    assert!(gw.fence.admit().is_err(), "a LUN that no longer matches keeps the gateway out");
    assert!(store.peek(&Keys::new("/t").gateway(1)).is_none(), "and it does not hold a membership");
}
