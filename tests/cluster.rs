//! Cluster mode against real etcd (docs/cluster.md): three etcd members on loopback, two or three
//! `palisade serve` gateways as processes sharing one LUN file, and a TCP proxy that cuts one
//! gateway off from etcd. Short leases (TTL 2 s, self-fence margin 500 ms) keep the file under a
//! minute and a half.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::block_initiator::{BlockInitiator, CmdResult};
use common::cluster::{
    cluster_status, gateway, gateway_toml, gateways, login, one_at_a_time, sees_live, wait_for_log, wait_for_log_count,
    SharedLun, IQN, MARGIN, TTL,
};
use common::etcd::{EtcdCluster, TcpProxy};
use common::{run_ok, run_with_timeout, unique_temp_dir, TargetProcess};
use initiator::cdb;
use pdu::be;

fn write10(lba: u32, fill: u8) -> ([u8; 10], Vec<u8>) {
    let l = lba.to_be_bytes();
    ([0x2A, 0, l[0], l[1], l[2], l[3], 0, 0, 1, 0], vec![fill; 512])
}

fn write(i: &mut BlockInitiator, lba: u32, fill: u8) -> CmdResult {
    let (cdb, data) = write10(lba, fill);
    i.command_past_unit_attentions(0, &cdb, &data, 0)
}

fn read(i: &mut BlockInitiator, lba: u32) -> Vec<u8> {
    let l = lba.to_be_bytes();
    let result = i.command_past_unit_attentions(0, &[0x28, 0, l[0], l[1], l[2], l[3], 0, 0, 1, 0], &[], 512);
    assert!(result.is_good(), "READ(10) of LBA {lba}: {:?}", result.sense_code());
    result.data
}

/// How long after its last acknowledged keepalive's send time the gateway found itself past its
/// deadline, from its `self-fenced: no keepalive acknowledged for N ms` line.
fn fenced_at_ack_age(gw: &TargetProcess) -> Duration {
    let log = gw.log();
    let marker = "no keepalive acknowledged for ";
    let at = log.find(marker).unwrap_or_else(|| panic!("no self-fence line:\n{log}")) + marker.len();
    let digits: String = log[at..].chars().take_while(char::is_ascii_digit).collect();
    Duration::from_millis(digits.parse().unwrap_or_else(|_| panic!("no age in the self-fence line:\n{log}")))
}

/// `iscsi-inq` VPD page `page` of LUN 0 through a gateway, without the tool's banner lines.
fn vpd(gw: &TargetProcess, page: u8) -> String {
    run_ok("iscsi-inq", &["-e", "1", "-c", &page.to_string(), &gw.url(0)], Duration::from_secs(20))
}

