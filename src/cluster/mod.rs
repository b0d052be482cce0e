//! Cluster mode (issue #10, docs/cluster.md): several gateways serve the same LUNs, with etcd as
//! the only source of cluster truth: membership (a lease per gateway, self-fencing
//! on the local clock before etcd can expire it, clean rejoin), unique gateway ids, one LUN
//! identity across gateways, and the ALUA port groups of every gateway.
//!
//! | module | owns |
//! |---|---|
//! | `store` | the `ClusterStore` trait: the etcd operations used |
//! | `etcd` | `ClusterStore` on etcd (tonic + prost over vendored generated gRPC code) |
//! | `memory` | an in-memory linearizable fake for unit tests (paused tokio clock) |
//! | `records` | key layout and the JSON records: gateways, LUN definitions |
//! | `identity` | publish-or-compare of each LUN's definition |
//! | `membership` | lease, keepalive, self-fence deadline, drain, rejoin |
//! | `reservations` | one reservation state per LU: commit (compare-and-swap), apply, the ack barrier |
//! | `pr_record` | the shared reservation record: the state and the PR OUT that made it |
//! | `pr_sync` | the watch that applies every change in revision order; re-reads; power-on |
//! | `peers` | the other gateways: joins and leaves logged, ALUA groups |
//! | `status` | what `palisade cluster status` shows |

pub mod etcd;
pub mod identity;
pub mod membership;
#[cfg(test)]
mod membership_tests;
#[cfg(test)]
pub mod memory;
pub mod peers;
pub mod pr_record;
pub mod pr_sync;
pub mod records;
pub mod reservations;
#[cfg(test)]
mod reservations_tests;
pub mod status;
pub mod store;

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use tokio::time::{sleep, Instant};
use tracing::{error, info, warn};

use crate::config::ClusterConfig;
use crate::iscsi::registry::PortalAddr;
use crate::scsi::alua::{AccessState, Alua};
use crate::scsi::{Lun, WriteFence};
use etcd::EtcdStore;
use identity::Agreement;
use membership::{LeaseTiming, Membership, ServedLun};
use pr_sync::{PrSync, SyncedLun};
use records::{GatewayRecord, Keys, LunDefinition, PortalRecord};
use reservations::{SharedLun, SyncContext};
use store::LeaseId;

/// The ALUA state holder of a gateway with these portals: target port group = gateway id,
/// relative target port id = gateway_id * 256 + TPGT (SPC-4 §7.8.6.8: unique in the cluster).
/// Transitioning until the membership is taken and the LUN definitions agree.
pub fn gateway_alua(config: &ClusterConfig, portals: &[PortalAddr]) -> Arc<Alua> {
    let tpgts: Vec<u16> = portals.iter().map(|p| p.tpgt).collect();
    let alua = Alua::gateway(config.gateway_id, &tpgts);
    // REPORT TARGET PORT GROUPS' IMPLICIT TRANSITION TIME: a gateway that lost etcd comes back
    // within about one lease TTL (SPC-4 §6.37).
    alua.set_implicit_transition_secs(config.lease_ttl.as_secs().clamp(1, 255) as u8);
    alua.set_local_state(AccessState::Transitioning);
    alua
}

/// The definition of `lun` of `target` as this gateway would present it.
pub fn definition_of(target: &str, lun: &Lun) -> LunDefinition {
    LunDefinition {
        target: target.to_string(),
        lun: lun.id(),
        naa: LunDefinition::naa_hex(lun.identity().naa),
        serial: lun.identity().serial.clone(),
        block_size: lun.block_size(),
        capacity_blocks: lun.block_count(),
    }
}

/// Runs a start-up step (idempotent: a read, or a write conditioned on what was read) again while
/// etcd does not answer, for up to one TTL: one slow answer (etcd busy, a leader election) must
/// not stop a gateway from starting. The write fence is still closed while this waits.
async fn at_start<T, F, Fut>(timing: LeaseTiming, what: &str, mut step: F) -> Result<T, store::StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, store::StoreError>>,
{
    let give_up = Instant::now() + timing.ttl;
    loop {
        match step().await {
            Err(store::StoreError::Unavailable(why)) if Instant::now() < give_up => {
                warn!("starting: {what}: etcd unavailable: {why}; trying again");
                sleep(timing.interval).await;
            }
            done => return done,
        }
    }
}

