//! Real cluster software against Palisade, in the repository's VM harness (scripts/vm/; the
//! guest is Debian 12 with open-iscsi, so the Linux kernel initiator does the SCSI):
//!
//! * fence_scsi (fence-agents 4.12, the Pacemaker agent): two nodes as two initiator identities;
//!   unfence both, node A fences node B (PREEMPT AND ABORT), B's writes fail with RESERVATION
//!   CONFLICT, unfencing B lets it write again (tests/guest/fence_scsi.sh).
//! * sbd 1.5: header, slots and messages written through one identity and read through the
//!   other; `sbd watch` on the softdog watchdog obeys a `reset` sent through the other identity by
//!   rebooting the guest (tests/guest/sbd.sh).
//! * dm-multipath: one map over two sessions (two portal groups of one target, one per guest
//!   portal address); the kernel's ALUA handler (scsi_dh_alua) attaches to both paths and finds
//!   them active/optimized, sg_rtpg / sg_vpd show target port group 1 and relative ports 1 and 2
//!   (SPC-4 §5.15); fio with crc32c verification runs without error while one path is logged
//!   out and back in (tests/guest/multipath.sh).
//!
//! Each test prints the guest console; the VMs run one at a time (TCG on a shared CPU).

mod common;

use common::vm::{assert_contains, transcript};
use common::{free_port, guest_script, run_with_timeout, vm_runner, TargetProcess};
use std::process::Output;
use std::sync::Mutex;
use std::time::Duration;

const GUEST_TIMEOUT_S: u64 = 900;
/// run-in-vm.sh's status when the guest ended (here: sbd rebooted it) without reporting one.
const VM_ENDED_WITHOUT_STATUS: i32 = 125;
const NODE_A: &str = "iqn.2026-11.test.cluster:node-a";
const NODE_B: &str = "iqn.2026-11.test.cluster:node-b";

/// One TCG guest at a time: three at once on two shared cores make sbd's watchdog timing and
/// every timeout needlessly tight.
static ONE_VM: Mutex<()> = Mutex::new(());

/// Runs SCRIPT in the guest against a fresh default target with the two node identities. The
/// target is returned so that it outlives the test's assertions (its log is printed on a panic).
fn run_guest(script: &str) -> (TargetProcess, Output, String) {
    let _vm = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let target = TargetProcess::start_default();
    let cmd = vm_runner(target.port(), GUEST_TIMEOUT_S);
    run_guest_with(target, cmd, script)
}

/// The default target's LUN served on two portal groups: TPGT 1 on the target's port, TPGT 2 on
/// the returned one (two target ports, relative ports 1 and 2, of target port group 1).
fn start_two_portal_groups() -> (TargetProcess, u16) {
    let second = free_port();
    let lun = "backend = \"file\"\npath = \"{DATA_DIR}/lun0.img\"\nsize = \"1GiB\"";
    (common::start_two_portal_groups(second, lun), second)
}

fn run_guest_with(
    target: TargetProcess,
    mut cmd: std::process::Command,
    script: &str,
) -> (TargetProcess, Output, String) {
    cmd.args(["--initiator-name", NODE_A, "--second-initiator-name", NODE_B]);
    cmd.arg(guest_script(script));
    let out = run_with_timeout(&mut cmd, Duration::from_secs(GUEST_TIMEOUT_S + 120));
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("----- guest console ({script}) -----\n{console}");
    println!("----- run-in-vm.sh stderr -----\n{}", String::from_utf8_lossy(&out.stderr));
    (target, out, console)
}

/// The two nodes' disks as the guest script reports them: "node A: /dev/sdX, node B: /dev/sdY ...".
fn node_devices(console: &str) -> (String, String) {
    let line = console.lines().find(|l| l.starts_with("node A: /dev/")).expect("the guest names the nodes' disks");
    let devs: Vec<&str> = line.split([' ', ',']).filter(|w| w.starts_with("/dev/")).collect();
    assert_eq!(devs.len(), 2, "{line}");
    (devs[0].to_string(), devs[1].to_string())
}

