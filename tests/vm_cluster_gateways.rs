//! The Linux kernel initiator with dm-multipath across two cluster gateways (issue #10, the VM
//! test of "Tests"; docs/cluster.md). Three etcd members on loopback, gateways 1 and 2 as
//! `palisade serve` processes, each with its own portal (TPGT 1) and LUN 0 of one target on ONE
//! shared file opened with `direct_io` (a gateway must not read the file through a page cache
//! the other gateway's writes bypass), short leases (TTL 2 s, margin 500 ms, as tests/cluster.rs).
//!
//! The guest (tests/guest/cluster_multipath.sh, in the scripts/vm/ harness) logs in through both
//! portals and checks one map with two ALUA paths, one target port group per gateway (SPC-4
//! §5.15). While fio writes and verifies on the map it asks on its console for gateway 1 to be
//! killed and, later, restarted; this test reads the console and does both (SIGKILL, then the
//! same command line again: the gateway waits for its old lease to end if it has not, and
//! rejoins). Then persistent reservations made through either path must read the same through
//! both (SPC-4 §5.13: one reservation state per LU across gateways).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::cluster::{gateway_toml, wait_for_log_count, IQN, TTL};
use common::etcd::EtcdCluster;
use common::vm::{assert_contains, console_lines, transcript};
use common::{guest_script, unique_temp_dir, vm_runner, TargetProcess};

const HOST_IQN: &str = "iqn.2026-11.test.cluster:host-a";
const GUEST_TIMEOUT_S: u64 = 900;
/// What the guest prints when the host is to act (tests/guest/cluster_multipath.sh).
const KILL_REQUEST: &str = "HOST: kill -9 gateway 1";
const RESTART_REQUEST: &str = "HOST: restart gateway 1";
/// Upper bound on the I/O stall when a gateway dies: the guest's replacement_timeout (5 s), the
/// path checker and TCG slowness.
const MAX_STALL_S: f64 = 20.0;

/// A gateway of tests/common/cluster.rs whose 256 MiB LUN is read and written with `O_DIRECT`
/// (docs/cluster.md: cluster LUNs must not serve stale page-cache data).
fn start_gateway(id: u16, endpoints: &[String], lun_file: &Path) -> TargetProcess {
    let toml = gateway_toml(id, endpoints, lun_file, "256MiB");
    let direct = toml.replacen("size = \"256MiB\"\n", "size = \"256MiB\"\ndirect_io = true\n", 1);
    assert_ne!(direct, toml, "the shared gateway configuration changed shape");
    let gw = TargetProcess::start_with_config(&direct, IQN);
    wait_for_log_count(&gw, "joined the cluster; serving", 1, Duration::from_secs(20));
    gw
}

/// The gateway's log lines about the cluster and sessions, for the transcript.
fn key_log_lines(gw: &TargetProcess) -> String {
    transcript(&gw.log(), &["cluster", "lease", "login complete", "self-fence", "waiting to see"])
}

