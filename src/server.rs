//! Builds the served targets from a [`Config`], listens on every portal, and runs until a
//! shutdown signal: then initiators are asked to log out (RFC 7143 §11.9.1), connections
//! drain, and the LUNs are flushed. A [`ReloadHandle`] applies a new configuration while
//! serving (docs/operations.md "Reloading the configuration").

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::backend::{Backend, BlockDeviceBackend, FileBackend, MemoryBackend};
use crate::config::{BackendConfig, ChapConfig, Config, LunConfig, TargetConfig};
use crate::iscsi::connection;
use crate::iscsi::limits::ResourceLimits;
use crate::iscsi::login::{ChapCredentials, TargetLimits};
use crate::iscsi::registry::{format_portal, PortalAddr, Registry, SessionSettings, TargetEntry, Targets};
use crate::scsi::alua::Alua;
use crate::scsi::{Lun, LunIdentity, LunMasking, ScsiTarget, WriteFence};

#[derive(Debug)]
pub struct StartError(pub String);

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// Product identification reported by INQUIRY unless a LUN overrides it.
const DEFAULT_PRODUCT: &str = "PALISADE DISK";
const REVISION: &str = "0001";
/// How long connections get to log out after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(12);

/// A running server: its registry and the bound portals.
pub struct Server {
    pub registry: Arc<Registry>,
    listeners: Vec<(TcpListener, PortalAddr)>,
    served: Arc<Mutex<Served>>,
    /// The admin socket and metrics endpoint (src/admin), bound here, served by `run`.
    admin: crate::admin::Admin,
    /// Cluster mode: the membership (keepalives, self-fence, peers); `None` on a single node.
    cluster: Option<crate::cluster::ClusterNode>,
}

/// What is served now: the configuration it came from, the bound portals (parallel to
/// `config.portals`) and every open LUN by (target name, LUN id) with the config it was
/// opened from. Touched only by reloads and at shutdown, never on the I/O path.
struct Served {
    config: Config,
    portals: Vec<PortalAddr>,
    luns: HashMap<(String, u64), (LunConfig, Arc<Lun>)>,
    /// The target port groups every target reports (SPC-4 §5.15), kept across reloads.
    alua: Arc<Alua>,
}

