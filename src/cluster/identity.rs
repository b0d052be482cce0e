//! LUN identity across gateways: the first gateway to serve a LU publishes its definition; every
//! other gateway compares its own with it and refuses the LU if any field differs, naming the
//! field (a host would otherwise see two different disks, or one disk of two sizes, through
//! its paths).

use super::records::{Difference, Keys, LunDefinition};
use super::store::{ClusterStore, Created, StoreResult};

/// What the cluster says about one of our LUNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Agreement {
    /// We published the definition (first gateway to serve this LU).
    Published,
    /// The cluster's definition equals ours.
    Matches,
    /// The cluster's definition differs in these fields: do not serve this LU.
    Differs(Vec<Difference>),
}

/// Publishes `ours` if the LU has no definition yet (one create-if-absent transaction, so two
/// gateways starting at once cannot both publish), else compares with the published one.
pub async fn agree<S: ClusterStore>(store: &S, keys: &Keys, ours: &LunDefinition) -> StoreResult<Agreement> {
    let key = keys.lun(&ours.target, ours.lun);
    let value = serde_json::to_vec(ours).expect("a definition serialises");
    match store.create(&key, value, None).await? {
        Created::Created => Ok(Agreement::Published),
        Created::Exists(found) => match serde_json::from_slice::<LunDefinition>(&found.value) {
            Ok(cluster) => {
                let differences = ours.differences(&cluster);
                Ok(if differences.is_empty() { Agreement::Matches } else { Agreement::Differs(differences) })
            }
            Err(e) => Ok(Agreement::Differs(vec![Difference {
                field: "record",
                ours: "a valid definition".into(),
                cluster: format!("an unreadable record at {key} ({e})"),
            }])),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::memory::MemoryStore;

    fn definition(serial: &str, blocks: u64) -> LunDefinition {
        LunDefinition {
            target: "iqn.2026-11.io.palisade:t".into(),
            lun: 1,
            naa: LunDefinition::naa_hex(0x5002_5041_0000_0001),
            serial: serial.into(),
            block_size: 512,
            capacity_blocks: blocks,
        }
    }

    #[tokio::test]
    async fn first_publishes_the_same_matches_another_is_refused_by_field() {
        let (store, keys) = (MemoryStore::new(), Keys::new("/t"));
        assert_eq!(agree(&store, &keys, &definition("PAL1", 2048)).await, Ok(Agreement::Published));
        assert_eq!(agree(&store, &keys, &definition("PAL1", 2048)).await, Ok(Agreement::Matches));
        match agree(&store, &keys, &definition("PAL1", 4096)).await.unwrap() {
            Agreement::Differs(d) => assert_eq!((d.len(), d[0].field), (1, "capacity_blocks")),
            other => panic!("{other:?}"),
        }
        store.put(&keys.lun("iqn.2026-11.io.palisade:t", 1), b"garbage".to_vec());
        assert!(
            matches!(agree(&store, &keys, &definition("PAL1", 2048)).await, Ok(Agreement::Differs(d)) if d[0].field == "record")
        );
    }
}
