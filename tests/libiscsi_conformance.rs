//! libiscsi's conformance suite (iscsi-test-cu) against a fresh server: the suites listed in
//! tests/conformance/expected-families.txt must show 0 failures and no hang. The work is done by
//! scripts/conformance.sh (usable by hand); results land in target/conformance/palisade.tsv.

mod common;

use common::{repo_root, run_with_timeout, TargetProcess};
use std::process::Command;
use std::time::Duration;

/// The selection takes ~20 s against tgt; the budget covers 3 s CmdSN timeouts and watchdog kills.
const CONFORMANCE_TIMEOUT: Duration = Duration::from_secs(900);

/// A 1 GiB memory LUN 0 (the same selection must pass on the memory backend), and a 512e LUN 1
/// (4096-byte physical blocks) for the tests that need LOGICAL BLOCKS PER PHYSICAL BLOCK >= 2.
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

[[targets.luns]]
id = 1
backend = "memory"
size = "1GiB"
physical_block_size = 4096
"#;

/// The suites holding the tests that skip unless a LUN has several logical blocks per physical
/// block (the runner's ONLY selects suites), and those tests.
const LBPPB_SUITES: &str = r"^SCSI\.(WriteSame10|WriteSame16|CompareAndWrite)$";
const LBPPB_TESTS: [&str; 5] = [
    "SCSI.WriteSame10.UnmapUnaligned",
    "SCSI.WriteSame10.InvalidDataOutSize",
    "SCSI.WriteSame16.UnmapUnaligned",
    "SCSI.WriteSame16.InvalidDataOutSize",
    "SCSI.CompareAndWrite.InvalidDataOutSize",
];

#[test]
fn selected_iscsi_test_cu_suites_pass() {
    run_selection(TargetProcess::start_default(), "palisade");
}

#[test]
fn selected_iscsi_test_cu_suites_pass_on_a_memory_lun() {
    run_selection(TargetProcess::start_with_config(MEMORY_LUN_CONFIG, common::DEFAULT_IQN), "palisade-memory");
}

#[test]
fn tests_needing_several_logical_blocks_per_physical_block_pass_on_a_512e_lun() {
    let target = TargetProcess::start_with_config(MEMORY_LUN_CONFIG, common::DEFAULT_IQN);
    let runner = repo_root().join("scripts/peers/run-cu.py");
    let out_root = repo_root().join("target/conformance/lbppb");
    let out = run_with_timeout(
        Command::new("python3")
            .arg(&runner)
            .arg(target.url(1))
            .arg("palisade-512e")
            .env("ONLY", LBPPB_SUITES)
            .env("OUTROOT", &out_root)
            .current_dir(repo_root()),
        CONFORMANCE_TIMEOUT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "run-cu.py failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = stdout.lines().filter_map(|l| l.strip_prefix("output: ")).next_back().expect("run-cu.py output dir");
    let results = std::fs::read_to_string(std::path::Path::new(dir.trim()).join("results.tsv")).unwrap();
    let passed: Vec<&str> =
        results.lines().filter(|l| l.split('\t').nth(1) == Some("PASS")).filter_map(|l| l.split('\t').next()).collect();
    let failed =
        results.lines().filter(|l| matches!(l.split('\t').nth(1), Some(s) if s != "PASS" && s != "SKIP")).count();
    assert_eq!(failed, 0, "failures on the 512e LUN:\n{results}");
    for test in LBPPB_TESTS {
        assert!(passed.contains(&test), "{test} must run and pass on a 512e LUN:\n{results}");
    }
    drop(target);
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
    assert_still_passing(label);
    // Reaching this point, the server must still be alive (no crash under the suite).
    drop(target);
}

/// Every test of tests/conformance/passing.txt passed in this run: a test that passed before
/// and now fails, skips or vanishes is a regression even when the suite reports no failure.
fn assert_still_passing(label: &str) {
    let expected = std::fs::read_to_string(repo_root().join("tests/conformance/passing.txt")).unwrap();
    let results = std::fs::read_to_string(repo_root().join(format!("target/conformance/{label}.tsv"))).unwrap();
    let passed: std::collections::HashSet<&str> = results
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, rest)| rest.starts_with("PASS"))
        .map(|(test, _)| test)
        .collect();
    let regressed: Vec<&str> = expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter(|t| !passed.contains(t.trim()))
        .collect();
    assert!(regressed.is_empty(), "{label}: tests that used to pass no longer do: {regressed:?}");
    println!("{label}: all {} previously passing tests pass", expected.lines().filter(|l| !l.starts_with('#')).count());
}
