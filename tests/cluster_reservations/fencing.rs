//! Fencing across gateways: PREEMPT AND ABORT through gateway 2 against A's writes through
//! gateway 1, and the negative control with the gateways' barrier disabled.

use super::*;
use common::cluster::gateway_with_env;

/// What the fencing rounds found.
#[derive(Debug, Default)]
struct Fencing {
    /// Rounds in which a write of the victim landed after PREEMPT AND ABORT returned GOOD.
    violations: usize,
    /// Writes submitted after the GOOD that were answered GOOD.
    late_good: usize,
    /// Writes submitted after the GOOD that were refused (RESERVATION CONFLICT, unit attention).
    refused_after: usize,
    /// Writes that never got a status (aborted; TAS=0 answers nothing, SAM-5 §5.6).
    unanswered: usize,
    slowest_preempt: Duration,
    /// PR OUT answered NOT READY (the gateway had lost etcd, e.g. an etcd election on a loaded
    /// machine) and sent again, as a multipath host does.
    not_ready: usize,
}

const SLOTS: u64 = 16;
const SLOT_BYTES: usize = 256 * 1024;
const REGION_BLOCKS: u32 = (SLOTS as u32) * (SLOT_BYTES as u32 / 512);
/// How long the victim's gateway's link to etcd is delayed, in the test and in its negative
/// control alike: the window in which an unfenced gateway 1 still admits writes after gateway 2
/// returned GOOD, wide enough for the negative control to see it every time.
const ETCD_LINK_LATENCY: Duration = Duration::from_millis(20);

/// A streams 256 KiB writes at queue depth 16 through `victim` (answering R2Ts up to 15 ms
/// late, so some wait for Data-Out); B, the WERO holder, fences A with PREEMPT AND ABORT through
/// `fencer`. After B's GOOD the region read through `fencer` must never change and every write
/// A submits must fail.
async fn fencing_rounds(victim: &TargetProcess, fencer: &TargetProcess, rounds: usize) -> Fencing {
    let b = connect(fencer, HOST_B, 1).await;
    assert_eq!(b.pr_out(prout::REGISTER_AND_IGNORE, 0, 0, 0xB, 0).await.status, GOOD);
    assert_eq!(b.pr_out(prout::RESERVE, prout::WERO, 0xB, 0, 0).await.status, GOOD);
    let mut found = Fencing::default();
    for round in 0..rounds {
        let a = Arc::new(connect(victim, HOST_A, (round % 200) as u8 + 10).await);
        let key_a = 0xA000 + round as u64;
        let r = pr_out_past_not_ready(&a, &mut found.not_ready, prout::REGISTER_AND_IGNORE, 0, 0, key_a).await;
        assert_eq!(r.status, GOOD, "round {round}: REGISTER {r:?}");
        a.set_r2t_delay(Duration::from_millis(15));
        let fenced = Arc::new(AtomicBool::new(false));
        let (late_good, refused_after) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut writers = Vec::new();
        for w in 0..SLOTS {
            let (a, fenced, late_good, refused_after) =
                (a.clone(), fenced.clone(), late_good.clone(), refused_after.clone());
            let mut stopped = stopped.clone();
            writers.push(tokio::spawn(async move {
                let mut refused_mine = 0;
                for seq in 0u32.. {
                    let submitted_after_fence = fenced.load(Ordering::SeqCst);
                    let fill = (round as u8).wrapping_mul(31).wrapping_add(seq as u8) | 1;
                    let data = Bytes::from(vec![fill; SLOT_BYTES]);
                    let write = a.write16(w * (SLOT_BYTES as u64 / 512), data, Duration::from_secs(20));
                    let reply = tokio::select! {
                        reply = write => reply,
                        _ = stopped.changed() => return false, // still unanswered: aborted
                    };
                    match reply {
                        Some(r) if submitted_after_fence && r.status == GOOD => {
                            late_good.fetch_add(1, Ordering::SeqCst);
                        }
                        Some(_) if submitted_after_fence => {
                            refused_after.fetch_add(1, Ordering::SeqCst);
                            refused_mine += 1;
                            if refused_mine == 2 {
                                return true;
                            }
                        }
                        _ => {}
                    }
                }
                true
            }));
        }
        tokio::time::sleep(Duration::from_millis(10 + rand::random::<u64>() % 60)).await;
        let started = Instant::now();
        let not_ready_before = found.not_ready;
        let r =
            pr_out_past_not_ready(&b, &mut found.not_ready, prout::PREEMPT_AND_ABORT, prout::WERO, 0xB, key_a).await;
        found.slowest_preempt = found.slowest_preempt.max(started.elapsed());
        // After a NOT READY the first attempt may have committed: then the next one finds A's
        // key gone (RESERVATION CONFLICT), and READ KEYS shows the fence in place.
        let retried_after_commit = found.not_ready > not_ready_before
            && r.status == RESERVATION_CONFLICT
            && !b.read_keys().await.1.contains(&key_a);
        assert!(r.status == GOOD || retried_after_commit, "round {round}: PREEMPT AND ABORT {r:?}");
        fenced.store(true, Ordering::SeqCst);
        let after_fence = read_region(&b, 0, REGION_BLOCKS).await;
        // Once GOOD came every gateway has aborted A's tasks: a write still unanswered 100 ms
        // later never will be (TAS=0), and its writer is stopped.
        let patience = tokio::time::Instant::now() + Duration::from_millis(100);
        let (mut finished, mut waiting) = (Vec::new(), Vec::new());
        for mut w in writers {
            match tokio::time::timeout_at(patience, &mut w).await {
                Ok(answered_all) => finished.push(answered_all.unwrap_or(true)),
                Err(_) => waiting.push(w),
            }
        }
        let _ = stop.send(true);
        for w in waiting {
            finished.push(w.await.unwrap_or(true));
        }
        found.unanswered += finished.iter().filter(|answered_all| !**answered_all).count();
        // Late Data-Out of aborted writes, and A's refused attempts, are over now: none landed.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let later = read_region(&b, 0, REGION_BLOCKS).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let last = read_region(&b, 0, REGION_BLOCKS).await;
        let late = late_good.load(Ordering::SeqCst);
        found.late_good += late;
        found.refused_after += refused_after.load(Ordering::SeqCst);
        if after_fence != later || later != last || late > 0 {
            found.violations += 1;
        }
        b.clear_unit_attentions().await;
    }
    found
}

