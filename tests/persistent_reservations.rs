//! SCSI-3 persistent reservations end to end, through the real server and a minimal iSCSI
//! initiator (tests/pr_client): multipath registrations, fencing by PREEMPT AND ABORT against
//! writes in flight, APTPL across kill -9, and a witness-disk arbitration simulation.

mod common;
mod pr_client;

use bytes::Bytes;
use common::{free_port, unique_temp_dir, TargetProcess, DEFAULT_IQN};
use pr_client::{prout, Client, GOOD, RESERVATION_CONFLICT};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HOST_A: &str = "iqn.2026-11.test:node-a";
const HOST_B: &str = "iqn.2026-11.test:node-b";

fn isid(n: u8) -> [u8; 6] {
    [0x80, 0x00, 0x00, 0x01, 0x00, n]
}

async fn connect(t: &TargetProcess, name: &str, n: u8) -> Client {
    let c = Client::login(&t.portal(), name, isid(n), DEFAULT_IQN).await.expect("login");
    c.clear_unit_attentions().await;
    c
}

fn env_rounds(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipath_paths_register_separately_and_fall_together() {
    let t = TargetProcess::start_default();
    let (a1, a2, b) = (connect(&t, HOST_A, 1).await, connect(&t, HOST_A, 2).await, connect(&t, HOST_B, 1).await);
    // fence_scsi: REGISTER AND IGNORE EXISTING KEY on every path.
    for c in [&a1, &a2] {
        assert_eq!(c.pr_out(prout::REGISTER_AND_IGNORE, 0, 0, 0xA, 0).await.status, GOOD);
    }
    assert_eq!(b.pr_out(prout::REGISTER_AND_IGNORE, 0, 0, 0xB, 0).await.status, GOOD);
    let (gen, mut keys) = b.read_keys().await;
    keys.sort();
    assert_eq!((gen, keys), (3, vec![0xA, 0xA, 0xB]));
    // READ FULL STATUS shows both I_T nexuses of A, each with its own ISID.
    let full = b.pr_in(3).await;
    let text = String::from_utf8_lossy(&full.data).to_string();
    assert!(text.contains(&format!("{HOST_A},i,0x800000010001")), "{text}");
    assert!(text.contains(&format!("{HOST_A},i,0x800000010002")), "{text}");
    // A's first path reserves; its second path is a registrant, not the holder.
    assert_eq!(a1.pr_out(prout::RESERVE, prout::WERO, 0xA, 0, 0).await.status, GOOD);
    assert_eq!(b.read_reservation().await, Some((0xA, prout::WERO)));
    // B preempts A's key: both paths lose their registration at once.
    assert_eq!(b.pr_out(prout::PREEMPT_AND_ABORT, prout::WERO, 0xB, 0xA, 0).await.status, GOOD);
    assert_eq!(b.read_keys().await.1, vec![0xB]);
    assert_eq!(b.read_reservation().await, Some((0xB, prout::WERO)));
    for c in [&a1, &a2] {
        // SPC-4 §5.13.11.2.4.3: REGISTRATIONS PREEMPTED (2Ah/05h) on each path.
        assert!(c.clear_unit_attentions().await.contains(&(0x2A, 0x05)));
        let w = c.write16(0, Bytes::from(vec![1u8; 512]), Duration::from_secs(10)).await.unwrap();
        assert_eq!(w.status, RESERVATION_CONFLICT);
    }
}

/// Initiator A streams large writes at queue depth 16, answering R2Ts late so that some wait
/// for Data-Out; B (the WERO holder) fences A with PREEMPT AND ABORT. After B's GOOD the
/// region never changes again and every write A submits fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_preempt_and_abort_stops_every_write_of_the_victim() {
    const SLOTS: u64 = 16;
    const SLOT_BYTES: usize = 256 * 1024;
    let rounds = env_rounds("PR_FENCE_ROUNDS", 25);
    let t = TargetProcess::start_default();
    let b = connect(&t, HOST_B, 1).await;
    assert_eq!(b.pr_out(prout::REGISTER_AND_IGNORE, 0, 0, 0xB, 0).await.status, GOOD);
    assert_eq!(b.pr_out(prout::RESERVE, prout::WERO, 0xB, 0, 0).await.status, GOOD);
    let mut aborted_total = 0;
    let mut violations = 0;
    for round in 0..rounds {
        let a = Arc::new(connect(&t, HOST_A, (round % 200) as u8 + 10).await);
        let key_a = 0xA000 + round as u64;
        assert_eq!(a.pr_out(prout::REGISTER_AND_IGNORE, 0, 0, key_a, 0).await.status, GOOD);
        a.set_r2t_delay(Duration::from_millis(15));
        let fenced = Arc::new(AtomicBool::new(false));
        let late_good = Arc::new(AtomicUsize::new(0));
        let mut writers = Vec::new();
        for w in 0..SLOTS {
            let (a, fenced, late_good) = (a.clone(), fenced.clone(), late_good.clone());
            writers.push(tokio::spawn(async move {
                let mut aborted = 0;
                for seq in 0u32.. {
                    let submitted_after_fence = fenced.load(Ordering::SeqCst);
                    let fill = (round as u8).wrapping_mul(31).wrapping_add(seq as u8) | 1;
                    let lba = w * (SLOT_BYTES as u64 / 512);
                    match a.write16(lba, Bytes::from(vec![fill; SLOT_BYTES]), Duration::from_secs(2)).await {
                        Some(r) if r.status == GOOD && submitted_after_fence => {
                            late_good.fetch_add(1, Ordering::SeqCst);
                        }
                        Some(r) if r.status == RESERVATION_CONFLICT => {
                            if submitted_after_fence && seq % 4 == 3 {
                                return aborted;
                            }
                        }
                        Some(_) => {}
                        None => aborted += 1, // aborted by PREEMPT AND ABORT: no status
                    }
                }
                aborted
            }));
        }
        tokio::time::sleep(Duration::from_millis(10 + rand::random::<u64>() % 60)).await;
        let r = b.pr_out(prout::PREEMPT_AND_ABORT, prout::WERO, 0xB, key_a, 0).await;
        assert_eq!(r.status, GOOD, "round {round}: {r:?}");
        fenced.store(true, Ordering::SeqCst);
        let after_fence = b.read16(0, (SLOTS as u32) * (SLOT_BYTES as u32 / 512)).await;
        for w in writers {
            aborted_total += w.await.unwrap();
        }
        // Late Data-Out of aborted writes arrives now; none of it may land.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let later = b.read16(0, (SLOTS as u32) * (SLOT_BYTES as u32 / 512)).await;
        if after_fence.data != later.data || late_good.load(Ordering::SeqCst) > 0 {
            violations += 1;
        }
        b.clear_unit_attentions().await;
    }
    eprintln!("fencing: rounds={rounds} violations={violations} writes aborted without status={aborted_total}");
    assert_eq!(violations, 0);
}

