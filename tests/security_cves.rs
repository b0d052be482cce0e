//! The classic iSCSI target CVEs as a checklist, each replayed against the real binary:
//! oversized CHAP values (LIO CVE-2018-14633), oversized pre-login data (tgt), malformed
//! TransportIDs (SCST), connection-teardown races (use-after-free class bugs), and CHAP
//! secrets kept out of the log. Cross-LUN EXTENDED COPY (LIO CVE-2020-28374) lives in
//! tests/block_commands.rs (`extended_copy_between_luns_verifies_and_respects_masking`).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw_initiator::*;
use common::{TargetProcess, DEFAULT_IQN};
use pdu::msg::{DataOut, LoginRequest, TargetPdu};
use pdu::Digests;

const INITIATOR: &str = "iqn.2026-11.test.palisade:security";
const CHAP_USER: &str = "secuser";
const CHAP_SECRET: &str = "Zq7-palisade-SECRET";
const MUTUAL_SECRET: &str = "Mx9-target-SECRET";

fn chap_target() -> TargetProcess {
    let extra = format!(
        "[targets.chap]\nuser = \"{CHAP_USER}\"\nsecret = \"{CHAP_SECRET}\"\n\n\
         [targets.mutual_chap]\nuser = \"tgt\"\nsecret = \"{MUTUAL_SECRET}\"\n\n\
         [session]\nnop_interval_secs = 0\n"
    );
    TargetProcess::start_with_config(&memory_target_toml(&extra), DEFAULT_IQN)
}

fn plain_target(extra: &str) -> TargetProcess {
    TargetProcess::start_with_config(
        &memory_target_toml(&format!("[session]\nnop_interval_secs = 0\n{extra}")),
        DEFAULT_IQN,
    )
}

fn login_pdu(transit: bool, cont: bool, data: Bytes) -> LoginRequest {
    first_login_request([0x80, 0, 0, 0, 0x5e, 0xc0], 7, transit, cont, data)
}

/// Sends one Login Request and returns the Login Response (None when the connection closed).
fn login_exchange(ini: &mut RawInitiator, req: &LoginRequest) -> Option<pdu::msg::LoginResponse> {
    ini.send_bytes(&req.encode().to_bytes(Digests::default()));
    match ini.recv(ANSWER_TIMEOUT) {
        Ok(pdu) => match TargetPdu::decode(&pdu) {
            Ok(TargetPdu::Login(rsp)) => Some(rsp),
            other => panic!("expected a Login Response, got {other:?}"),
        },
        Err(RecvError::Closed) => None,
        Err(e) => panic!("no Login Response: {e:?}"),
    }
}

fn keys_of(rsp: &pdu::msg::LoginResponse) -> Vec<(String, String)> {
    pdu::text::parse(&rsp.data).expect("login response text")
}

/// Runs the CHAP exchange up to the initiator's answer, then sends `answer(id, challenge)` as
/// its keys; returns the target's (Status-Class, Status-Detail).
fn chap_attempt(t: &TargetProcess, answer: impl Fn(u8, &[u8]) -> Vec<(String, String)>) -> (u8, u8) {
    let mut ini = RawInitiator::connect(&t.portal());
    let first =
        [("InitiatorName", INITIATOR), ("TargetName", DEFAULT_IQN), ("SessionType", "Normal"), ("AuthMethod", "CHAP")];
    let rsp = login_exchange(&mut ini, &login_pdu(false, false, pdu::text::encode(&first))).expect("first answer");
    assert_eq!(rsp.status_class, 0);
    let rsp =
        login_exchange(&mut ini, &login_pdu(false, false, pdu::text::encode(&[("CHAP_A", "5")]))).expect("CHAP_A");
    let keys = keys_of(&rsp);
    let get = |k: &str| keys.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).expect(k);
    let id: u8 = get("CHAP_I").parse().unwrap();
    let challenge = decode_hex(&get("CHAP_C")).unwrap();
    let keys = answer(id, &challenge);
    let data = pdu::text::encode(&keys);
    assert!(data.len() <= 8192, "a login PDU carries at most 8192 bytes of text");
    let rsp = login_exchange(&mut ini, &login_pdu(true, false, data)).expect("a Login Response refusing the login");
    assert_ne!(rsp.status_class, 0, "login accepted: {rsp:?}");
    ini.expect_closed(ANSWER_TIMEOUT, |_| false);
    (rsp.status_class, rsp.status_detail)
}

