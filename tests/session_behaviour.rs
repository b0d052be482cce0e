//! Session-level behaviour of the real binary seen through the raw initiator: session
//! reinstatement, target NOP-In pings and their timeout, shutdown with an Async logout request,
//! and task management (ABORT TASK, LOGICAL UNIT RESET, gap plugging).

mod common;

use std::time::{Duration, Instant};

use common::raw_initiator::*;
use common::{TargetProcess, DEFAULT_IQN};
use pdu::msg::async_msg::event;
use pdu::msg::task_mgmt::{function, response};
use pdu::msg::{NopOut, TargetPdu};
use pdu::RESERVED_TAG;

const INITIATOR: &str = "iqn.2026-11.test.palisade:session";
const ISID_A: [u8; 6] = [0x80, 0, 0, 0, 0xaa, 0x01];
const ISID_B: [u8; 6] = [0x80, 0, 0, 0, 0xbb, 0x02];

fn start(extra: &str) -> TargetProcess {
    TargetProcess::start_with_config(&memory_target_toml(extra), DEFAULT_IQN)
}

fn login(t: &TargetProcess, isid: [u8; 6]) -> RawInitiator {
    RawInitiator::login_ok(&t.portal(), &LoginOptions::normal(INITIATOR, DEFAULT_IQN).isid(isid))
}

#[test]
fn same_isid_reinstates_the_session_and_a_different_isid_coexists() {
    let mut t = start("");
    let mut first = login(&t, ISID_A);
    let mut other = login(&t, ISID_B);
    first.ping(b"first");
    other.ping(b"other");
    // RFC 7143 §6.3.5: a leading login with the same InitiatorName and ISID (TSIH 0) as an
    // existing session reinstates it: the old session's connection is closed.
    let mut second = login(&t, ISID_A);
    first.expect_closed(ANSWER_TIMEOUT, |_| false);
    second.ping(b"second");
    assert_ne!(second.tsih, 0);
    // The session with another ISID is a different I_T nexus (SAM-5 §4.7) and is untouched.
    other.ping(b"other still");
    assert_healthy(&mut t);
}

/// The same InitiatorName and ISID through another portal group is another I_T nexus (RFC 7143
/// §4.2.7.1: the target port is part of it), a session of its own — a multipath host's second
/// path — not a reinstatement of the first.
#[test]
fn same_isid_through_another_portal_group_is_a_second_session() {
    let second_port = common::free_port();
    let t = common::start_two_portal_groups(second_port, "backend = \"memory\"\nsize = \"16MiB\"");
    let mut through_first = login(&t, ISID_A);
    let options = LoginOptions::normal(INITIATOR, DEFAULT_IQN).isid(ISID_A);
    let mut through_second = RawInitiator::login_ok(&format!("127.0.0.1:{second_port}"), &options);
    through_second.ping(b"second group");
    through_first.ping(b"first group still open");
}

/// Waits for the target's ping: NOP-In with ITT 0xffffffff and a real TTT (RFC 7143 §11.19.1).
fn expect_ping(ini: &mut RawInitiator, within: Duration) -> pdu::msg::NopIn {
    match ini.recv_msg(within) {
        TargetPdu::NopIn(nop) => {
            assert_eq!(nop.itt, RESERVED_TAG, "a target ping carries ITT 0xffffffff");
            assert_ne!(nop.ttt, RESERVED_TAG, "a ping that wants an answer carries a TTT");
            // §11.19: with ITT 0xffffffff the StatSN is not advanced: it is the next one.
            assert_eq!(nop.seq.stat_sn, ini.exp_stat_sn, "ping does not consume a StatSN");
            nop
        }
        other => panic!("expected a NOP-In ping, got {other:?}"),
    }
}

#[test]
fn target_pings_are_answered_and_the_connection_stays() {
    let mut t = start("[session]\nnop_interval_secs = 1\nnop_timeout_secs = 1\n");
    let mut ini = login(&t, ISID_A);
    for round in 0..2 {
        let ping = expect_ping(&mut ini, Duration::from_secs(4));
        // RFC 7143 §11.18: the answer echoes the TTT with ITT 0xffffffff and the I bit set.
        let answer = NopOut {
            immediate: true,
            lun: ping.lun,
            itt: RESERVED_TAG,
            ttt: ping.ttt,
            cmd_sn: ini.cmd_sn,
            exp_stat_sn: ini.exp_stat_sn,
            data: ping.data.clone(),
        };
        ini.send(&answer.encode());
        // Answered pings never end the connection; nothing else is sent in reply.
        if round == 0 {
            ini.expect_silence(Duration::from_millis(200));
        }
    }
    ini.ping(b"after two answered pings");
    assert_healthy(&mut t);
}

