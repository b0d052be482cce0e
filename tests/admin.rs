//! The operator's view of a running server (issues 4 and 6), through the real binary: two
//! initiators register and one reserves, then `palisade pr show`, `palisade sessions` and
//! `palisade luns` report exactly that over the admin socket, the Prometheus endpoint counts
//! exactly the I/O done, the socket is private (0600), and the CHAP secret shows up nowhere.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use bytes::Bytes;
use common::raw_initiator::*;
use common::{free_port, run_with_timeout, unique_temp_dir, TargetProcess, DEFAULT_IQN};
use pdu::bhs::BhsBuf;
use pdu::Opcode;
use serde_json::Value;

const HOST_A: &str = "iqn.2026-11.test.palisade:admin-a";
const HOST_B: &str = "iqn.2026-11.test.palisade:admin-b";
const ISID_A: [u8; 6] = [0x80, 0, 0, 0, 0, 0x0a];
const ISID_B: [u8; 6] = [0x80, 0, 0, 0, 0, 0x0b];
const CHAP_USER: &str = "admin-test-user";
/// Distinctive, so a leak in any output is unmistakable.
const CHAP_SECRET: &str = "Zq9-LeakCanary42";
const KEY_A: u64 = 0xA1A1_0000_0000_00A1;
const KEY_B: u64 = 0xB2B2;
/// SPC-4 Table 212: Write Exclusive, Registrants Only.
const WERO: u8 = 5;
const WRITES: u32 = 7;
const READS: u32 = 3;

/// A memory LUN behind CHAP, the admin socket in the data dir, metrics on a loopback port.
fn start(metrics_port: u16) -> TargetProcess {
    // `[targets.chap]` after `[[targets.luns]]` still belongs to the (only) target.
    let extra = format!(
        "[targets.chap]\nuser = \"{CHAP_USER}\"\nsecret = \"{CHAP_SECRET}\"\n\n\
         [admin]\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n"
    );
    let toml = format!("data_dir = \"{{DATA_DIR}}\"\n{}", memory_target_toml(&extra));
    TargetProcess::start_with_config(&toml, DEFAULT_IQN)
}

fn login(t: &TargetProcess, initiator: &str, isid: [u8; 6], digests: bool) -> RawInitiator {
    let opts =
        LoginOptions::normal(initiator, DEFAULT_IQN).isid(isid).chap(CHAP_USER, CHAP_SECRET).digests(digests, digests);
    let mut ini = RawInitiator::login_ok(&t.portal(), &opts);
    ini.clear_unit_attention(0);
    ini
}

/// PERSISTENT RESERVE OUT with a basic 24-byte parameter list (SPC-4 §6.16.3).
fn pr_out(ini: &mut RawInitiator, action: u8, kind: u8, key: u64, sa_key: u64) {
    let mut param = [0u8; 24];
    param[0..8].copy_from_slice(&key.to_be_bytes());
    param[8..16].copy_from_slice(&sa_key.to_be_bytes());
    let cdb = [0x5F, action, kind, 0, 0, 0, 0, 0, 24, 0];
    ini.exec_good(0, &cdb, 0, &param);
}

/// `palisade ARGS...`, with a timeout.
fn palisade(args: &[&str]) -> Output {
    run_with_timeout(Command::new(env!("CARGO_BIN_EXE_palisade")).args(args), Duration::from_secs(20))
}

fn stdout_ok(args: &[&str]) -> String {
    let out = palisade(args);
    assert!(out.status.success(), "palisade {args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn json(args: &[&str]) -> Value {
    let text = stdout_ok(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("palisade {args:?} printed no JSON ({e}):\n{text}"))
}

/// GET /metrics: the body, and its samples as "name{labels}" → value.
fn scrape(port: u16) -> (String, HashMap<String, f64>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").expect("HTTP head and body");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    let samples = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("sample line");
            (name.to_string(), value.parse::<f64>().expect("sample value"))
        })
        .collect();
    (body.to_string(), samples)
}

