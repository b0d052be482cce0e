//! One server, many hostile connections: garbage before login, truncated and oversized
//! headers, malformed login text, bad AHS, bad text, absurd transfer lengths, abandoned
//! transfers and a seeded stream of random PDUs. Afterwards a libiscsi client on another
//! connection still works: the server never died, never panicked.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw_initiator::*;
use common::{run_ok, TargetProcess, DEFAULT_IQN};
use pdu::bhs::BhsBuf;
use pdu::error::reject_reason;
use pdu::msg::{LoginRequest, TargetPdu, TextRequest};
use pdu::{Digests, Opcode, OutPdu, RESERVED_TAG};

const INITIATOR: &str = "iqn.2026-11.test.palisade:hostile";

fn opts() -> LoginOptions {
    LoginOptions::normal(INITIATOR, DEFAULT_IQN)
}

/// A deterministic xorshift generator: the same "random" PDUs on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A first Login Request of this test's session carrying `data`.
fn login_request(data: Bytes) -> LoginRequest {
    first_login_request([0x80, 0, 0, 0, 0x66, 0x66], 1, true, false, data)
}

/// Before login: what a port scanner or a confused client might send.
fn pre_login_abuse(t: &TargetProcess) {
    // 48 bytes of 0xff: not a Login Request (RFC 7143 §6.3), the connection is closed.
    let mut c = RawInitiator::connect(&t.portal());
    c.send_bytes(&[0xff; 48]);
    c.expect_closed(ANSWER_TIMEOUT, |_| false);
    // Half a header, then the client goes away.
    let mut c = RawInitiator::connect(&t.portal());
    c.send_bytes(&[0x43, 0x81, 0, 0, 0, 0, 0, 0x10, 1, 2, 3]);
    drop(c);
    // A Login Request announcing a 16 MiB data segment: over the 8192 bytes allowed during
    // login (§6.1, §13.12); refused without buffering it.
    let mut c = RawInitiator::connect(&t.portal());
    let wire = announcing_data_segment_length(&login_request(Bytes::new()).encode(), 0xff_ffff);
    c.send_bytes(&wire);
    c.expect_closed(ANSWER_TIMEOUT, |m| matches!(m, TargetPdu::Login(_)));
    // Malformed login text and T+C together: Login Response 02/00 "Initiator error" (§11.13.5).
    for (text, flags) in [(&b"this is not key=value\xff\0"[..], None), (&b"InitiatorName=x\0"[..], Some(0xc1u8))] {
        let mut c = RawInitiator::connect(&t.portal());
        let mut wire = login_request(Bytes::copy_from_slice(text)).encode().to_bytes(Digests::default()).to_vec();
        if let Some(f) = flags {
            wire[1] = f;
        }
        c.send_bytes(&wire);
        let seen = c.expect_closed(ANSWER_TIMEOUT, |m| matches!(m, TargetPdu::Login(_)));
        match seen.as_slice() {
            [TargetPdu::Login(rsp)] => assert_eq!((rsp.status_class, rsp.status_detail), (2, 0)),
            other => panic!("expected one failed Login Response, got {other:?}"),
        }
    }
}