#[test]
fn unanswered_ping_drops_the_connection() {
    let mut t = start("[session]\nnop_interval_secs = 1\nnop_timeout_secs = 1\n");
    let mut ini = login(&t, ISID_A);
    expect_ping(&mut ini, Duration::from_secs(4));
    let silent_since = Instant::now();
    // docs/configuration.md nop_timeout_secs: no answer within the timeout drops the connection.
    ini.expect_closed(Duration::from_secs(5), |m| matches!(m, TargetPdu::NopIn(_)));
    assert!(silent_since.elapsed() >= Duration::from_millis(900), "not before the timeout");
    let mut again = login(&t, ISID_A);
    again.ping(b"");
    assert_healthy(&mut t);
}

#[test]
fn sigterm_asks_for_logout_and_the_server_exits_cleanly() {
    let t = start("");
    let mut ini = login(&t, ISID_A);
    ini.ping(b"");
    // TargetProcess::stop sends SIGTERM and waits; it runs beside us while we log out.
    let stopper = std::thread::spawn(move || {
        let mut t = t;
        let status = t.stop();
        (t, status)
    });
    // RFC 7143 §11.9.1: AsyncEvent 1 "target requests Logout", Parameter3 = seconds to do it.
    match ini.recv_msg(ANSWER_TIMEOUT) {
        TargetPdu::Async(msg) => {
            assert_eq!(msg.event, event::LOGOUT_REQUESTED);
            assert!(msg.parameter3 > 0, "Parameter3 gives the time to log out");
        }
        other => panic!("expected an Async Message, got {other:?}"),
    }
    let asked = Instant::now();
    ini.logout();
    let (t, status) = stopper.join().expect("stopper thread");
    let status = status.expect("palisade was running");
    assert!(status.success(), "exit status {status}; log:\n{}", t.log());
    assert!(asked.elapsed() < Duration::from_secs(5), "exit soon after the last logout");
    assert!(!t.log().contains("panicked"), "log:\n{}", t.log());
}

#[test]
fn abort_task_of_an_unknown_task_answers_task_does_not_exist() {
    let mut t = start("");
    let mut ini = login(&t, ISID_A);
    ini.clear_unit_attention(0);
    // The referenced task completed long ago: its CmdSN is below ExpCmdSN, so it is not in
    // the window and "Task does not exist" (RFC 7143 §11.5.1, §11.6.1 response 1).
    let past = ini.cmd_sn.wrapping_sub(1);
    let rsp = ini.task_mgmt(function::ABORT_TASK, 0, 0xbeef, past);
    assert_eq!(rsp.response, response::TASK_DOES_NOT_EXIST);
    ini.exec_good(0, &[0x00; 6], 0, &[]);
    assert_healthy(&mut t);
}

#[test]
fn abort_task_for_a_command_never_received_plugs_the_cmd_sn_gap() {
    let mut t = start("");
    let mut ini = login(&t, ISID_A);
    ini.clear_unit_attention(0);
    // A command (CmdSN n) got lost; a NOP-Out with n+1 waits behind the gap (§4.2.2.1).
    let lost = ini.command(0, &[0x00; 6], 0, 0, &[]);
    let waiting = ini.nop_out(b"behind the gap");
    ini.send(&waiting.encode());
    ini.expect_silence(Duration::from_millis(200));
    // RFC 7143 §11.5.1: ABORT TASK for a task not found whose RefCmdSN is in the window and
    // below the TMF's CmdSN: the target considers that CmdSN received and answers "Function
    // complete" — which plugs the gap (§7.2.1, §11.17.1), releasing the waiting NOP-Out.
    let rsp = ini.task_mgmt(function::ABORT_TASK, 0, lost.itt, lost.cmd_sn);
    assert_eq!(rsp.response, response::COMPLETE);
    match ini.recv_msg(ANSWER_TIMEOUT) {
        TargetPdu::NopIn(nop) => assert_eq!(nop.itt, waiting.itt, "the held NOP-Out is answered"),
        other => panic!("expected the NOP-In of the released NOP-Out, got {other:?}"),
    }
    ini.exec_good(0, &[0x00; 6], 0, &[]);
    assert_healthy(&mut t);
}

