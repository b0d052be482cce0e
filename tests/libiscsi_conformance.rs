//! libiscsi's conformance suite (iscsi-test-cu) against a fresh server: the suites listed in
//! tests/conformance/expected-families.txt must show 0 failures and no hang. The work is done by
//! scripts/conformance.sh (usable by hand); results land in target/conformance/palisade.tsv.

mod common;

use common::{repo_root, run_with_timeout, TargetProcess};
use std::process::Command;
use std::time::Duration;

/// The selection takes ~20 s against tgt; the budget covers 3 s CmdSN timeouts and watchdog kills.
const CONFORMANCE_TIMEOUT: Duration = Duration::from_secs(900);

#[test]
fn selected_iscsi_test_cu_suites_pass() {
    let target = TargetProcess::start_default();
    let script = repo_root().join("scripts/conformance.sh");
    let out = run_with_timeout(
        Command::new("bash").arg(&script).arg(target.url(0)).arg("palisade").current_dir(repo_root()),
        CONFORMANCE_TIMEOUT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("conformance palisade: run=")),
        "conformance.sh printed no summary:\n{stdout}\n{stderr}"
    );
    assert!(out.status.success(), "conformance failures ({}):\n{stdout}\n{stderr}", out.status);
    // Reaching this point, the server must still be alive (no crash under the suite).
    drop(target);
}
