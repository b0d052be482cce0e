//! Resource limits against the real binary (docs/hardening.md): session counts answer 03/02,
//! connections per address are capped at accept, silent and half-logged-in sockets and peers
//! that ignore NOP-In pings are dropped, the session data budget holds back R2Ts and MaxCmdSN,
//! and a peer that stops reading holds bounded memory, does not slow other sessions, and is
//! dropped after the send timeout.

mod common;
mod hardening;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::raw_initiator::*;
use hardening::{free_port, stamp, target_toml, unique_dir, TargetProcess, IQN};
use pdu::msg::TargetPdu;
use pdu::RESERVED_TAG;

const INITIATOR: &str = "iqn.2026-11.test:limits";
const FILE_LUN: &str =
    "[[targets.luns]]\nid = 0\nbackend = \"file\"\npath = \"{DATA_DIR}/lun0.img\"\nsize = \"64MiB\"\n";

fn start(extra: &str) -> TargetProcess {
    let dir = unique_dir("palisade-limits");
    TargetProcess::start_config_at(&target_toml(FILE_LUN, extra), free_port(), &dir)
}

fn opts(isid_tail: u8) -> LoginOptions {
    LoginOptions::normal(INITIATOR, IQN).isid([0x80, 0, 0, 0, 0x42, isid_tail])
}

/// Waits until a plain TCP connection is closed by the server; returns how long it took.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!("connection still open after {limit:?}")
            }
            Err(_) => return start.elapsed(), // reset
        }
    }
}

#[test]
fn session_limits_refuse_logins_with_out_of_resources() {
    let second = "[[targets]]\nname = \"iqn.2026-11.io.palisade:second\"\n\
                  [[targets.luns]]\nid = 0\nbackend = \"memory\"\nsize = \"1MiB\"\n";
    let mut s = start(&format!("{second}\n[limits]\nmax_sessions = 3\nmax_sessions_per_target = 2\n"));
    let portal = s.portal();
    let mut a1 = RawInitiator::login_ok(&portal, &opts(1));
    let _a2 = RawInitiator::login_ok(&portal, &opts(2));
    // RFC 7143 §11.13.5: 03/02 Out of resources.
    assert_eq!(RawInitiator::login_refused(&portal, &opts(3)), LoginError::Status(3, 2), "third session of one target");
    let b_opts = LoginOptions::normal(INITIATOR, "iqn.2026-11.io.palisade:second").isid([0x80, 0, 0, 0, 0x43, 1]);
    let _b = RawInitiator::login_ok(&portal, &b_opts);
    assert_eq!(
        RawInitiator::login_refused(&portal, &LoginOptions::discovery(INITIATOR)),
        LoginError::Status(3, 2),
        "a fourth session of any kind exceeds max_sessions"
    );
    // Reinstating an existing session (same initiator port) is not a new session.
    let mut again = RawInitiator::login_ok(&portal, &opts(2));
    again.ping(b"reinstated");
    // A logout frees the place.
    a1.logout();
    let mut a3 = RawInitiator::login_ok(&portal, &opts(3));
    a3.ping(b"after logout");
    assert!(s.is_running());
    assert!(s.log().contains("session limit reached"), "the refusal is logged");
}

#[test]
fn connections_per_address_are_capped_at_accept() {
    let mut s = start("[limits]\nmax_connections_per_address = 3\nlogin_idle_timeout_secs = 60\n");
    let portal = s.portal();
    // Four connections from one address with a limit of three: whichever the server counts
    // last is closed at accept (the order of the count is the server's, not the connects').
    let mut conns: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&portal).unwrap()).collect();
    let closed = count_closed_within(&mut conns, Duration::from_secs(5));
    assert_eq!(closed.len(), 1, "exactly one of four connections must be refused");
    println!("connection {} of 4 from 127.0.0.1 closed at accept", closed[0] + 1);
    drop(conns);
    std::thread::sleep(Duration::from_millis(300));
    let mut ini = RawInitiator::login_ok(&portal, &opts(1));
    ini.ping(b"slot freed");
    assert!(s.is_running());
    assert!(s.log().contains("too many connections from this address"));
}

/// Indices of the streams the server closed within `limit` (then a further moment to be sure
/// no other one follows).
fn count_closed_within(streams: &mut [TcpStream], limit: Duration) -> Vec<usize> {
    let deadline = Instant::now() + limit;
    let mut closed = Vec::new();
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        for (i, s) in streams.iter_mut().enumerate() {
            if closed.contains(&i) {
                continue;
            }
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            match s.read(&mut buf) {
                Ok(0) => closed.push(i),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => closed.push(i),
            }
        }
        if !closed.is_empty() && Instant::now() + Duration::from_millis(500) < deadline {
            // One was refused; give the others the rest of a short grace period to show that
            // they stay open.
            std::thread::sleep(Duration::from_millis(500));
            for (i, s) in streams.iter_mut().enumerate() {
                if closed.contains(&i) {
                    continue;
                }
                s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                if matches!(s.read(&mut buf), Ok(0)) {
                    closed.push(i);
                }
            }
            return closed;
        }
    }
    closed
}