/// A sample of LUN 0 of the default target; `extra` are further labels ("op=\"write\"").
fn lun_sample(samples: &HashMap<String, f64>, name: &str, extra: &str) -> f64 {
    let labels = format!("target=\"{DEFAULT_IQN}\",lun=\"0\"");
    let key = if extra.is_empty() { format!("{name}{{{labels}}}") } else { format!("{name}{{{labels},{extra}}}") };
    *samples.get(&key).unwrap_or_else(|| panic!("no sample {key}"))
}

#[test]
fn operators_see_reservations_sessions_luns_and_exact_metrics() {
    let metrics_port = free_port();
    let mut t = start(metrics_port);
    let dir = t.data_dir().to_path_buf();
    let socket = dir.join("palisade.sock");
    let socket_arg = socket.to_string_lossy().into_owned();
    let dir_arg = dir.to_string_lossy().into_owned();

    // The socket exists only for the server's user.
    let mode = std::fs::metadata(&socket).expect("admin socket in the data dir").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "admin socket mode {mode:o}");

    // A: digests on, registers and reserves WERO. B: no digests, registers (ignore existing key).
    let mut a = login(&t, HOST_A, ISID_A, true);
    let mut b = login(&t, HOST_B, ISID_B, false);
    pr_out(&mut a, 0, 0, 0, KEY_A);
    pr_out(&mut b, 6, 0, 0, KEY_B);
    pr_out(&mut a, 1, WERO, KEY_A, 0);
    for i in 0..WRITES {
        a.write10(0, i * 8, &[i as u8; 4096]);
    }
    for i in 0..READS {
        assert_eq!(b.read10(0, i * 8, 8), vec![i as u8; 4096]);
    }
    // One READ past the end of the 16 MiB LUN: ILLEGAL REQUEST, LBA OUT OF RANGE.
    let past_end = b.exec(0, &read10_cdb(0x10_0000, 1), 512, &[]);
    assert_sense(&past_end, 0x05, 0x21, 0x00);
    // One wrong secret: an authentication failure at login.
    let wrong =
        LoginOptions::normal(HOST_B, DEFAULT_IQN).isid([0x80, 0, 0, 0, 0, 0x0c]).chap(CHAP_USER, "not-the-secret1");
    assert_eq!(RawInitiator::login_refused(&t.portal(), &wrong), LoginError::Status(2, 1));
    // One PDU with an opcode no initiator may send: Reject, command not supported.
    let bhs = BhsBuf::new(Opcode(0x1c)).flags(0x80).itt(0x77).u32(24, b.cmd_sn).u32(28, b.exp_stat_sn);
    let wire = b.wire(&pdu::OutPdu::new(bhs, Bytes::new()));
    b.send_bytes(&wire);
    assert_eq!(b.expect_reject().reason, 0x05);

    // `palisade pr show --json`: both keys with their ports, A holds WERO.
    let pr = json(&["pr", "show", "--data-dir", &dir_arg, "--json"]);
    let luns = pr.as_array().expect("one entry per LUN");
    assert_eq!(luns.len(), 1, "{pr:#}");
    let lun = &luns[0];
    assert_eq!((lun["target"].as_str(), lun["lun"].as_u64()), (Some(DEFAULT_IQN), Some(0)));
    assert_eq!(lun["generation"], 2, "two registrations; RESERVE leaves PRgeneration alone (SPC-4 §6.16.2)");
    let port_a = format!("{HOST_A},i,0x80000000000a");
    let port_b = format!("{HOST_B},i,0x80000000000b");
    let target_port = format!("{DEFAULT_IQN},t,0x0001");
    let regs = lun["registrants"].as_array().expect("registrants");
    let find = |port: &str| {
        regs.iter().find(|r| r["initiator_port"] == port).unwrap_or_else(|| panic!("{port} not in {pr:#}"))
    };
    assert_eq!(find(&port_a)["key"], format!("0x{KEY_A:016x}"));
    assert_eq!(find(&port_b)["key"], format!("0x{KEY_B:016x}"));
    assert_eq!(find(&port_a)["target_port"], target_port.as_str());
    assert_eq!((find(&port_a)["holder"].as_bool(), find(&port_b)["holder"].as_bool()), (Some(true), Some(false)));
    let res = &lun["reservation"];
    assert_eq!((res["type_code"].as_u64(), res["type_short"].as_str()), (Some(WERO as u64), Some("WERO")));
    assert_eq!(res["holder_key"], format!("0x{KEY_A:016x}"));
    assert_eq!(res["holder_initiator_port"], port_a.as_str());
    assert_eq!(res["scope"], "LU_SCOPE");
    // The table says the same for a human.
    let table = stdout_ok(&["pr", "show", "--socket", &socket_arg]);
    assert!(table.contains(&format!("held by key 0x{KEY_A:016x} via {port_a}")), "{table}");
    assert!(table.contains(&format!("0x{KEY_B:016x}")) && table.contains("WERO"), "{table}");

    // `palisade sessions --json`: both sessions, their ISIDs and negotiated digests.
    let sessions = json(&["sessions", "--socket", &socket_arg, "--json"]);
    let sessions = sessions.as_array().expect("sessions");
    assert_eq!(sessions.len(), 2, "{sessions:#?}");
    let by_isid =
        |isid: &str| sessions.iter().find(|s| s["isid"] == isid).unwrap_or_else(|| panic!("no session {isid}"));
    let (sa, sb) = (by_isid("0x80000000000a"), by_isid("0x80000000000b"));
    assert_eq!((sa["initiator"].as_str(), sb["initiator"].as_str()), (Some(HOST_A), Some(HOST_B)));
    assert_eq!(
        (sa["params"]["header_digest"].as_str(), sa["params"]["data_digest"].as_str()),
        (Some("CRC32C"), Some("CRC32C"))
    );
    assert_eq!(
        (sb["params"]["header_digest"].as_str(), sb["params"]["data_digest"].as_str()),
        (Some("None"), Some("None"))
    );
    for s in [sa, sb] {
        assert_eq!(s["session_type"], "normal");
        assert_eq!(s["target"], DEFAULT_IQN);
        assert_eq!(s["portal"], format!("127.0.0.1:{},1", t.port()));
        assert!(s["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.1:")), "{s:#}");
        assert!(s["params"]["max_recv_data_segment_length_initiator"].as_u64() == Some(OUR_MAX_RECV as u64), "{s:#}");
        assert_eq!(s["commands_in_flight"], 0);
    }
    let table = stdout_ok(&["sessions", "--data-dir", &dir_arg]);
    assert!(table.contains(HOST_A) && table.contains("CRC32C/CRC32C") && table.contains("None/None"), "{table}");

    // `palisade luns --json`.
    let luns = json(&["luns", "--data-dir", &dir_arg, "--json"]);
    let l = &luns[0];
    assert_eq!(
        (l["backend"].as_str(), l["size_bytes"].as_u64(), l["block_size"].as_u64()),
        (Some("memory"), Some(16 << 20), Some(512))
    );
    assert!(l["naa"].as_str().is_some_and(|n| n.starts_with("0x5")), "{l:#}");

    // Metrics: exactly the I/O above.
    let (body, m) = scrape(metrics_port);
    assert_eq!(lun_sample(&m, "palisade_lun_commands_total", "op=\"write\""), WRITES as f64);
    assert_eq!(lun_sample(&m, "palisade_lun_bytes_total", "op=\"write\""), (WRITES * 4096) as f64);
    assert_eq!(lun_sample(&m, "palisade_lun_commands_total", "op=\"read\""), (READS + 1) as f64);
    assert_eq!(lun_sample(&m, "palisade_lun_bytes_total", "op=\"read\""), (READS * 4096) as f64);
    assert_eq!(lun_sample(&m, "palisade_lun_latency_seconds_count", "op=\"write\""), WRITES as f64);
    assert_eq!(lun_sample(&m, "palisade_lun_latency_seconds_bucket", "op=\"write\",le=\"+Inf\""), WRITES as f64);
    assert_eq!(lun_sample(&m, "palisade_lun_errors_total", "kind=\"illegal_request\""), 1.0);
    // Each new I_T nexus reports POWER ON first (SAM-5 §5.14), consumed by one TUR each.
    assert_eq!(lun_sample(&m, "palisade_lun_errors_total", "kind=\"unit_attention\""), 2.0);
    assert_eq!(lun_sample(&m, "palisade_lun_errors_total", "kind=\"reservation_conflict\""), 0.0);
    assert_eq!(lun_sample(&m, "palisade_lun_pr_events_total", "action=\"register\""), 1.0);
    assert_eq!(lun_sample(&m, "palisade_lun_pr_events_total", "action=\"register_and_ignore_existing_key\""), 1.0);
    assert_eq!(lun_sample(&m, "palisade_lun_pr_events_total", "action=\"reserve\""), 1.0);
    assert_eq!(lun_sample(&m, "palisade_lun_pr_registrants", ""), 2.0);
    assert_eq!(lun_sample(&m, "palisade_lun_pr_reserved", ""), 1.0);
    assert_eq!(m[&format!("palisade_sessions{{target=\"{DEFAULT_IQN}\",type=\"normal\"}}")], 2.0);
    assert_eq!(m["palisade_logins_total{status=\"success\"}"], 2.0);
    assert_eq!(m["palisade_logins_total{status=\"authentication_failure\"}"], 1.0);
    assert_eq!(m["palisade_rejects_total{reason=\"command_not_supported\"}"], 1.0);

    // The CHAP secret (and user) appear in no answer, no table, no metric, no log line.
    let mut everything = body;
    for args in [
        vec!["pr", "show", "--data-dir", &dir_arg],
        vec!["sessions", "--data-dir", &dir_arg, "--json"],
        vec!["luns", "--data-dir", &dir_arg],
    ] {
        let out = palisade(&args);
        everything += &String::from_utf8_lossy(&out.stdout);
        everything += &String::from_utf8_lossy(&out.stderr);
    }
    a.logout();
    b.logout();
    t.stop();
    everything += &t.log();
    assert!(!everything.contains(CHAP_SECRET), "the CHAP secret leaked");
    assert!(!everything.contains(CHAP_USER), "the CHAP user name leaked");
    // A stopped server takes its socket with it.
    assert!(!socket.exists(), "admin socket left behind");
}