/// In Full Feature Phase: malformed PDUs that have exact answers.
fn full_feature_abuse(t: &TargetProcess) {
    let mut ini = RawInitiator::login_ok(&t.portal(), &opts());
    ini.clear_unit_attention(0);
    // A SCSI Command with an AHS of an undefined type (RFC 7143 §11.2.2.2): Invalid PDU field.
    let cmd = ini.command(0, &[0x00; 6], 0, 0, &[]);
    ini.cmd_sn = cmd.cmd_sn;
    let mut out = cmd.encode();
    out.ahs = Bytes::from_static(&[0x00, 0x05, 0x55, 0x00, 1, 2, 3, 4]);
    let wire = ini.wire(&out);
    ini.send_bytes(&wire);
    let reject = ini.expect_reject();
    assert_eq!(reject.reason, reject_reason::INVALID_PDU_FIELD);
    // A Text Request that is not key=value text (§6.1): Invalid PDU field.
    let text = TextRequest {
        immediate: false,
        final_bit: true,
        cont: false,
        lun: 0,
        itt: ini.new_itt(),
        ttt: RESERVED_TAG,
        cmd_sn: ini.cmd_sn,
        exp_stat_sn: ini.exp_stat_sn,
        data: Bytes::from_static(b"no equals sign here\0"),
    };
    ini.send(&text.encode());
    assert_eq!(ini.expect_reject().reason, reject_reason::INVALID_PDU_FIELD);
    ini.cmd_sn = ini.cmd_sn.wrapping_add(1); // the text request was ordered and received
                                             // An Expected Data Transfer Length of 4 GiB - 1 for a one-block READ: the target moves one
                                             // block and reports the residual underflow (§11.4.5), allocating nothing absurd.
    let read = ini.command(0, &read10_cdb(0, 1), u32::MAX, 0, &[]);
    ini.send(&read.encode());
    let outcome = ini.complete(read.itt, 0, &[]);
    assert_eq!((outcome.status, outcome.data.len()), (GOOD, 512));
    ini.ping(b"");
    // A 16 MiB write whose data never comes: the connection closes with the transfer open.
    let write = ini.command(0, &write10_cdb(0, 32768), 0, 16 << 20, &[]);
    ini.send(&write.encode());
    match ini.recv_msg(ANSWER_TIMEOUT) {
        TargetPdu::R2t(_) => {}
        other => panic!("expected an R2T, got {other:?}"),
    }
}

/// A seeded stream of random initiator PDUs. Answers are not predicted, only survived; a
/// closed connection is replaced by a new one.
fn random_pdus(t: &TargetProcess) {
    let opcodes = [0x00u8, 0x01, 0x02, 0x04, 0x05, 0x06, 0x10, 0x1c, 0x3f];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut ini = RawInitiator::login_ok(&t.portal(), &opts());
    for _ in 0..300 {
        let op = opcodes[rng.below(opcodes.len() as u64) as usize];
        let mut bhs = BhsBuf::new(Opcode(op)).immediate(rng.below(2) == 0).flags(rng.next() as u8);
        for at in (2..48).step_by(2) {
            bhs = bhs.u16(at, rng.next() as u16);
        }
        // Keep CmdSN plausible half of the time so PDUs reach their handlers.
        if rng.below(2) == 0 {
            bhs = bhs.u32(24, ini.cmd_sn);
        }
        bhs = bhs.byte(4, 0);
        let data = Bytes::from(vec![rng.next() as u8; rng.below(1500) as usize]);
        let wire = OutPdu::new(bhs, data).to_bytes(ini.digests);
        ini.send_bytes(&wire);
        // Drain whatever came back; reconnect if the target hung up.
        loop {
            match ini.recv(Duration::from_millis(1)) {
                Ok(_) => continue,
                Err(RecvError::Timeout) => break,
                Err(_) => {
                    ini = RawInitiator::login_ok(&t.portal(), &opts());
                    break;
                }
            }
        }
    }
}

#[test]
fn hostile_connections_leave_the_server_serving() {
    let mut t =
        TargetProcess::start_with_config(&memory_target_toml("[session]\nnop_interval_secs = 0\n"), DEFAULT_IQN);
    pre_login_abuse(&t);
    assert_healthy(&mut t);
    full_feature_abuse(&t);
    assert_healthy(&mut t);
    // PDU 259 of this stream is a Logout while random WRITEs wait for data: it once hung the
    // connection (and later the shutdown) for 30 s.
    random_pdus(&t);
    assert_healthy(&mut t);
    // A well-behaved session stays open while libiscsi uses a second connection.
    let mut keeper = RawInitiator::login_ok(&t.portal(), &opts().isid([0x80, 0, 0, 0, 0x77, 0x77]));
    keeper.ping(b"first connection");
    let out = run_ok("iscsi-inq", &[&t.url(0)], Duration::from_secs(20));
    assert!(out.contains("PALISADE"), "iscsi-inq after the abuse:\n{out}");
    keeper.ping(b"still fine");
    assert_healthy(&mut t);
    // Nothing the abuse left behind holds up a clean shutdown.
    drop(keeper);
    let asked = Instant::now();
    let status = t.stop().expect("palisade was running");
    assert!(status.success() && asked.elapsed() < Duration::from_secs(5), "exit {status} after {:?}", asked.elapsed());
    assert!(!t.log().contains("panicked"), "log:\n{}", t.log());
}