#[test]
fn silent_and_half_logged_in_sockets_are_dropped() {
    let mut s = start("[session]\nlogin_timeout_secs = 3\n[limits]\nlogin_idle_timeout_secs = 1\n");
    let portal = s.portal();
    let mut silent = TcpStream::connect(&portal).unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(4));
    println!("silent socket closed after {took:?} (login_idle_timeout_secs = 1)");
    assert!(took >= Duration::from_millis(800), "closed too early: {took:?}");

    // A Login Request header that announces 1000 data bytes which never come: the idle timer
    // is satisfied, the login phase timer (login_timeout_secs, RFC 7143 §6.3) is not.
    use std::io::Write;
    let mut half = TcpStream::connect(&portal).unwrap();
    let mut bhs = [0u8; 48];
    bhs[0] = 0x43; // immediate Login Request
    bhs[1] = 0x81; // T, CSG 0 NSG 1
    bhs[5..8].copy_from_slice(&[0, 0x03, 0xe8]);
    half.write_all(&bhs).unwrap();
    half.write_all(&[b'I'; 100]).unwrap();
    let took = closed_within(&mut half, Duration::from_secs(6));
    println!("half-sent login closed after {took:?} (login_timeout_secs = 3)");
    assert!(took >= Duration::from_millis(2500), "closed before the login timeout: {took:?}");
    let mut ini = RawInitiator::login_ok(&portal, &opts(1));
    ini.ping(b"still serving");
    assert!(s.is_running());
}

#[test]
fn nop_in_ping_unanswered_drops_the_connection_answered_keeps_it() {
    let mut s = start("[session]\nnop_interval_secs = 1\nnop_timeout_secs = 2\n");
    let portal = s.portal();
    let mut mute = RawInitiator::login_ok(&portal, &opts(1));
    let mut polite = RawInitiator::login_ok(&portal, &opts(2));
    // The polite one answers every ping (NOP-Out with the ping's TTT, RFC 7143 §11.18) from the
    // start, for longer than the mute one survives.
    let polite_thread = std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(7);
        let mut answered = 0;
        while Instant::now() < until {
            match polite.recv(Duration::from_millis(300)) {
                Ok(pdu) => {
                    if let Ok(TargetPdu::NopIn(n)) = TargetPdu::decode(&pdu) {
                        assert_eq!(n.itt, RESERVED_TAG);
                        let answer = pdu::msg::NopOut {
                            immediate: true,
                            lun: 0,
                            itt: RESERVED_TAG,
                            ttt: n.ttt,
                            cmd_sn: polite.cmd_sn,
                            exp_stat_sn: polite.exp_stat_sn,
                            data: bytes::Bytes::new(),
                        };
                        polite.send(&answer.encode());
                        answered += 1;
                    }
                }
                Err(RecvError::Timeout) => {}
                Err(e) => panic!("answering connection lost: {e:?}"),
            }
        }
        (polite, answered)
    });
    let start = Instant::now();
    // The mute one receives pings (ITT 0xffffffff, a real TTT, §11.19) and ignores them.
    let seen =
        mute.expect_closed(Duration::from_secs(8), |p| matches!(p, TargetPdu::NopIn(n) if n.itt == RESERVED_TAG));
    let took = start.elapsed();
    println!("unanswered ping: {} NOP-In, connection dropped after {took:?}", seen.len());
    assert!(!seen.is_empty(), "a ping came first");
    assert!(took >= Duration::from_secs(2), "dropped before nop_timeout: {took:?}");
    let (mut polite, answered) = polite_thread.join().expect("polite connection");
    assert!(answered >= 3, "pings kept coming and were answered ({answered})");
    polite.ping(b"alive");
    assert!(s.is_running());
}