impl Server {
    /// Opens every LUN and binds every portal; nothing is served yet.
    pub async fn bind(config: &Config) -> Result<Server, StartError> {
        for w in &config.warnings {
            warn!("config: {w}");
        }
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StartError(format!("data_dir {}: {e}", config.data_dir.display())))?;
        // Before the portals: once a portal accepts connections, the admin socket exists too
        // (a script that waits for the port can ask `palisade pr show` at once).
        let admin = crate::admin::Admin::bind(config).await.map_err(StartError)?;
        let mut listeners = Vec::new();
        for p in &config.portals {
            let l = TcpListener::bind(p.listen)
                .await
                .map_err(|e| StartError(format!("portals[{}]: cannot listen on {}: {e}", p.name, p.listen)))?;
            // A port of 0 resolves to the one the kernel chose.
            let addr = l.local_addr().map_err(|e| StartError(e.to_string()))?;
            listeners.push((l, PortalAddr { addr, tpgt: p.tpgt }));
        }
        let portals: Vec<PortalAddr> = listeners.iter().map(|(_, p)| p.clone()).collect();
        // Cluster mode: every LUN's writes pass the gateway's self-fence (docs/cluster.md).
        let fence = config.cluster.as_ref().map(|_| Arc::new(WriteFence::default()));
        let mut luns = HashMap::new();
        for t in &config.targets {
            for l in &t.luns {
                let mut lun = open_lun(t, l, config)?;
                if let Some(fence) = &fence {
                    lun.set_write_fence(fence.clone());
                }
                luns.insert((t.name.clone(), l.id), (l.clone(), Arc::new(lun)));
            }
        }
        // SPC-4 §5.16.2: one Alua for the whole server. Single node: group 1, relative port id =
        // TPGT. Cluster: group = gateway id, relative port id = gateway_id * 256 + TPGT.
        let alua = match &config.cluster {
            Some(cluster) => crate::cluster::gateway_alua(cluster, &portals),
            None => Alua::single_node(1, portals.iter().map(|p| p.tpgt).collect()),
        };
        let (cluster, serving) = match (&config.cluster, fence) {
            (Some(cluster_config), Some(fence)) => {
                let mut ordered: Vec<_> = luns.iter().map(|((t, _), (_, lun))| (t.clone(), lun.clone())).collect();
                ordered.sort_by(|a, b| (&a.0, a.1.id()).cmp(&(&b.0, b.1.id())));
                let (node, refused) =
                    crate::cluster::ClusterNode::start(cluster_config, &portals, fence, alua.clone(), ordered)
                        .await
                        .map_err(StartError)?;
                let mut serving = config.clone();
                for t in &mut serving.targets {
                    t.luns.retain(|l| !refused.contains(&(t.name.clone(), l.id)));
                }
                luns.retain(|key, _| !refused.contains(key));
                (Some(node), serving)
            }
            _ => (None, config.clone()),
        };
        let mut targets = Vec::new();
        for t in &serving.targets {
            let entry = build_target(&serving, t, &portals, &alua, |l| match luns.get(&(t.name.clone(), l.id)) {
                Some((_, lun)) => Ok(lun.clone()),
                None => Err(StartError(format!("target {} LUN {}: not opened", t.name, l.id))),
            })?;
            targets.push(entry);
        }
        let registry = Registry::new(
            targets,
            settings(config),
            config.discovery.chap.as_ref().map(credentials),
            config.discovery.acl_filter,
        );
        let registry = Arc::new(registry);
        let served = Arc::new(Mutex::new(Served { config: config.clone(), portals, luns, alua }));
        Ok(Server { registry, listeners, served, admin, cluster })
    }

    /// Applies new configurations to this server while it runs (SIGHUP in `palisade serve`).
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle { registry: self.registry.clone(), served: self.served.clone() }
    }

    /// The portals actually bound (with resolved ports).
    pub fn portals(&self) -> Vec<PortalAddr> {
        self.listeners.iter().map(|(_, p)| p.clone()).collect()
    }

    /// The target port groups and local access state (SPC-4 §5.16.2) every target reports and
    /// obeys: what a cluster layer drives (`set_local_state`, `set_groups`).
    pub fn alua(&self) -> Arc<Alua> {
        lock(&self.served).alua.clone()
    }

    /// The admin socket and metrics endpoint, when enabled.
    pub fn admin(&self) -> &crate::admin::Admin {
        &self.admin
    }

    /// How to reach each target, for the operator.
    pub fn connect_hints(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(path) = self.admin.socket_path() {
            lines.push(format!("admin socket {} (palisade pr show --socket {0})", path.display()));
        }
        if let Some(addr) = self.admin.metrics_addr() {
            lines.push(format!("metrics on http://{addr}/metrics"));
        }
        let mut targets: Vec<_> = self.registry.targets().collect();
        targets.sort_by(|a, b| a.name.cmp(&b.name));
        for t in targets {
            for p in &t.portals {
                let portal = format_portal(&p.addr, p.tpgt);
                let hostport = portal.rsplit_once(',').map(|(h, _)| h).unwrap_or(&portal).to_string();
                lines.push(format!("target {} on {portal}", t.name));
                lines.push(format!("  open-iscsi: iscsiadm -m discovery -t sendtargets -p {hostport}"));
                lines.push(format!("              iscsiadm -m node -T {} -p {hostport} --login", t.name));
                for lun in t.scsi.lun_ids() {
                    lines.push(format!("  libiscsi:   iscsi://{hostport}/{}/{lun}", t.name));
                }
            }
        }
        lines
    }

    /// Serves until `shutdown` becomes true, then drains and flushes.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), StartError> {
        // Dropped when `run` returns: the admin tasks stop and the socket file goes.
        let cluster_status = self.cluster.as_ref().map(|c| c.status());
        let _admin = self.admin.start(self.registry.clone(), cluster_status).map_err(StartError)?;
        let mut accepts = JoinSet::new();
        let connections = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        for (listener, portal) in self.listeners {
            let registry = self.registry.clone();
            let shutdown = shutdown.clone();
            let connections = connections.clone();
            accepts.spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((stream, peer)) => {
                            let fut =
                                connection::serve(stream, peer, registry.clone(), portal.clone(), shutdown.clone());
                            connections.lock().await.spawn(fut);
                        }
                        Err(e) => {
                            // EMFILE and friends are transient: back off instead of spinning.
                            error!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            });
        }
        let _ = shutdown.wait_for(|s| *s).await;
        info!("shutting down: asking initiators to log out");
        accepts.abort_all();
        let mut conns = std::mem::take(&mut *connections.lock().await);
        let drained = tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            warn!("some connections did not log out in time; closing them");
            conns.abort_all();
            while conns.join_next().await.is_some() {}
        }
        let luns: Vec<Arc<Lun>> = lock(&self.served).luns.values().map(|(_, lun)| lun.clone()).collect();
        for lun in &luns {
            if let Err(e) = lun.backend().flush().await {
                error!(lun = lun.id(), error = %e, "flush at shutdown failed");
            }
        }
        if let Some(cluster) = self.cluster {
            cluster.leave().await;
        }
        info!("stopped");
        Ok(())
    }
}

