//! Configuration reload on SIGHUP against the real binary: a target and a LUN are added, an ACL
//! and CHAP change, a target is removed (the sessions of the changed and the removed target are
//! asked to log out, RFC 7143 §11.9.1 AsyncEvent 1), while a session on an unchanged target
//! keeps doing verified I/O without a single error.
//! Unchanged LUNs are the same objects afterwards (their data and reservations are intact), and
//! an invalid new file is refused with the field named while the old configuration serves on.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raw_initiator::*;
use common::{TargetProcess, DEFAULT_IQN};
use pdu::msg::TargetPdu;

const I1: &str = "iqn.2026-11.test.palisade:one";
const I2: &str = "iqn.2026-11.test.palisade:two";
const B: &str = "iqn.2026-11.io.palisade:b";
const C: &str = "iqn.2026-11.io.palisade:c";
const D: &str = "iqn.2026-11.io.palisade:d";
const CHAP_USER: &str = "reloaded";
const CHAP_SECRET: &str = "b-needs-chap-now";

fn memory_lun(id: u64, size: &str) -> String {
    format!("\n[[targets.luns]]\nid = {id}\nbackend = \"memory\"\nsize = \"{size}\"\n")
}

fn target(name: &str, body: &str) -> String {
    format!("\n[[targets]]\nname = \"{name}\"\n{body}")
}

/// Before: A (unchanged throughout), B (LUN 0, only I1 admitted), C (to be removed).
fn config_before() -> String {
    let mut t =
        "[[portals]]\nname = \"test\"\nlisten = \"127.0.0.1:{PORT}\"\n\n[session]\nnop_interval_secs = 0\n".to_string();
    t += &target(DEFAULT_IQN, &memory_lun(0, "16MiB"));
    t += &target(B, &format!("{}\n[[targets.acl]]\ninitiator = \"{I1}\"\n", memory_lun(0, "8MiB")));
    t += &target(C, &memory_lun(0, "4MiB"));
    t
}

/// After: A as it was, B with a new LUN 1, I2 admitted to LUN 1 only and CHAP required, C
/// gone, D new.
fn config_after(port: u16) -> String {
    let mut t =
        format!("[[portals]]\nname = \"test\"\nlisten = \"127.0.0.1:{port}\"\n\n[session]\nnop_interval_secs = 0\n");
    t += &target(DEFAULT_IQN, &memory_lun(0, "16MiB"));
    let acl = format!(
        "\n[[targets.acl]]\ninitiator = \"{I1}\"\n\n[[targets.acl]]\ninitiator = \"{I2}\"\nluns = [1]\n\n\
         [targets.chap]\nuser = \"{CHAP_USER}\"\nsecret = \"{CHAP_SECRET}\"\n"
    );
    t += &target(B, &format!("{}{}{acl}", memory_lun(0, "8MiB"), memory_lun(1, "4MiB")));
    t += &target(D, &memory_lun(0, "4MiB"));
    t
}