#[test]
fn lun_reset_completes_then_unit_attention_29h_03h() {
    let mut t = start("");
    let mut ini = login(&t, ISID_A);
    ini.clear_unit_attention(0);
    // RFC 7143 §11.5.1 LOGICAL UNIT RESET, §11.6.1 response 0 "Function complete".
    let rsp = ini.task_mgmt(function::LOGICAL_UNIT_RESET, 0, RESERVED_TAG, ini.cmd_sn);
    assert_eq!(rsp.response, response::COMPLETE);
    // SAM-5 §6.3.3 / SPC-4: the next command reports UNIT ATTENTION, 29h/03h BUS DEVICE RESET
    // FUNCTION OCCURRED; the one after that succeeds.
    let out = ini.exec(0, &[0x00; 6], 0, &[]);
    assert_sense(&out, 0x06, 0x29, 0x03);
    ini.exec_good(0, &[0x00; 6], 0, &[]);
    // A reset of a LUN that does not exist: §11.6.1 response 2 "LUN does not exist".
    let rsp = ini.task_mgmt(function::LOGICAL_UNIT_RESET, 9, RESERVED_TAG, ini.cmd_sn);
    assert_eq!(rsp.response, response::LUN_DOES_NOT_EXIST);
    assert_healthy(&mut t);
}

/// RFC 7143 §11.10.2 the other way round: a SendTargets answer longer than the initiator's
/// MaxRecvDataSegmentLength comes in Text Responses with C=1, each asked for with the target's
/// TTT, and the joined text lists every target with its portal.
#[test]
fn a_long_send_targets_answer_is_continued_across_text_responses() {
    const TARGETS: usize = 24;
    let name = |i: usize| format!("iqn.2026-11.io.palisade:continued-answer-target-{i:03}");
    let mut toml = String::from("[[portals]]\nname = \"test\"\nlisten = \"127.0.0.1:{PORT}\"\n");
    for i in 0..TARGETS {
        toml += &format!(
            "\n[[targets]]\nname = \"{}\"\n\n[[targets.luns]]\nid = 0\nbackend = \"memory\"\nsize = \"1MiB\"\n",
            name(i)
        );
    }
    let mut t = TargetProcess::start_with_config(&toml, &name(0));
    let mut opts = LoginOptions::discovery(INITIATOR);
    opts.max_recv_data_segment_length = 512; // the smallest legal value (§13.12)
    let mut ini = RawInitiator::login_ok(&t.portal(), &opts);
    let answer = ini.send_targets("All");
    let mut names: Vec<String> = answer.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    assert_eq!(names, (0..TARGETS).map(name).collect::<Vec<_>>(), "every target once: {answer:?}");
    let portal = format!("{},1", t.portal());
    for (target, addresses) in &answer {
        assert_eq!(addresses, &vec![portal.clone()], "{target}'s TargetAddress");
    }
    ini.logout();
    assert_healthy(&mut t);
}

#[test]
fn text_request_continued_with_the_c_bit_is_answered_once_complete() {
    let mut t = start("");
    let mut ini = RawInitiator::login_ok(&t.portal(), &LoginOptions::discovery(INITIATOR));
    let itt = ini.new_itt();
    let piece = |ini: &mut RawInitiator, ttt: u32, text: &'static [u8], last: bool| {
        let req = pdu::msg::TextRequest {
            immediate: false,
            final_bit: last,
            cont: !last,
            lun: 0,
            itt,
            ttt,
            cmd_sn: ini.cmd_sn,
            exp_stat_sn: ini.exp_stat_sn,
            data: bytes::Bytes::from_static(text),
        };
        ini.cmd_sn = ini.cmd_sn.wrapping_add(1);
        ini.send(&req.encode());
        match ini.recv_msg(ANSWER_TIMEOUT) {
            TargetPdu::Text(rsp) => rsp,
            other => panic!("expected a Text Response, got {other:?}"),
        }
    };
    // RFC 7143 §11.10.2: C=1 says the key=value text continues in the next Text Request; the
    // target answers with an empty Text Response, F=0, and a TTT (§11.10.4) ...
    let ack = piece(&mut ini, RESERVED_TAG, b"SendTar", false);
    assert!(!ack.final_bit && ack.data.is_empty(), "empty, non-final acknowledgement: {ack:?}");
    assert_ne!(ack.ttt, RESERVED_TAG, "the acknowledgement asks for the rest with a TTT");
    // ... which the initiator copies into its next request (§11.10.4). The joined text
    // "SendTargets=All" then gets its answer.
    let rsp = piece(&mut ini, ack.ttt, b"gets=All\0", true);
    assert!(rsp.final_bit, "{rsp:?}");
    let keys = pdu::text::parse(&rsp.data).expect("Text Response keys");
    assert!(keys.contains(&("TargetName".to_string(), DEFAULT_IQN.to_string())), "{keys:?}");
    ini.logout();
    assert_healthy(&mut t);
}

/// Sends WRITE(10) of one block with no data and returns its ITT once the target's R2T for
/// it has arrived: the task is now waiting for Data-Out that never comes.
fn write_waiting_for_data(ini: &mut RawInitiator) -> u32 {
    let cmd = ini.command(0, &write10_cdb(7, 1), 0, 512, &[]);
    ini.send(&cmd.encode());
    match ini.recv_msg(ANSWER_TIMEOUT) {
        TargetPdu::R2t(r) => assert_eq!(r.itt, cmd.itt, "R2T for the write"),
        other => panic!("expected an R2T, got {other:?}"),
    }
    cmd.itt
}

