//! Witness-disk arbitration across three gateways: exactly one owner, takeovers, and a new owner
//! when the owner's gateway is killed.

use super::*;
/// How long a challenger waits between registering and preempting: several of the owner's
/// defense periods. A defense period is a tick, READ KEYS, a PREEMPT per challenger, a READ and a
/// WRITE; with each PR OUT waiting for all three gateways it takes up to ~300 ms on a loaded
/// machine (the single-node test's 6 ticks, 240 ms, let challengers preempt a live owner).
const CHALLENGE_WINDOW: Duration = Duration::from_millis(1500);

/// One PR OUT as the tests time it: when it started, how long it took, what it answered.
#[derive(Debug, Clone)]
struct Timed {
    node: usize,
    started: Instant,
    took: Duration,
    outcome: String,
}

type Log = Arc<Mutex<Vec<Timed>>>;

async fn timed_pr_out(c: &Client, node: usize, log: &Log, action: u8, kind: u8, key: u64, sa_key: u64) -> Reply {
    let started = Instant::now();
    let r = c.pr_out(action, kind, key, sa_key, 0).await;
    let entry = Timed { node, started, took: started.elapsed(), outcome: sequence::outcome(&r) };
    log.lock().unwrap().push(entry);
    r
}

/// A witness-disk node (after Windows Failover Clustering's challenge/defense, as in
/// tests/persistent_reservations.rs): the owner holds WERO, preempts challengers' keys every
/// tick and heartbeats to block 100; a challenger registers, waits longer than a defense
/// period, and preempts the owner only if its own key survived.
async fn witness_node(c: Client, id: usize, owners: Arc<[AtomicBool; 3]>, log: Log, violations: Arc<AtomicUsize>) {
    let key = 0x10 + id as u64;
    let tick = Duration::from_millis(40);
    let mut last_beat: Option<Vec<u8>> = None;
    loop {
        if owners[id].load(Ordering::SeqCst) {
            let (_, keys) = c.read_keys().await;
            let mut lost = !keys.contains(&key);
            if lost {
                eprintln!("witness node {id}: its key is gone from {keys:x?}");
            }
            for other in keys.into_iter().filter(|k| *k != key) {
                let r = timed_pr_out(&c, id, &log, prout::PREEMPT, prout::WERO, key, other).await;
                // A conflict means our key is gone or the victim's is: a late challenger may have
                // preempted the same key first (a non-holder's key, SPC-4 §5.13.11.2.4.2). So, like
                // a cluster's defender, ask who holds the reservation rather than give it up.
                if r.status != GOOD && c.read_reservation().await.map(|(k, _)| k) != Some(key) {
                    eprintln!("witness node {id}: PREEMPT of {other:#x} answered {}", sequence::outcome(&r));
                    lost = true;
                }
            }
            // The witness block still holds our last beat: nobody else's write landed.
            let block = c.read16(100, 1).await;
            if let Some(beat) = &last_beat {
                if block.status == GOOD && block.data != *beat {
                    violations.fetch_add(1, Ordering::SeqCst);
                }
            }
            let mut beat = vec![id as u8; 512];
            beat[1..9].copy_from_slice(&rand::random::<u64>().to_be_bytes());
            match c.write16(100, Bytes::from(beat.clone()), Duration::from_secs(10)).await {
                Some(r) if r.status == GOOD && !lost => last_beat = Some(beat),
                r => {
                    eprintln!(
                        "witness node {id} gives up ownership; heartbeat write: {:?}",
                        r.map(|r| sequence::outcome(&r))
                    );
                    owners[id].store(false, Ordering::SeqCst);
                    last_beat = None;
                }
            }
        } else {
            c.clear_unit_attentions().await;
            match c.read_reservation().await {
                None => {
                    timed_pr_out(&c, id, &log, prout::REGISTER_AND_IGNORE, 0, 0, key).await;
                    if timed_pr_out(&c, id, &log, prout::RESERVE, prout::WERO, key, 0).await.status == GOOD {
                        owners[id].store(true, Ordering::SeqCst);
                    }
                }
                Some((holder, _)) if holder == key => owners[id].store(true, Ordering::SeqCst),
                Some((holder, _)) => {
                    timed_pr_out(&c, id, &log, prout::REGISTER_AND_IGNORE, 0, 0, key).await;
                    tokio::time::sleep(CHALLENGE_WINDOW).await;
                    // PREEMPT of a key that is registered but no longer the holder's is GOOD
                    // too (SPC-4 §5.13.11.2.4.2): the holder read above may have been preempted
                    // by another challenger and have registered again since, so ownership is
                    // what READ RESERVATION says afterwards.
                    if c.read_keys().await.1.contains(&key)
                        && timed_pr_out(&c, id, &log, prout::PREEMPT, prout::WERO, key, holder).await.status == GOOD
                        && c.read_reservation().await.map(|(k, _)| k) == Some(key)
                    {
                        owners[id].store(true, Ordering::SeqCst);
                    }
                }
            }
        }
        tokio::time::sleep(tick).await;
    }
}

