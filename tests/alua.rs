//! Implicit ALUA (SPC-4 §5.16.2) on the wire, against the real binary serving one target on two
//! portal groups (TPGT 1 and 2): libiscsi's iscsi-inq sees TPGS and the target port designators;
//! the raw initiator checks their values, REPORT TARGET PORT GROUPS, SET TARGET PORT GROUPS'
//! refusal and READ FULL STATUS' relative target port identifiers byte for byte. The access
//! states are driven on a server run in this process (the handle a cluster layer holds).

mod common;

use common::block_initiator::BlockInitiator;
use common::{free_port, run_ok, unique_temp_dir, TargetProcess, DEFAULT_IQN};
use palisade::config::Config;
use palisade::scsi::alua::{AccessState, Alua};
use palisade::server::Server;
use std::sync::Arc;
use std::time::Duration;

const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
const HOST: &str = "iqn.2026-11.io.palisade.test:alua";

/// One target, LUN 0 in memory, on portal "a" (TPGT 1, `{PORT}`) and portal "b" (TPGT 2).
fn start_two_portals() -> (TargetProcess, String) {
    let second = free_port();
    (common::start_two_portal_groups(second, "backend = \"memory\"\nsize = \"16MiB\""), format!("127.0.0.1:{second}"))
}

fn login(portal: &str, isid: u8) -> BlockInitiator {
    let mut i = BlockInitiator::connect(portal, DEFAULT_IQN, HOST, isid);
    i.clear_unit_attention(0);
    i
}

fn rtpg(format: u8, allocation_length: u32) -> Vec<u8> {
    let mut cdb = vec![0xA3, (format << 5) | 0x0A, 0, 0, 0, 0];
    cdb.extend_from_slice(&allocation_length.to_be_bytes());
    cdb.extend_from_slice(&[0, 0]);
    cdb
}

/// Whether `page` holds the 8-byte designation descriptor `descriptor`.
fn has(page: &[u8], descriptor: [u8; 8]) -> bool {
    page.windows(8).any(|w| w == descriptor)
}

#[test]
fn iscsi_inq_sees_implicit_alua_and_the_target_port_designators() {
    let (t, second) = start_two_portals();
    let url = format!("iscsi://{second}/{DEFAULT_IQN}/0");
    let standard = run_ok("iscsi-inq", &[&url], TOOL_TIMEOUT);
    // SPC-4 §6.6.2: TPGS 01b, implicit asymmetric access only.
    assert!(standard.lines().any(|l| l == "TPGS:1"), "{standard}");
    let page = run_ok("iscsi-inq", &["-e", "1", "-c", "131", &url], TOOL_TIMEOUT);
    // SPC-4 §7.8.6.7-8: relative target port and target port group, iSCSI, PIV, target port.
    for kind in ["(4) RELATIVE_TARGET_PORT", "(5) TARGET_PORT_GROUP"] {
        let block = page
            .split("DEVICE DESIGNATOR #")
            .find(|b| b.contains(&format!("Designator Type:{kind}")))
            .unwrap_or_else(|| panic!("no {kind} designator:\n{page}"));
        for line in ["Device Protocol Identifier:(5) ISCSI", "PIV:1", "Association:(1) TARGET_PORT"] {
            assert!(block.contains(line), "{kind} lacks {line}:\n{block}");
        }
    }
    // SPC-4 §7.8.6.11: the target port's name is that of the portal group logged in through.
    assert!(page.contains(&format!("Designator:[{DEFAULT_IQN},t,0x0002]")), "{page}");
    assert!(page.contains("Designator Type:(3) NAA"), "{page}");
    drop(t);
}

