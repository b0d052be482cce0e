//! Load with hostile neighbours (issue 6): 200 concurrent sessions on loopback each do small
//! verified writes and reads for a few seconds while other connections keep sending garbage,
//! corrupted digests and oversized segments. Every honest session completes all its I/O
//! without an error; the malformed traffic only ever costs its own connection.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw_initiator::*;
use common::{TargetProcess, DEFAULT_IQN};
use pdu::bhs::BhsBuf;
use pdu::{Opcode, OutPdu};

const SESSIONS: usize = 200;
/// How long the honest sessions keep doing I/O once all of them are logged in.
const IO_TIME: Duration = Duration::from_secs(8);
const HONEST: &str = "iqn.2026-11.test.palisade:honest";
const HOSTILE: &str = "iqn.2026-11.test.palisade:hostile";

fn start() -> TargetProcess {
    let extra = "[session]\nnop_interval_secs = 0\n\n[limits]\nmax_connections_per_address = 1000\n\
                 max_sessions = 2000\nmax_sessions_per_target = 2000\n";
    TargetProcess::start_with_config(
        &format!(
            "[[portals]]\nname = \"test\"\nlisten = \"127.0.0.1:{{PORT}}\"\n\n[[targets]]\nname = \"{DEFAULT_IQN}\"\n\n\
             [[targets.luns]]\nid = 0\nbackend = \"memory\"\nsize = \"64MiB\"\n\n{extra}"
        ),
        DEFAULT_IQN,
    )
}

fn isid(kind: u8, n: usize) -> [u8; 6] {
    [0x80, 0, kind, 0, (n >> 8) as u8, n as u8]
}

/// One honest session: log in, wait for the others, then write and read back its own blocks
/// until the time is up. Returns the verified rounds.
fn honest_session(portal: String, n: usize, all_in: Arc<Barrier>) -> u64 {
    let mut ini = RawInitiator::login_ok(&portal, &LoginOptions::normal(HONEST, DEFAULT_IQN).isid(isid(1, n)));
    ini.clear_unit_attention(0);
    all_in.wait();
    let deadline = Instant::now() + IO_TIME;
    let mut rounds = 0u64;
    // 64 KiB per session: 200 × 128 blocks fit the 64 MiB LUN without overlap.
    let base = (n * 128) as u32;
    while Instant::now() < deadline {
        let lba = base + (rounds % 16) as u32 * 8;
        let block: Vec<u8> = (0..4096).map(|i| (i as u64 ^ rounds ^ n as u64) as u8).collect();
        ini.write10(0, lba, &block);
        assert_eq!(ini.read10(0, lba, 8), block, "session {n} round {rounds}: read back differs");
        rounds += 1;
    }
    ini.logout();
    rounds
}

