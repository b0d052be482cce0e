//! Gateways of a test cluster (docs/cluster.md): `palisade serve` processes with a `[cluster]`
//! table, one target whose LUN 0 is one file they all open, short leases (TTL 2 s, self-fence
//! margin 500 ms) so that expiries fit in a test. tests/cluster.rs and
//! tests/cluster_reservations.rs share this one copy.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::block_initiator::BlockInitiator;
use super::{run_ok, unique_temp_dir, TargetProcess};

pub const IQN: &str = "iqn.2026-11.io.palisade:cluster";
pub const TTL: Duration = Duration::from_secs(2);
pub const MARGIN: Duration = Duration::from_millis(500);

/// The tests of a file run one at a time: each starts three etcd members and two or three
/// gateways, and elections with a 500 ms timeout on 2 shared cores should not have to compete
/// with another test's cluster.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The folder of the LUN file the gateways share, removed on drop.
pub struct SharedLun {
    dir: PathBuf,
}

impl SharedLun {
    pub fn new() -> SharedLun {
        SharedLun { dir: unique_temp_dir("palisade-cluster-lun") }
    }
    /// LUN 0's file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("lun0.img")
    }
    /// Another file in the same folder.
    pub fn other(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for SharedLun {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A gateway's configuration: one target, LUN 0 on `lun_file` (shared by the gateways).
pub fn gateway_toml(id: u16, endpoints: &[String], lun_file: &Path, size: &str) -> String {
    gateway_toml_with_ttl(id, endpoints, lun_file, size, TTL)
}

/// `gateway_toml` with another lease TTL (whole seconds).
pub fn gateway_toml_with_ttl(id: u16, endpoints: &[String], lun_file: &Path, size: &str, ttl: Duration) -> String {
    let endpoints: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "data_dir = \"{{DATA_DIR}}\"\n\n[[portals]]\nname = \"p\"\nlisten = \"127.0.0.1:{{PORT}}\"\ntpgt = 1\n\n\
         [[targets]]\nname = \"{IQN}\"\n\n[[targets.luns]]\nid = 0\nbackend = \"file\"\npath = \"{}\"\nsize = \"{size}\"\n\n\
         [cluster]\netcd_endpoints = [{}]\ngateway_id = {id}\nlease_ttl_secs = {}\nself_fence_margin_ms = {}\n",
        lun_file.display(),
        endpoints.join(", "),
        ttl.as_secs(),
        MARGIN.as_millis()
    )
}

/// Starts a gateway and waits until it has joined the cluster.
pub fn gateway(id: u16, endpoints: &[String], lun_file: &Path, size: &str) -> TargetProcess {
    gateway_with_env(id, endpoints, lun_file, size, &[])
}

/// `gateway` with extra environment variables for the process (kept across restarts).
pub fn gateway_with_env(
    id: u16,
    endpoints: &[String],
    lun_file: &Path,
    size: &str,
    env: &[(&str, &str)],
) -> TargetProcess {
    start_joined(&gateway_toml(id, endpoints, lun_file, size), env)
}

/// Starts `palisade serve` on a gateway configuration and waits until it has joined.
fn start_joined(toml: &str, env: &[(&str, &str)]) -> TargetProcess {
    let gw = TargetProcess::start_with_config_env(toml, IQN, env);
    wait_for_log(&gw, "joined the cluster; serving", Duration::from_secs(20));
    gw
}

/// Restarts a stopped or killed gateway on its port, data and configuration, and waits until it
/// serves again (see `wait_serving`).
pub fn restart_gateway(gw: &mut TargetProcess, starts: usize) {
    gw.restart();
    wait_serving(gw, starts);
}

/// Waits until the gateway logged `joined the cluster; serving` for the `starts`-th time (a
/// killed gateway's restart first waits up to a TTL for its old lease to end).
pub fn wait_serving(gw: &TargetProcess, starts: usize) {
    wait_for_log_count(gw, "joined the cluster; serving", starts, Duration::from_secs(20));
}

/// Polls the gateway's log until `needle` occurs `count` times; returns how long that took.
pub fn wait_for_log_count(gw: &TargetProcess, needle: &str, count: usize, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if gw.log().matches(needle).count() >= count {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "no `{needle}` (#{count}) in the log after {within:?}:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn wait_for_log(gw: &TargetProcess, needle: &str, within: Duration) -> Duration {
    wait_for_log_count(gw, needle, 1, within)
}

/// A blocking initiator logged in to the gateway's target, past its power-on unit attention.
pub fn login(gw: &TargetProcess, initiator: &str, isid: u8) -> BlockInitiator {
    let mut i = BlockInitiator::connect(&gw.portal(), IQN, initiator, isid);
    i.clear_unit_attention(0);
    i
}

/// `palisade cluster status --json` of a gateway (its admin socket in its data folder).
pub fn cluster_status(gw: &TargetProcess) -> serde_json::Value {
    let dir = gw.data_dir().to_string_lossy().into_owned();
    let text = run_ok(
        env!("CARGO_BIN_EXE_palisade"),
        &["cluster", "status", "--data-dir", &dir, "--json"],
        Duration::from_secs(10),
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The `live` flag of gateway `id` in a status.
pub fn sees_live(status: &serde_json::Value, id: u64) -> Option<bool> {
    status["gateways"].as_array()?.iter().find(|g| g["id"] == id).and_then(|g| g["live"].as_bool())
}

/// Starts gateways 1..=count and waits until each sees every one live: a gateway that learns of
/// a peer later tells its initiators (ASYMMETRIC ACCESS STATE CHANGED), which would land in the
/// middle of a test's sequence.
pub fn gateways(count: u16, endpoints: &[String], lun_file: &Path, size: &str) -> Vec<TargetProcess> {
    gateways_with_ttl(count, endpoints, lun_file, size, TTL)
}

/// `gateways` with lease TTL `ttl`.
pub fn gateways_with_ttl(
    count: u16,
    endpoints: &[String],
    lun_file: &Path,
    size: &str,
    ttl: Duration,
) -> Vec<TargetProcess> {
    let gws: Vec<TargetProcess> =
        (1..=count).map(|id| start_joined(&gateway_toml_with_ttl(id, endpoints, lun_file, size, ttl), &[])).collect();
    wait_all_live(&gws.iter().collect::<Vec<_>>(), &(1..=count).collect::<Vec<_>>());
    gws
}

/// Waits until every gateway of `gws` reports every id of `ids` live in its status.
pub fn wait_all_live(gws: &[&TargetProcess], ids: &[u16]) {
    let started = Instant::now();
    for gw in gws {
        loop {
            let status = cluster_status(gw);
            if ids.iter().all(|&id| sees_live(&status, id.into()) == Some(true)) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "gateways {ids:?} not all live: {status}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