#[test]
fn cli_fails_clearly_without_a_server_and_a_second_server_cannot_share_the_socket() {
    let empty = unique_temp_dir("palisade-admin-none");
    let out = palisade(&["pr", "show", "--data-dir", &empty.to_string_lossy()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no palisade server is running"), "{err}");

    // A stale socket file (a crashed server's) is also "no server", and a new server replaces it.
    let stale = empty.join("palisade.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let out = palisade(&["sessions", "--socket", &stale.to_string_lossy()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no palisade server is running"));

    let toml = format!("data_dir = \"{}\"\n{}", empty.display(), memory_target_toml(""));
    let first = TargetProcess::start_with_config(&toml, DEFAULT_IQN);
    assert!(stdout_ok(&["luns", "--data-dir", &empty.to_string_lossy()]).contains("memory"));

    // Same data dir, another portal: refused, because the live socket belongs to the first.
    let second = run_second_server(&empty, free_port());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success() && err.contains("another palisade server is answering"), "{err}");
    assert!(stale.exists(), "the first server's socket must survive the refused start");
    drop(first);
    let _ = std::fs::remove_dir_all(&empty);
}

fn run_second_server(data_dir: &Path, port: u16) -> Output {
    let config = data_dir.with_extension("second.toml");
    let toml = format!("data_dir = \"{}\"\n{}", data_dir.display(), memory_target_toml(""))
        .replace("{PORT}", &port.to_string());
    std::fs::write(&config, toml).unwrap();
    let out = palisade(&["serve", "--config", &config.to_string_lossy()]);
    let _ = std::fs::remove_file(&config);
    out
}

#[test]
fn admin_socket_can_be_disabled() {
    let t = TargetProcess::start_with_config(
        &format!("data_dir = \"{{DATA_DIR}}\"\n{}", memory_target_toml("[admin]\nsocket_enabled = false\n")),
        DEFAULT_IQN,
    );
    assert!(!t.data_dir().join("palisade.sock").exists());
    let out = palisade(&["luns", "--data-dir", &t.data_dir().to_string_lossy()]);
    assert!(!out.status.success());
}
