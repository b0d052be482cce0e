//! The Linux open-iscsi initiator in a QEMU guest rides out a target restart (tests/guest/
//! reconnect.sh): while fio writes and verifies 64 MiB with crc32c headers, the host sends the
//! target SIGTERM (Async logout request, drain, flush, exit) and starts it again on the same port
//! and data directory. The kernel initiator recovers the session by itself (ERL 0 session
//! recovery within replacement_timeout) and fio finds no error and no corruption.
//! Runs in the repository's VM harness (scripts/vm/run-in-vm.sh; it builds its guest image on first
//! use, scripts/install-deps.sh builds it ahead).

mod common;
mod hardening;

use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::vm::{console_lines, transcript};
use common::{guest_script, vm_runner};
use hardening::{free_port, target_toml, unique_dir, TargetProcess};

const GUEST_TIMEOUT_S: u64 = 500;
/// How long after fio starts the target is restarted.
const RESTART_AFTER: Duration = Duration::from_secs(4);

#[test]
fn linux_initiator_recovers_the_session_across_a_target_restart_without_corruption() {
    let lun = "[[targets.luns]]\nid = 0\nbackend = \"file\"\npath = \"{DATA_DIR}/lun0.img\"\nsize = \"128MiB\"\n";
    let dir = unique_dir("palisade-vm-reconnect");
    let mut server = TargetProcess::start_config_at(&target_toml(lun, ""), free_port(), &dir);
    let mut vm = vm_runner(server.port(), GUEST_TIMEOUT_S)
        .arg(guest_script("reconnect.sh"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run-in-vm.sh");
    let (rx, reader) = console_lines(&mut vm);
    let deadline = Instant::now() + Duration::from_secs(GUEST_TIMEOUT_S + 60);
    let mut console = Vec::new();
    let mut restarted_at: Option<Instant> = None;
    let mut fio_started: Option<Instant> = None;
    loop {
        let wait = match (fio_started, restarted_at) {
            (Some(t), None) => (t + RESTART_AFTER).saturating_duration_since(Instant::now()),
            _ => Duration::from_secs(1),
        };
        match rx.recv_timeout(wait.max(Duration::from_millis(10))) {
            Ok(line) => {
                println!("guest| {line}");
                if line.contains("FIO RUNNING") {
                    fio_started = Some(Instant::now());
                }
                console.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let (Some(t), None) = (fio_started, restarted_at) {
            if t.elapsed() >= RESTART_AFTER {
                let stop = Instant::now();
                let status = server.terminate(Duration::from_secs(20));
                println!("host| target SIGTERM: exited {status:?} after {:?}", stop.elapsed());
                server.restart();
                println!("host| target restarted on the same port and data dir {:?} after SIGTERM", stop.elapsed());
                restarted_at = Some(Instant::now());
            }
        }
        assert!(Instant::now() < deadline, "guest did not finish in time");
    }
    let status = vm.wait().expect("run-in-vm.sh status");
    reader.join().unwrap();
    let console = console.join("\n");
    let log = server.log();
    let key = transcript(
        &log,
        &[
            "login complete",
            "asking the initiator to log out",
            "connection closed",
            "shutting down",
            "stopped",
            "session reinstatement",
        ],
    );
    println!("----- target log, key lines -----\n{key}");
    assert!(status.success(), "guest script failed: {status:?}");
    assert!(restarted_at.is_some(), "fio never started, so the target was never restarted");
    assert!(console.contains("FIO VERIFIED") && console.contains("RECONNECT OK"), "guest did not finish cleanly");
    // The restarted process saw the initiator log in again by itself.
    let after_restart = log.rsplit("shutting down").next().unwrap_or("");
    assert!(after_restart.contains("login complete"), "no login to the restarted target:\n{log}");
}