fn owner_of(owners: &[AtomicBool; 3]) -> Option<usize> {
    let set: Vec<usize> = (0..3).filter(|&i| owners[i].load(Ordering::SeqCst)).collect();
    assert!(set.len() <= 1, "two owners at once: {set:?}");
    set.first().copied()
}

/// Waits (asserting never two owners) until a node other than `previous` owns the witness.
async fn new_owner(owners: &[AtomicBool; 3], previous: Option<usize>, within: Duration) -> usize {
    let started = Instant::now();
    loop {
        if let Some(o) = owner_of(owners).filter(|o| Some(*o) != previous) {
            return o;
        }
        assert!(started.elapsed() < within, "no new owner within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Holds for `period` that `owner` stays the only owner and that every gateway in `observers`
/// reports its key as the one reservation holder.
async fn stable_owner(owners: &[AtomicBool; 3], owner: usize, observers: &[&Client], period: Duration) {
    let started = Instant::now();
    while started.elapsed() < period {
        assert_eq!(owner_of(owners), Some(owner), "ownership must be stable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for o in observers {
        assert_eq!(
            o.read_reservation().await,
            Some((0x10 + owner as u64, prout::WERO)),
            "the holder, seen from every gateway"
        );
    }
}

#[test]
fn three_gateways_elect_one_witness_owner_and_a_new_one_when_the_owners_gateway_is_killed() {
    serially(async {
        let takeovers = env_rounds("PR_CLUSTER_WITNESS_ROUNDS", 3);
        let etcd = EtcdCluster::start();
        let lun = SharedLun::new();
        let mut gws = gateways(3, &etcd.endpoints(), &lun.path(), SIZE);
        let owners: Arc<[AtomicBool; 3]> =
            Arc::new([AtomicBool::new(false), AtomicBool::new(false), AtomicBool::new(false)]);
        let (log, violations): (Log, _) = (Arc::default(), Arc::new(AtomicUsize::new(0)));
        let mut observers = Vec::new();
        for gw in &gws {
            observers.push(connect(gw, "iqn.2026-11.test:witness-observer", 1).await);
        }
        let spawn_node =
            |id: usize, c: Client| tokio::spawn(witness_node(c, id, owners.clone(), log.clone(), violations.clone()));
        let mut nodes = Vec::new();
        for (id, gw) in gws.iter().enumerate() {
            nodes.push(spawn_node(id, connect(gw, &format!("iqn.2026-11.test:witness-{id}"), 1).await));
            if id == 0 {
                tokio::time::sleep(Duration::from_millis(200)).await; // node 0 gets there first
            }
        }
        let mut owner = new_owner(&owners, None, Duration::from_secs(5)).await;
        // Takeovers: the owner's connection dies (its registration stays, SPC-4 §5.13); a challenger
        // on another gateway preempts it; the old owner comes back as a challenger.
        for round in 0..takeovers {
            stable_owner(&owners, owner, &observers.iter().collect::<Vec<_>>(), Duration::from_secs(1)).await;
            nodes[owner].abort();
            let _ = (&mut nodes[owner]).await;
            owners[owner].store(false, Ordering::SeqCst);
            let next = new_owner(&owners, Some(owner), Duration::from_secs(5)).await;
            let c = connect(&gws[owner], &format!("iqn.2026-11.test:witness-{owner}"), 1).await;
            nodes[owner] = spawn_node(owner, c);
            eprintln!("witness round {round}: node {owner} lost its connection, node {next} took over");
            owner = next;
        }
        stable_owner(&owners, owner, &observers.iter().collect::<Vec<_>>(), Duration::from_secs(1)).await;

        // kill -9 of the owner's gateway, in the middle of whatever its node was doing.
        nodes[owner].abort();
        gws[owner].kill9();
        let killed = Instant::now();
        owners[owner].store(false, Ordering::SeqCst);
        let dead = owner;
        owner = new_owner(&owners, Some(dead), TTL * 2 + DEAD_GATEWAY_WAIT).await;
        let took = killed.elapsed();
        let survivors: Vec<&Client> = (0..3).filter(|&i| i != dead).map(|i| &observers[i]).collect();
        stable_owner(&owners, owner, &survivors, Duration::from_secs(1)).await;
        for n in &nodes {
            n.abort();
        }
        let log = log.lock().unwrap().clone();
        let after_kill: Vec<&Timed> = log.iter().filter(|t| t.node != dead && t.started + t.took >= killed).collect();
        let slowest = after_kill.iter().map(|t| t.took).max().unwrap_or_default();
        eprintln!(
            "witness: gateway {} killed, node {owner} owns after {took:?}; {} PR OUT on survivors since, slowest {slowest:?}",
            dead + 1,
            after_kill.len()
        );
        assert!(slowest < DEAD_GATEWAY_WAIT, "a survivor's PR OUT took {slowest:?}");
        let failed: Vec<&&Timed> = after_kill.iter().filter(|t| t.outcome.starts_with("CHECK CONDITION")).collect();
        assert!(failed.is_empty(), "survivors' PR OUT failed: {failed:?}");
        assert_eq!(violations.load(Ordering::SeqCst), 0, "a fenced node's heartbeat landed");
    })
}
