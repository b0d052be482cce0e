//! ODX (POPULATE TOKEN / WRITE USING TOKEN) from the Linux kernel initiator with Debian's ddpt
//! and ddptctl, in the repository's VM harness (tests/guest/odx.sh): copies between two file
//! LUNs and within one, a token handed from ddptctl's POPULATE TOKEN to its WRITE USING TOKEN,
//! the block device zero token, and a revoked and a bit-flipped token refused — all verified
//! byte for byte in the guest.
//!
//! `PALISADE_ODX_BENCH_MIB=N` adds a timed N MiB copy by ODX and by the initiator
//! (`VM_MIB=N scripts/odx-bench.sh` runs it).

mod common;

use common::{guest_script, run_with_timeout, vm_runner, ConfigSpec, LunSpec, TargetProcess};
use std::time::Duration;

const GUEST_TIMEOUT_S: u64 = 900;

#[test]
fn linux_initiator_copies_and_zeroes_by_token_and_abused_tokens_move_nothing() {
    let bench_mib: u64 = std::env::var("PALISADE_ODX_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let size = format!("{}MiB", bench_mib.max(256));
    let mut spec = ConfigSpec::single_file_lun(&size);
    spec.luns.push(LunSpec { id: 1, file: Some("lun1.img".into()), size, block_size: 512 });
    let target = TargetProcess::start_with_spec(&spec);
    // Under TCG the initiator moves ~4 MiB/s each way: a benchmark needs its own budget.
    let guest_timeout = GUEST_TIMEOUT_S + bench_mib * 2;
    let mut cmd = vm_runner(target.port(), guest_timeout);
    cmd.args(["--env", &format!("BENCH_MIB={bench_mib}")]);
    cmd.arg(guest_script("odx.sh"));
    let timeout = Duration::from_secs(guest_timeout + 60);
    let out = run_with_timeout(&mut cmd, timeout);
    let console = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{console}");
    assert!(out.status.success(), "guest script failed: {:?}\n{stderr}\n{}", out.status, target.log());
    assert!(console.contains("ODX OK"), "guest did not reach the end:\n{console}");
    for line in console.lines().filter(|l| l.starts_with("BENCH ")) {
        eprintln!("{line}");
    }
}
