//! `palisade bench` end to end: the real binary against the real server (memory and file LUNs,
//! CHAP), its JSON report checked for consistency, `--verify` catching a block corrupted behind
//! the target's back, and the same client against tgt and istgt (started through
//! scripts/peers/peers.sh, which installs the Debian packages when missing), including sessions
//! of several connections against istgt.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::process::{Command, Output};
use std::time::Duration;

use common::{repo_root, run_with_timeout, TargetProcess, DEFAULT_IQN};
use serde_json::Value;

const RUN_TIMEOUT: Duration = Duration::from_secs(120);
const EXIT_MISMATCH: i32 = 3;

fn bench(args: &[&str]) -> Output {
    run_with_timeout(Command::new(env!("CARGO_BIN_EXE_palisade")).arg("bench").args(args), RUN_TIMEOUT)
}

/// Runs bench with `--json`, returns (exit code, report).
fn bench_json(args: &[&str]) -> (i32, Value) {
    let mut all = args.to_vec();
    all.push("--json");
    let out = bench(&all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "bench {args:?} printed no JSON ({e}); exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

fn f(v: &Value, path: &[&str]) -> f64 {
    let mut at = v;
    for p in path {
        at = &at[*p];
    }
    at.as_f64().unwrap_or_else(|| panic!("{path:?} missing in report:\n{v:#}"))
}

/// The server with one LUN 0 (`lun` holds its backend keys) and optional CHAP. Written as
/// literal TOML in the documented format (docs/configuration.md) because
/// `common::config_toml` still renders an older LUN schema (`backend = { type = … }`).
fn start(lun: &str, chap: Option<(&str, &str)>) -> TargetProcess {
    let mut toml = String::from(
        "data_dir = \"{DATA_DIR}\"\n\n[[portals]]\nname = \"test\"\nlisten = \"127.0.0.1:{PORT}\"\ntpgt = 1\n\n",
    );
    toml += &format!("[[targets]]\nname = \"{DEFAULT_IQN}\"\nportals = [\"test\"]\n");
    if let Some((user, secret)) = chap {
        toml += &format!("\n[targets.chap]\nuser = \"{user}\"\nsecret = \"{secret}\"\n");
    }
    toml += &format!("\n[[targets.luns]]\nid = 0\n{lun}\n");
    TargetProcess::start_with_config(&toml, DEFAULT_IQN)
}

fn memory_lun(size: &str) -> TargetProcess {
    start(&format!("backend = \"memory\"\nsize = \"{size}\""), None)
}

/// A timed run's numbers must agree with each other, whatever the speed.
fn assert_sane(r: &Value, block_size: u64, write: bool) {
    let ios = f(r, &["ios"]);
    assert!(ios > 0.0, "no I/O completed:\n{r:#}");
    assert_eq!(f(r, &["errors"]), 0.0, "SCSI errors:\n{r:#}");
    assert_eq!(f(r, &["bytes"]), ios * block_size as f64);
    let (this, other) = if write { ("write", "read") } else { ("read", "write") };
    assert_eq!(f(r, &[this, "ios"]), ios);
    assert_eq!(f(r, &[other, "ios"]), 0.0);
    let seconds = f(r, &["seconds"]);
    assert!(seconds > 0.5 && seconds < 5.0, "a 1 s run took {seconds} s");
    assert!((f(r, &["iops"]) - ios / seconds).abs() < 1e-6 * ios);
    let lat = |k: &str| f(r, &["latency", k]);
    assert!(lat("min_us") > 0.0);
    assert!(lat("min_us") <= lat("p50_us") && lat("p50_us") <= lat("p99_us"));
    assert!(lat("p99_us") <= lat("p999_us") && lat("p999_us") <= lat("max_us"));
    assert!(f(r, &["client_cpu", "total_s"]) > 0.0);
}

#[test]
fn timed_read_and_write_runs_report_consistent_json() {
    let target = memory_lun("64MiB");
    let url = target.url(0);
    let (code, w) =
        bench_json(&[&url, "--pattern", "randwrite", "--block-size", "8k", "--qd", "4", "--duration", "1s"]);
    assert_eq!(code, 0, "{w:#}");
    assert_sane(&w, 8192, true);
    assert_eq!(w["targets"][0]["blocks"].as_u64(), Some(64 << 11));
    assert_eq!(w["targets"][0]["block_len"].as_u64(), Some(512));
    let (code, r) = bench_json(&[&url, "--pattern", "randread", "--qd", "8", "--sessions", "2", "--duration", "1s"]);
    assert_eq!(code, 0, "{r:#}");
    assert_sane(&r, 4096, false);
    assert_eq!(r["sessions"].as_u64(), Some(2));
}

#[test]
fn byte_budget_and_mixed_pattern() {
    let target = memory_lun("16MiB");
    let (code, r) = bench_json(&[
        &target.url(0),
        "--pattern",
        "write",
        "--block-size",
        "256k",
        "--qd",
        "8",
        "--total-bytes",
        "16MiB",
    ]);
    assert_eq!(code, 0, "{r:#}");
    // 16 MiB in 256 KiB writes: exactly 64 commands, each larger than FirstBurstLength, so R2Ts answered.
    assert_eq!(f(&r, &["write", "ios"]), 64.0);
    assert_eq!(f(&r, &["bytes"]), (16 << 20) as f64);
    let (code, m) =
        bench_json(&[&target.url(0), "--pattern", "mixed", "--read-pct", "50", "--qd", "8", "--total-bytes", "4MiB"]);
    assert_eq!(code, 0, "{m:#}");
    let (reads, writes) = (f(&m, &["read", "ios"]), f(&m, &["write", "ios"]));
    assert_eq!(reads + writes, 1024.0);
    assert!(reads > 350.0 && writes > 350.0, "50 % mix gave {reads} reads / {writes} writes");
}

#[test]
fn verify_reports_exactly_the_block_corrupted_in_the_backing_file() {
    let target = start("backend = \"file\"\npath = \"{DATA_DIR}/lun0.img\"\nsize = \"8MiB\"", None);
    let url = target.url(0);
    let (code, w) = bench_json(&[
        &url,
        "--pattern",
        "write",
        "--verify",
        "--block-size",
        "64k",
        "--qd",
        "8",
        "--total-bytes",
        "8MiB",
    ]);
    assert_eq!(code, 0, "{w:#}");
    assert_eq!(f(&w, &["verify", "written_blocks"]), 16384.0);
    // The whole 8 MiB read back with --verify: the same run before and after the damage.
    let verified_read = || {
        bench_json(&[
            &url,
            "--pattern",
            "read",
            "--verify",
            "--block-size",
            "64k",
            "--qd",
            "8",
            "--total-bytes",
            "8MiB",
        ])
    };
    let (code, clean) = verified_read();
    assert_eq!(code, 0, "{clean:#}");
    assert_eq!(f(&clean, &["verify", "checked_blocks"]), 16384.0);
    assert_eq!(f(&clean, &["verify", "mismatch_count"]), 0.0);

    // One flipped byte in the filler of LBA 5000, written straight into the image the target
    // reads with positional I/O (same page cache).
    const BAD_LBA: u64 = 5000;
    let image =
        OpenOptions::new().read(true).write(true).open(target.data_dir().join("lun0.img")).expect("open LUN image");
    let mut byte = [0u8; 1];
    image.read_exact_at(&mut byte, BAD_LBA * 512 + 100).unwrap();
    byte[0] ^= 0x40;
    image.write_all_at(&byte, BAD_LBA * 512 + 100).unwrap();
    image.sync_all().unwrap();

    let (code, bad) = verified_read();
    assert_eq!(code, EXIT_MISMATCH, "{bad:#}");
    assert_eq!(f(&bad, &["verify", "mismatch_count"]), 1.0, "{bad:#}");
    let m = &bad["verify"]["mismatches"][0];
    assert_eq!(m["lba"].as_u64(), Some(BAD_LBA));
    assert_eq!(m["problem"].as_str(), Some("checksum mismatch"));
    assert_eq!(f(&bad, &["errors"]), 0.0);
}

#[test]
fn verify_flags_a_block_overwritten_through_the_target() {
    // A raw WRITE of foreign data through iSCSI (here: bench itself, without --verify) over a
    // verified region shows up as "no bench pattern" on exactly those blocks.
    let target = memory_lun("4MiB");
    let url = target.url(0);
    let (code, _) =
        bench_json(&[&url, "--pattern", "write", "--verify", "--block-size", "1m", "--total-bytes", "4MiB"]);
    assert_eq!(code, 0);
    let (code, _) = bench_json(&[
        &url,
        "--pattern",
        "write",
        "--lba-range",
        "777:778",
        "--block-size",
        "512",
        "--total-bytes",
        "512",
    ]);
    assert_eq!(code, 0);
    let (code, r) = bench_json(&[&url, "--pattern", "read", "--verify", "--block-size", "1m", "--total-bytes", "4MiB"]);
    assert_eq!(code, EXIT_MISMATCH);
    assert_eq!(f(&r, &["verify", "mismatch_count"]), 1.0, "{r:#}");
    assert_eq!(r["verify"]["mismatches"][0]["lba"].as_u64(), Some(777));
    assert_eq!(r["verify"]["mismatches"][0]["problem"].as_str(), Some("no bench pattern"));
}

#[test]
fn chap_credentials_in_the_url() {
    let target = start("backend = \"memory\"\nsize = \"8MiB\"", Some(("bench-user", "bench-secret-16b")));
    let url = format!("iscsi://bench-user%bench-secret-16b@{}/{}/0", target.portal(), DEFAULT_IQN);
    let (code, r) = bench_json(&[&url, "--total-bytes", "1MiB"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(f(&r, &["read", "ios"]), 256.0);
    assert!(!r.to_string().contains("bench-secret"), "the secret leaked into the report");

    let wrong = format!("iscsi://bench-user%not-the-secret-x@{}/{}/0", target.portal(), DEFAULT_IQN);
    let out = bench(&[&wrong, "--total-bytes", "1MiB"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("authentication failed"), "{stderr}");
    let none = format!("iscsi://{}/{}/0", target.portal(), DEFAULT_IQN);
    let out = bench(&[&none, "--total-bytes", "1MiB"]);
    assert_eq!(out.status.code(), Some(2), "login without CHAP must fail");
}

#[test]
fn bad_options_are_refused_before_any_io() {
    let target = memory_lun("4MiB");
    for (args, needle) in [
        (vec!["--block-size", "1000"], "not a multiple"),
        (vec!["--lba-range", "0:100000"], "outside"),
        (vec!["--qd", "0"], "at least 1"),
        (vec!["--connections", "0"], "at least 1"),
        (vec!["--connections", "4", "--qd", "2"], "at least --connections"),
    ] {
        let mut all = vec![target.url(0)];
        all.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = bench(&refs);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let out = bench(&["iscsi://127.0.0.1:1/iqn.x:y/0", "--duration", "1s"]);
    assert_eq!(out.status.code(), Some(2), "nothing listens on port 1");
}

/// Starts a peer target with scripts/peers/peers.sh (installing its Debian package when missing)
/// and returns its URL; the guard stops it again unless it was already running.
fn peer(name: &str) -> (String, StopPeer) {
    let peers = repo_root().join("scripts/peers/peers.sh");
    let was_running =
        Command::new("bash").arg(&peers).args(["status", name]).output().map(|o| o.status.success()).unwrap_or(false);
    let start = run_with_timeout(Command::new("bash").arg(&peers).args(["start", name]), Duration::from_secs(300));
    assert!(
        start.status.success(),
        "peers.sh start {name} failed (it installs the package with apt):\n{}{}",
        String::from_utf8_lossy(&start.stdout),
        String::from_utf8_lossy(&start.stderr)
    );
    let guard = StopPeer { script: peers.clone(), name: name.to_string(), keep: was_running };
    let url = String::from_utf8(Command::new("bash").arg(&peers).args(["url", name]).output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    assert!(url.starts_with("iscsi://"), "peers.sh url {name}: {url:?}");
    (url, guard)
}

struct StopPeer {
    script: std::path::PathBuf,
    name: String,
    keep: bool,
}

impl Drop for StopPeer {
    fn drop(&mut self) {
        if !self.keep {
            let _ = Command::new("bash").arg(&self.script).args(["stop", &self.name]).output();
        }
    }
}

/// tgt (Debian's tgt 1.0.85 on 127.0.0.1:3261 via peers.sh): the bench must interoperate with a
/// target nobody here wrote — login, R2T-driven writes, verification.
#[test]
fn against_tgt() {
    let (url, _stop) = peer("tgt");
    let (code, r) = bench_json(&[&url, "--pattern", "randread", "--qd", "16", "--duration", "1s"]);
    assert_eq!(code, 0, "{r:#}");
    assert_sane(&r, 4096, false);
    // A region far from LBA 0 (other users of the shared LUN read the start), written in
    // 1 MiB commands that need several R2Ts each, then verified.
    let range = "1048576:1052672";
    let (code, w) = bench_json(&[
        &url,
        "--pattern",
        "write",
        "--verify",
        "--lba-range",
        range,
        "--block-size",
        "1m",
        "--qd",
        "4",
        "--total-bytes",
        "2MiB",
    ]);
    assert_eq!(code, 0, "{w:#}");
    assert_eq!(f(&w, &["verify", "written_blocks"]), 4096.0);
    let (code, v) = bench_json(&[
        &url,
        "--pattern",
        "randread",
        "--verify",
        "--lba-range",
        range,
        "--block-size",
        "4k",
        "--qd",
        "8",
        "--total-bytes",
        "2MiB",
    ]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(f(&v, &["verify", "checked_blocks"]), 4096.0);
    assert_eq!(f(&v, &["verify", "mismatch_count"]), 0.0);
}

/// istgt (Debian's istgt 0.4 on 127.0.0.1:3262 via peers.sh, MaxConnections 8): the same client,
/// and sessions of several connections (MC/S, RFC 7143 §5.3) sharing one CmdSN window — the
/// added connections log in with the session's TSIH and log out with reason "close connection".
#[test]
fn against_istgt_with_several_connections_per_session() {
    let (url, _stop) = peer("istgt");
    let (code, r) = bench_json(&[&url, "--pattern", "randread", "--qd", "16", "--duration", "1s"]);
    assert_eq!(code, 0, "{r:#}");
    assert_sane(&r, 4096, false);
    // A region of its own (other tests and the compare script use the start of the LUN).
    let range = "1064960:1069056";
    let (code, w) = bench_json(&[
        &url,
        "--pattern",
        "write",
        "--verify",
        "--lba-range",
        range,
        "--block-size",
        "64k",
        "--qd",
        "8",
        "--sessions",
        "2",
        "--connections",
        "4",
        "--total-bytes",
        "2MiB",
    ]);
    assert_eq!(code, 0, "{w:#}");
    assert_eq!(f(&w, &["connections_per_session"]), 4.0);
    assert_eq!(f(&w, &["verify", "written_blocks"]), 4096.0);
    let (code, v) = bench_json(&[
        &url,
        "--pattern",
        "mixed",
        "--verify",
        "--lba-range",
        range,
        "--block-size",
        "4k",
        "--qd",
        "6",
        "--sessions",
        "2",
        "--connections",
        "3",
        "--duration",
        "1s",
    ]);
    assert_eq!(code, 0, "{v:#}");
    assert!(f(&v, &["verify", "checked_blocks"]) > 0.0, "{v:#}");
    assert_eq!(f(&v, &["verify", "mismatch_count"]), 0.0, "{v:#}");
    assert_eq!(f(&v, &["errors"]), 0.0, "{v:#}");
}

/// Palisade offers one connection per session (MaxConnections=1): asking for more is refused
/// with the negotiated limit named, before any I/O.
#[test]
fn more_connections_than_the_target_allows_are_refused() {
    let target = memory_lun("4MiB");
    let out = bench(&[&target.url(0), "--connections", "2", "--qd", "2", "--duration", "1s"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MaxConnections=1"), "{stderr}");
    // The refused session was logged out or dropped: the target still serves a plain run.
    let (code, r) = bench_json(&[&target.url(0), "--pattern", "read", "--duration", "1s"]);
    assert_eq!(code, 0, "{r:#}");
}