/// APTPL (SPC-4 §5.13.5.1): kill -9 at random points of a stream of PR OUT commands; after each
/// restart the state is the last acknowledged one, or the one of the command in flight (whose
/// GOOD was lost with the connection), never older and never torn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aptpl_state_survives_kill_9_at_random_points() {
    let rounds = env_rounds("PR_CRASH_ROUNDS", 8);
    let dir = unique_temp_dir("palisade-pr-crash");
    let port = free_port();
    let mut acked: u64 = 0; // the key of the last acknowledged REGISTER (0 = none yet)
    for round in 0..rounds {
        // A new server each round on the same port and data dir (kept: it holds the APTPL state).
        let mut server = TargetProcess::start_default_at(port, &dir);
        let portal = server.portal();
        let c = Client::login(&portal, HOST_A, isid(1), DEFAULT_IQN).await.expect("login");
        c.clear_unit_attentions().await;
        let (_, keys) = c.read_keys().await;
        let reservation = c.read_reservation().await;
        match acked {
            0 => assert!(keys.is_empty() || keys == vec![1], "round {round}: {keys:?}"),
            k => {
                assert!(keys == vec![k] || keys == vec![k + 1], "round {round}: acked {k:#x}, restored {keys:x?}");
                // Odd keys were reserved (see below): the reservation is restored with its key.
                let current = keys[0];
                let reserved_with = reservation.map(|r| r.0);
                assert!(reserved_with.is_none() || reserved_with == Some(current), "{reservation:?} vs {current}");
            }
        }
        acked = keys.first().copied().unwrap_or(0);
        // A stream of PR OUT with APTPL; the killer strikes at a random moment.
        let killer = {
            let delay = Duration::from_millis(5 + rand::random::<u64>() % 120);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                server.kill9();
            })
        };
        loop {
            let next = acked + 1;
            let r = c.command(&register_cdb(), register_param(acked, next), 0, Duration::from_secs(2)).await;
            match r {
                Some(r) if r.status == GOOD => acked = next,
                _ => break, // connection gone: the server was killed
            }
            if next % 2 == 1 {
                let r = c.command(&reserve_cdb(), register_param(next, 0), 0, Duration::from_secs(2)).await;
                if r.is_none() {
                    break;
                }
            } else if c.command(&release_cdb(), register_param(next, 0), 0, Duration::from_secs(2)).await.is_none() {
                break;
            }
        }
        killer.await.unwrap();
        drop(c);
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("aptpl crash test: rounds={rounds} last acknowledged key={acked:#x}");
}