fn settings(config: &Config) -> SessionSettings {
    let s = &config.session;
    let limits = TargetLimits {
        max_recv_data_segment_length: s.max_recv_data_segment_length,
        max_burst_length: s.max_burst_length,
        first_burst_length: s.first_burst_length,
        max_outstanding_r2t: s.max_outstanding_r2t,
        immediate_data: s.immediate_data,
        initial_r2t: s.initial_r2t,
        ..TargetLimits::default()
    };
    SessionSettings {
        limits,
        nop_interval: (s.nop_interval_secs > 0).then(|| Duration::from_secs(s.nop_interval_secs)),
        nop_timeout: Duration::from_secs(s.nop_timeout_secs.max(1)),
        cmd_window: s.max_cmdsn_window,
        login_timeout: Duration::from_secs(s.login_timeout_secs.max(1)),
        resources: resources(&config.limits),
    }
}

fn resources(l: &crate::config::LimitsConfig) -> ResourceLimits {
    ResourceLimits {
        max_sessions: l.max_sessions,
        max_sessions_per_target: l.max_sessions_per_target,
        max_connections_per_address: l.max_connections_per_address,
        login_idle_timeout: Duration::from_secs(l.login_idle_timeout_secs),
        max_session_data_bytes: l.max_session_data_bytes,
        max_send_queue_bytes: l.max_send_queue_bytes,
        send_timeout: Duration::from_secs(l.send_timeout_secs),
    }
}

fn credentials(c: &ChapConfig) -> ChapCredentials {
    ChapCredentials { user: c.user.clone(), secret: c.secret.as_bytes().to_vec() }
}

/// The target entry of `t`; `lun_for` supplies each LUN (opened, or reused by a reload).
fn build_target(
    config: &Config,
    t: &TargetConfig,
    bound: &[PortalAddr],
    alua: &Arc<Alua>,
    mut lun_for: impl FnMut(&LunConfig) -> Result<Arc<Lun>, StartError>,
) -> Result<TargetEntry, StartError> {
    let mut luns = Vec::new();
    for l in &t.luns {
        luns.push(lun_for(l)?);
    }
    let mut masking = LunMasking::allow_all();
    let mut allowed = None;
    if let Some(acl) = &t.acl {
        let mut names = HashSet::new();
        for entry in acl {
            names.insert(entry.initiator.clone());
            if let Some(visible) = &entry.luns {
                masking = masking.restrict(&entry.initiator, visible.iter().copied());
            }
        }
        allowed = Some(names);
    }
    let portals: Vec<PortalAddr> = config
        .portals
        .iter()
        .zip(bound)
        .filter(|(p, _)| t.portals.is_empty() || t.portals.contains(&p.name))
        .map(|(_, bound)| bound.clone())
        .collect();
    let scsi = ScsiTarget::new(t.name.clone(), luns, masking).with_alua(alua.clone(), portals.iter().map(|p| p.tpgt));
    Ok(TargetEntry {
        name: t.name.clone(),
        alias: t.alias.clone(),
        scsi: Arc::new(scsi),
        portals,
        allowed_initiators: allowed,
        chap: t.chap.as_ref().map(credentials),
        mutual_chap: t.mutual_chap.as_ref().map(credentials),
        retired: tokio::sync::watch::Sender::new(false),
    })
}

