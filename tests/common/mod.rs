//! The one server harness of the integration tests: `TargetProcess` starts the real `palisade`
//! binary on a free loopback port with a throw-away data directory (or on a chosen port and a
//! directory that outlives it), waits until it accepts TCP connections, and stops it (SIGTERM,
//! then SIGKILL) on drop, whatever the test did. It also kills with SIGKILL and restarts on the
//! same port and data, sends signals, and reads the server's RSS. The server's stdout/stderr go to
//! a log file that is printed when the owning test panics.
//!
//! `PALISADE_TEST_EXTERNAL_URL=iscsi://HOST:PORT/IQN/LUN` makes the harness use an already running
//! target instead of spawning one (used to validate the tests themselves against tgt); `url(0)`
//! then returns that URL unchanged.
#![allow(dead_code)] // each test binary uses a different subset

pub mod block_initiator;
pub mod cluster;
pub mod etcd;
pub mod raw_initiator;
pub mod vm;

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The target name `palisade serve --listen/--data-dir` serves.
pub const DEFAULT_IQN: &str = "iqn.2026-11.io.palisade:default";
/// Size of the default LUN 0 (sparse file DIR/lun0.img).
pub const DEFAULT_LUN_BYTES: u64 = 1 << 30;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct TargetProcess {
    child: Option<Child>,
    port: u16,
    host: String,
    iqn: String,
    /// Only set for an external target: the URL given in PALISADE_TEST_EXTERNAL_URL.
    external_url: Option<String>,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// The `palisade` arguments, for `restart`.
    args: Vec<String>,
    /// The data dir is the harness's own (removed on drop), not one the test chose to keep.
    owns_data_dir: bool,
    /// Extra environment variables of the server process (kept for `restart`).
    env: Vec<(String, String)>,
}

/// One LUN of a generated config.
#[derive(Clone, Debug)]
pub struct LunSpec {
    pub id: u64,
    /// `None` = memory backend; `Some(file name)` = file backend inside the data dir.
    pub file: Option<String>,
    pub size: String,
    pub block_size: u32,
}

/// Everything the tests vary in a config file; `config_toml` renders it.
#[derive(Clone, Debug)]
pub struct ConfigSpec {
    pub target_iqn: String,
    pub luns: Vec<LunSpec>,
    /// CHAP (user, secret) required of initiators.
    pub chap: Option<(String, String)>,
    /// (initiator IQN, LUN ids it may see); empty = everyone sees every LUN.
    pub acl: Vec<(String, Vec<u64>)>,
}

impl ConfigSpec {
    /// The default target with one file LUN 0 of `size`.
    pub fn single_file_lun(size: &str) -> Self {
        ConfigSpec {
            target_iqn: DEFAULT_IQN.to_string(),
            luns: vec![LunSpec { id: 0, file: Some("lun0.img".into()), size: size.into(), block_size: 512 }],
            chap: None,
            acl: Vec::new(),
        }
    }
}

/// Renders a config as TOML for `palisade serve --config`. The schema lives here and only here,
/// so adjusting to the real config format is a one-function change.
pub fn config_toml(spec: &ConfigSpec, listen: SocketAddr, data_dir: &Path) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut t = String::new();
    t += "[[portals]]\nname = \"test\"\n";
    t += &format!("listen = {}\ntpgt = 1\n\n", quote(&listen.to_string()));
    t += &format!("[[targets]]\nname = {}\nportals = [\"test\"]\n", quote(&spec.target_iqn));
    if let Some((user, secret)) = &spec.chap {
        t += &format!("\n[targets.chap]\nuser = {}\nsecret = {}\n", quote(user), quote(secret));
    }
    for lun in &spec.luns {
        t += &format!("\n[[targets.luns]]\nid = {}\nblock_size = {}\n", lun.id, lun.block_size);
        match &lun.file {
            Some(name) => {
                let path = data_dir.join(name);
                t += &format!(
                    "backend = \"file\"\npath = {}\nsize = {}\n",
                    quote(&path.to_string_lossy()),
                    quote(&lun.size)
                );
            }
            None => t += &format!("backend = \"memory\"\nsize = {}\n", quote(&lun.size)),
        }
    }
    for (initiator, luns) in &spec.acl {
        let ids: Vec<String> = luns.iter().map(u64::to_string).collect();
        t += &format!("\n[[targets.acl]]\ninitiator = {}\nluns = [{}]\n", quote(initiator), ids.join(", "));
    }
    t
}

