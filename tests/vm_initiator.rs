//! The Linux open-iscsi initiator in a QEMU guest against the real binary: discovery, login,
//! sg_inq/sg_readcap, ext4 round trip, fio with verification, logout (tests/guest/core.sh).
//! Needs the image from ../shared/vm-initiator/build-image.sh (scripts/install-deps.sh builds it).

mod common;

use common::{repo_root, run_with_timeout, shared_dir, TargetProcess};
use std::process::Command;
use std::time::Duration;

/// Guest-side limit handed to run-in-vm.sh; the host-side one is a little longer.
const GUEST_TIMEOUT_S: u64 = 400;

#[test]
fn linux_initiator_discovers_logs_in_and_does_verified_io() {
    let target = TargetProcess::start_default();
    let run_in_vm = shared_dir().join("vm-initiator/run-in-vm.sh");
    let guest_script = repo_root().join("tests/guest/core.sh");
    let mut cmd = Command::new(&run_in_vm);
    cmd.args(["--portal-port", &target.port().to_string(), "--timeout", &GUEST_TIMEOUT_S.to_string()]);
    if let Ok(vendor) = std::env::var("PALISADE_TEST_EXPECT_VENDOR") {
        // Only meaningful with PALISADE_TEST_EXTERNAL_URL (validating the guest script against tgt).
        cmd.args(["--env", &format!("EXPECT_VENDOR={vendor}")]);
    }
    cmd.arg(&guest_script);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(GUEST_TIMEOUT_S + 60));
    let console = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{console}");
    assert!(out.status.success(), "guest script failed: {:?}\n{console}\n{stderr}", out.status);
    assert!(console.contains("CORE OK"), "guest did not reach the end:\n{console}");
}
