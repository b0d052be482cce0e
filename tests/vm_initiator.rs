//! The Linux open-iscsi initiator in a QEMU guest against the real binary: discovery, login,
//! sg_inq/sg_readcap, ext4 round trip, fio with verification, logout (tests/guest/core.sh).
//! Runs in the repository's VM harness (scripts/vm/run-in-vm.sh; it builds its guest image on first
//! use, scripts/install-deps.sh builds it ahead).

mod common;

use common::{guest_script, run_with_timeout, vm_runner, TargetProcess};
use std::time::Duration;

/// Guest-side limit handed to run-in-vm.sh; the host-side one is a little longer.
const GUEST_TIMEOUT_S: u64 = 400;

#[test]
fn linux_initiator_discovers_logs_in_and_does_verified_io() {
    let target = TargetProcess::start_default();
    let mut cmd = vm_runner(target.port(), GUEST_TIMEOUT_S);
    if let Ok(vendor) = std::env::var("PALISADE_TEST_EXPECT_VENDOR") {
        // Only meaningful with PALISADE_TEST_EXTERNAL_URL (validating the guest script against tgt).
        cmd.args(["--env", &format!("EXPECT_VENDOR={vendor}")]);
    }
    cmd.arg(guest_script("core.sh"));
    let out = run_with_timeout(&mut cmd, Duration::from_secs(GUEST_TIMEOUT_S + 60));
    let console = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{console}");
    assert!(out.status.success(), "guest script failed: {:?}\n{console}\n{stderr}", out.status);
    assert!(console.contains("CORE OK"), "guest did not reach the end:\n{console}");
}