#[test]
fn lun_reset_by_another_nexus_ends_its_tasks_with_task_aborted_only_when_tas_is_set() {
    let mut t = start("");
    let mut a = login(&t, ISID_A);
    let opts = LoginOptions::normal(INITIATOR, DEFAULT_IQN).isid(ISID_B).key("ImmediateData", "No");
    let mut b = RawInitiator::login_ok(&t.portal(), &opts);
    a.clear_unit_attention(0);
    b.clear_unit_attention(0);

    // A sets TAS in the control mode page (SPC-4 §7.5.8): MODE SENSE(6) with DBD, flip byte 5
    // bit 6, MODE SELECT(6) with PF and the mode data length zeroed.
    let sensed = a.exec_good(0, &[0x1a, 0x08, 0x0a, 0, 255, 0], 255, &[]);
    let page_at = 4 + sensed[3] as usize;
    let mut param = sensed[..page_at + 12].to_vec();
    param[0] = 0;
    assert_eq!(param[page_at] & 0x3f, 0x0a, "control page");
    param[page_at + 5] |= 0x40;
    a.exec_good(0, &[0x15, 0x10, 0, 0, param.len() as u8, 0], 0, &param);
    let sensed = a.exec_good(0, &[0x1a, 0x08, 0x0a, 0, 255, 0], 255, &[]);
    assert_eq!(sensed[page_at + 5] & 0x40, 0x40, "TAS is set");
    // B is told: MODE PARAMETERS CHANGED (SPC-4 §6.11).
    assert_sense(&b.exec(0, &[0x00; 6], 0, &[]), 0x06, 0x2a, 0x01);

    // B's write waits for Data-Out; A resets the LUN. SAM-5 §5.6: with TAS=1 a task aborted by
    // another I_T nexus ends with TASK ABORTED status.
    let itt = write_waiting_for_data(&mut b);
    let rsp = a.task_mgmt(function::LOGICAL_UNIT_RESET, 0, RESERVED_TAG, a.cmd_sn);
    assert_eq!(rsp.response, response::COMPLETE);
    match b.recv_msg(ANSWER_TIMEOUT) {
        TargetPdu::ScsiResponse(r) => {
            assert_eq!(r.itt, itt, "the aborted write is answered");
            assert_eq!(r.status, 0x40, "TASK ABORTED");
        }
        other => panic!("expected TASK ABORTED for B's write, got {other:?}"),
    }
    // The reset put the mode pages back to their defaults (TAS=0, SAM-5 §6.4) and left B a
    // unit attention.
    assert_sense(&b.exec(0, &[0x00; 6], 0, &[]), 0x06, 0x29, 0x03);
    a.clear_unit_attention(0);
    let sensed = a.exec_good(0, &[0x1a, 0x08, 0x0a, 0, 255, 0], 255, &[]);
    assert_eq!(sensed[page_at + 5] & 0x40, 0, "TAS back to its default");

    // With TAS=0 the aborted task of the other nexus just ends: no response at all.
    write_waiting_for_data(&mut b);
    let rsp = a.task_mgmt(function::LOGICAL_UNIT_RESET, 0, RESERVED_TAG, a.cmd_sn);
    assert_eq!(rsp.response, response::COMPLETE);
    b.expect_silence(Duration::from_millis(500));
    b.ping(b"B is still logged in");
    assert_healthy(&mut t);
}

#[test]
fn a_logged_out_nexus_has_released_its_reservation_when_the_logout_response_arrives() {
    let mut t = start("");
    let mut b = login(&t, ISID_B);
    b.clear_unit_attention(0);
    // SAM-5 §6.3.4 / SPC-2 §5.5.1: the session's end is an I_T nexus loss, which releases its
    // RESERVE(6). The initiator learns of the end from the Logout Response, so by then the
    // reservation must be gone: B, waiting for nothing else, reserves at once. Repeated, since
    // a release that merely races the response would pass now and then.
    for round in 0..30 {
        let mut a = login(&t, ISID_A);
        a.clear_unit_attention(0);
        a.exec_good(0, &[0x16, 0, 0, 0, 0, 0], 0, &[]);
        a.logout();
        let out = b.exec(0, &[0x16, 0, 0, 0, 0, 0], 0, &[]);
        assert_eq!(out.status, GOOD, "round {round}: B's RESERVE(6) right after A's logout: {:?}", out.sense_triple());
        b.exec_good(0, &[0x17, 0, 0, 0, 0, 0], 0, &[]);
    }
    assert_healthy(&mut t);
}
