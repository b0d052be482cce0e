//! What the cluster keeps in etcd, and where (docs/cluster.md "Keys"):
//!
//! | key | value | lease |
//! |---|---|---|
//! | `PREFIX/gateways/<id>` | [`GatewayRecord`]: portals, relative port ids, pid, boot id | the gateway's |
//! | `PREFIX/luns/<target>/<lun>` | [`LunDefinition`]: the LU's identity as every gateway must present it | none |
//! | `PREFIX/pr/<target>/<lun>` | the LU's reservation state and the PR OUT that made it (pr_record.rs) | none |
//! | `PREFIX/pr-acks/<target>/<lun>/<id>` | the highest `pr` revision gateway `id` has applied and drained | the gateway's |
//!
//! Values are JSON: readable with `etcdctl get`, and versioned by their field names.

use serde::{Deserialize, Serialize};

use crate::scsi::alua::{AccessState, PortGroup};

/// Key layout under the configured prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.to_string() }
    }

    pub fn gateways(&self) -> String {
        format!("{}/gateways/", self.prefix)
    }

    pub fn gateway(&self, id: u16) -> String {
        format!("{}{id}", self.gateways())
    }

    /// The gateway id of a key under `gateways()`.
    pub fn gateway_id_of(&self, key: &str) -> Option<u16> {
        key.strip_prefix(&self.gateways())?.parse().ok()
    }

    /// One key per LU, addressed by what initiators address it by: target name and LUN number.
    pub fn lun(&self, target: &str, lun: u64) -> String {
        format!("{}/luns/{target}/{lun}", self.prefix)
    }

    /// Every reservation record and every acknowledgement: one watch covers them all.
    pub fn reservations_and_acks(&self) -> String {
        format!("{}/pr", self.prefix)
    }

    /// Every LU's reservation record is under this prefix.
    pub fn reservations(&self) -> String {
        format!("{}/pr/", self.prefix)
    }

    /// The LU's reservation state, shared by every gateway.
    pub fn reservation(&self, target: &str, lun: u64) -> String {
        format!("{}{target}/{lun}", self.reservations())
    }

    /// Every LU's acknowledgements.
    pub fn all_reservation_acks(&self) -> String {
        format!("{}/pr-acks/", self.prefix)
    }

    /// The acknowledgements of the LU's reservation changes, one key per gateway.
    pub fn reservation_acks(&self, target: &str, lun: u64) -> String {
        format!("{}{target}/{lun}/", self.all_reservation_acks())
    }
}

/// One portal of a gateway as ALUA reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalRecord {
    pub address: String,
    pub tpgt: u16,
    /// SPC-4 §7.8.6.8 relative target port identifier, unique across the cluster:
    /// gateway_id * 256 + TPGT.
    pub relative_port: u16,
}

/// A live gateway: written under its lease when it joins, gone when the lease ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayRecord {
    pub gateway_id: u16,
    pub portals: Vec<PortalRecord>,
    /// Process id and a random number drawn at start: tells a restarted gateway from the old one.
    pub pid: u32,
    pub boot_id: u64,
}

impl GatewayRecord {
    /// The relative target port id of a portal of gateway `gateway_id` (the convention shared
    /// with the SCSI layer's ALUA reporting).
    pub fn relative_port(gateway_id: u16, tpgt: u16) -> u16 {
        crate::scsi::alua::relative_port_in_cluster(gateway_id, tpgt)
    }

    /// This gateway's target port group (group id = gateway id) in `state`.
    pub fn port_group(&self, state: AccessState) -> PortGroup {
        PortGroup { id: self.gateway_id, state, relative_ports: self.portals.iter().map(|p| p.relative_port).collect() }
    }
}

/// A logical unit's identity: what must be the same through every gateway for hosts (and
/// multipath) to see one disk (SPC-4 §7.8.6 VPD 83h, §7.8.5 VPD 80h, SBC-3 READ CAPACITY).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LunDefinition {
    pub target: String,
    pub lun: u64,
    /// NAA designator, hex (VPD 83h).
    pub naa: String,
    /// Unit serial number (VPD 80h).
    pub serial: String,
    pub block_size: u32,
    pub capacity_blocks: u64,
}

/// One field on which this gateway's definition and the cluster's disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub field: &'static str,
    pub ours: String,
    pub cluster: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: this gateway has {}, the cluster has {}", self.field, self.ours, self.cluster)
    }
}

impl LunDefinition {
    pub fn naa_hex(naa: u64) -> String {
        format!("{naa:016x}")
    }

    /// Every field that differs from `cluster`'s, in a fixed order.
    pub fn differences(&self, cluster: &LunDefinition) -> Vec<Difference> {
        let pairs = [
            ("target", self.target.clone(), cluster.target.clone()),
            ("lun", self.lun.to_string(), cluster.lun.to_string()),
            ("naa", self.naa.clone(), cluster.naa.clone()),
            ("serial", self.serial.clone(), cluster.serial.clone()),
            ("block_size", self.block_size.to_string(), cluster.block_size.to_string()),
            ("capacity_blocks", self.capacity_blocks.to_string(), cluster.capacity_blocks.to_string()),
        ];
        pairs
            .into_iter()
            .filter(|(_, ours, theirs)| ours != theirs)
            .map(|(field, ours, cluster)| Difference { field, ours, cluster })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition() -> LunDefinition {
        LunDefinition {
            target: "iqn.2026-11.io.palisade:t".into(),
            lun: 0,
            naa: LunDefinition::naa_hex(0x5002_5041_0000_0001),
            serial: "PAL1".into(),
            block_size: 512,
            capacity_blocks: 2048,
        }
    }

    #[test]
    fn differences_name_each_field() {
        let ours = definition();
        assert!(ours.differences(&definition()).is_empty());
        let mut theirs = definition();
        theirs.serial = "PAL2".into();
        theirs.capacity_blocks = 4096;
        let found = ours.differences(&theirs);
        assert_eq!(found.iter().map(|d| d.field).collect::<Vec<_>>(), vec!["serial", "capacity_blocks"]);
        assert_eq!(found[0].to_string(), "serial: this gateway has PAL1, the cluster has PAL2");
    }

    #[test]
    fn keys_and_relative_ports() {
        let keys = Keys::new("/p");
        assert_eq!(keys.gateway(3), "/p/gateways/3");
        assert_eq!(keys.gateway_id_of("/p/gateways/3"), Some(3));
        assert_eq!(keys.gateway_id_of("/p/gateways/x"), None);
        assert_eq!(keys.lun("iqn.x:t", 7), "/p/luns/iqn.x:t/7");
        assert_eq!(GatewayRecord::relative_port(2, 1), 0x201);
    }
}
