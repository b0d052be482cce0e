//! SPC-4 §5.16.2 asymmetric access through `prepare`/`execute`: every access state against every
//! row of the command table, the unit attention of a state change, REPORT TARGET PORT GROUPS.

use super::*;
use crate::scsi::alua::{AccessState, Alua, PortGroup};
use crate::scsi::commands::{AluaAccess, COMMANDS};

const ALL_STATES: [AccessState; 5] = [
    AccessState::ActiveOptimized,
    AccessState::ActiveNonOptimized,
    AccessState::Standby,
    AccessState::Unavailable,
    AccessState::Transitioning,
];

fn alua_target() -> (ScsiTarget, Arc<Alua>) {
    let alua = Alua::single_node(1, vec![1, 2]);
    (target(vec![memory_lun(0)]).with_alua(alua.clone(), [1, 2]), alua)
}

/// The (key, ASC, ASCQ) a refused command gets in `state` (SPC-4 §5.16.2.4.4-5, §5.16.2.5).
fn not_ready(state: AccessState) -> Option<(u8, u8, u8)> {
    match state {
        AccessState::Standby => Some((2, 0x04, 0x0B)),
        AccessState::Unavailable => Some((2, 0x04, 0x0C)),
        AccessState::Transitioning => Some((2, 0x04, 0x0A)),
        _ => None,
    }
}

fn is_alua_not_ready(c: &Completion) -> bool {
    c.status == 0x02 && matches!(sense_code(c), (2, 0x04, 0x0A..=0x0C))
}

/// Takes the ASYMMETRIC ACCESS STATE CHANGED unit attention with REQUEST SENSE (allowed in
/// every state), asserting it was there.
async fn take_state_changed(t: &ScsiTarget, n: &Arc<ItNexus>) {
    let sense = good(&run(t, n, 0, &[0x03, 0, 0, 0, 252, 0], &[]).await);
    assert_eq!((sense[2], sense[12], sense[13]), (6, 0x2A, 0x06));
}

#[tokio::test]
async fn every_access_state_against_every_command_of_the_table() {
    let (t, alua) = alua_target();
    let n = fresh(&t, 0).await;
    for state in ALL_STATES {
        let before = alua.local_state();
        alua.set_local_state(state);
        if before != state {
            take_state_changed(&t, &n).await;
        }
        for info in COMMANDS {
            // The opcode and service action with every other field zero: valid for the usage
            // check, so only the access state can refuse it before the command's own checks.
            let mut cdb = vec![0u8; info.usage.len()];
            cdb[0] = info.opcode;
            cdb[1] = info.service_action.unwrap_or(0);
            let done = run(&t, &n, 0, &cdb, &[]).await;
            let allowed = info.alua.allows(state);
            match not_ready(state) {
                Some(expected) if !allowed => {
                    assert_eq!(sense_code(&done), expected, "{:?} in {state:?}", info.command)
                }
                _ => assert!(!is_alua_not_ready(&done), "{:?} refused in {state:?}: {done:?}", info.command),
            }
        }
    }
    // The classes the standard names: active-only commands run only in the active states.
    let classes: Vec<AluaAccess> = COMMANDS.iter().map(|c| c.alua).collect();
    assert!(classes.contains(&AluaAccess::Active) && classes.contains(&AluaAccess::Standby));
}