/// PR OUT sent again while it is answered NOT READY (02/xx/xx) for up to 3 × TTL, counting the
/// refusals: a gateway that lost etcd for longer than TTL − margin fenced itself and answers so
/// until it rejoined.
async fn pr_out_past_not_ready(c: &Client, refusals: &mut usize, action: u8, kind: u8, key: u64, sa_key: u64) -> Reply {
    let started = Instant::now();
    loop {
        let r = c.pr_out(action, kind, key, sa_key, 0).await;
        if !matches!(r.sense_code(), Some((0x02, _, _))) || started.elapsed() > TTL * 3 {
            return r;
        }
        *refusals += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Three etcd members and two gateways; gateway 1 reaches etcd through proxies that add
/// `ETCD_LINK_LATENCY`; gateway 2 gets `fencer_env`.
struct FencingCluster {
    gw1: TargetProcess,
    gw2: TargetProcess,
    _proxies: Vec<TcpProxy>,
    _lun: SharedLun,
    _etcd: EtcdCluster,
}

fn fencing_cluster(fencer_env: &[(&str, &str)]) -> FencingCluster {
    let etcd = EtcdCluster::start();
    let lun = SharedLun::new();
    let proxies: Vec<TcpProxy> = (0..3).map(|m| TcpProxy::start(etcd.client_addr(m))).collect();
    let through_proxies: Vec<String> = proxies.iter().map(TcpProxy::endpoint).collect();
    let gw1 = gateway(1, &through_proxies, &lun.path(), SIZE);
    let gw2 = gateway_with_env(2, &etcd.endpoints(), &lun.path(), SIZE, fencer_env);
    wait_all_live(&[&gw1, &gw2], &[1, 2]);
    proxies.iter().for_each(|p| p.set_latency(ETCD_LINK_LATENCY));
    FencingCluster { gw1, gw2, _proxies: proxies, _lun: lun, _etcd: etcd }
}

#[test]
fn preempt_and_abort_through_one_gateway_stops_every_write_of_the_victim_through_another() {
    serially(async {
        let rounds = env_rounds("PR_CLUSTER_FENCE_ROUNDS", 100);
        let cluster = fencing_cluster(&[]);
        let started = Instant::now();
        let found = fencing_rounds(&cluster.gw1, &cluster.gw2, rounds).await;
        eprintln!("cross-gateway fencing: {rounds} rounds in {:?}: {found:?}", started.elapsed());
        assert!(found.refused_after > 0, "A made no attempt after the fence: the test saw nothing");
        assert_eq!((found.violations, found.late_good), (0, 0), "{found:?}");
    })
}

/// The negative control: gateway 2 returns GOOD for PR OUT as soon as etcd holds the new state
/// (PALISADE_UNSAFE_SKIP_PR_BARRIER=1), so gateway 1 — which learns of it a link latency later —
/// still lets A's writes land. The same rounds must find that.
#[test]
fn without_the_barrier_the_fencing_rounds_find_writes_landing_after_good() {
    serially(async {
        let rounds = env_rounds("PR_CLUSTER_FENCE_CONTROL_ROUNDS", 20);
        let cluster = fencing_cluster(&[("PALISADE_UNSAFE_SKIP_PR_BARRIER", "1")]);
        wait_for_log(&cluster.gw2, "PALISADE_UNSAFE_SKIP_PR_BARRIER", Duration::from_secs(1));
        let found = fencing_rounds(&cluster.gw1, &cluster.gw2, rounds).await;
        eprintln!("cross-gateway fencing without the barrier (negative control): {rounds} rounds: {found:?}");
        assert!(found.violations > 0, "the negative control found no violation: the test cannot see one");
    })
}