/// Opens a LUN and restores its persistent reservations.
fn open_lun(t: &TargetConfig, l: &LunConfig, config: &Config) -> Result<Lun, StartError> {
    let mut lun = open_backend_lun(t, l)?;
    lun.set_max_registrants(config.limits.max_registrants_per_lun as usize);
    // A cluster gateway's reservations live in etcd, not in a file of its own (docs/cluster.md).
    if config.cluster.is_none() {
        restore_reservations(&mut lun, &config.data_dir);
    }
    Ok(lun)
}

fn open_backend_lun(t: &TargetConfig, l: &LunConfig) -> Result<Lun, StartError> {
    let field = |what: &str| format!("target {} LUN {}: {what}", t.name, l.id);
    let backend = match &l.backend {
        BackendConfig::File { path, size, direct_io } => {
            let size = match size {
                Some(s) => *s,
                None => {
                    std::fs::metadata(path).map_err(|e| StartError(field(&format!("{}: {e}", path.display()))))?.len()
                }
            };
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let opened = if *direct_io {
                FileBackend::open_direct(path, size, l.read_only, l.block_size)
            } else {
                FileBackend::open(path, size, l.read_only)
            };
            Backend::File(opened.map_err(|e| StartError(field(&format!("{}: {e}", path.display()))))?)
        }
        BackendConfig::Memory { size } => Backend::Memory(MemoryBackend::new(*size)),
        BackendConfig::BlockDevice { path, direct_io } => Backend::BlockDevice(
            BlockDeviceBackend::open(path, l.read_only, true, direct_io.then_some(l.block_size))
                .map_err(|e| StartError(field(&format!("{}: {e}", path.display()))))?,
        ),
    };
    let serial = l.serial.clone().unwrap_or_else(|| default_serial(&t.name, l.id));
    let product = l.product.clone().unwrap_or_else(|| DEFAULT_PRODUCT.to_string());
    let mut identity = LunIdentity::new(&product, REVISION, &serial);
    if let Some(naa) = l.naa {
        identity.naa = naa;
    }
    let exponent = (l.physical_block_size / l.block_size).trailing_zeros() as u8;
    let lun = Lun::new(l.id, backend, l.block_size, identity, l.read_only)
        .and_then(|lun| lun.with_physical_block_exponent(exponent))
        .map_err(|e| StartError(field(&e.to_string())))?;
    lun.set_write_cache(l.write_cache);
    Ok(lun)
}

/// SPC-4 §5.13.5.1 APTPL: each LU's reservations live in `<data_dir>/<serial>.pr`. An unreadable
/// record is logged and the LU starts without reservations (never from a half-read state).
fn restore_reservations(lun: &mut Lun, data_dir: &std::path::Path) {
    let path = data_dir.join(format!("{}.pr", lun.identity().serial));
    let store = Arc::new(crate::pr::FileStore::new(path.clone()));
    match lun.restore_reservations(store) {
        Ok(()) => {
            let state = lun.pr().snapshot();
            if !state.registrants.is_empty() {
                info!(
                    lun = lun.id(),
                    registrants = state.registrants.len(),
                    reserved = state.reservation.is_some(),
                    "restored persistent reservations"
                );
            }
        }
        Err(e) => error!(lun = lun.id(), path = %path.display(), error = %e, "persistent reservations not restored"),
    }
}