/// Loads every served LU's reservation state from etcd (clearing non-APTPL state if this is the
/// cluster's power-on) and makes PR OUT commit there; the watcher to run and the revision it
/// starts after.
async fn share_reservations(
    store: &Arc<EtcdStore>,
    keys: &Keys,
    config: &ClusterConfig,
    timing: LeaseTiming,
    membership: &mut Membership<EtcdStore>,
    served: &[ServedLun],
) -> Result<(PrSync<EtcdStore>, i64), String> {
    let barrier = std::env::var_os("PALISADE_UNSAFE_SKIP_PR_BARRIER").is_none();
    if !barrier {
        warn!("PALISADE_UNSAFE_SKIP_PR_BARRIER is set: PR OUT returns before other gateways fence (a test's negative control; never in production)");
    }
    let ctx = Arc::new(SyncContext {
        store: store.clone(),
        keys: keys.clone(),
        gateway_id: config.gateway_id,
        lease: membership.lease_cell(),
        membership: membership.membership_cell(),
        timing,
        barrier,
        stats: membership.status().pr_out(),
    });
    let shared: Vec<_> =
        served.iter().map(|s| Arc::new(SharedLun::new(ctx.clone(), &s.definition.target, s.definition.lun))).collect();
    let failed = |e: store::StoreError| format!("cluster: reading reservation state from etcd: {e}");
    let joined = ctx.membership.load(Ordering::Acquire);
    at_start(timing, "cluster power-on", || {
        pr_sync::power_on(store.as_ref(), keys, config.gateway_id, joined, &shared)
    })
    .await
    .map_err(failed)?;
    let synced = shared.iter().zip(served).map(|(s, l)| SyncedLun { shared: s.clone(), lun: l.lun.clone() }).collect();
    let (sync, handle) = PrSync::new(store.clone(), keys.clone(), synced, timing.interval);
    let from = at_start(timing, "loading reservation state", || sync.load()).await.map_err(failed)?;
    let mut sources: Vec<status::ReservationSource> = Vec::new();
    for (s, l) in shared.iter().zip(served) {
        l.lun.share_reservations(s.clone());
        let (shared, lun, target) = (s.clone(), l.lun.clone(), l.definition.target.clone());
        sources.push(Box::new(move || {
            let (position, state) = (shared.position(), lun.pr().snapshot());
            status::ReservationView {
                target: target.clone(),
                lun: lun.id(),
                applied_revision: position.applied,
                held_revision: position.held,
                generation: state.generation,
                registrants: state.registrants.len(),
                reserved: state.reservation.is_some(),
                acknowledged: Default::default(),
            }
        }));
    }
    membership.status().set_reservation_sources(sources);
    membership.set_reservations(handle);
    Ok((sync, from))
}

/// A running cluster membership: the keepalive task and the peer watcher.
pub struct ClusterNode {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    store: Arc<EtcdStore>,
    lease: Arc<AtomicI64>,
    status: Arc<status::ClusterStatus>,
    fence: Arc<WriteFence>,
    served: Vec<Arc<Lun>>,
}

/// LUNs (target name, LUN id) whose definition disagrees with the cluster's.
pub type Refused = Vec<(String, u64)>;