impl TargetProcess {
    /// `palisade serve --listen 127.0.0.1:PORT --data-dir DIR` (target DEFAULT_IQN, 1 GiB LUN 0).
    pub fn start_default() -> Self {
        if let Some(t) = Self::external() {
            return t;
        }
        let (port, data_dir) = (free_port(), unique_temp_dir("palisade-test"));
        let listen = format!("127.0.0.1:{port}");
        let args = ["serve", "--listen", &listen, "--data-dir", &data_dir.to_string_lossy()].map(String::from);
        Self::spawn(port, data_dir, DEFAULT_IQN, &args)
    }

    /// `palisade serve --listen 127.0.0.1:PORT --data-dir DIR` on a port and data dir the test
    /// chose: the dir is left in place on drop, so a later server can pick its state up.
    pub fn start_default_at(port: u16, data_dir: &Path) -> Self {
        let listen = format!("127.0.0.1:{port}");
        let args = ["serve", "--listen", &listen, "--data-dir", &data_dir.to_string_lossy()].map(String::from);
        let mut t = Self::spawn(port, data_dir.to_path_buf(), DEFAULT_IQN, &args);
        t.owns_data_dir = false;
        t
    }

    /// `palisade serve --config DIR/palisade.toml` with `toml_template` ({PORT} and {DATA_DIR}
    /// replaced) on a port and data dir the test chose; the dir is left in place on drop.
    pub fn start_config_at(toml_template: &str, port: u16, data_dir: &Path) -> Self {
        let toml =
            toml_template.replace("{PORT}", &port.to_string()).replace("{DATA_DIR}", &data_dir.to_string_lossy());
        let mut t = Self::start_config_in(port, data_dir.to_path_buf(), DEFAULT_IQN, &toml, Vec::new());
        t.owns_data_dir = false;
        t
    }

    /// `palisade serve --config FILE` with the TOML rendered from `spec` (see `config_toml`).
    pub fn start_with_spec(spec: &ConfigSpec) -> Self {
        let (port, data_dir) = (free_port(), unique_temp_dir("palisade-test"));
        let toml = config_toml(spec, SocketAddr::from(([127, 0, 0, 1], port)), &data_dir);
        Self::start_config_in(port, data_dir, &spec.target_iqn, &toml, Vec::new())
    }

    /// `palisade serve --config FILE` with literal TOML; `{PORT}` and `{DATA_DIR}` in it are
    /// replaced by the chosen port and the temp data directory. `iqn` is what `url()` uses.
    pub fn start_with_config(toml_template: &str, iqn: &str) -> Self {
        Self::start_with_config_env(toml_template, iqn, &[])
    }

    /// `start_with_config` with extra environment variables for the server process (also on
    /// every `restart`), e.g. a test-only switch such as a negative control's.
    pub fn start_with_config_env(toml_template: &str, iqn: &str, env: &[(&str, &str)]) -> Self {
        let (port, data_dir) = (free_port(), unique_temp_dir("palisade-test"));
        let toml =
            toml_template.replace("{PORT}", &port.to_string()).replace("{DATA_DIR}", &data_dir.to_string_lossy());
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::start_config_in(port, data_dir, iqn, &toml, env)
    }