/// The initiator's last CHAP keys, from the target's (CHAP_I, CHAP_C).
type ChapAnswer = dyn Fn(u8, &[u8]) -> Vec<(String, String)>;

fn kv(k: &str, v: String) -> (String, String) {
    (k.to_string(), v)
}

/// LIO CVE-2018-14633: CHAP_R/CHAP_C/CHAP_N values far beyond their limits overflowed a
/// fixed buffer in chap_server_compute_md5. Here they are refused with 02/01 (authentication
/// failure) or 02/00 (initiator error), and a correct login still works afterwards.
#[test]
fn oversized_chap_values_are_refused_cve_2018_14633() {
    std::env::set_var("RUST_LOG", "debug");
    let mut t = chap_target();
    let good = |id: u8, c: &[u8]| encode_hex(&chap_response(id, CHAP_SECRET.as_bytes(), c));
    let cases: Vec<(&str, Box<ChapAnswer>)> = vec![
        (
            "CHAP_N of 6000 bytes",
            Box::new(move |id, c| vec![kv("CHAP_N", "u".repeat(6000)), kv("CHAP_R", good(id, c))]),
        ),
        (
            "CHAP_R of 3000 hex bytes",
            Box::new(|_, _| vec![kv("CHAP_N", CHAP_USER.into()), kv("CHAP_R", format!("0x{}", "ab".repeat(3000)))]),
        ),
        (
            "CHAP_R odd-length hex",
            Box::new(|_, _| vec![kv("CHAP_N", CHAP_USER.into()), kv("CHAP_R", format!("0x{}", "a".repeat(33)))]),
        ),
        (
            "CHAP_R huge base64",
            Box::new(|_, _| vec![kv("CHAP_N", CHAP_USER.into()), kv("CHAP_R", format!("0b{}", "QUJD".repeat(1900)))]),
        ),
        (
            "mutual CHAP_C of 3000 hex bytes",
            Box::new(move |id, c| {
                vec![
                    kv("CHAP_N", CHAP_USER.into()),
                    kv("CHAP_R", good(id, c)),
                    kv("CHAP_I", "9".into()),
                    kv("CHAP_C", format!("0x{}", "cd".repeat(3000))),
                ]
            }),
        ),
        (
            // Odd digit counts read with a leading zero nibble (src/iscsi/login/text.rs); 2049
            // digits decode to 1025 bytes, one over the 1024-byte binary bound.
            "mutual CHAP_C odd-length hex over the bound",
            Box::new(move |id, c| {
                let challenge = format!("0x{}", "c".repeat(2049));
                vec![
                    kv("CHAP_N", CHAP_USER.into()),
                    kv("CHAP_R", good(id, c)),
                    kv("CHAP_I", "9".into()),
                    kv("CHAP_C", challenge),
                ]
            }),
        ),
    ];
    for (what, answer) in &cases {
        let status = chap_attempt(&t, answer);
        assert!(matches!(status, (2, 0) | (2, 1)), "{what}: expected 02/00 or 02/01, got {status:?}");
        assert_healthy(&mut t);
    }
    // The same exchange with sane values logs in: the refusals above were about the values.
    let mut ini = RawInitiator::login_ok(
        &t.portal(),
        &LoginOptions::normal(INITIATOR, DEFAULT_IQN).chap(CHAP_USER, CHAP_SECRET).mutual("tgt", MUTUAL_SECRET),
    );
    ini.ping(b"after the oversized CHAP values");
    // Secrets never reach the log, not even at debug level (in clear or as hex).
    let log = t.log();
    for secret in [CHAP_SECRET, MUTUAL_SECRET] {
        assert!(!log.contains(secret), "secret in the log:\n{log}");
        assert!(!log.contains(&encode_hex(secret.as_bytes())[2..]), "hex secret in the log");
    }
}

