//! The other gateways, as etcd's membership keys show them: polled every keepalive interval,
//! every join and leave logged, and the ALUA port groups set from them (one group per gateway,
//! Active/Optimized while its key is live, Unavailable once it has left; SPC-4 §5.15).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::records::{GatewayRecord, Keys};
use super::status::{ClusterStatus, GatewayView};
use super::store::{ClusterStore, Versioned};
use crate::scsi::alua::{AccessState, Alua, PortGroup};

/// What this gateway knows of each gateway it has seen.
#[derive(Debug, Default)]
pub struct PeerView {
    /// Gateway id → (last record seen, live now).
    known: BTreeMap<u16, (GatewayRecord, bool)>,
}

impl PeerView {
    /// Applies one listing of the membership keys; returns the port groups to report.
    pub fn update(&mut self, own: &GatewayRecord, live: Vec<GatewayRecord>) -> Vec<PortGroup> {
        let live_ids: Vec<u16> = live.iter().map(|r| r.gateway_id).collect();
        for record in live {
            let id = record.gateway_id;
            match self.known.get(&id) {
                Some((was, true)) if was.boot_id == record.boot_id => {}
                Some((_, true)) if id != own.gateway_id => {
                    info!(gateway = id, pid = record.pid, "gateway restarted and rejoined the cluster")
                }
                _ if id != own.gateway_id => info!(gateway = id, pid = record.pid, "gateway joined the cluster"),
                _ => {}
            }
            self.known.insert(id, (record, true));
        }
        for (id, (_, is_live)) in self.known.iter_mut() {
            if *is_live && !live_ids.contains(id) {
                *is_live = false;
                if *id != own.gateway_id {
                    warn!(gateway = *id, "gateway left the cluster: its membership lease ended");
                }
            }
        }
        self.known.entry(own.gateway_id).or_insert_with(|| (own.clone(), false));
        self.known
            .values()
            .map(|(record, live)| {
                record.port_group(if *live { AccessState::ActiveOptimized } else { AccessState::Unavailable })
            })
            .collect()
    }

    /// Every gateway seen, for `palisade cluster status`.
    pub fn views(&self) -> Vec<GatewayView> {
        self.known
            .values()
            .map(|(r, live)| GatewayView {
                id: r.gateway_id,
                live: *live,
                pid: r.pid,
                portals: r.portals.iter().map(|p| format!("{},{}", p.address, p.tpgt)).collect(),
                relative_ports: r.portals.iter().map(|p| p.relative_port).collect(),
            })
            .collect()
    }

    pub fn live(&self) -> Vec<u16> {
        self.known.iter().filter(|(_, (_, live))| *live).map(|(id, _)| *id).collect()
    }
}

/// Polls the membership keys forever (aborted with the cluster node).
pub async fn watch<S: ClusterStore>(
    store: Arc<S>,
    keys: Keys,
    own: GatewayRecord,
    alua: Arc<Alua>,
    status: Arc<ClusterStatus>,
    every: Duration,
) {
    let mut view = PeerView::default();
    loop {
        match store.get_prefix(&keys.gateways()).await {
            Ok(entries) => {
                let live = entries
                    .into_iter()
                    .filter(|(key, _)| keys.gateway_id_of(key).is_some())
                    .filter_map(|(_, v)| serde_json::from_slice::<GatewayRecord>(&v.value).ok())
                    .collect();
                // Alua keeps our own group's state: the membership task owns it.
                alua.set_groups(view.update(&own, live));
                status.set_gateways(view.views());
            }
            Err(e) => debug!(error = %e, "membership listing failed"),
        }
        match store.get_prefix(&keys.all_reservation_acks()).await {
            Ok(entries) => status.set_acknowledged(acknowledgements(&keys, &entries)),
            Err(e) => debug!(error = %e, "acknowledgement listing failed"),
        }
        tokio::time::sleep(every).await;
    }
}

/// `pr-acks/<target>/<lun>/<gateway>` → (target, LUN) → gateway → revision. Target names hold
/// no `/` (RFC 7143 §4.2.7.2 allows none in iqn/eui/naa names), so the last two fields split off.
fn acknowledgements(keys: &Keys, entries: &[(String, Versioned)]) -> BTreeMap<(String, u64), BTreeMap<u16, i64>> {
    let mut acks: BTreeMap<(String, u64), BTreeMap<u16, i64>> = BTreeMap::new();
    for (key, value) in entries {
        let Some(rest) = key.strip_prefix(&keys.all_reservation_acks()) else { continue };
        let mut fields = rest.rsplitn(3, '/');
        let (Some(gateway), Some(lun), Some(target)) = (fields.next(), fields.next(), fields.next()) else { continue };
        let (Ok(gateway), Ok(lun)) = (gateway.parse::<u16>(), lun.parse::<u64>()) else { continue };
        let Some(revision) = std::str::from_utf8(&value.value).ok().and_then(|v| v.parse::<i64>().ok()) else {
            continue;
        };
        acks.entry((target.to_string(), lun)).or_default().insert(gateway, revision);
    }
    acks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::records::PortalRecord;

    fn gateway(id: u16, boot_id: u64) -> GatewayRecord {
        let portal = PortalRecord {
            address: format!("127.0.0.1:{}", 3260 + id),
            tpgt: 1,
            relative_port: GatewayRecord::relative_port(id, 1),
        };
        GatewayRecord { gateway_id: id, portals: vec![portal], pid: 1, boot_id }
    }

    #[test]
    fn groups_follow_joins_and_leaves() {
        let mut view = PeerView::default();
        let own = gateway(1, 10);
        let groups = view.update(&own, vec![own.clone(), gateway(2, 20)]);
        assert_eq!(
            groups.iter().map(|g| (g.id, g.state)).collect::<Vec<_>>(),
            vec![(1, AccessState::ActiveOptimized), (2, AccessState::ActiveOptimized)]
        );
        assert_eq!(groups[1].relative_ports, vec![0x201]);
        let groups = view.update(&own, vec![own.clone()]);
        assert_eq!(groups[1].state, AccessState::Unavailable, "a gateway that left stays listed, Unavailable");
        assert_eq!(view.live(), vec![1]);
        let groups = view.update(&own, vec![gateway(2, 21)]);
        assert_eq!(groups.len(), 2, "our own group is always listed, even while our key is gone");
        assert_eq!(view.live(), vec![2]);
    }

    #[test]
    fn acknowledgements_are_grouped_by_lun_and_gateway() {
        let keys = Keys::new("/p");
        let at = |key: String, value: &str| {
            (key, Versioned { value: value.as_bytes().to_vec(), create_revision: 1, mod_revision: 1, lease: None })
        };
        let entries = vec![
            at(format!("{}1", keys.reservation_acks("iqn.2026-11.io.palisade:a", 0)), "17"),
            at(format!("{}2", keys.reservation_acks("iqn.2026-11.io.palisade:a", 0)), "15"),
            at(format!("{}2", keys.reservation_acks("iqn.2026-11.io.palisade:a", 3)), "9"),
            at(format!("{}x", keys.reservation_acks("iqn.2026-11.io.palisade:a", 3)), "9"),
        ];
        let acks = acknowledgements(&keys, &entries);
        assert_eq!(acks[&("iqn.2026-11.io.palisade:a".to_string(), 0)], BTreeMap::from([(1, 17), (2, 15)]));
        assert_eq!(acks[&("iqn.2026-11.io.palisade:a".to_string(), 3)], BTreeMap::from([(2, 9)]));
    }
}