    fn start_config_in(port: u16, data_dir: PathBuf, iqn: &str, toml: &str, env: Vec<(String, String)>) -> Self {
        let config = data_dir.join("palisade.toml");
        fs::write(&config, toml).expect("write config");
        let args = ["serve".to_string(), "--config".to_string(), config.to_string_lossy().into_owned()];
        Self::spawn_with_env(port, data_dir, iqn, &args, env)
    }

    fn spawn(port: u16, data_dir: PathBuf, iqn: &str, args: &[String]) -> Self {
        Self::spawn_with_env(port, data_dir, iqn, args, Vec::new())
    }

    fn spawn_with_env(port: u16, data_dir: PathBuf, iqn: &str, args: &[String], env: Vec<(String, String)>) -> Self {
        // The log lives beside (not inside) the data dir so the server cannot trip over it.
        let log_path = data_dir.with_extension("log");
        fs::File::create(&log_path).expect("create server log");
        let mut target = TargetProcess {
            child: None,
            port,
            host: "127.0.0.1".into(),
            iqn: iqn.into(),
            external_url: None,
            data_dir,
            log_path,
            args: args.to_vec(),
            owns_data_dir: true,
            env,
        };
        target.restart();
        target
    }

    /// Starts the binary (again) with the same arguments, port and data; the log is appended
    /// to. Panics if it is still running.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "palisade is still running");
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log_path).expect("open server log");
        let child = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(&self.args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn palisade binary");
        self.child = Some(child);
        self.wait_ready();
    }

    fn external() -> Option<Self> {
        let url = std::env::var("PALISADE_TEST_EXTERNAL_URL").ok()?;
        let rest = url.strip_prefix("iscsi://").expect("PALISADE_TEST_EXTERNAL_URL must be iscsi://HOST:PORT/IQN/LUN");
        let mut parts = rest.split('/');
        let hostport = parts.next().unwrap_or_default();
        let iqn = parts.next().expect("IQN in PALISADE_TEST_EXTERNAL_URL");
        let (host, port) = hostport.rsplit_once(':').expect("HOST:PORT in PALISADE_TEST_EXTERNAL_URL");
        let data_dir = unique_temp_dir("palisade-test-external");
        Some(TargetProcess {
            child: None,
            port: port.parse().expect("port"),
            host: host.into(),
            iqn: iqn.into(),
            external_url: Some(url.clone()),
            log_path: data_dir.with_extension("log"),
            data_dir,
            args: Vec::new(),
            owns_data_dir: true,
            env: Vec::new(),
        })
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait")) {
                panic!("palisade exited before listening ({status}); log:\n{}", self.log());
            }
            if Instant::now() > deadline {
                panic!("palisade not listening on {addr} after {READY_TIMEOUT:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn portal(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
    pub fn iqn(&self) -> &str {
        &self.iqn
    }
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    /// `iscsi://127.0.0.1:PORT` (discovery URL for iscsi-ls).
    pub fn portal_url(&self) -> String {
        format!("iscsi://{}", self.portal())
    }
    /// `iscsi://127.0.0.1:PORT/iqn.2026-11.io.palisade:default/LUN`.
    pub fn url(&self, lun: u64) -> String {
        match (&self.external_url, lun) {
            (Some(url), 0) => url.clone(),
            _ => format!("iscsi://{}/{}/{}", self.portal(), self.iqn, lun),
        }
    }
    pub fn is_external(&self) -> bool {
        self.external_url.is_some()
    }
    /// The server's stdout+stderr so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        plain_log(s)
    }
    /// Where the server's output goes (beside the data dir).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The server's process ID (None for an external target or a stopped server).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Still running? (false once it exited or was never ours)
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGKILL: no flush, no logout, nothing. `restart` brings it back on the same data.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `sig` to the running server.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = self.pid().expect("palisade is running");
        // SAFETY: kill(2) on the PID of our own child, not reaped yet (we hold its `Child`).
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }

    /// SIGTERM and wait up to `limit` for the exit (SIGKILL after that, returning None).
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.child.as_ref()?;
        self.signal(libc::SIGTERM);
        self.wait_exit(limit)
    }

    /// Waits up to `limit` for the server to exit (SIGKILL after that, returning None).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Resident memory of the server process in KiB (0 when it cannot be read).
    pub fn rss_kib(&self) -> u64 {
        let Some(pid) = self.pid() else { return 0 };
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
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

    /// SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL. Returns the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        // SAFETY: plain kill(2) on the PID of a child we spawned and have not reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("palisade ignored SIGTERM for {STOP_TIMEOUT:?}; killing it");
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for TargetProcess {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() && !self.is_external() {
            eprintln!(
                "----- palisade log ({}) -----\n{}----- end of palisade log -----",
                self.log_path.display(),
                self.log()
            );
        }
        if self.owns_data_dir {
            let _ = fs::remove_dir_all(&self.data_dir);
            let _ = fs::remove_file(&self.log_path);
        }
    }
}