/// The server's resident set size in KiB (VmRSS of /proc/<pid>/status).
fn rss_kib(t: &TargetProcess) -> u64 {
    let pid = t.pid().expect("a server this test started");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// tgt (iscsi_rx_handler) allocated whatever data segment length a pre-login PDU announced,
/// and accumulated continued login text without a bound. Palisade refuses a Login Request
/// over 8192 bytes before reading it, and a continued text exchange beyond 64 KiB; 24
/// connections at once, each pushing 4 MiB, leave the resident size where it was.
#[test]
fn oversized_pre_login_data_is_refused_without_memory_growth() {
    let mut t = plain_target("");
    // Warm up: one ordinary login so the steady-state allocations are made.
    RawInitiator::login_ok(&t.portal(), &LoginOptions::normal(INITIATOR, DEFAULT_IQN)).logout();
    let before = rss_kib(&t);
    let junk = vec![0x41u8; 4 << 20];
    let announced: Vec<_> = (0..24)
        .map(|_| {
            let portal = t.portal();
            let junk = junk.clone();
            std::thread::spawn(move || {
                let mut c = RawInitiator::connect(&portal);
                let wire = announcing_data_segment_length(&login_pdu(true, false, Bytes::new()).encode(), 0xff_fffc); // 16 MiB - 4
                c.send_bytes(&wire);
                c.send_bytes(&junk); // fails once the target hung up; that is the point
                c.expect_closed(ANSWER_TIMEOUT, |m| matches!(m, TargetPdu::Login(r) if r.status_class == 2));
            })
        })
        .collect();
    for h in announced {
        h.join().expect("oversized announcement thread");
    }
    // C-bit continuations: each piece is legal, their sum is not (RFC 7143 §6.1 bounds it).
    let continued: Vec<_> = (0..24)
        .map(|_| {
            let portal = t.portal();
            std::thread::spawn(move || {
                let mut c = RawInitiator::connect(&portal);
                let mut sent = 0usize;
                let piece = Bytes::from(vec![b'x'; 8000]);
                loop {
                    match login_exchange(&mut c, &login_pdu(false, true, piece.clone())) {
                        Some(rsp) if rsp.status_class == 0 => sent += piece.len(),
                        Some(rsp) => {
                            assert_eq!((rsp.status_class, rsp.status_detail), (2, 0), "refusal of the text flood");
                            break;
                        }
                        None => break,
                    }
                    assert!(sent <= 64 * 1024, "target kept accepting continued login text: {sent} bytes");
                }
                c.expect_closed(ANSWER_TIMEOUT, |_| false);
                sent
            })
        })
        .collect();
    for h in continued {
        let sent = h.join().expect("continuation flood thread");
        assert!(sent >= 56_000, "continued text refused too early ({sent} bytes)");
    }
    assert_healthy(&mut t);
    let after = rss_kib(&t);
    eprintln!("server RSS before the flood {before} KiB, after {after} KiB");
    // 24 × 16 MiB announced and 24 × 4 MiB sent: buffering any of it would add hundreds of MiB.
    assert!(after < before + 32 * 1024, "RSS grew from {before} KiB to {after} KiB");
    RawInitiator::login_ok(&t.portal(), &LoginOptions::normal(INITIATOR, DEFAULT_IQN)).ping(b"still serving");
}

/// (sense key, ASC, ASCQ).
type SenseCode = (u8, u8, u8);

fn pr_out_cdb(action: u8, len: u32) -> [u8; 10] {
    let mut cdb = [0x5F, action, 0, 0, 0, 0, 0, 0, 0, 0];
    cdb[5..9].copy_from_slice(&len.to_be_bytes());
    cdb
}

/// REGISTER with SPEC_I_PT: the 24-byte basic list, then the TransportID list length and the
/// TransportIDs (SPC-4 §6.16.3 Table 214).
fn spec_i_pt_list(new_key: u64, tids: &[u8], declared_len: u32) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[8..16].copy_from_slice(&new_key.to_be_bytes());
    p[20] = 0x08;
    p.extend_from_slice(&declared_len.to_be_bytes());
    p.extend_from_slice(tids);
    p
}

/// An iSCSI TransportID (SPC-4 §7.6.4.6): format, ADDITIONAL LENGTH, then `body` as given.
fn tid(format: u8, additional: u16, body: &[u8]) -> Vec<u8> {
    let mut t = vec![(format << 6) | 0x05, 0];
    t.extend_from_slice(&additional.to_be_bytes());
    t.extend_from_slice(body);
    t
}

fn padded(name: &str, to: usize) -> Vec<u8> {
    let mut b = name.as_bytes().to_vec();
    b.resize(to, 0);
    b
}