fn register_cdb() -> [u8; 10] {
    [0x5F, prout::REGISTER_AND_IGNORE, 0, 0, 0, 0, 0, 0, 24, 0]
}
fn reserve_cdb() -> [u8; 10] {
    [0x5F, prout::RESERVE, prout::WERO, 0, 0, 0, 0, 0, 24, 0]
}
fn release_cdb() -> [u8; 10] {
    [0x5F, prout::RELEASE, prout::WERO, 0, 0, 0, 0, 0, 24, 0]
}
fn register_param(key: u64, sa_key: u64) -> Bytes {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[20] = prout::APTPL;
    Bytes::from(p)
}

/// A node of the witness arbitration simulation (after Windows Failover Clustering's
/// challenge/defense): the owner holds a WERO reservation, defends every tick by preempting
/// challengers' keys and heartbeats to the witness block; a challenger registers, waits longer
/// than a defense period, and preempts the owner only if its own key survived.
async fn run_node(
    c: Client,
    id: u8,
    owners: Arc<[AtomicBool; 3]>,
    stop: Arc<AtomicBool>,
    violations: Arc<AtomicUsize>,
) {
    let key = 0x10 + id as u64;
    let tick = Duration::from_millis(40);
    let mut last_beat: Option<Vec<u8>> = None;
    while !stop.load(Ordering::SeqCst) {
        if owners[id as usize].load(Ordering::SeqCst) {
            // Defense: remove every other key; a conflict means we were preempted.
            let (_, keys) = c.read_keys().await;
            let mut lost = !keys.contains(&key);
            for other in keys.into_iter().filter(|k| *k != key) {
                if c.pr_out(prout::PREEMPT, prout::WERO, key, other, 0).await.status != GOOD {
                    lost = true;
                }
            }
            // Heartbeat: the block must still hold our last beat (nobody else wrote it).
            let block = c.read16(100, 1).await;
            if let Some(beat) = &last_beat {
                if block.status == GOOD && block.data != *beat {
                    violations.fetch_add(1, Ordering::SeqCst);
                }
            }
            let mut beat = vec![id; 512];
            beat[1..9].copy_from_slice(&rand::random::<u64>().to_be_bytes());
            match c.write16(100, Bytes::from(beat.clone()), Duration::from_secs(5)).await {
                Some(r) if r.status == GOOD && !lost => last_beat = Some(beat),
                _ => {
                    owners[id as usize].store(false, Ordering::SeqCst);
                    last_beat = None;
                }
            }
            tokio::time::sleep(tick).await;
            continue;
        }
        // Challenger.
        c.clear_unit_attentions().await;
        match c.read_reservation().await {
            None => {
                let _ = c.pr_out(prout::REGISTER_AND_IGNORE, 0, 0, key, 0).await;
                if c.pr_out(prout::RESERVE, prout::WERO, key, 0, 0).await.status == GOOD {
                    owners[id as usize].store(true, Ordering::SeqCst);
                }
            }
            Some((holder, _)) if holder == key => owners[id as usize].store(true, Ordering::SeqCst),
            Some((holder, _)) => {
                let _ = c.pr_out(prout::REGISTER_AND_IGNORE, 0, 0, key, 0).await;
                tokio::time::sleep(tick * 6).await; // the challenge window: several defense periods
                if c.read_keys().await.1.contains(&key)
                    && c.pr_out(prout::PREEMPT, prout::WERO, key, holder, 0).await.status == GOOD
                {
                    owners[id as usize].store(true, Ordering::SeqCst);
                }
            }
        }
        tokio::time::sleep(tick).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_arbitration_elects_exactly_one_owner() {
    let t = TargetProcess::start_default();
    let owners: Arc<[AtomicBool; 3]> =
        Arc::new([AtomicBool::new(false), AtomicBool::new(false), AtomicBool::new(false)]);
    let violations = Arc::new(AtomicUsize::new(0));
    let stops: Vec<Arc<AtomicBool>> = (0..3).map(|_| Arc::new(AtomicBool::new(false))).collect();
    let mut nodes = Vec::new();
    for id in 0..3u8 {
        let c = connect(&t, &format!("iqn.2026-11.test:witness-{id}"), 1).await;
        nodes.push(tokio::spawn(run_node(c, id, owners.clone(), stops[id as usize].clone(), violations.clone())));
        if id == 0 {
            tokio::time::sleep(Duration::from_millis(200)).await; // node 0 gets there first
        }
    }
    let count = |o: &[AtomicBool; 3]| o.iter().filter(|b| b.load(Ordering::SeqCst)).count();
    let owner_of = |o: &[AtomicBool; 3]| o.iter().position(|b| b.load(Ordering::SeqCst));
    // Steady state: the owner defends, nobody takes over, never two owners.
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        assert!(count(&owners) <= 1, "two owners at once");
    }
    let first = owner_of(&owners).expect("an owner emerged");
    // Kill the owner's connection (its registration stays: SPC-4 §5.13, nexus loss).
    stops[first].store(true, Ordering::SeqCst);
    nodes[first].abort();
    owners[first].store(false, Ordering::SeqCst);
    let start = Instant::now();
    let mut new_owner = None;
    while start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(count(&owners) <= 1, "two owners at once");
        if let Some(o) = owner_of(&owners) {
            new_owner = Some((o, start.elapsed()));
            break;
        }
    }
    let (owner, took) = new_owner.expect("a new owner within 5 s");
    assert_ne!(owner, first);
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        assert_eq!(owner_of(&owners), Some(owner), "ownership must be stable");
    }
    for s in &stops {
        s.store(true, Ordering::SeqCst);
    }
    for n in nodes {
        let _ = n.await;
    }
    eprintln!("arbitration: first owner {first}, new owner {owner} after {took:?}");
    assert_eq!(violations.load(Ordering::SeqCst), 0, "a fenced node's heartbeat landed");
}