#[test]
fn fence_scsi_fences_and_unfences_a_node_through_persistent_reservations() {
    let (_target, out, console) = run_guest("fence_scsi.sh");
    println!(
        "----- transcript -----\n{}",
        transcript(
            &console,
            &["# fence_scsi", "Success:", "Status:", "(exit", "registered keys", "type:", "write to", "sg_raw"]
        )
    );
    assert!(out.status.success(), "guest script failed: {:?}", out.status);
    assert_contains(&console, "FENCE_SCSI OK");
    assert_contains(&console, "Success: Powered OFF");
    assert_contains(&console, "Status: OFF");
    // Fenced: a plain write fails with EBADE, and the SCSI status is RESERVATION CONFLICT.
    let (dev_a, dev_b) = node_devices(&console);
    assert_contains(
        &console,
        &format!("node B: write to {dev_b} failed: dd: error writing '{dev_b}': Invalid exchange"),
    );
    assert_contains(&console, "node B: sg_raw WRITE(10): SCSI Status: Reservation Conflict");
    assert_contains(&console, &format!("fence_scsi --devices={dev_a} --key=b2b2 --action=off"));
    // B writes again after being unfenced: the last "node B" outcome is a success.
    let last_b = console.lines().rfind(|l| l.starts_with("node B: ")).unwrap_or_default();
    assert!(last_b.contains("succeeded"), "node B's last write: {last_b}");
}

#[test]
fn sbd_messages_cross_identities_and_a_reset_message_reboots_the_watcher() {
    let (_target, out, console) = run_guest("sbd.sh");
    println!(
        "----- transcript -----\n{}",
        transcript(
            &console,
            &[
                "# sbd",
                "Timeout (",
                "\tnode-",
                "Monitoring slot",
                "watchdog timeout",
                "Received command",
                "sysrq: Resetting",
                "FAIL",
            ]
        )
    );
    assert!(!console.contains("FAIL:"), "guest script failed");
    assert_eq!(
        out.status.code(),
        Some(VM_ENDED_WITHOUT_STATUS),
        "the guest must go down without a script status (rebooted by sbd): {:?}",
        out.status
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("the guest rebooted"), "run-in-vm.sh did not see a reboot");
    assert_contains(&console, "0\tnode-a\ttest\tnode-b");
    // The watcher reads node A's slot through node A's device, where node B's messages arrive.
    let (dev_a, _) = node_devices(&console);
    assert_contains(&console, &format!("Monitoring slot 0 on disk {dev_a}"));
    assert_contains(&console, &format!("Received command test from node-b on disk {dev_a}"));
    assert_contains(&console, &format!("Received command reset from node-b on disk {dev_a}"));
    let reset = console.find("Received command reset").unwrap();
    assert!(console[reset..].contains("sysrq: Resetting"), "no reset after sbd received the message");
}

#[test]
fn dm_multipath_with_alua_keeps_verified_io_running_while_a_path_goes_and_comes_back() {
    let _vm = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let (target, second_port) = start_two_portal_groups();
    let mut cmd = vm_runner(target.port(), GUEST_TIMEOUT_S);
    cmd.args(["--second-portal-port", &second_port.to_string(), "--initiator-name", NODE_A]);
    let (_target, out, console) = run_guest_with(target, cmd, "multipath.sh");
    println!(
        "----- transcript -----\n{}",
        transcript(
            &console,
            &["tcp: [", " sd", "paths:", "--logout", "--login", "successful", "err=", "fio:", "alua", "hwhandler"]
        )
    );
    assert!(out.status.success(), "guest script failed: {:?}", out.status);
    assert_contains(&console, "MULTIPATH OK");
    let counts: Vec<&str> = console.lines().filter_map(|l| l.strip_prefix("paths: ")).collect();
    assert_eq!(counts, ["2", "1", "2"], "path count over the run");
    // SPC-4 §5.15: the ALUA handler attached to both paths, each a distinct relative port.
    let attached: Vec<&str> = console.lines().filter(|l| l.starts_with("alua: sd")).collect();
    assert_eq!(attached.len(), 2, "{attached:?}");
    assert!(attached.iter().all(|l| l.ends_with("dh_state=alua access_state=active/optimized")), "{attached:?}");
    assert_contains(&console, "alua: relative target ports of the paths: 1 2");
    assert_contains(&console, "hwhandler='1 alua', path group prio=50 status=active");
    assert_contains(&console, "fio still running with both paths back");
    let fio = console.lines().find(|l| l.starts_with("fio: ")).expect("fio summary line");
    assert!(fio.starts_with("fio: err= 0,"), "fio errors: {fio}");
}
