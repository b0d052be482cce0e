//! Implicit ALUA (SPC-4 §5.15) on the wire, against the real binary serving one target on two
//! portal groups (TPGT 1 and 2): libiscsi's iscsi-inq sees TPGS and the target port designators;
//! the raw initiator checks their values, REPORT TARGET PORT GROUPS, SET TARGET PORT GROUPS'
//! refusal and READ FULL STATUS' relative target port identifiers byte for byte.

mod common;

use common::block_initiator::BlockInitiator;
use common::{free_port, run_ok, TargetProcess, DEFAULT_IQN};
use std::time::Duration;

const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
const HOST: &str = "iqn.2026-11.io.palisade.test:alua";

/// One target, LUN 0 in memory, on portal "a" (TPGT 1, `{PORT}`) and portal "b" (TPGT 2).
fn start_two_portals() -> (TargetProcess, String) {
    let second = format!("127.0.0.1:{}", free_port());
    let toml = format!(
        r#"
[[portals]]
name = "a"
listen = "127.0.0.1:{{PORT}}"
tpgt = 1

[[portals]]
name = "b"
listen = "{second}"
tpgt = 2

[[targets]]
name = "{DEFAULT_IQN}"

[[targets.luns]]
id = 0
backend = "memory"
size = "16MiB"
"#
    );
    (TargetProcess::start_with_config(&toml, DEFAULT_IQN), second)
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