/// The Linux initiator with two identities and sg_persist (tests/guest/pr.sh): register,
/// reserve, read keys / reservation / full status, preempt-and-abort, release, clear, and
/// fence_scsi's sequence, in the repository's VM harness (scripts/vm/run-in-vm.sh).
#[test]
fn linux_initiators_use_persistent_reservations_through_sg_persist() {
    const GUEST_TIMEOUT_S: u64 = 400;
    let target = TargetProcess::start_default();
    let mut cmd = common::vm_runner(target.port(), GUEST_TIMEOUT_S);
    cmd.args(["--initiator-name", "iqn.2026-11.test:vm-a", "--second-initiator-name", "iqn.2026-11.test:vm-b"]);
    cmd.arg(common::guest_script("pr.sh"));
    let out = common::run_with_timeout(&mut cmd, Duration::from_secs(GUEST_TIMEOUT_S + 60));
    let console = String::from_utf8_lossy(&out.stdout);
    println!("{console}");
    assert!(out.status.success(), "guest script failed: {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(console.contains("PR OK"), "guest did not reach the end");
}

/// SAM-5 §5.6 with TAS=1 in the control mode page: the preempted nexus' write that was waiting
/// for Data-Out is answered TASK ABORTED instead of vanishing (the default, TAS=0, is what the
/// fencing test above sees).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preempt_and_abort_answers_the_victims_tasks_task_aborted_when_tas_is_set() {
    let t = TargetProcess::start_default();
    let (a, b) = (connect(&t, HOST_A, 1).await, connect(&t, HOST_B, 1).await);
    assert_eq!(a.pr_out(prout::REGISTER_AND_IGNORE, 0, 0, 0xA, 0).await.status, GOOD);
    assert_eq!(b.pr_out(prout::REGISTER_AND_IGNORE, 0, 0, 0xB, 0).await.status, GOOD);
    // B sets TAS: MODE SENSE(6) of the control page without block descriptors, MODE SELECT(6).
    let wait = Duration::from_secs(10);
    let sensed = b.command(&[0x1a, 0x08, 0x0a, 0, 255, 0], Bytes::new(), 255, wait).await.expect("MODE SENSE");
    assert_eq!(sensed.status, GOOD);
    let at = 4 + sensed.data[3] as usize;
    let mut param = sensed.data[..at + 12].to_vec();
    param[0] = 0;
    param[at + 5] |= 0x40;
    let selected = b.command(&[0x15, 0x10, 0, 0, param.len() as u8, 0], Bytes::from(param), 0, wait).await;
    assert_eq!(selected.expect("MODE SELECT").status, GOOD);
    a.clear_unit_attentions().await; // MODE PARAMETERS CHANGED

    a.hold_r2ts();
    let (write, preempt) = tokio::join!(a.write16(64, Bytes::from(vec![0xA5u8; 4096]), wait), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        b.pr_out(prout::PREEMPT_AND_ABORT, prout::WERO, 0xB, 0xA, 0).await
    });
    assert_eq!(preempt.status, GOOD);
    let write = write.expect("the aborted write is answered, not left hanging");
    assert_eq!(write.status, 0x40, "TASK ABORTED: {write:?}");
    // Nothing of it landed.
    assert_eq!(b.read16(64, 8).await.data, vec![0u8; 4096]);
}