#[test]
fn gateways_present_one_lun_identity_and_refuse_a_mismatch_or_a_duplicate_id() {
    let _serial = one_at_a_time();
    let etcd = EtcdCluster::start();
    let shared = SharedLun::new();
    let lun = shared.path();
    let gw1 = gateway(1, &etcd.endpoints(), &lun, "16MiB");
    let gw2 = gateway(2, &etcd.endpoints(), &lun, "16MiB");
    assert!(gw1.log().contains("published the LUN definition"), "{}", gw1.log());
    assert!(gw2.log().contains("LUN definition matches the cluster's"), "{}", gw2.log());
    wait_for_log(&gw1, "gateway joined the cluster", Duration::from_secs(5));
    let status = cluster_status(&gw1);
    assert_eq!((status["gateway_id"].as_u64(), status["state"].as_str()), (Some(1), Some("serving")), "{status}");
    assert_eq!((sees_live(&status, 1), sees_live(&status, 2)), (Some(true), Some(true)), "{status}");
    let gw2_ports = status["gateways"][1]["relative_ports"].clone();
    assert_eq!(gw2_ports, serde_json::json!([0x201]), "relative port id = gateway_id * 256 + TPGT");

    // SPC-4 §7.8.5 / §7.8.6: the same unit serial and NAA designator through every gateway.
    let (serial1, serial2) = (vpd(&gw1, 0x80), vpd(&gw2, 0x80));
    assert!(serial1.contains("Unit Serial Number:"), "{serial1}");
    assert_eq!(serial1, serial2, "VPD 80h differs between gateways");
    let (ids1, ids2) = (vpd(&gw1, 0x83), vpd(&gw2, 0x83));
    let naa = |page: &str| page.lines().filter(|l| l.contains("NAA")).map(str::to_string).collect::<Vec<_>>();
    assert!(!naa(&ids1).is_empty(), "no NAA designator:\n{ids1}");
    assert_eq!(naa(&ids1), naa(&ids2), "VPD 83h NAA differs between gateways");

    // Data written through one gateway is read through the other (one shared LU).
    let (mut a, mut b) = (login(&gw1, "iqn.2026-11.test:a", 1), login(&gw2, "iqn.2026-11.test:b", 2));
    assert!(write(&mut a, 7, 0x5A).is_good());
    assert_eq!(read(&mut b, 7), vec![0x5A; 512]);

    // A gateway whose LUN 0 is 32 MiB refuses it and names the field.
    let other = shared.other("other.img");
    let gw3 = TargetProcess::start_with_config(&gateway_toml(3, &etcd.endpoints(), &other, "32MiB"), IQN);
    wait_for_log(&gw3, "joined the cluster; serving", Duration::from_secs(20));
    let log = gw3.log();
    assert!(
        log.contains("refusing to serve LUN 0") && log.contains("capacity_blocks differs"),
        "no refusal naming the field:\n{log}"
    );
    let inquiry = run_with_timeout(Command::new("iscsi-inq").arg(gw3.url(0)), Duration::from_secs(20));
    assert!(!inquiry.status.success(), "the refused LUN must not be served");

    // A second gateway with id 1 while gateway 1 is live refuses to start, saying why.
    let dup_dir = unique_temp_dir("palisade-cluster-dup");
    let dup_toml = gateway_toml(1, &etcd.endpoints(), &lun, "16MiB")
        .replace("{DATA_DIR}", &dup_dir.to_string_lossy())
        .replace("{PORT}", &common::free_port().to_string());
    std::fs::write(dup_dir.join("dup.toml"), dup_toml).unwrap();
    let started = Instant::now();
    let dup = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_palisade")).args(["serve", "--config"]).arg(dup_dir.join("dup.toml")),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&dup.stderr);
    assert!(!dup.status.success(), "duplicate gateway id started:\n{stderr}");
    assert!(stderr.contains("gateway id 1 is already live in the cluster"), "{stderr}");
    assert!(started.elapsed() >= TTL, "it waited one TTL for a possibly dead holder first");
    assert!(write(&mut a, 8, 0x11).is_good(), "the live gateway 1 is unaffected");
    let _ = std::fs::remove_dir_all(&dup_dir);
}