impl ClusterNode {
    /// Connects to etcd, takes this gateway's membership (refusing a duplicate gateway id),
    /// agrees on every LUN's definition, then serves: the write fence opens, the gateway reports
    /// Active/Optimized, and keepalives run. LUNs whose definition differs are returned, with
    /// the differing fields logged, and must not be served.
    pub async fn start(
        config: &ClusterConfig,
        portals: &[PortalAddr],
        fence: Arc<WriteFence>,
        alua: Arc<Alua>,
        luns: Vec<(String, Arc<Lun>)>,
    ) -> Result<(ClusterNode, Refused), String> {
        let timing = LeaseTiming::new(config.lease_ttl, config.self_fence_margin);
        // Each request may take at most one keepalive interval: a gateway that cannot reach
        // etcd finds out in time to retry before its deadline.
        let request_timeout = timing.interval;
        let endpoints = config.etcd_endpoints.join(", ");
        let connect = |what: &'static str| {
            let endpoints = config.etcd_endpoints.clone();
            async move {
                EtcdStore::connect(&endpoints, request_timeout)
                    .await
                    .map(Arc::new)
                    .map_err(|e| format!("cluster: cannot reach etcd ({what} client) at {}: {e}", endpoints.join(", ")))
            }
        };
        let store = connect("main").await?;
        let keepalive_store = connect("keepalive").await?;
        let keys = Keys::new(&config.key_prefix);
        let record = GatewayRecord {
            gateway_id: config.gateway_id,
            portals: portals
                .iter()
                .map(|p| PortalRecord {
                    address: p.addr.to_string(),
                    tpgt: p.tpgt,
                    relative_port: GatewayRecord::relative_port(config.gateway_id, p.tpgt),
                })
                .collect(),
            pid: std::process::id(),
            boot_id: rand::random(),
        };
        let mut membership = Membership::join(
            store.clone(),
            keepalive_store,
            keys.clone(),
            record.clone(),
            timing,
            fence.clone(),
            alua.clone(),
        )
        .await
        .map_err(|e| format!("cluster: {e}"))?;
        let mut served = Vec::new();
        let mut refused = Vec::new();
        for (target, lun) in luns {
            let definition = definition_of(&target, &lun);
            match at_start(timing, "agreeing on LUN definitions", || membership.agree(&definition)).await {
                Ok(Agreement::Published) => {
                    info!(target = %target, lun = lun.id(), naa = %definition.naa, serial = %definition.serial, "published the LUN definition")
                }
                Ok(Agreement::Matches) => {
                    info!(target = %target, lun = lun.id(), "LUN definition matches the cluster's")
                }
                Ok(Agreement::Differs(differences)) => {
                    for d in &differences {
                        error!(target = %target, lun = lun.id(), field = d.field, ours = %d.ours, cluster = %d.cluster,
                            "refusing to serve LUN {} of {target}: its {} differs from the cluster's definition ({d})", lun.id(), d.field);
                    }
                    refused.push((target, lun.id()));
                    continue;
                }
                Err(e) => return Err(format!("cluster: reading LUN definitions from etcd at {endpoints}: {e}")),
            }
            served.push(ServedLun { definition, lun });
        }
        let (sync, from) = share_reservations(&store, &keys, config, timing, &mut membership, &served).await?;
        let lease = membership.lease_cell();
        info!(
            gateway = config.gateway_id,
            lease = %format_args!("{:x}", lease.load(Ordering::Acquire)),
            ttl_ms = timing.ttl.as_millis() as u64,
            margin_ms = timing.margin.as_millis() as u64,
            keepalive_ms = timing.interval.as_millis() as u64,
            "joined the cluster; serving"
        );
        let status = membership.status();
        let watcher = tokio::spawn(peers::watch(store.clone(), keys, record, alua, status.clone(), timing.interval));
        let served_luns = served.iter().map(|s| s.lun.clone()).collect();
        let keepalive = membership.start(served);
        let reservations = tokio::spawn(sync.run(from));
        let node = ClusterNode {
            tasks: vec![keepalive, watcher, reservations],
            store,
            lease,
            status,
            fence,
            served: served_luns,
        };
        Ok((node, refused))
    }

    /// What `palisade cluster status` shows.
    pub fn status(&self) -> Arc<status::ClusterStatus> {
        self.status.clone()
    }

    /// Stops the keepalives, closes the write fence and waits for admitted writes (a task
    /// aborted at shutdown may still have one in the backend), then revokes the lease, so the
    /// other gateways see this one leave now — and nothing of it lands after they do.
    pub async fn leave(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.fence.close(true);
        for lun in &self.served {
            lun.pr().quiesce().await;
        }
        let lease = LeaseId(self.lease.load(Ordering::Acquire));
        Membership::<EtcdStore>::leave(&self.store, lease).await;
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