/// Issue #15, reservations at cluster scale: 1,024 hosts × 4 paths = 4,096 I_T nexuses, each
/// registering its host's key with APTPL through its own session and logging out. READ KEYS
/// and READ FULL STATUS report them all (with large and small allocation lengths), the
/// 4,097th registration is refused, a type 7 reservation admits the registrants' I/O, all of
/// it survives kill -9 and restart, and PREEMPT AND ABORT and CLEAR act on the crowd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_thousand_registrants_survive_restart_and_are_preempted_and_cleared() {
    use initiator::registrations::{register_all, Registration};
    const HOSTS: usize = 1024;
    const PATHS: usize = 4;
    let host_name = |h: usize| format!("iqn.2026-11.test:scale-{h:04}");
    let host_key = |h: usize| 0x5CA1_E000 + h as u64;
    let path_isid = |p: usize| [0x80, 0x00, 0x00, 0x02, 0x00, p as u8];
    let dir = unique_temp_dir("palisade-pr-scale");
    let port = free_port();
    let mut server = TargetProcess::start_default_at(port, &dir);
    let portal = server.portal();
    let url = initiator::url::IscsiUrl::parse(&format!("iscsi://{portal}/{DEFAULT_IQN}/0")).unwrap();
    let all: Vec<Registration> = (0..HOSTS)
        .flat_map(|h| (0..PATHS).map(move |p| (h, p)))
        .map(|(h, p)| Registration { initiator: host_name(h), isid: path_isid(p), key: host_key(h) })
        .collect();
    let started = Instant::now();
    register_all(&url, all, true, 16).await.expect("4,096 registrations");
    eprintln!("pr scale: 4,096 nexuses registered with APTPL in {:?}", started.elapsed());

    // An observer on host 0's first path (registered above: the same I_T nexus again).
    let observer = Client::login(&portal, &host_name(0), path_isid(0), DEFAULT_IQN).await.expect("login");
    observer.clear_unit_attentions().await;
    check_crowd(&observer, HOSTS * PATHS, host_key, PATHS).await;

    // The 4,097th: ILLEGAL REQUEST, INSUFFICIENT REGISTRATION RESOURCES (SPC-4 §5.13.7).
    let extra = Client::login(&portal, "iqn.2026-11.test:one-too-many", isid(1), DEFAULT_IQN).await.expect("login");
    extra.clear_unit_attentions().await;
    let refused = extra.pr_out(prout::REGISTER_AND_IGNORE, 0, 0, 0xEEEE, prout::APTPL).await;
    assert_eq!(refused.status, pr_client::CHECK_CONDITION, "{refused:?}");
    assert_eq!(refused.sense_code(), Some((0x05, 0x55, 0x04)));

    // Write Exclusive – All Registrants (type 7): every registrant holds it.
    assert_eq!(observer.pr_out(prout::RESERVE, prout::WEAR, host_key(0), 0, 0).await.status, GOOD);
    assert_eq!(observer.read_reservation().await, Some((0, prout::WEAR)));
    drop((observer, extra));

    // kill -9 and restart: every registration and the reservation come back (APTPL).
    server.kill9();
    server.restart();
    let observer = Client::login(&portal, &host_name(0), path_isid(0), DEFAULT_IQN).await.expect("login");
    observer.clear_unit_attentions().await;
    check_crowd(&observer, HOSTS * PATHS, host_key, PATHS).await;
    assert_eq!(observer.read_reservation().await, Some((0, prout::WEAR)));
    eprintln!("pr scale: all 4,096 registrations and the type 7 reservation restored after kill -9");

    // A registrant writes; an unregistered nexus is refused.
    let member = Client::login(&portal, &host_name(777), path_isid(3), DEFAULT_IQN).await.expect("login");
    member.clear_unit_attentions().await;
    let wait = Duration::from_secs(10);
    assert_eq!(member.write16(8, Bytes::from(vec![7u8; 512]), wait).await.unwrap().status, GOOD);
    let outsider = Client::login(&portal, "iqn.2026-11.test:outsider", isid(1), DEFAULT_IQN).await.expect("login");
    outsider.clear_unit_attentions().await;
    assert_eq!(outsider.write16(8, Bytes::from(vec![9u8; 512]), wait).await.unwrap().status, RESERVATION_CONFLICT);

    // PREEMPT AND ABORT of host 777's key: its four paths go, its session learns it.
    let r = observer.pr_out(prout::PREEMPT_AND_ABORT, prout::WEAR, host_key(0), host_key(777), 0).await;
    assert_eq!(r.status, GOOD, "{r:?}");
    let keys = all_keys(&observer).await;
    assert_eq!(keys.len(), HOSTS * PATHS - PATHS);
    assert!(!keys.contains(&host_key(777)));
    assert!(member.clear_unit_attentions().await.contains(&(0x2A, 0x05)), "REGISTRATIONS PREEMPTED");
    assert_eq!(member.write16(8, Bytes::from(vec![8u8; 512]), wait).await.unwrap().status, RESERVATION_CONFLICT);

    // CLEAR: nothing left, and nothing comes back after another restart.
    assert_eq!(observer.pr_out(prout::CLEAR, 0, host_key(0), 0, 0).await.status, GOOD);
    assert_eq!(all_keys(&observer).await.len(), 0);
    assert_eq!(observer.read_reservation().await, None);
    drop((observer, member, outsider));
    server.kill9();
    server.restart();
    let observer = Client::login(&portal, &host_name(0), path_isid(0), DEFAULT_IQN).await.expect("login");
    observer.clear_unit_attentions().await;
    assert_eq!(all_keys(&observer).await.len(), 0);
    drop(observer);
    server.kill9();
    let _ = std::fs::remove_dir_all(&dir);
}