/// Rewrites the config file, sends SIGHUP and waits for the `count`-th log line containing
/// `marker`.
fn reload(t: &TargetProcess, toml: &str, marker: &str, count: usize) {
    std::fs::write(t.data_dir().join("palisade.toml"), toml).expect("rewrite config");
    // SAFETY: kill(2) on the PID of the server this test started.
    unsafe { libc::kill(t.pid().expect("a server this test started") as libc::pid_t, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.log().matches(marker).count() < count {
        assert!(Instant::now() < deadline, "no {marker:?} after SIGHUP; log:\n{}", t.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for_progress(progress: &AtomicU32, at_least: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while progress.load(Ordering::Relaxed) < at_least {
        assert!(Instant::now() < deadline, "keeper stuck below {at_least} rounds");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn opts(initiator: &str, target: &str, isid_tail: u8) -> LoginOptions {
    LoginOptions::normal(initiator, target).isid([0x80, 0, 0, 0, 0x42, isid_tail])
}

/// REPORT LUNS (SPC-4 §6.33): the LUN numbers this nexus sees.
fn report_luns(ini: &mut RawInitiator) -> Vec<u64> {
    let data = ini.exec_good(0, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], 256, &[]);
    let len = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
    data[8..8 + len].chunks(8).map(|c| u64::from(c[1])).collect()
}

fn status_of(err: LoginError) -> (u8, u8) {
    match err {
        LoginError::Status(class, detail) => (class, detail),
        other => panic!("expected a login status, got {other:?}"),
    }
}

#[test]
fn sighup_reload_adds_changes_and_removes_targets_without_disturbing_others() {
    let mut t = TargetProcess::start_with_config(&config_before(), DEFAULT_IQN);
    let portal = t.portal();

    // A session on the unchanged target doing verified I/O for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU32::new(0));
    let keeper = {
        let (portal, stop, progress) = (portal.clone(), stop.clone(), progress.clone());
        std::thread::spawn(move || {
            let mut ini = RawInitiator::login_ok(&portal, &opts(I1, DEFAULT_IQN, 1));
            ini.clear_unit_attention(0);
            let mut rounds = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let block: Vec<u8> = (0..4096).map(|n| (n as u32 ^ rounds) as u8).collect();
                let lba = rounds % 1000 * 8;
                ini.write10(0, lba, &block);
                assert_eq!(ini.read10(0, lba, 8), block, "keeper read back round {rounds}");
                rounds += 1;
                progress.store(rounds, Ordering::Relaxed);
            }
            ini.logout();
            rounds
        })
    };

    // B before: I1 writes data and registers a reservation key on LUN 0; I2 is not admitted.
    let mut b_old = RawInitiator::login_ok(&portal, &opts(I1, B, 2));
    b_old.clear_unit_attention(0);
    let marked: Vec<u8> = (0..4096).map(|n| (n % 253) as u8).collect();
    b_old.write10(0, 100, &marked);
    let mut register = vec![0u8; 24];
    register[8..16].copy_from_slice(&0xB0B0u64.to_be_bytes());
    b_old.exec_good(0, &[0x5F, 0x00, 0, 0, 0, 0, 0, 0, 24, 0], 0, &register);
    assert_eq!(status_of(RawInitiator::login_refused(&portal, &opts(I2, B, 3))), (2, 2), "I2 not in B's ACL yet");
    // C before: a session that the reload will ask to log out.
    let mut c_old = RawInitiator::login_ok(&portal, &opts(I1, C, 4));
    c_old.ping(b"before reload");

    wait_for_progress(&progress, 1);
    reload(&t, &config_after(t.port()), "configuration reloaded", 1);
    let at_reload = progress.load(Ordering::Relaxed);

    // C: asked to log out (AsyncEvent 1), answered with a Logout, closed; new logins refused.
    match c_old.recv_msg(ANSWER_TIMEOUT) {
        TargetPdu::Async(m) => assert_eq!(m.event, 1, "AsyncEvent 1: target requests logout"),
        other => panic!("expected an Async Message on the removed target's session, got {other:?}"),
    }
    c_old.logout();
    assert_eq!(status_of(RawInitiator::login_refused(&portal, &opts(I1, C, 5))), (2, 3), "C is gone: not found");

    // B changed (CHAP now required, I2 admitted, a LUN added): its logged-in session, which
    // authenticated under the old rules, is asked to log out and log back in to the new B.
    match b_old.recv_msg(ANSWER_TIMEOUT) {
        TargetPdu::Async(m) => assert_eq!(m.event, 1, "AsyncEvent 1: target requests logout"),
        other => panic!("expected an Async Message on the changed target's session, got {other:?}"),
    }
    assert_eq!(b_old.read10(0, 100, 8), marked, "I/O still served until it logs out");
    b_old.logout();
    // New logins see the new B: CHAP is required, LUN 1 exists, I2 is admitted to LUN 1 only.
    assert_eq!(status_of(RawInitiator::login_refused(&portal, &opts(I1, B, 6))), (2, 1), "B now needs CHAP");
    let mut b_new = RawInitiator::login_ok(&portal, &opts(I1, B, 6).chap(CHAP_USER, CHAP_SECRET));
    assert_eq!(report_luns(&mut b_new), vec![0, 1]);
    b_new.clear_unit_attention(0);
    // LUN 0 is the same object: the data and the registered key survived the reload.
    assert_eq!(b_new.read10(0, 100, 8), marked, "unchanged LUN reused, data intact");
    let keys = b_new.exec_good(0, &[0x5E, 0x00, 0, 0, 0, 0, 0, 0, 64, 0], 64, &[]);
    assert_eq!(&keys[4..16], &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0xB0, 0xB0], "reservation key kept: {keys:02x?}");
    b_new.clear_unit_attention(1);
    b_new.write10(1, 0, &marked);
    assert_eq!(b_new.read10(1, 0, 8), marked);
    let mut i2 = RawInitiator::login_ok(&portal, &opts(I2, B, 7).chap(CHAP_USER, CHAP_SECRET));
    assert_eq!(report_luns(&mut i2), vec![1], "I2 masked to LUN 1");
    // D: added.
    let mut d = RawInitiator::login_ok(&portal, &opts(I1, D, 8));
    d.clear_unit_attention(0);
    d.write10(0, 0, &marked);
    assert_eq!(d.read10(0, 0, 8), marked);

    // An invalid file is refused with the field named; the running configuration stays.
    let broken = config_after(t.port()).replace("size = \"4MiB\"\n", "size = \"4MiB\"\nblock_size = 1000\n");
    reload(&t, &broken, "config reload refused", 1);
    let log = t.log();
    let refusal = log.lines().find(|l| l.contains("config reload refused")).unwrap();
    assert!(refusal.contains("block_size"), "refusal names the field: {refusal}");
    RawInitiator::login_ok(&portal, &opts(I1, D, 9)).ping(b"D still served");
    // So is a change that needs a restart (moving the portal).
    let moved = config_after(t.port()).replace(&format!(":{}\"", t.port()), ":1\"");
    reload(&t, &moved, "config reload refused", 2);
    RawInitiator::login_ok(&portal, &opts(I1, D, 10)).ping(b"D still served");

    // The keeper went on through all of it.
    wait_for_progress(&progress, at_reload + 20);
    stop.store(true, Ordering::Relaxed);
    let rounds = keeper.join().expect("the keeper session saw no error");
    assert!(rounds > 0, "keeper did I/O");
    eprintln!(
        "keeper session on the unchanged target: {rounds} verified write+read rounds, before and after 3 SIGHUPs"
    );
    assert_healthy(&mut t);
}