/// A server log as written to a file: plain text, asserted free of terminal colour codes (the
/// server colours its output only on a terminal).
pub fn plain_log(text: String) -> String {
    assert!(!text.contains('\x1b'), "the server wrote ANSI escape codes to a log file:\n{text}");
    text
}

/// A port that was free a moment ago (bind 127.0.0.1:0, read it, close).
/// The default target with LUN 0 (`lun`: the rest of its `[[targets.luns]]` table) served on two
/// portal groups: TPGT 1 on the harness's `{PORT}`, TPGT 2 on `127.0.0.1:second_port` — two target
/// ports, relative ports 1 and 2, of target port group 1.
pub fn start_two_portal_groups(second_port: u16, lun: &str) -> TargetProcess {
    let toml = format!(
        r#"
[[portals]]
name = "a"
listen = "127.0.0.1:{{PORT}}"
tpgt = 1

[[portals]]
name = "b"
listen = "127.0.0.1:{second_port}"
tpgt = 2

[[targets]]
name = "{DEFAULT_IQN}"

[[targets.luns]]
id = 0
{lun}
"#
    );
    TargetProcess::start_with_config(&toml, DEFAULT_IQN)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("local_addr").port()
}

/// A new, empty directory under std::env::temp_dir(), unique per process and call.
pub fn unique_temp_dir(prefix: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Runs `cmd` with stdin closed, killing it after `timeout`. Panics (with a hint to run
/// scripts/install-deps.sh) when the program is missing; a timeout is reported as a panic too.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let program = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (install test tools with scripts/install-deps.sh)"));
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
            panic!("{cmd:?} timed out after {timeout:?}; output so far:\n{stdout}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: out_t.join().unwrap_or_default(), stderr: err_t.join().unwrap_or_default() }
}

/// Runs a tool to completion and returns its stdout, asserting exit status 0.
pub fn run_ok(program: &str, args: &[&str], timeout: Duration) -> String {
    let out = run_with_timeout(Command::new(program).args(args), timeout);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The repository root (where Cargo.toml of the palisade package is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The repository's VM harness, `scripts/vm/run-in-vm.sh --portal-port PORT --timeout SECS`:
/// boots the Debian guest (building and caching its image on first use, see docs/testing.md)
/// and runs a guest script in it as root; add further options and the script path. Its stdout
/// is the guest console; its exit status the script's (124: timeout, 125: no status).
pub fn vm_runner(portal_port: u16, guest_timeout_s: u64) -> Command {
    let mut cmd = Command::new(repo_root().join("scripts/vm/run-in-vm.sh"));
    cmd.args(["--portal-port", &portal_port.to_string(), "--timeout", &guest_timeout_s.to_string()]);
    cmd.arg("--lib").arg(guest_script("lib.sh"));
    cmd
}

/// A guest script of the VM tests (`tests/guest/NAME`).
pub fn guest_script(name: &str) -> PathBuf {
    repo_root().join("tests/guest").join(name)
}