/// PR IN with an explicit allocation length: (ADDITIONAL LENGTH, data).
async fn pr_in_with(c: &Client, action: u8, allocation_length: u16) -> (usize, Vec<u8>) {
    let [hi, lo] = allocation_length.to_be_bytes();
    let cdb = [0x5E, action, 0, 0, 0, 0, 0, hi, lo, 0];
    let r = c.command(&cdb, Bytes::new(), allocation_length as u32, Duration::from_secs(20)).await.expect("PR IN");
    assert_eq!(r.status, GOOD, "PR IN {action}: {r:?}");
    let additional = u32::from_be_bytes(r.data[4..8].try_into().unwrap()) as usize;
    // SPC-4 §4.2.5.6: exactly the allocation length, or all of the data when it is shorter.
    assert_eq!(r.data.len(), (allocation_length as usize).min(8 + additional), "PR IN {action}");
    (additional, r.data.to_vec())
}

/// Every registered key (READ KEYS with the largest allocation length: room for 8,191).
async fn all_keys(c: &Client) -> Vec<u64> {
    let (additional, data) = pr_in_with(c, 0, 65535).await;
    data[8..8 + additional].chunks_exact(8).map(|k| u64::from_be_bytes(k.try_into().unwrap())).collect()
}

/// READ KEYS and READ FULL STATUS of `count` registrations, `paths` per host key.
async fn check_crowd(c: &Client, count: usize, key_of: impl Fn(usize) -> u64, paths: usize) {
    // READ KEYS: every key fits 65,535 bytes (8 each); ADDITIONAL LENGTH counts them all.
    let mut keys = all_keys(c).await;
    assert_eq!(keys.len(), count);
    keys.sort();
    let mut expected: Vec<u64> = (0..count / paths).flat_map(|h| std::iter::repeat_n(key_of(h), paths)).collect();
    expected.sort();
    assert_eq!(keys, expected);
    // Too small an allocation length: what fits, and the length of the whole list.
    let (additional, data) = pr_in_with(c, 0, 20).await;
    assert_eq!((additional, data.len()), (8 * count, 20));
    // READ FULL STATUS: 4,096 descriptors exceed 65,535 bytes; the data is cut exactly there
    // and ADDITIONAL LENGTH is the whole list's.
    let (additional, data) = pr_in_with(c, 3, 65535).await;
    let (mut at, mut whole) = (8, 0);
    while at + 24 <= data.len() {
        let tid_len = u32::from_be_bytes(data[at + 20..at + 24].try_into().unwrap()) as usize;
        if at + 24 + tid_len > data.len() {
            break;
        }
        let tid = String::from_utf8_lossy(&data[at + 28..at + 24 + tid_len]).to_string();
        assert!(tid.starts_with("iqn.2026-11.test:scale-"), "{tid}");
        at += 24 + tid_len;
        whole += 1;
    }
    let descriptor = (additional as f64) / count as f64;
    assert_eq!(additional % count, 0, "equal-length names give equal descriptors");
    assert_eq!(whole, (65535 - 8) / descriptor as usize, "every descriptor that fits is complete");
    assert!(additional > 65535);
    let (small, data) = pr_in_with(c, 3, 100).await;
    assert_eq!((small, data.len()), (additional, 100));
}