/// A stable serial per target and LUN: the same configuration always reports the same
/// identity, which multipath and cluster software key on.
fn default_serial(target: &str, lun: u64) -> String {
    let h = format!("{target}/{lun}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    format!("PAL{h:016X}")
}

fn lock(served: &Mutex<Served>) -> std::sync::MutexGuard<'_, Served> {
    served.lock().unwrap_or_else(|e| e.into_inner())
}

/// Applies a new configuration to a running server.
#[derive(Clone)]
pub struct ReloadHandle {
    registry: Arc<Registry>,
    served: Arc<Mutex<Served>>,
}

/// What a reload changed, by target name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Targets whose LUNs, ACL, CHAP, alias or portals changed: new logins get the new entry.
    pub changed: Vec<String>,
    pub unchanged: usize,
    /// Settings that differ but only apply at the next start.
    pub needs_restart: Vec<&'static str>,
}

impl ReloadHandle {
    /// Serves `new` from now on, or refuses it whole (naming the field) and changes nothing.
    /// Unchanged targets keep their entry, so their sessions see no difference; changed ones
    /// get a new entry, and the sessions of the old one are asked to log out (RFC 7143 §11.9.1
    /// AsyncEvent 1) so they log back in to the new one; unchanged LUNs are reused (same
    /// object, same reservations and unit attentions); removed targets' sessions are asked to
    /// log out too, and closed.
    pub async fn reload(&self, new: &Config) -> Result<ReloadSummary, StartError> {
        let (summary, dropped_luns) = {
            let mut served = lock(&self.served);
            let old = &served.config;
            // Listeners and the state folder are bound at start.
            if new.portals != old.portals {
                return Err(StartError("portals: adding, removing or moving portals needs a restart".into()));
            }
            if new.data_dir != old.data_dir {
                return Err(StartError("data_dir: changing the state folder needs a restart".into()));
            }
            // Cluster mode: the LUNs served were agreed with the cluster at start (docs/cluster.md).
            if (old.cluster.is_some() || new.cluster.is_some())
                && (new.cluster != old.cluster || new.targets != old.targets)
            {
                return Err(StartError(
                    "cluster: changing [cluster], targets or LUNs in cluster mode needs a restart".into(),
                ));
            }
            let mut summary = ReloadSummary::default();
            for (differs, what) in [
                (new.session != old.session, "[session]"),
                (new.limits != old.limits, "[limits]"),
                (new.discovery != old.discovery, "[discovery]"),
                (new.admin != old.admin, "[admin]"),
            ] {
                if differs {
                    summary.needs_restart.push(what);
                }
            }
            let current = self.registry.snapshot();
            let mut targets = Targets::new();
            let mut luns = HashMap::new();
            for t in &new.targets {
                let key = t.name.to_ascii_lowercase();
                let before = old.targets.iter().find(|o| o.name == t.name);
                let entry = match (before, current.get(&key)) {
                    (Some(o), Some(entry)) if o == t => {
                        summary.unchanged += 1;
                        entry.clone()
                    }
                    _ => {
                        let entry = build_target(new, t, &served.portals, &served.alua, |l| {
                            match served.luns.get(&(t.name.clone(), l.id)) {
                                Some((was, lun)) if was == l => Ok(lun.clone()),
                                _ => Ok(Arc::new(open_lun(t, l, new)?)),
                            }
                        })?;
                        if before.is_some() { &mut summary.changed } else { &mut summary.added }.push(t.name.clone());
                        Arc::new(entry)
                    }
                };
                for lun in entry.scsi.luns() {
                    let config = t.luns.iter().find(|l| l.id == lun.id()).cloned();
                    if let Some(config) = config {
                        luns.insert((t.name.clone(), lun.id()), (config, lun.clone()));
                    }
                }
                targets.insert(key, entry);
            }
            let replaced = self.registry.replace_targets(targets);
            let served_now = self.registry.snapshot();
            for (name, entry) in replaced.iter() {
                match served_now.get(name) {
                    None => {
                        entry.retire();
                        summary.removed.push(entry.name.clone());
                    }
                    // A changed target: its sessions still hold the old ACL, CHAP, masking and
                    // LUN objects. They are asked to log out and back in (AsyncEvent 1), so an
                    // initiator removed from the ACL loses access and no LUN is served by an old
                    // and a new object at once (two reservation states for one disk).
                    Some(now) if !Arc::ptr_eq(now, entry) => entry.retire(),
                    Some(_) => {}
                }
            }
            let dropped: Vec<Arc<Lun>> = served
                .luns
                .iter()
                .filter(|(key, (_, lun))| luns.get(*key).is_none_or(|(_, kept)| !Arc::ptr_eq(kept, lun)))
                .map(|(_, (_, lun))| lun.clone())
                .collect();
            served.luns = luns;
            served.config = new.clone();
            (summary, dropped)
        };
        for lun in dropped_luns {
            if let Err(e) = lun.backend().flush().await {
                error!(lun = lun.id(), error = %e, "flush of a LUN removed by reload failed");
            }
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path, targets: &str) -> Config {
        let text = format!(
            "data_dir = \"{}\"\n\n[[portals]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\n{targets}",
            dir.display()
        );
        Config::from_toml_str(&text, dir).expect("test config")
    }

    fn target(name: &str, luns: &[(u64, &str)]) -> String {
        let mut t = format!("\n[[targets]]\nname = \"{name}\"\n");
        for (id, size) in luns {
            t += &format!("\n[[targets.luns]]\nid = {id}\nbackend = \"memory\"\nsize = \"{size}\"\n");
        }
        t
    }

    fn lun(registry: &Registry, target: &str, id: u64) -> Arc<Lun> {
        let entry = registry.target(target).expect("target served");
        let found = entry.scsi.luns().find(|l| l.id() == id).cloned();
        found.expect("LUN served")
    }

    #[tokio::test]
    async fn reload_reuses_unchanged_luns_and_targets_and_retires_removed_and_changed_ones() {
        let dir = std::env::temp_dir().join(format!("palisade-reload-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b, c) = ("iqn.2026-11.test:a", "iqn.2026-11.test:b", "iqn.2026-11.test:c");
        let before = config(&dir, &(target(a, &[(0, "1MiB"), (1, "1MiB")]) + &target(b, &[(0, "1MiB")])));
        let server = Server::bind(&before).await.expect("bind");
        let registry = server.registry.clone();
        let (a0, a1, b_entry) = (lun(&registry, a, 0), lun(&registry, a, 1), registry.target(b).unwrap());
        let a_before = registry.target(a).unwrap();
        let handle = server.reload_handle();

        let after = config(&dir, &(target(a, &[(0, "1MiB"), (1, "2MiB")]) + &target(c, &[(0, "1MiB")])));
        let summary = handle.reload(&after).await.expect("reload");
        assert_eq!((summary.added, summary.removed, summary.changed), (vec![c.into()], vec![b.into()], vec![a.into()]));
        assert!(Arc::ptr_eq(&a0, &lun(&registry, a, 0)), "unchanged LUN is the same object");
        assert!(!Arc::ptr_eq(&a1, &lun(&registry, a, 1)), "a changed LUN is opened anew");
        assert!(registry.target(b).is_none() && *b_entry.retired.borrow(), "removed target retired");
        assert!(*a_before.retired.borrow(), "the changed target's old entry is retired: its sessions log in anew");
        assert!(!*registry.target(a).unwrap().retired.borrow() && !*registry.target(c).unwrap().retired.borrow());

        // The same file again changes nothing: every entry is kept as it is, none retired.
        let a_entry = registry.target(a).unwrap();
        let summary = handle.reload(&after).await.expect("same config");
        assert_eq!((summary.unchanged, summary.changed.len()), (2, 0));
        assert!(Arc::ptr_eq(&a_entry, &registry.target(a).unwrap()));
        assert!(!*a_entry.retired.borrow());

        // Restart-only changes are refused whole.
        let mut moved = after.clone();
        moved.data_dir = dir.join("elsewhere");
        moved.targets.pop();
        let refused = handle.reload(&moved).await.expect_err("data_dir change refused");
        assert!(refused.0.starts_with("data_dir"), "{refused}");
        assert!(registry.target(c).is_some(), "nothing changed by a refused reload");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
