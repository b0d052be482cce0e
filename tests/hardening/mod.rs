//! Process control the hardening tests need beyond `common::TargetProcess`: a server on a
//! chosen port and data dir that can be killed with SIGKILL or SIGTERM and started again on the
//! same port and data, its PID (for RSS), and block stamps with checksums.
#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use crate::common::{free_port, plain_log, unique_temp_dir as unique_dir};

pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    pub log_path: PathBuf,
    config: PathBuf,
}

impl Server {
    /// Writes `toml` ({PORT} and {DATA_DIR} replaced) to DIR/palisade.toml and starts the binary.
    pub fn start(toml: &str, port: u16, dir: &Path) -> Server {
        let config = dir.join("palisade.toml");
        let text = toml.replace("{PORT}", &port.to_string()).replace("{DATA_DIR}", &dir.to_string_lossy());
        fs::write(&config, text).expect("write config");
        let mut s = Server { child: None, port, dir: dir.to_path_buf(), log_path: dir.with_extension("log"), config };
        s.restart();
        s
    }

    /// Starts the binary again on the same config (the log is appended to).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log_path).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["serve", "--config", &self.config.to_string_lossy()])
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn palisade");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "palisade not listening; log:\n{}", self.log());
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("palisade exited ({st}); log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    pub fn portal(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The server's output so far (plain text: asserted free of terminal colour codes).
    pub fn log(&self) -> String {
        plain_log(fs::read_to_string(&self.log_path).unwrap_or_default())
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGKILL: no flush, no logout, nothing.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` to the running server.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the PID of our own unreaped child.
        unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
    }

    /// SIGTERM and wait up to `limit` for the exit.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.child.as_ref()?;
        self.signal(libc::SIGTERM);
        self.wait_exit(limit)
    }

    /// Waits up to `limit` for the server to exit (SIGKILL after that, returning None).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// Resident memory of the server process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// The `live_tasks` and `held_data_bytes` of the last "connection closed" log line.
    pub fn last_close_gauges(&self) -> Option<(u64, u64)> {
        let log = self.log();
        let line = log.lines().rev().find(|l| l.contains("connection closed"))?;
        let field = |name: &str| -> Option<u64> {
            let at = line.find(&format!("{name}="))? + name.len() + 1;
            line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        };
        Some((field("live_tasks")?, field("held_data_bytes")?))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("----- palisade log -----\n{}\n----- end -----", self.log());
        }
    }
}

/// TOML for the default target with the given LUN tables and extra tables appended.
pub fn target_toml(luns: &str, extra: &str) -> String {
    format!(
        "data_dir = \"{{DATA_DIR}}\"\n[[portals]]\nname = \"p\"\nlisten = \"127.0.0.1:{{PORT}}\"\n\n\
         [[targets]]\nname = \"iqn.2026-11.io.palisade:default\"\n\n{luns}\n{extra}\n"
    )
}

pub const IQN: &str = "iqn.2026-11.io.palisade:default";

/// A 512-byte block that names itself: magic, round, sequence, LBA, then a filler derived from
/// them and a CRC32C of everything before it, so a lost, stale or torn block is recognised.
pub fn stamp(round: u32, seq: u32, lba: u32) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    b[0..8].copy_from_slice(b"PALSTAMP");
    b[8..12].copy_from_slice(&round.to_be_bytes());
    b[12..16].copy_from_slice(&seq.to_be_bytes());
    b[16..20].copy_from_slice(&lba.to_be_bytes());
    let mut x = round.wrapping_mul(0x9e37_79b9) ^ seq.wrapping_mul(0x85eb_ca6b) ^ lba;
    for byte in &mut b[20..508] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *byte = x as u8;
    }
    let crc = crc32c::crc32c(&b[..508]);
    b[508..].copy_from_slice(&crc.to_be_bytes());
    b
}