/// `[limits] max_registrants_per_lun` reaches the logical unit: the registration beyond it is
/// refused with ILLEGAL REQUEST, INSUFFICIENT REGISTRATION RESOURCES (55h/04h), registered
/// nexuses still change their keys, and `palisade pr show` reports the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_registration_limit_is_enforced_and_shown() {
    let config = format!(
        "data_dir = \"{{DATA_DIR}}\"\n[[portals]]\nlisten = \"127.0.0.1:{{PORT}}\"\n[[targets]]\nname = \"{DEFAULT_IQN}\"\n\
         [[targets.luns]]\nid = 0\nbackend = \"memory\"\nsize = \"16MiB\"\n[limits]\nmax_registrants_per_lun = 3\n"
    );
    let t = TargetProcess::start_with_config(&config, DEFAULT_IQN);
    let mut clients = Vec::new();
    for n in 1..=4u8 {
        clients.push(connect(&t, &format!("iqn.2026-11.test:limited-{n}"), n).await);
    }
    for (i, c) in clients.iter().take(3).enumerate() {
        assert_eq!(c.pr_out(prout::REGISTER_AND_IGNORE, 0, 0, 0x10 + i as u64, 0).await.status, GOOD);
    }
    let refused = clients[3].pr_out(prout::REGISTER_AND_IGNORE, 0, 0, 0x13, 0).await;
    assert_eq!((refused.status, refused.sense_code()), (pr_client::CHECK_CONDITION, Some((0x05, 0x55, 0x04))));
    assert_eq!(clients[0].pr_out(prout::REGISTER_AND_IGNORE, 0, 0, 0x20, 0).await.status, GOOD);
    let (_, mut keys) = clients[0].read_keys().await;
    keys.sort();
    assert_eq!(keys, vec![0x11, 0x12, 0x20]);
    let show = |json: bool| {
        let dir = t.data_dir().to_string_lossy().into_owned();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_palisade"));
        cmd.args(["pr", "show", "--data-dir", &dir]);
        if json {
            cmd.arg("--json");
        }
        let out = common::run_with_timeout(&mut cmd, Duration::from_secs(30));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(show(false).contains("3 registration(s) of at most 3"), "{}", show(false));
    let json: serde_json::Value = serde_json::from_str(&show(true)).unwrap();
    assert_eq!(json[0]["max_registrants"], 3);
}
