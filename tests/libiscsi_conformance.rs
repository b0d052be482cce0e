//! libiscsi's conformance suite (iscsi-test-cu) against a fresh server: the suites listed in
//! tests/conformance/expected-families.txt must show 0 failures and no hang. The work is done by
//! scripts/conformance.sh (usable by hand); results land in target/conformance/palisade.tsv.

mod common;

use common::{repo_root, run_with_timeout, TargetProcess};
use std::process::Command;
use std::time::Duration;

/// The selection takes ~20 s against tgt; the budget covers 3 s CmdSN timeouts and watchdog kills.
const CONFORMANCE_TIMEOUT: Duration = Duration::from_secs(900);

/// A 1 GiB memory LUN 0 (the same selection must pass on the memory backend).
const MEMORY_LUN_CONFIG: &str = r#"
[[portals]]
name = "test"
listen = "127.0.0.1:{PORT}"
tpgt = 1

[[targets]]
name = "iqn.2026-11.io.palisade:default"

[[targets.luns]]
id = 0
backend = "memory"
size = "1GiB"
"#;

#[test]
fn selected_iscsi_test_cu_suites_pass() {
    run_selection(TargetProcess::start_default(), "palisade");
}

#[test]
fn selected_iscsi_test_cu_suites_pass_on_a_memory_lun() {
    run_selection(TargetProcess::start_with_config(MEMORY_LUN_CONFIG, common::DEFAULT_IQN), "palisade-memory");
}

fn run_selection(target: TargetProcess, label: &str) {
    let script = repo_root().join("scripts/conformance.sh");
    let out = run_with_timeout(
        Command::new("bash").arg(&script).arg(target.url(0)).arg(label).current_dir(repo_root()),
        CONFORMANCE_TIMEOUT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with(&format!("conformance {label}: run="))),
        "conformance.sh printed no summary:\n{stdout}\n{stderr}"
    );
    assert!(out.status.success(), "conformance failures ({}):\n{stdout}\n{stderr}", out.status);
    // Reaching this point, the server must still be alive (no crash under the suite).
    drop(target);
}