/// Writes through `i` every 10 ms until one is refused; returns the refusal and when it came.
fn write_until_refused(i: &mut BlockInitiator, within: Duration) -> (CmdResult, Instant) {
    let started = Instant::now();
    let mut lba = 100;
    loop {
        let result = write(i, lba, 0xC0);
        if !result.is_good() {
            return (result, Instant::now());
        }
        assert!(started.elapsed() < within, "writes still accepted {within:?} after the partition");
        lba += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_gateway_cut_off_from_etcd_fences_itself_before_its_lease_expires_and_rejoins_after_heal() {
    let _serial = one_at_a_time();
    let etcd = EtcdCluster::start();
    let shared = SharedLun::new();
    let lun = shared.path();
    let proxies: Vec<TcpProxy> = (0..3).map(|m| TcpProxy::start(etcd.client_addr(m))).collect();
    let through_proxies: Vec<String> = proxies.iter().map(TcpProxy::endpoint).collect();
    let gw1 = gateway(1, &through_proxies, &lun, "16MiB");
    let gw2 = gateway(2, &etcd.endpoints(), &lun, "16MiB");
    wait_for_log(&gw2, "gateway joined the cluster", Duration::from_secs(5));
    let (mut a, mut b) = (login(&gw1, "iqn.2026-11.test:a", 1), login(&gw2, "iqn.2026-11.test:b", 2));
    assert!(write(&mut a, 1, 0xA1).is_good());

    let cut = Instant::now();
    proxies.iter().for_each(TcpProxy::cut);
    let (refused, at) = write_until_refused(&mut a, TTL * 2);
    let fenced_after = at - cut;
    // The deadline is the last acknowledged keepalive's send time + TTL − margin, and that
    // keepalive was sent at most TTL/4 before the cut: the fence closes before etcd's lease can
    // expire (send time + TTL), i.e. less than TTL after the cut.
    assert!(fenced_after < TTL, "fenced {fenced_after:?} after the cut; the lease (TTL {TTL:?}) could have expired");

    assert_eq!(refused.status, 0x02, "CHECK CONDITION");
    assert_eq!(refused.sense_code(), (0x02, 0x04, 0x0A), "NOT READY, ASYMMETRIC ACCESS STATE TRANSITION");
    wait_for_log(&gw1, "self-fenced", Duration::from_secs(2));
    wait_for_log(&gw1, "every admitted write has finished", Duration::from_secs(2));
    // The safety property itself: fenced less than a TTL after the send time of the last
    // keepalive etcd acknowledged, so before etcd could expire the lease.
    let age = fenced_at_ack_age(&gw1);
    assert!(age >= TTL - MARGIN && age < TTL, "self-fenced {age:?} after the last acknowledged keepalive was sent");
    let status = cluster_status(&gw1);
    assert!(["self-fenced", "unavailable"].contains(&status["state"].as_str().unwrap_or("")), "{status}");
    assert_eq!(status["writes_admitted_for_ms"], serde_json::Value::Null, "{status}");
    assert_eq!(status["self_fence_events"], 1, "{status}");

    // The other gateway sees it leave once etcd expires the lease (TTL + etcd's granularity).
    let left_after = cut.elapsed() + wait_for_log(&gw2, "gateway left the cluster", TTL * 3);
    assert!(left_after >= fenced_after, "gateway 2 saw it leave before it had fenced itself");
    assert!(write(&mut b, 2, 0xB2).is_good(), "gateway 2 serves on");
    assert_eq!(sees_live(&cluster_status(&gw2), 1), Some(false), "gateway 2's status shows gateway 1 gone");
    // Past the lease's end gateway 1 reports itself Unavailable.
    wait_for_log(&gw1, "reporting ALUA unavailable", TTL * 2);
    let refused = write(&mut a, 3, 0xA3);
    assert_eq!(refused.sense_code(), (0x02, 0x04, 0x0C), "NOT READY, TARGET PORT IN UNAVAILABLE STATE");
    // SPC-4 §5.16.2.4.5: an unavailable port serves no data at all, reads included; the host's
    // multipath reads through the other gateway.
    let read2 = [0x28, 0, 0, 0, 0, 2, 0, 0, 1, 0];
    let refused_read = a.command_past_unit_attentions(0, &read2, &[], 512);
    assert_eq!(refused_read.sense_code(), (0x02, 0x04, 0x0C), "a read through the unavailable gateway");
    assert_eq!(read(&mut b, 2), vec![0xB2; 512], "gateway 2 reads what it wrote");

    // Heal: a fresh lease and membership, then writes are accepted again.
    let healed = Instant::now();
    proxies.iter().for_each(TcpProxy::heal);
    wait_for_log(&gw1, "rejoined the cluster", Duration::from_secs(15));
    let rejoined_after = healed.elapsed();
    assert!(write(&mut a, 4, 0xA4).is_good(), "gateway 1 serves again after rejoining");
    assert_eq!(read(&mut b, 4), vec![0xA4; 512]);
    wait_for_log_count(&gw2, "gateway joined the cluster", 2, TTL * 2);
    let status = cluster_status(&gw1);
    assert_eq!(status["state"], "serving", "{status}");
    assert_eq!((status["self_fence_events"].as_u64(), status["rejoins"].as_u64()), (Some(1), Some(1)), "{status}");
    assert!(status["keepalives_failed"].as_u64() > Some(0), "{status}");
    assert!(status["writes_admitted_for_ms"].as_u64().is_some_and(|ms| ms <= 1500), "{status}");
    assert_eq!(sees_live(&cluster_status(&gw2), 1), Some(true));
    eprintln!(
        "partition: fenced {} ms after the cut, seen gone by the peer {} ms after it, rejoined {} ms after the heal",
        fenced_after.as_millis(),
        left_after.as_millis(),
        rejoined_after.as_millis()
    );
}

#[test]
fn losing_etcd_quorum_fences_every_gateway_and_restarting_the_members_brings_them_back() {
    let _serial = one_at_a_time();
    let mut etcd = EtcdCluster::start();
    let shared = SharedLun::new();
    let lun = shared.path();
    let gw1 = gateway(1, &etcd.endpoints(), &lun, "16MiB");
    let mut a = login(&gw1, "iqn.2026-11.test:a", 1);
    assert!(write(&mut a, 1, 0x01).is_good());

    // Two of three members killed: no quorum, no keepalive can be acknowledged.
    let killed = Instant::now();
    etcd.kill(0);
    etcd.kill(1);
    let (refused, at) = write_until_refused(&mut a, TTL * 2);
    // The surviving member may be the leader and acknowledge keepalives until it notices, one
    // election timeout (500 ms) later, that it lost quorum: such an ack still counts, because
    // the next leader extends every lease by a full TTL when it takes over.
    assert!(at - killed < TTL * 2, "fenced {:?} after quorum loss", at - killed);
    assert_eq!(refused.sense_code().0, 0x02, "NOT READY");
    wait_for_log(&gw1, "self-fenced", Duration::from_secs(2));
    let age = fenced_at_ack_age(&gw1);
    assert!(age >= TTL - MARGIN && age < TTL, "self-fenced {age:?} after the last acknowledged keepalive was sent");

    etcd.restart(0);
    etcd.restart(1);
    etcd.wait_healthy(Duration::from_secs(30));
    let healthy = Instant::now();
    wait_for_log(&gw1, "rejoined the cluster", Duration::from_secs(20));
    let rejoined_after = healthy.elapsed();
    assert!(write(&mut a, 2, 0x02).is_good(), "serving again once etcd is back");
    eprintln!(
        "quorum loss: fenced {} ms after two of three members were killed, rejoined {} ms after etcd was healthy again",
        (at - killed).as_millis(),
        rejoined_after.as_millis()
    );
}

#[test]
fn a_single_node_contacts_no_etcd_and_says_it_is_not_a_cluster_member() {
    let server = TargetProcess::start_default();
    let dir = server.data_dir().to_string_lossy().into_owned();
    let out = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_palisade")).args(["cluster", "status", "--data-dir", &dir]),
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("single node"), "{stderr}");
    assert!(!server.log().contains("cluster"), "a single node logs nothing about a cluster:\n{}", server.log());
}

#[test]
fn a_killed_gateway_restarts_under_its_id_once_its_lease_ends_and_a_stopped_one_leaves_at_once() {
    let _serial = one_at_a_time();
    let etcd = EtcdCluster::start();
    let shared = SharedLun::new();
    let lun = shared.path();
    let gw1 = gateway(1, &etcd.endpoints(), &lun, "16MiB");
    let mut gw2 = gateway(2, &etcd.endpoints(), &lun, "16MiB");
    wait_for_log(&gw2, "gateway joined the cluster", Duration::from_secs(5));

    // kill -9: no lease revoked. The restarted gateway 1 finds its id held and waits for the
    // old lease to end rather than refusing or taking it over.
    let pid = gw1.pid().expect("our process") as libc::pid_t;
    // SAFETY: kill(2) on the PID of a child this test spawned and has not reaped.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let killed = Instant::now();
    let restarted = TargetProcess::start_with_config(&gateway_toml(1, &etcd.endpoints(), &lun, "16MiB"), IQN);
    wait_for_log(&restarted, "joined the cluster; serving", TTL * 3);
    let rejoined_after = killed.elapsed();
    assert!(restarted.log().contains("waiting to see whether it expires"), "{}", restarted.log());
    // The old lease was renewed at most TTL/4 before the kill.
    assert!(rejoined_after >= TTL * 3 / 4, "took the id {rejoined_after:?} after the kill: the old lease was live");
    wait_for_log_count(&gw2, "joined the cluster", 2, TTL * 2);
    let mut a = login(&restarted, "iqn.2026-11.test:a", 1);
    assert!(write(&mut a, 9, 0x99).is_good());
    drop(gw1);

    // SIGTERM: the lease is revoked, so the peer sees the gateway leave well before a TTL.
    let stopped = Instant::now();
    gw2.stop();
    wait_for_log(&restarted, "gateway left the cluster", TTL * 2);
    let seen_after = stopped.elapsed();
    assert!(seen_after < TTL, "a stopped gateway was seen leaving only after {seen_after:?}");
    eprintln!(
        "kill -9 → restarted gateway serving under its id after {} ms; SIGTERM → peer saw it leave after {} ms",
        rejoined_after.as_millis(),
        seen_after.as_millis()
    );
}

#[test]
fn a_gateway_stalled_past_its_deadline_refuses_the_writes_waiting_for_it_when_it_resumes() {
    let _serial = one_at_a_time();
    let etcd = EtcdCluster::start();
    let shared = SharedLun::new();
    let lun = shared.path();
    let proxies: Vec<TcpProxy> = (0..3).map(|m| TcpProxy::start(etcd.client_addr(m))).collect();
    let through_proxies: Vec<String> = proxies.iter().map(TcpProxy::endpoint).collect();
    let gw1 = gateway(1, &through_proxies, &lun, "16MiB");
    let gw2 = gateway(2, &etcd.endpoints(), &lun, "16MiB");
    let mut a = login(&gw1, "iqn.2026-11.test:a", 1);
    assert!(write(&mut a, 20, 0x20).is_good());

    // SIGSTOP: the whole process stalls (a VM pause, swap storm), timers included. etcd expires
    // its lease and the other gateway sees it leave.
    let pid = gw1.pid().expect("our process") as libc::pid_t;
    // SAFETY: kill(2) on the PID of a child this test spawned and has not reaped.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    wait_for_log(&gw2, "gateway left the cluster", TTL * 3);
    // Keep etcd out of reach so the resumed gateway cannot rejoin before it answers the write
    // below: what refuses it is the deadline check on the write path, not a rejoin race.
    proxies.iter().for_each(TcpProxy::cut);
    let writer = std::thread::spawn(move || {
        let result = write(&mut a, 21, 0x21);
        (a, result)
    });
    std::thread::sleep(Duration::from_millis(300)); // the write waits in the stalled gateway's socket
                                                    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let (mut a, result) = writer.join().expect("writer thread");
    assert_eq!(result.status, 0x02, "a write that arrived during the stall must not land: {result:?}");
    assert_eq!(result.sense_code().0, 0x02, "NOT READY");
    let mut b = login(&gw2, "iqn.2026-11.test:b", 2);
    assert_eq!(read(&mut b, 21), vec![0; 512], "nothing of it reached the shared LU");

    proxies.iter().for_each(TcpProxy::heal);
    wait_for_log(&gw1, "rejoined the cluster", Duration::from_secs(15));
    assert!(write(&mut a, 22, 0x22).is_good(), "serving again after rejoining");
}

/// PERSISTENT RESERVE OUT with a basic 24-byte parameter list (SPC-4 §6.16.3).
fn pr_out(i: &mut BlockInitiator, action: u8, kind: u8, key: u64, sa_key: u64) -> CmdResult {
    i.command_past_unit_attentions(0, &cdb::pr_out(action, kind, 24)[..10], &cdb::pr_out_param(key, sa_key, 0), 0)
}

/// READ KEYS (SPC-4 §6.15.2): PRgeneration and the keys.
fn read_keys(i: &mut BlockInitiator) -> (u32, Vec<u64>) {
    let result = i.command_past_unit_attentions(0, &cdb::pr_in(0x00, 1024)[..10], &[], 1024);
    assert!(result.is_good(), "READ KEYS: {:?}", result.sense_code());
    let d = result.data;
    let generation = be::u32_at(&d, 0).expect("PRgeneration");
    let keys = be::u32_at(&d, 4).expect("ADDITIONAL LENGTH") as usize / 8;
    (generation, (0..keys).map(|k| be::u64_at(&d, 8 + 8 * k).expect("a whole key")).collect())
}

#[test]
fn a_registration_and_a_preempt_through_one_gateway_hold_through_the_other() {
    let _serial = one_at_a_time();
    let etcd = EtcdCluster::start();
    let shared = SharedLun::new();
    let lun = shared.path();
    let gw1 = gateway(1, &etcd.endpoints(), &lun, "16MiB");
    let gw2 = gateway(2, &etcd.endpoints(), &lun, "16MiB");
    let mut a = login(&gw1, "iqn.2026-11.test:a", 1);
    let mut b = login(&gw2, "iqn.2026-11.test:b", 2);
    assert!(pr_out(&mut a, 0x00, 0, 0, 0xA).is_good(), "REGISTER through gateway 1");
    // GOOD came after gateway 2 applied it: its READ KEYS shows the key at once.
    assert_eq!(read_keys(&mut b), (1, vec![0xA]));
    assert!(pr_out(&mut b, 0x00, 0, 0, 0xB).is_good(), "REGISTER through gateway 2");
    assert!(pr_out(&mut a, 0x01, 0x05, 0xA, 0).is_good(), "RESERVE Write Exclusive, Registrants Only");
    assert_eq!(read_keys(&mut a), (2, vec![0xA, 0xB]), "PRgeneration is cluster-wide");
    assert!(write(&mut a, 30, 0xA1).is_good());
    // B preempts A through gateway 2; A's next write through gateway 1 is refused.
    assert!(pr_out(&mut b, 0x05, 0x05, 0xB, 0xA).is_good(), "PREEMPT AND ABORT through gateway 2");
    let refused = write(&mut a, 30, 0xA2);
    assert_eq!(refused.status, 0x18, "a preempted initiator's write through another gateway: {refused:?}");
    assert_eq!(read(&mut b, 30), vec![0xA1; 512], "only the write before the preempt landed");
    assert!(write(&mut b, 30, 0xB1).is_good(), "the new holder writes");
    let status = cluster_status(&gw2);
    let reservations = &status["reservations"][0];
    assert_eq!(
        (reservations["registrants"].as_u64(), reservations["reserved"].as_bool()),
        (Some(1), Some(true)),
        "{status}"
    );
    assert!(status["pr_out"]["committed"].as_u64() >= Some(2), "{status}");
    drop((gw1, gw2));
}

/// libiscsi's conformance selection (scripts/conformance.sh, the same suites as against a single
/// node) against every gateway of a three-gateway cluster, one after the other: all on one LU
/// whose reservation state is shared, so the persistent-reservation suites run against the
/// state every gateway holds.
#[test]
fn the_conformance_selection_passes_against_every_gateway_of_three() {
    let _serial = one_at_a_time();
    let etcd = EtcdCluster::start();
    let shared = SharedLun::new();
    // Every gateway must have seen the others join before the suite starts: each join changes
    // the ALUA groups, which is a unit attention (2A/06) to every nexus then logged in — right
    // for a host, but not what the suite's first test expects. `gateways` waits for that.
    let gateways = gateways(3, &etcd.endpoints(), &shared.path(), "1GiB");
    for (i, gw) in gateways.iter().enumerate() {
        let label = format!("cluster-gateway-{}", i + 1);
        let script = common::repo_root().join("scripts/conformance.sh");
        let out = run_with_timeout(
            Command::new("bash").arg(&script).arg(gw.url(0)).arg(&label).current_dir(common::repo_root()),
            Duration::from_secs(900),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("{stdout}");
        assert!(
            out.status.success(),
            "{label}: conformance failures ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // Every test that passes against a single node passes here, but SPC-2 RESERVE(6), which
        // a gateway does not offer (docs/cluster.md): libiscsi skips those as not implemented.
        let passing = std::fs::read_to_string(common::repo_root().join("tests/conformance/passing.txt")).unwrap();
        let results =
            std::fs::read_to_string(common::repo_root().join(format!("target/conformance/{label}.tsv"))).unwrap();
        let outcome =
            |test: &str| results.lines().find_map(|l| l.strip_prefix(test)?.strip_prefix('\t')?.split('\t').next());
        for test in passing.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let expected = if test.starts_with("SCSI.Reserve6.") { "SKIP" } else { "PASS" };
            assert_eq!(outcome(test), Some(expected), "{label}: {test}");
        }
    }
    drop(gateways);
}