#[test]
fn each_portal_group_is_a_relative_port_of_group_1_in_vpd_83h_and_report_target_port_groups() {
    let (t, second) = start_two_portals();
    let mut a = login(&t.portal(), 1);
    let mut b = login(&second, 2);
    let vpd = |i: &mut BlockInitiator| i.ok(0, &[0x12, 1, 0x83, 0, 255, 0], &[], 255);
    let (page_a, page_b) = (vpd(&mut a), vpd(&mut b));
    // The logical unit's NAA designator is the same through both ports (SPC-4 §7.8.6.6).
    assert_eq!(&page_a[4..16], &page_b[4..16]);
    assert!(has(&page_a, [0x51, 0x94, 0, 4, 0, 0, 0, 1]) && has(&page_a, [0x51, 0x95, 0, 4, 0, 0, 0, 1]));
    assert!(has(&page_b, [0x51, 0x94, 0, 4, 0, 0, 0, 2]) && has(&page_b, [0x51, 0x95, 0, 4, 0, 0, 0, 1]));

    // SPC-4 §6.37: one group (1), Active/Optimized, T/U/S/AN/AO supported, ports 1 and 2.
    let whole = vec![0, 0, 0, 16, 0x00, 0x8F, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
    assert_eq!(b.ok(0, &rtpg(0, 1024), &[], 1024), whole);
    assert_eq!(a.ok(0, &rtpg(0, 1024), &[], 1024), whole);
    assert_eq!(b.ok(0, &rtpg(0, 6), &[], 6), whole[..6].to_vec(), "allocation length");
    let extended = b.ok(0, &rtpg(1, 1024), &[], 1024);
    assert_eq!(&extended[..8], &[0, 0, 0, 20, 0x10, 0, 0, 0]);
    assert_eq!(&extended[8..], &whole[4..]);
    assert_eq!(b.command(0, &rtpg(2, 1024), &[], 1024).sense_code(), (5, 0x24, 0));
    // SPC-4 §6.45 with TPGS = 01b: SET TARGET PORT GROUPS is not supported.
    let stpg = [0xA4, 0x0A, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0];
    let refused = b.command(0, &stpg, &[0, 0, 0, 0, 0x0E, 0, 0, 1, 0, 0, 0, 0], 0);
    assert_eq!(refused.sense_code(), (5, 0x20, 0));
}

#[test]
fn read_full_status_reports_the_relative_port_each_registration_came_through() {
    let (t, second) = start_two_portals();
    let mut a = login(&t.portal(), 1);
    let mut b = login(&second, 2);
    let register = |key: u64| {
        let mut p = vec![0u8; 24];
        p[8..16].copy_from_slice(&key.to_be_bytes());
        p
    };
    let prout = [0x5F, 0x00, 0, 0, 0, 0, 0, 0, 24, 0];
    a.ok(0, &prout, &register(0xA), 0);
    b.ok(0, &prout, &register(0xB), 0);
    let status = a.ok(0, &[0x5E, 0x03, 0, 0, 0, 0, 0, 0x10, 0, 0], &[], 4096);
    let mut ports = Vec::new();
    let mut at = 8;
    while at + 24 <= status.len() {
        let key = u64::from_be_bytes(status[at..at + 8].try_into().unwrap());
        ports.push((key, u16::from_be_bytes([status[at + 18], status[at + 19]])));
        at += 24 + u32::from_be_bytes(status[at + 20..at + 24].try_into().unwrap()) as usize;
    }
    ports.sort();
    assert_eq!(ports, vec![(0xA, 1), (0xB, 2)]);
}

/// The zero-config server (file LUN 0) run in this process on an ephemeral loopback port: its
/// ALUA handle, its portal, and what stops it.
struct InProcess {
    alua: Arc<Alua>,
    portal: String,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    fn start() -> InProcess {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let config = Config::zero_config("127.0.0.1:0".parse().unwrap(), unique_temp_dir("palisade-alua"));
        let server = runtime.block_on(Server::bind(&config)).expect("bind");
        let (alua, portal) = (server.alua(), server.portals()[0].addr.to_string());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let thread = std::thread::spawn(move || runtime.block_on(server.run(stopped)).expect("serve"));
        InProcess { alua, portal, stop, thread: Some(thread) }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn rw10(op: u8, lba: u32) -> Vec<u8> {
    let mut cdb = vec![op, 0];
    cdb.extend_from_slice(&lba.to_be_bytes());
    cdb.extend_from_slice(&[0, 0, 1, 0]);
    cdb
}

#[test]
fn access_states_answer_not_ready_on_the_wire_after_a_unit_attention_and_recover() {
    let server = InProcess::start();
    let mut host = login(&server.portal, 7);
    host.ok(0, &rw10(0x2A, 9), &[0x5A; 512], 0);
    for (state, ascq) in
        [(AccessState::Transitioning, 0x0A), (AccessState::Unavailable, 0x0C), (AccessState::Standby, 0x0B)]
    {
        server.alua.set_local_state(state);
        // SPC-4 §5.16.2.5: the change is announced once, then the state's NOT READY applies
        // (§5.16.2.4.4-5, §5.16.2.5) to TEST UNIT READY, READ and WRITE alike.
        assert_eq!(host.command(0, &[0; 6], &[], 0).sense_code(), (6, 0x2A, 0x06), "{state:?}");
        for cdb in [vec![0; 6], rw10(0x28, 9), rw10(0x2A, 9)] {
            let done = host.command(0, &cdb, &[0xEE; 512], 512);
            assert_eq!((done.status, done.sense_code()), (2, (2, 0x04, ascq)), "{state:?} {cdb:02x?}");
        }
        // The host can still learn the state: INQUIRY and REPORT TARGET PORT GROUPS (state,
        // status code 02h "altered by implicit ALUA behaviour"). (libiscsi's tools cannot be
        // used here: their connect step sends TEST UNIT READY and gives up on NOT READY.)
        assert_eq!(host.ok(0, &[0x12, 0, 0, 0, 36, 0], &[], 36)[5] & 0x30, 0x10, "{state:?}");
        let groups = host.ok(0, &rtpg(0, 1024), &[], 1024);
        assert_eq!((groups[4], groups[9]), (state.code(), 0x02), "{state:?}");
        // Standby alone still takes PERSISTENT RESERVE IN (§5.16.2.4.4).
        let read_keys = host.command(0, &[0x5E, 0, 0, 0, 0, 0, 0, 0, 8, 0], &[], 8);
        assert_eq!(read_keys.is_good(), state == AccessState::Standby, "{state:?}: {read_keys:?}");
    }
    server.alua.set_local_state(AccessState::ActiveOptimized);
    assert_eq!(host.command(0, &[0; 6], &[], 0).sense_code(), (6, 0x2A, 0x06));
    // Nothing written while the port could not serve reached the LUN.
    assert_eq!(host.ok(0, &rw10(0x28, 9), &[], 512), vec![0x5A; 512]);
    drop(host);
    // Active again: libiscsi connects and sees implicit ALUA.
    let url = format!("iscsi://{}/{DEFAULT_IQN}/0", server.portal);
    assert!(run_ok("iscsi-inq", &[&url], TOOL_TIMEOUT).lines().any(|l| l == "TPGS:1"));
}