#[tokio::test]
async fn transitioning_and_unavailable_answer_reads_and_writes_not_ready_and_recover() {
    let (t, alua) = alua_target();
    let n = fresh(&t, 0).await;
    good(&run(&t, &n, 0, &rw10(0x2A, 0, 0, 1), &[0xAB; 512]).await);
    for (state, ascq) in [(AccessState::Transitioning, 0x0A), (AccessState::Unavailable, 0x0C)] {
        alua.set_local_state(state);
        take_state_changed(&t, &n).await;
        assert_eq!(sense_code(&run(&t, &n, 0, &rw10(0x28, 0, 0, 1), &[]).await), (2, 0x04, ascq));
        assert_eq!(sense_code(&run(&t, &n, 0, &rw10(0x2A, 0, 0, 1), &[0xCD; 512]).await), (2, 0x04, ascq));
        assert_eq!(sense_code(&run(&t, &n, 0, &[0; 6], &[]).await), (2, 0x04, ascq), "TEST UNIT READY");
        // INQUIRY and REPORT TARGET PORT GROUPS still answer, so the host learns the state.
        good(&run(&t, &n, 0, &[0x12, 0, 0, 0, 36, 0], &[]).await);
        let rtpg = good(&run(&t, &n, 0, &[0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[]).await);
        assert_eq!(rtpg[4] & 0x0F, state.code());
    }
    // Standby still takes PERSISTENT RESERVE IN (SPC-4 §5.16.2.4.4) but no READ.
    alua.set_local_state(AccessState::Standby);
    take_state_changed(&t, &n).await;
    good(&run(&t, &n, 0, &[0x5E, 0x00, 0, 0, 0, 0, 0, 0, 8, 0], &[]).await);
    assert_eq!(sense_code(&run(&t, &n, 0, &rw10(0x28, 0, 0, 1), &[]).await), (2, 0x04, 0x0B));
    alua.set_local_state(AccessState::ActiveOptimized);
    take_state_changed(&t, &n).await;
    // Nothing was written while the port could not serve.
    assert_eq!(&good(&run(&t, &n, 0, &rw10(0x28, 0, 0, 1), &[]).await)[..], &[0xAB; 512][..]);
}

#[tokio::test]
async fn spc4_5_15_2_5_a_state_change_is_a_unit_attention_for_every_nexus_once() {
    let (t, alua) = alua_target();
    let (a, b) = (fresh(&t, 0).await, nexus(3));
    assert_eq!(sense_code(&run(&t, &b, 0, &[0; 6], &[]).await), (6, 0x29, 0));
    alua.set_local_state(AccessState::ActiveOptimized);
    good(&run(&t, &a, 0, &[0; 6], &[]).await); // no change, no unit attention
    alua.set_local_state(AccessState::ActiveNonOptimized);
    alua.set_local_state(AccessState::ActiveNonOptimized);
    for n in [&a, &b] {
        assert_eq!(sense_code(&run(&t, n, 0, &[0; 6], &[]).await), (6, 0x2A, 0x06));
        good(&run(&t, n, 0, &[0; 6], &[]).await);
    }
    // A peer group's change (the cluster's view of another gateway) is announced the same way.
    let own = alua.groups()[0].clone();
    let peer = |state| PortGroup { id: 2, state, relative_ports: vec![3] };
    alua.set_groups(vec![own.clone(), peer(AccessState::ActiveOptimized)]);
    assert_eq!(sense_code(&run(&t, &a, 0, &[0; 6], &[]).await), (6, 0x2A, 0x06));
    alua.set_groups(vec![own.clone(), peer(AccessState::ActiveOptimized)]);
    good(&run(&t, &a, 0, &[0; 6], &[]).await);
    alua.set_groups(vec![own, peer(AccessState::Unavailable)]);
    assert_eq!(sense_code(&run(&t, &a, 0, &[0; 6], &[]).await), (6, 0x2A, 0x06));
}

#[tokio::test]
async fn report_target_port_groups_formats_and_allocation_length() {
    let (t, _alua) = alua_target();
    let n = fresh(&t, 0).await;
    let rtpg = |format: u8, alloc: u32| {
        let mut cdb = vec![0xA3, (format << 5) | 0x0A, 0, 0, 0, 0];
        cdb.extend_from_slice(&alloc.to_be_bytes());
        cdb.extend_from_slice(&[0, 0]);
        cdb
    };
    let whole = good(&run(&t, &n, 0, &rtpg(0, 4096), &[]).await);
    assert_eq!(&whole[..], &[0, 0, 0, 16, 0x00, 0x8F, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
    // SPC-4 §4.2.5.6: cut at the allocation length, RETURN DATA LENGTH still the whole.
    assert_eq!(&good(&run(&t, &n, 0, &rtpg(0, 6), &[]).await)[..], &whole[..6]);
    assert!(good(&run(&t, &n, 0, &rtpg(0, 0), &[]).await).is_empty());
    let extended = good(&run(&t, &n, 0, &rtpg(1, 4096), &[]).await);
    assert_eq!(&extended[..8], &[0, 0, 0, 20, 0x10, 0, 0, 0]);
    assert_eq!(&extended[8..], &whole[4..]);
    // PARAMETER DATA FORMAT 010b and above are reserved: INVALID FIELD IN CDB, byte 1 bit 6.
    let done = run(&t, &n, 0, &rtpg(2, 4096), &[]).await;
    assert_eq!(sense_code(&done), (5, 0x24, 0));
    assert_eq!(&done.sense.as_ref().unwrap()[15..18], &[0xC8 | 6, 0, 1]);
    // An absent LUN has no target port groups to report.
    assert_eq!(sense_code(&run(&t, &n, 5, &rtpg(0, 4096), &[]).await), (5, 0x25, 0));
}

#[tokio::test]
async fn rsoc_lists_report_target_port_groups_and_not_set_target_port_groups() {
    let (t, _alua) = alua_target();
    let n = fresh(&t, 0).await;
    let one = |op: u8, sa: u8| [0xA3, 0x0C, 2, op, 0, sa, 0, 0, 1, 0, 0, 0];
    let rtpg = good(&run(&t, &n, 0, &one(0xA3, 0x0A), &[]).await);
    assert_eq!(&rtpg[..4], &[0, 3, 0, 12]);
    assert_eq!(&rtpg[4..6], &[0xA3, 0x3F]);
    assert_eq!(&good(&run(&t, &n, 0, &one(0xA4, 0x0A), &[]).await)[..], &[0, 1, 0, 0]);
    // SPC-4 §6.45: SET TARGET PORT GROUPS with TPGS = 01b → INVALID COMMAND OPERATION CODE.
    let stpg = [0xA4, 0x0A, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0];
    assert_eq!(sense_code(&run(&t, &n, 0, &stpg, &[0; 8]).await), (5, 0x20, 0));
}

#[tokio::test]
async fn standard_inquiry_reports_implicit_alua_and_vpd_83h_the_receiving_port() {
    let (t, _alua) = alua_target();
    let n = Arc::new(ItNexus::new("iqn.2026-01.test:init", [0x80, 0, 0, 0, 0, 1], "iqn.2026-01.org.palisade:t", 2));
    let std = good(&run(&t, &n, 0, &[0x12, 0, 0, 0, 96, 0], &[]).await);
    assert_eq!(std[5] & 0x30, 0x10, "TPGS = 01b");
    let id = good(&run(&t, &n, 0, &[0x12, 1, 0x83, 0, 255, 0], &[]).await);
    let rel = id.windows(8).any(|w| w == [0x51, 0x94, 0, 4, 0, 0, 0, 2]);
    let tpg = id.windows(8).any(|w| w == [0x51, 0x95, 0, 4, 0, 0, 0, 1]);
    assert!(rel && tpg, "{id:02x?}");
}

#[tokio::test]
async fn a_write_prepared_while_active_does_not_land_once_the_port_is_transitioning() {
    let (t, alua) = alua_target();
    let n = fresh(&t, 0).await;
    good(&run(&t, &n, 0, &rw10(0x2A, 0, 3, 1), &[0x11; 512]).await);
    // Prepared (and admitted) while Active/Optimized; the Data-Out arrives after the change.
    let prepared = t.prepare(task(&n, 0, &rw10(0x2A, 0, 3, 1), 512)).expect("prepared while active");
    alua.set_local_state(AccessState::Transitioning);
    let done = prepared.execute(DataOut::from(Bytes::from_static(&[0x22; 512]))).await;
    assert_eq!(sense_code(&done), (2, 0x04, 0x0A));
    alua.set_local_state(AccessState::ActiveOptimized);
    take_state_changed(&t, &n).await;
    assert_eq!(&good(&run(&t, &n, 0, &rw10(0x28, 0, 3, 1), &[]).await)[..], &[0x11; 512][..]);
    // The same in the other direction: prepared in Standby it never got this far.
    alua.set_local_state(AccessState::Standby);
    take_state_changed(&t, &n).await;
    assert!(t.prepare(task(&n, 0, &rw10(0x28, 0, 3, 1), 512)).is_err());
}

#[tokio::test]
async fn inquiry_through_an_unavailable_port_reports_peripheral_qualifier_001b() {
    let (t, alua) = alua_target();
    let n = fresh(&t, 0).await;
    let standard = [0x12, 0, 0, 0, 96, 0];
    let serial = [0x12, 1, 0x80, 0, 255, 0];
    assert_eq!(good(&run(&t, &n, 0, &standard, &[]).await)[0], 0x00);
    alua.set_local_state(AccessState::Unavailable);
    take_state_changed(&t, &n).await;
    // SPC-4 §5.16.2.4.5: qualifier 001b, device type still direct access, in every page.
    assert_eq!(good(&run(&t, &n, 0, &standard, &[]).await)[0], 0x20);
    assert_eq!(good(&run(&t, &n, 0, &serial, &[]).await)[0], 0x20);
    alua.set_local_state(AccessState::ActiveOptimized);
    take_state_changed(&t, &n).await;
    assert_eq!(good(&run(&t, &n, 0, &standard, &[]).await)[0], 0x00);
}