#[test]
fn dm_multipath_across_two_gateways_rides_out_a_killed_gateway_and_shares_reservations() {
    let etcd = EtcdCluster::start();
    let shared = unique_temp_dir("palisade-vm-cluster-lun");
    let lun = shared.join("lun0.img");
    let mut gw1 = start_gateway(1, &etcd.endpoints(), &lun);
    let gw2 = start_gateway(2, &etcd.endpoints(), &lun);
    // Each lists the other's target port group only once it has seen it join.
    wait_for_log_count(&gw1, "gateway joined the cluster", 1, TTL * 2);

    let mut vm = vm_runner(gw1.port(), GUEST_TIMEOUT_S)
        .args(["--second-portal-port", &gw2.port().to_string(), "--initiator-name", HOST_IQN])
        // While gateway 1 is down its port refuses; the guest must see a host that does not
        // answer, not connections that open and close at once: open-iscsi 2.1.8 then loops on
        // "can't bind conn" for good and never logs in to the restarted gateway (open-iscsi
        // issue #387; seen here in 2 of 6 runs without this).
        .args(["--portal-connect-retry", "10"])
        .arg(guest_script("cluster_multipath.sh"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run-in-vm.sh");
    let (rx, reader) = console_lines(&mut vm);
    let deadline = Instant::now() + Duration::from_secs(GUEST_TIMEOUT_S + 60);
    let mut console = Vec::new();
    let mut killed_at: Option<Instant> = None;
    let mut peer_saw_it_leave: Option<Duration> = None;
    let mut rejoined_after: Option<Duration> = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                println!("guest| {line}");
                if line.contains(KILL_REQUEST) && killed_at.is_none() {
                    gw1.kill9();
                    killed_at = Some(Instant::now());
                    println!("host| gateway 1 killed with SIGKILL");
                } else if line.contains(RESTART_REQUEST) && rejoined_after.is_none() {
                    let asked = Instant::now();
                    gw1.restart();
                    wait_for_log_count(&gw1, "joined the cluster; serving", 2, TTL * 5);
                    rejoined_after = Some(asked.elapsed());
                    println!("host| gateway 1 restarted, serving again {:?} after the restart", asked.elapsed());
                }
                console.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let (Some(at), None) = (killed_at, peer_saw_it_leave) {
            if gw2.log().contains("gateway left the cluster") {
                peer_saw_it_leave = Some(at.elapsed());
                println!("host| gateway 2 saw gateway 1 leave {:?} after the kill", at.elapsed());
            }
        }
        if Instant::now() > deadline {
            let _ = vm.kill();
            panic!("the guest did not finish in {GUEST_TIMEOUT_S} s");
        }
    }
    let status = vm.wait().expect("run-in-vm.sh status");
    reader.join().expect("console reader");
    let console = console.join("\n");
    println!("----- gateway 1 log, key lines -----\n{}", key_log_lines(&gw1));
    println!("----- gateway 2 log, key lines -----\n{}", key_log_lines(&gw2));
    println!(
        "----- transcript -----\n{}",
        transcript(
            &console,
            &[
                "active paths:",
                "alua:",
                "alua after",
                "vpd:",
                "rtpg:",
                "paths:",
                "HOST:",
                "after asking",
                "fio:",
                "fio write completion",
                "stall:",
                "fio total latency",
                "pr:",
                "Relative port address",
                "PR generation",
                "FAIL",
            ]
        )
    );

    // One map, two paths, the ALUA handler on both, active/optimized.
    let attached: Vec<&str> = console.lines().filter(|l| l.starts_with("alua: sd")).collect();
    assert_eq!(attached.len(), 2, "{attached:?}");
    assert!(attached.iter().all(|l| l.ends_with("dh_state=alua access_state=active/optimized")), "{attached:?}");
    assert_contains(&console, "hwhandler='1 alua', path group prio=50 status=active");
    // SPC-4 §7.8.6.8 / §7.8.6.9: each path's VPD 83h names its own gateway's group and port.
    let vpd: Vec<&str> = console.lines().filter(|l| l.starts_with("vpd: ")).collect();
    assert_eq!(vpd.len(), 2, "{vpd:?}");
    assert!(vpd.iter().any(|l| l.ends_with("target port group 1, relative target port 0x0101")), "{vpd:?}");
    assert!(vpd.iter().any(|l| l.ends_with("target port group 2, relative target port 0x0201")), "{vpd:?}");
    // SPC-4 §6.37: REPORT TARGET PORT GROUPS through either gateway lists both groups.
    let rtpg: Vec<&str> = console.lines().filter(|l| l.starts_with("rtpg: ")).collect();
    assert_eq!(rtpg.len(), 2, "{rtpg:?}");
    for line in &rtpg {
        assert!(line.contains("group 1 active/optimized port 0x0101;"), "{line}");
        assert!(line.contains("group 2 active/optimized port 0x0201;"), "{line}");
    }

    // Gateway 1 killed while fio ran, restarted later: 2 -> 1 -> 2 active paths, no error.
    assert!(killed_at.is_some(), "the guest never asked for gateway 1 to be killed");
    assert!(rejoined_after.is_some(), "the guest never asked for gateway 1 to be restarted");
    assert!(peer_saw_it_leave.is_some(), "gateway 2 never saw the killed gateway 1 leave the cluster");
    let counts: Vec<&str> = console
        .lines()
        .filter_map(|l| l.strip_prefix("active paths: "))
        .map(|rest| rest.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(counts, ["2", "1", "2"], "active paths over the run");
    assert_contains(&console, "fio still running with both paths back");
    let fio = console.lines().find(|l| l.starts_with("fio: ")).expect("fio summary line");
    assert!(fio.starts_with("fio: err= 0,"), "fio errors: {fio}");
    let stall_line = console.lines().find(|l| l.starts_with("stall: ")).expect("the stall line");
    let stall: f64 = stall_line
        .strip_prefix("stall: I/O stalled ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|secs| secs.parse().ok())
        .unwrap_or_else(|| panic!("no seconds in {stall_line:?}"));
    // The dead path's commands wait out the session's replacement_timeout (5 s) before
    // dm-multipath retries them on gateway 2; anything far beyond that is a hang, not failover.
    assert!(stall < MAX_STALL_S, "I/O stalled {stall} s when gateway 1 died");
    println!("----- figures -----\n{stall_line}");
    println!("gateway 2 saw gateway 1 leave {} ms after the kill", peer_saw_it_leave.unwrap().as_millis());
    let waited_for_old_lease = gw1.log().contains("waiting to see whether it expires");
    println!(
        "gateway 1 restarted and serving {} ms after the guest asked ({})",
        rejoined_after.unwrap().as_millis(),
        if waited_for_old_lease { "it waited for its old lease to end" } else { "its old lease had already ended" }
    );

    // Persistent reservations: one state through both gateways.
    assert!(status.success(), "guest script failed: {status:?}");
    assert_contains(&console, "pr: registered keys: 0x1 0x2 ");
    assert_contains(&console, "pr: READ FULL STATUS relative target ports: 0x101 0x201 ");
    for what in ["k", "r", "s"] {
        assert_contains(&console, &format!("pr: -{what} through both paths: same answer (PR generation=0x"));
    }
    assert_contains(&console, "CLUSTER MULTIPATH OK");
    drop((gw1, gw2));
    let _ = std::fs::remove_dir_all(&shared);
}