#[test]
fn data_budget_defers_r2ts_and_holds_back_max_cmd_sn() {
    let s = start("[limits]\nmax_session_data_bytes = \"1MiB\"\n");
    let o = opts(1).key("InitialR2T", "Yes").key("ImmediateData", "No");
    let mut ini = RawInitiator::login_ok(&s.portal(), &o);
    ini.clear_unit_attention(0);
    let max_before = ini.max_cmd_sn;
    let payload: Vec<Vec<u8>> =
        (0..3u32).map(|c| (0..2048).flat_map(|b| stamp(c, b, c * 2048 + b)).collect()).collect();
    let cmds: Vec<_> = (0..3u32)
        .map(|c| {
            let cmd = ini.command(0, &write10_cdb(c * 2048, 2048), 0, 1 << 20, &[]);
            ini.send(&cmd.encode());
            cmd
        })
        .collect();
    // Only the first command fits the 1 MiB budget: every R2T is for it.
    let mut pending = Vec::new();
    while let Ok(pdu) = ini.recv(Duration::from_millis(700)) {
        match TargetPdu::decode(&pdu).unwrap() {
            TargetPdu::R2t(r) => {
                assert_eq!(r.itt, cmds[0].itt, "R2T for a command beyond the budget");
                pending.push(r);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(!pending.is_empty(), "the first write was solicited");
    let mut done = 0;
    // MaxCmdSN carried by each PDU while a later write still waited for budget.
    let mut max_under_pressure = vec![ini.max_cmd_sn];
    for r in std::mem::take(&mut pending) {
        ini.answer_r2t(&r, 0, &payload[0]);
    }
    while done < 3 {
        match ini.recv_msg(ANSWER_TIMEOUT) {
            TargetPdu::R2t(r) => {
                let c = cmds.iter().position(|c| c.itt == r.itt).unwrap();
                assert_eq!(c, done, "R2T for write {c} before write {done} completed");
                if c < 2 {
                    max_under_pressure.push(ini.max_cmd_sn);
                }
                ini.answer_r2t(&r, 0, &payload[c]);
            }
            TargetPdu::ScsiResponse(rsp) => {
                assert_eq!(rsp.status, GOOD, "write {done} failed");
                assert_eq!(rsp.itt, cmds[done].itt, "writes complete in order under the budget");
                if done < 1 {
                    max_under_pressure.push(ini.max_cmd_sn);
                }
                done += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // While later writes waited, completions did not open the window (RFC 7143 §4.2.2.1).
    assert!(
        max_under_pressure.iter().all(|m| *m == max_before),
        "MaxCmdSN advanced while writes waited for budget: {max_under_pressure:?} (before {max_before})"
    );
    ini.ping(b"pressure gone");
    assert_eq!(ini.max_cmd_sn, ini.exp_cmd_sn.wrapping_add(127), "the full window is back");
    for c in 0..3u32 {
        assert_eq!(ini.read10(0, c * 2048, 2048), payload[c as usize], "write {c} landed intact");
    }
}

#[test]
fn stalled_reader_is_bounded_and_dropped_while_other_sessions_keep_full_service() {
    let mut s =
        start("[limits]\nmax_session_data_bytes = \"8MiB\"\nmax_send_queue_bytes = \"1MiB\"\nsend_timeout_secs = 4\n");
    let portal = s.portal();
    // Fill the LUN so the reads return real data.
    let mut healthy = RawInitiator::login_ok(&portal, &opts(2));
    healthy.clear_unit_attention(0);
    for mib in 0..8u32 {
        let chunk: Vec<u8> = (0..2048).flat_map(|b| stamp(9, b, mib * 2048 + b)).collect();
        healthy.write10(0, mib * 2048, &chunk);
    }
    let rss_before = s.rss_kib();
    let mut stalled = RawInitiator::login_ok(&portal, &opts(1));
    // 120 READs of 1 MiB (the window allows 128), and then never read the socket again.
    for i in 0..120u32 {
        let cmd = stalled.command(0, &read10_cdb((i % 8) * 2048, 2048), 1 << 20, 0, &[]);
        stalled.send(&cmd.encode());
    }
    let stall_start = Instant::now();
    // Meanwhile the other session gets full service: verified 64 KiB round trips, each quick.
    let mut worst = Duration::ZERO;
    let mut rounds = 0u32;
    let mut rss_peak = 0;
    while stall_start.elapsed() < Duration::from_secs(3) {
        let lba = 20_000 + (rounds % 64) * 128;
        let data: Vec<u8> = (0..128).flat_map(|b| stamp(rounds, b, lba + b)).collect();
        let t = Instant::now();
        healthy.write10(0, lba, &data);
        assert_eq!(healthy.read10(0, lba, 128), data);
        worst = worst.max(t.elapsed());
        rounds += 1;
        rss_peak = rss_peak.max(s.rss_kib());
    }
    let grown = rss_peak.saturating_sub(rss_before);
    println!(
        "stalled peer: 120 MiB of READs queued; healthy session did {rounds} verified 64 KiB write+read, \
         worst {worst:?}; server RSS {rss_before} KiB -> peak {rss_peak} KiB (+{grown} KiB)"
    );
    assert!(worst < Duration::from_secs(2), "other sessions were slowed: worst round trip {worst:?}");
    // Unbounded, 120 MiB of read data would be resident; the bound is budget 8 MiB + queue 1 MiB
    // + the writer's coalescing buffer, whatever the kernel's socket buffers took aside.
    assert!(grown < 40 * 1024, "a stalled peer grew the server by {grown} KiB");
    // The stalled connection is dropped once its socket took nothing for send_timeout_secs.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s.log().contains("connection writer failed") {
        assert!(Instant::now() < deadline, "stalled connection never dropped; log:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("stalled connection dropped {:?} after the stall began", stall_start.elapsed());
    drop(stalled);
    healthy.ping(b"still here");
    std::thread::sleep(Duration::from_millis(500));
    let (live, held) = s.last_close_gauges().expect("connection closed line");
    assert_eq!(held, 0, "the stalled session returned its data budget");
    assert_eq!(live, 0, "no command task of the stalled session survived");
    assert!(s.is_running());
}