/// SCST's TransportID parsing (the checklist item of issue 6; no CVE number claimed): TransportIDs
/// whose lengths point past the list, names without their terminating NUL, names far over
/// 223 bytes. Each is INVALID FIELD IN PARAMETER LIST or PARAMETER LIST LENGTH ERROR (SPC-4
/// §6.16.3), nothing is registered, and the server never panics.
#[test]
fn malformed_transport_ids_are_refused_with_parameter_list_errors() {
    let mut t = plain_target("");
    let mut ini = RawInitiator::login_ok(&t.portal(), &LoginOptions::normal(INITIATOR, DEFAULT_IQN));
    ini.clear_unit_attention(0);
    let invalid_field = (0x05, 0x26, 0x00);
    let list_length = (0x05, 0x1A, 0x00);
    let name = "iqn.2026-11.test.palisade:other";
    let good = tid(0, 36, &padded(name, 36));
    let cases: Vec<(&str, Vec<u8>, SenseCode)> = vec![
        ("ADDITIONAL LENGTH past the list", spec_i_pt_list(1, &tid(0, 0x0400, &padded(name, 36)), 40), invalid_field),
        ("ADDITIONAL LENGTH 0xfffc", spec_i_pt_list(1, &tid(0, 0xfffc, &padded(name, 36)), 40), invalid_field),
        ("unterminated name", spec_i_pt_list(1, &tid(0, 36, &[b'a'; 36]), 40), invalid_field),
        (
            "name of 1000 bytes",
            spec_i_pt_list(1, &tid(0, 1004, &padded(&format!("iqn.{}", "n".repeat(996)), 1004)), 1008),
            invalid_field,
        ),
        ("ADDITIONAL LENGTH not a multiple of 4", spec_i_pt_list(1, &tid(0, 35, &padded(name, 35)), 39), invalid_field),
        ("truncated header", spec_i_pt_list(1, &[0x05, 0], 2), invalid_field),
        ("port format without ISID", spec_i_pt_list(1, &tid(1, 36, &padded(name, 36)), 40), invalid_field),
        (
            "port format with bad ISID",
            spec_i_pt_list(1, &tid(1, 48, &padded(&format!("{name},i,0xZZ"), 48)), 52),
            invalid_field,
        ),
        (
            "not iSCSI (FC protocol id)",
            spec_i_pt_list(1, &[&[0x00u8, 0, 0, 36][..], &padded(name, 36)].concat(), 40),
            invalid_field,
        ),
        ("list length past the list", spec_i_pt_list(1, &good, 0xffff_fff0), list_length),
        ("list length short of the TransportID", spec_i_pt_list(1, &good, 4), invalid_field),
        (
            "list length missing",
            {
                let mut p = spec_i_pt_list(1, &[], 0);
                p.truncate(26);
                p
            },
            list_length,
        ),
    ];
    for (what, param, expected) in &cases {
        let out = ini.exec(0, &pr_out_cdb(0x00, param.len() as u32), 0, param);
        assert_eq!(out.status, CHECK_CONDITION, "{what}: {out:?}");
        let got = out.sense_triple().unwrap();
        // A list length that disagrees with the TransportIDs may be judged either way.
        let acceptable =
            got == *expected || (what.starts_with("list length") && [invalid_field, list_length].contains(&got));
        assert!(acceptable, "{what}: sense {got:02x?}, expected {expected:02x?}");
    }
    // A PARAMETER LIST LENGTH of 4 GiB - 1 is refused before any data is asked for.
    let out = ini.exec(0, &pr_out_cdb(0x00, u32::MAX), 0, &[]);
    assert_eq!(out.sense_triple(), Some(list_length), "huge PARAMETER LIST LENGTH: {out:?}");
    // Nothing was registered: READ KEYS reports an empty list.
    let keys = ini.exec_good(0, &[0x5E, 0x00, 0, 0, 0, 0, 0, 0, 64, 0], 64, &[]);
    assert_eq!(&keys[4..8], &[0, 0, 0, 0], "no key registered: {keys:02x?}");
    // The well-formed list registers both this nexus and the named initiator.
    let param = spec_i_pt_list(0x77, &good, good.len() as u32);
    let out = ini.exec(0, &pr_out_cdb(0x00, param.len() as u32), 0, &param);
    assert_eq!(out.status, GOOD, "valid SPEC_I_PT REGISTER: {:?}", out.sense_triple());
    let keys = ini.exec_good(0, &[0x5E, 0x00, 0, 0, 0, 0, 0, 0, 64, 0], 64, &[]);
    assert_eq!(u32::from_be_bytes(keys[4..8].try_into().unwrap()), 16, "two keys registered: {keys:02x?}");
    assert_healthy(&mut t);
}