/// One hostile connection of kind `round % 5`. What the target answers is checked elsewhere
/// (tests/bad_input.rs, tests/hostile.rs); here it only must not disturb anyone else.
/// Returns whether the connection reached Full Feature Phase before misbehaving.
fn hostile_connection(portal: &str, round: usize) -> bool {
    let opts = LoginOptions::normal(HOSTILE, DEFAULT_IQN).isid(isid(2, round % 4096));
    let drain = |c: &mut RawInitiator| while c.recv(Duration::from_millis(300)).is_ok() {};
    match round % 5 {
        0 => {
            // Garbage instead of a Login Request.
            let mut c = RawInitiator::connect(portal);
            let junk: Vec<u8> = (0..4096).map(|i| (i * 7 + round) as u8).collect();
            c.send_bytes(&junk);
            drain(&mut c);
            false
        }
        1 => {
            // A Login Request announcing a 16 MiB segment.
            let mut c = RawInitiator::connect(portal);
            let req = first_login_request(isid(3, round), 1, true, false, Bytes::new());
            let wire = announcing_data_segment_length(&req.encode(), 0xff_fffc);
            c.send_bytes(&wire);
            c.send_bytes(&[0x55; 65536]);
            drain(&mut c);
            false
        }
        2 => {
            // A corrupted header digest: the stream is dropped (RFC 7143 §7.8).
            let Ok(mut c) = try_login(portal, &opts.clone().digests(true, true)) else { return false };
            let nop = c.nop_out(b"x");
            let wire = corrupt_header_digest(c.wire(&nop.encode()), 0);
            c.send_bytes(&wire);
            drain(&mut c);
            true
        }
        3 => {
            // A corrupted data digest: Reject, the connection stays; then hang up mid-login state.
            let Ok(mut c) = try_login(portal, &opts.clone().digests(true, true)) else { return false };
            let nop = c.nop_out(&[0xab; 512]);
            let wire = corrupt_data_digest(c.wire(&nop.encode()));
            c.send_bytes(&wire);
            drain(&mut c);
            true
        }
        _ => {
            // A data segment far over MaxRecvDataSegmentLength (§13.12): Reject and close.
            let Ok(mut c) = try_login(portal, &opts) else { return false };
            let bhs = BhsBuf::new(Opcode(0x00)).immediate(true).flags(0x80).u32(16, 0x1234).u32(20, 0xffff_ffff);
            let wire = OutPdu::new(bhs, Bytes::from(vec![0x77; 1 << 20])).to_bytes(c.digests);
            c.send_bytes(&wire);
            drain(&mut c);
            true
        }
    }
}

fn try_login(portal: &str, opts: &LoginOptions) -> Result<RawInitiator, LoginError> {
    let mut c = RawInitiator::connect(portal);
    c.login(opts).map(|()| c)
}

#[test]
fn two_hundred_sessions_do_verified_io_while_malformed_traffic_hits_other_connections() {
    let started = Instant::now();
    let mut t = start();
    let all_in = Arc::new(Barrier::new(SESSIONS + 1));
    let honest: Vec<_> = (0..SESSIONS)
        .map(|n| {
            let (portal, all_in) = (t.portal(), all_in.clone());
            std::thread::Builder::new()
                .stack_size(512 * 1024)
                .spawn(move || honest_session(portal, n, all_in))
                .expect("spawn honest session")
        })
        .collect();
    all_in.wait();
    eprintln!("{SESSIONS} sessions logged in after {:?}", started.elapsed());
    let stop = Arc::new(AtomicBool::new(false));
    let attacks = Arc::new(AtomicU64::new(0));
    let logged_in_attacks = Arc::new(AtomicU64::new(0));
    let hostile: Vec<_> = (0..3)
        .map(|h| {
            let (portal, stop, attacks) = (t.portal(), stop.clone(), attacks.clone());
            let logged_in_attacks = logged_in_attacks.clone();
            std::thread::spawn(move || {
                let mut round = h;
                while !stop.load(Ordering::Relaxed) {
                    if hostile_connection(&portal, round) {
                        logged_in_attacks.fetch_add(1, Ordering::Relaxed);
                    }
                    attacks.fetch_add(1, Ordering::Relaxed);
                    round += 3;
                }
            })
        })
        .collect();
    let mut total = 0;
    for (n, h) in honest.into_iter().enumerate() {
        let rounds = h.join().unwrap_or_else(|_| panic!("honest session {n} failed"));
        assert!(rounds > 0, "session {n} did no I/O");
        total += rounds;
    }
    stop.store(true, Ordering::Relaxed);
    for h in hostile {
        h.join().expect("hostile thread");
    }
    let attacks = attacks.load(Ordering::Relaxed);
    let logged_in = logged_in_attacks.load(Ordering::Relaxed);
    eprintln!(
        "held {SESSIONS} concurrent sessions: {total} verified write+read rounds in {IO_TIME:?} \
         alongside {attacks} malformed connections ({logged_in} after login); whole test {:?}",
        started.elapsed()
    );
    assert!(attacks >= 5 && logged_in >= 3, "every kind of malformed traffic ran ({attacks}, {logged_in} in FFP)");
    assert_healthy(&mut t);
}