/// A session that starts a command and vanishes: a WRITE with half of its Data-Out, or a
/// READ whose Data-In it never reads.
fn abandon_command(portal: &str, isid_tail: u8, write: bool) {
    let opts = LoginOptions::normal(INITIATOR, DEFAULT_IQN).isid([0x80, 0, 0, 1, 0, isid_tail]);
    let mut ini = RawInitiator::connect(portal);
    if ini.login(&opts).is_err() {
        return; // refused during a concurrent reset storm; nothing to abandon
    }
    if write {
        let cmd = ini.command(0, &write10_cdb(isid_tail as u32 * 256, 128), 0, 65536, &[]);
        ini.send(&cmd.encode());
        if let Ok(pdu) = ini.recv(Duration::from_secs(2)) {
            if let Ok(TargetPdu::R2t(r2t)) = TargetPdu::decode(&pdu) {
                let half = DataOut {
                    final_bit: false,
                    lun: lun_field(0),
                    itt: r2t.itt,
                    ttt: r2t.ttt,
                    exp_stat_sn: ini.exp_stat_sn,
                    data_sn: 0,
                    buffer_offset: r2t.buffer_offset,
                    data: Bytes::from(vec![0x5a; 4096]),
                };
                ini.send(&half.encode());
            }
        }
    } else {
        let cmd = ini.command(0, &read10_cdb(isid_tail as u32 * 256, 2048), 1 << 20, 0, &[]);
        ini.send(&cmd.encode());
    }
    // Dropped here: the connection goes away mid-command.
}

/// Use-after-free on teardown (LIO iscsit connection release races, tgt conn_close): 240
/// connections that vanish mid-command while other sessions log out and reset the LU. The
/// server stays up, still serves, and the gauges return to zero: no task and no buffer
/// outlives its connection.
#[test]
fn teardown_races_leave_no_task_or_buffer_behind() {
    let mut t = plain_target(
        "[limits]\nmax_connections_per_address = 1000\nmax_sessions = 2000\nmax_sessions_per_target = 2000\n",
    );
    let done = Arc::new(AtomicBool::new(false));
    let portal = t.portal();
    let mut workers = Vec::new();
    for w in 0..4u8 {
        let portal = portal.clone();
        workers.push(std::thread::spawn(move || {
            for i in 0..60u8 {
                abandon_command(&portal, w * 60 + i, i % 2 == 0);
            }
        }));
    }
    let churn = {
        let (portal, done) = (portal.clone(), done.clone());
        std::thread::spawn(move || {
            let mut rounds = 0u32;
            while !done.load(Ordering::Relaxed) {
                let opts = LoginOptions::normal(INITIATOR, DEFAULT_IQN).isid([0x80, 0, 0, 2, 0, (rounds % 200) as u8]);
                let mut ini = RawInitiator::login_ok(&portal, &opts);
                if rounds.is_multiple_of(2) {
                    // LOGICAL UNIT RESET (RFC 7143 §11.5.1 function 5) under everyone's feet.
                    let rsp = ini.task_mgmt(5, 0, pdu::RESERVED_TAG, ini.cmd_sn);
                    assert_eq!(rsp.response, 0, "LU reset refused");
                }
                ini.logout();
                rounds += 1;
            }
            rounds
        })
    };
    for w in workers {
        w.join().expect("abandoning worker");
    }
    done.store(true, Ordering::Relaxed);
    let rounds = churn.join().expect("logout/reset churn");
    assert!(rounds > 0);
    eprintln!("240 abandoned commands raced {rounds} logouts (half with a LOGICAL UNIT RESET)");
    assert_healthy(&mut t);
    // Every abandoned connection is closed and accounted for: the last "connection closed"
    // line reports no live task and no held data.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut ini = RawInitiator::login_ok(&portal, &LoginOptions::normal(INITIATOR, DEFAULT_IQN));
        ini.clear_unit_attention(0);
        assert_eq!(ini.read10(0, 0, 8).len(), 4096);
        ini.logout();
        std::thread::sleep(Duration::from_millis(300));
        let log = t.log();
        let last =
            log.lines().rev().find(|l| l.contains("connection closed")).expect("a connection closed line").to_string();
        if last.contains("live_tasks=0") && last.contains("held_data_bytes=0") {
            break;
        }
        assert!(Instant::now() < deadline, "gauges never returned to zero; last line: {last}");
    }
    assert_healthy(&mut t);
}
