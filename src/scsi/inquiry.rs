//! INQUIRY (SPC-4 §6.6): standard data and the VPD pages 00h, 80h, 83h, B0h, B1h, B2h.

use super::limits;
use super::lun::{Lun, VENDOR_ID};
use super::sense::{Sense, SenseReason};
use super::task::ItNexus;
use super::{odx_vpd, xcopy};

const VPD_SUPPORTED: u8 = 0x00;
const VPD_UNIT_SERIAL: u8 = 0x80;
const VPD_DEVICE_ID: u8 = 0x83;
const VPD_THIRD_PARTY_COPY: u8 = 0x8F;
const VPD_BLOCK_LIMITS: u8 = 0xB0;
const VPD_BLOCK_CHARACTERISTICS: u8 = 0xB1;
const VPD_PROVISIONING: u8 = 0xB2;
const VPD_PAGES: [u8; 7] = [
    VPD_SUPPORTED,
    VPD_UNIT_SERIAL,
    VPD_DEVICE_ID,
    VPD_THIRD_PARTY_COPY,
    VPD_BLOCK_LIMITS,
    VPD_BLOCK_CHARACTERISTICS,
    VPD_PROVISIONING,
];
/// SPC-4 §7.6.1 protocol identifier for iSCSI in designation descriptors.
const PROTOCOL_ISCSI: u8 = 0x5;

/// Version descriptors (SPC-4 §6.6.2): SAM-5, iSCSI, SPC-4, SBC-3.
const VERSION_DESCRIPTORS: [u16; 4] = [0x00A0, 0x0960, 0x0460, 0x04C0];

/// Copies `text` as space-padded printable ASCII into `field` (SPC-4 §4.3.1).
fn put_ascii(field: &mut [u8], text: &str) {
    field.fill(b' ');
    for (dst, b) in field.iter_mut().zip(text.bytes().filter(|b| (0x20..0x7F).contains(b))) {
        *dst = b;
    }
}

/// INQUIRY parameter data, untruncated. `lun` is None for a LUN that is absent or masked;
/// `port_group` is the target port group of the port the command came through (SPC-4 §5.16.2).
pub(crate) fn inquiry(cdb: &[u8], lun: Option<&Lun>, nexus: &ItNexus, port_group: u16) -> Result<Vec<u8>, Sense> {
    let evpd = cdb[1] & 0x01 != 0;
    let page = cdb[2];
    if !evpd {
        // SPC-4 §6.6.1: PAGE CODE must be zero when EVPD is zero.
        if page != 0 {
            return Err(Sense::invalid_cdb_field(2, Some(7)));
        }
        return Ok(standard(lun));
    }
    let lun = lun.ok_or(Sense::from(SenseReason::LunNotSupported))?;
    let body = match page {
        VPD_SUPPORTED => VPD_PAGES.to_vec(),
        VPD_UNIT_SERIAL => lun.identity().serial.bytes().filter(|b| (0x20..0x7F).contains(b)).take(252).collect(),
        VPD_DEVICE_ID => device_identification(lun, nexus, port_group),
        VPD_THIRD_PARTY_COPY => third_party_copy(lun),
        VPD_BLOCK_LIMITS => block_limits(lun),
        VPD_BLOCK_CHARACTERISTICS => {
            // SBC-3 §6.5.2: MEDIUM ROTATION RATE 1 = non-rotating medium.
            let mut b = vec![0u8; 0x3C];
            b[1] = 0x01;
            b
        }
        VPD_PROVISIONING => provisioning(lun),
        _ => return Err(Sense::invalid_cdb_field(2, Some(7))),
    };
    let mut out = vec![0x00, page];
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend(body);
    Ok(out)
}

/// SPC-4 §6.6.2 standard INQUIRY data.
fn standard(lun: Option<&Lun>) -> Vec<u8> {
    let mut d = vec![0u8; 58 + 2 * VERSION_DESCRIPTORS.len()];
    // Peripheral qualifier 011b / type 1Fh: no logical unit here (SPC-4 §6.6.2).
    d[0] = if lun.is_some() { 0x00 } else { 0x7F };
    d[2] = 0x06; // SPC-4
    d[3] = 0x10 | 0x02; // HISUP, RESPONSE DATA FORMAT 2
    d[4] = (d.len() - 5) as u8;
    // 3PC: EXTENDED COPY is supported; TPGS 01b: implicit asymmetric logical unit access only,
    // REPORT TARGET PORT GROUPS supported, SET TARGET PORT GROUPS not (SPC-4 §6.6.2, §5.16.2.7).
    d[5] = 0x08 | 0x10;
    d[7] = 0x02; // CMDQUE
    put_ascii(&mut d[8..16], VENDOR_ID);
    let (product, revision) = match lun {
        Some(lun) => (lun.identity().product.as_str(), lun.identity().revision.as_str()),
        None => ("", ""),
    };
    put_ascii(&mut d[16..32], product);
    put_ascii(&mut d[32..36], revision);
    for (i, code) in VERSION_DESCRIPTORS.iter().enumerate() {
        d[58 + 2 * i..60 + 2 * i].copy_from_slice(&code.to_be_bytes());
    }
    d
}

/// One designation descriptor (SPC-4 §7.8.6.1).
fn designator(out: &mut Vec<u8>, protocol_code_set: u8, piv_assoc_type: u8, value: &[u8]) {
    out.extend_from_slice(&[protocol_code_set, piv_assoc_type, 0, value.len() as u8]);
    out.extend_from_slice(value);
}

/// SPC-4 §7.8.6 device identification page. The logical unit's designators are the same through
/// every port (and every cluster gateway); the target port's say which port and group answered.
fn device_identification(lun: &Lun, nexus: &ItNexus, port_group: u16) -> Vec<u8> {
    let mut out = Vec::new();
    // NAA, associated with the logical unit, binary (§7.8.6.6).
    designator(&mut out, 0x01, 0x03, &lun.identity().naa.to_be_bytes());
    // T10 vendor ID based, ASCII (§7.8.6.4): vendor followed by the unit serial.
    let mut t10 = [b' '; 8].to_vec();
    put_ascii(&mut t10, VENDOR_ID);
    t10.extend(lun.identity().serial.bytes().filter(|b| (0x20..0x7F).contains(b)).take(200));
    designator(&mut out, 0x02, 0x01, &t10);
    // Relative target port (§7.8.6.7: two obsolete bytes, RELATIVE TARGET PORT IDENTIFIER) and
    // target port group (§7.8.6.8: two reserved bytes, TARGET PORT GROUP) of the port this
    // command came through: PIV, association target port, binary.
    let [rel_hi, rel_lo] = nexus.target.relative_port.to_be_bytes();
    designator(&mut out, (PROTOCOL_ISCSI << 4) | 0x01, 0x80 | 0x10 | 0x04, &[0, 0, rel_hi, rel_lo]);
    let [tpg_hi, tpg_lo] = port_group.to_be_bytes();
    designator(&mut out, (PROTOCOL_ISCSI << 4) | 0x01, 0x80 | 0x10 | 0x05, &[0, 0, tpg_hi, tpg_lo]);
    // SCSI name string of the target port (§7.8.6.11): UTF-8, NUL terminated, padded to 4.
    let mut name = nexus.target.to_string().into_bytes();
    name.truncate(251);
    name.push(0);
    while !name.len().is_multiple_of(4) {
        name.push(0);
    }
    designator(&mut out, (PROTOCOL_ISCSI << 4) | 0x03, 0x80 | 0x10 | 0x08, &name);
    out
}

/// One third-party copy descriptor (SPC-4 §7.8.17.1), padded to a multiple of 4 bytes.
fn tpc_descriptor(out: &mut Vec<u8>, kind: u16, mut body: Vec<u8>) {
    while !(body.len() + 4).is_multiple_of(4) {
        body.push(0);
    }
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend(body);
}

/// SPC-4 §7.8.17 third-party copy page, with what EXTENDED COPY (LID1) requires (supported
/// commands, parameter data, supported descriptors, supported CSCD IDs) and what offloaded data
/// transfer requires (SBC-3 §6.6.6: Block Device ROD Token Limits; SPC-4 §7.8.17: ROD Token
/// Features, Supported ROD Token and ROD Types, General Copy Operations), in type order. The
/// ROD token descriptors are built in odx_vpd.rs.
fn third_party_copy(lun: &Lun) -> Vec<u8> {
    let mut out = Vec::new();
    tpc_descriptor(&mut out, 0x0000, odx_vpd::block_device_rod_token_limits(lun.block_size()));
    // §7.8.17.4 supported commands: EXTENDED COPY(LID1) 83h/00h, POPULATE TOKEN 83h/10h,
    // WRITE USING TOKEN 83h/11h, COPY OPERATION ABORT 83h/1Ch; RECEIVE COPY RESULTS 84h with
    // COPY STATUS (00h), OPERATING PARAMETERS (03h), RECEIVE ROD TOKEN INFORMATION (07h).
    let commands = [0x83, 4, 0x00, 0x10, 0x11, 0x1C, 0x84, 3, 0x00, 0x03, 0x07];
    let mut body = vec![commands.len() as u8];
    body.extend_from_slice(&commands);
    tpc_descriptor(&mut out, 0x0001, body);
    // §7.8.17.5 parameter data.
    let mut body = vec![0u8; 28];
    body[4..6].copy_from_slice(&xcopy::MAX_CSCD_DESCRIPTORS.to_be_bytes());
    body[6..8].copy_from_slice(&xcopy::MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    body[8..12].copy_from_slice(&xcopy::MAX_DESCRIPTOR_LIST_LENGTH.to_be_bytes());
    tpc_descriptor(&mut out, 0x0004, body);
    // §7.8.17.6 supported descriptors.
    let mut body = vec![xcopy::SUPPORTED_DESCRIPTORS.len() as u8];
    body.extend_from_slice(&xcopy::SUPPORTED_DESCRIPTORS);
    tpc_descriptor(&mut out, 0x0008, body);
    // §7.8.17.7 supported CSCD IDs: none beyond plain descriptor indexes.
    tpc_descriptor(&mut out, 0x000C, vec![0, 0]);
    tpc_descriptor(&mut out, 0x0106, odx_vpd::rod_token_features());
    tpc_descriptor(&mut out, 0x0108, odx_vpd::supported_rod_types(!lun.shared_across_gateways()));
    tpc_descriptor(&mut out, 0x8001, odx_vpd::general_copy_operations(lun.block_size()));
    out
}

/// SBC-3 §6.5.3 block limits page (page length 3Ch).
fn block_limits(lun: &Lun) -> Vec<u8> {
    let bs = lun.block_size();
    let mut b = vec![0u8; 0x3C];
    b[0] = 0x01; // WSNZ: a WRITE SAME length of zero is rejected
    b[1] = limits::MAX_COMPARE_AND_WRITE_BLOCKS; // MAXIMUM COMPARE AND WRITE LENGTH
    let granularity = (4096 / bs).max(1) as u16;
    b[2..4].copy_from_slice(&granularity.to_be_bytes());
    b[4..8].copy_from_slice(&limits::max_transfer_blocks(bs).to_be_bytes());
    if lun.backend().supports_unmap() {
        b[16..20].copy_from_slice(&limits::MAX_UNMAP_LBA_COUNT.to_be_bytes());
        b[20..24].copy_from_slice(&limits::MAX_UNMAP_DESCRIPTORS.to_be_bytes());
        b[24..28].copy_from_slice(&(granularity as u32).to_be_bytes());
    }
    b[32..40].copy_from_slice(&limits::MAX_WRITE_SAME_BLOCKS.to_be_bytes());
    b
}

/// SBC-3 §6.5.4 logical block provisioning page.
fn provisioning(lun: &Lun) -> Vec<u8> {
    let mut b = vec![0u8; 4];
    if lun.backend().supports_unmap() {
        // LBPU, LBPWS, LBPWS10, LBPRZ; provisioning type 010b thin.
        b[1] = 0x80 | 0x40 | 0x20 | 0x04;
        b[2] = 0x02;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, MemoryBackend};
    use crate::scsi::lun::LunIdentity;

    fn lun() -> Lun {
        let id = LunIdentity::new("Palisade disk", "0001", "SER123");
        Lun::new(0, Backend::Memory(MemoryBackend::new(1 << 20)), 512, id, false).unwrap()
    }

    fn nexus() -> ItNexus {
        ItNexus::new("iqn.i", [0; 6], "iqn.t", 1)
    }

    #[test]
    fn standard_data_fields() {
        let d = inquiry(&[0x12, 0, 0, 0, 255, 0], Some(&lun()), &nexus(), 1).unwrap();
        assert_eq!(d[0], 0);
        assert_eq!(d[2], 6);
        assert_eq!(d[3], 0x12);
        assert_eq!(d[4] as usize, d.len() - 5);
        assert_eq!(d[5], 0x18, "3PC and TPGS = 01b (implicit ALUA)");
        assert_eq!(d[7], 0x02);
        assert_eq!(&d[8..16], b"PALISADE");
        assert_eq!(&d[16..32], b"Palisade disk   ");
        assert_eq!(&d[58..60], &[0x00, 0xA0]);
        let absent = inquiry(&[0x12, 0, 0, 0, 255, 0], None, &nexus(), 1).unwrap();
        assert_eq!(absent[0], 0x7F);
    }

    #[test]
    fn page_code_without_evpd_is_invalid() {
        let err = inquiry(&[0x12, 0, 0x80, 0, 255, 0], Some(&lun()), &nexus(), 1).unwrap_err();
        assert_eq!(err, Sense::invalid_cdb_field(2, Some(7)));
        let err = inquiry(&[0x12, 1, 0x42, 0, 255, 0], Some(&lun()), &nexus(), 1).unwrap_err();
        assert_eq!(err.reason, SenseReason::InvalidFieldInCdb);
        let err = inquiry(&[0x12, 1, 0x00, 0, 255, 0], None, &nexus(), 1).unwrap_err();
        assert_eq!(err.reason, SenseReason::LunNotSupported);
    }

    #[test]
    fn vpd_pages() {
        let l = lun();
        let n = nexus();
        let sup = inquiry(&[0x12, 1, 0, 0, 255, 0], Some(&l), &n, 1).unwrap();
        assert_eq!(&sup[..], &[0, 0, 0, 7, 0x00, 0x80, 0x83, 0x8F, 0xB0, 0xB1, 0xB2]);
        let tpc = inquiry(&[0x12, 1, 0x8F, 0, 255, 0], Some(&l), &n, 1).unwrap();
        assert_eq!(u16::from_be_bytes([tpc[2], tpc[3]]) as usize, tpc.len() - 4);
        // Block Device ROD Token Limits first, then supported commands: 83h/00h,10h,11h,1Ch,
        // 84h/00h,03h,07h.
        assert_eq!(&tpc[4..8], &[0, 0, 0, 0x20]);
        assert_eq!(&tpc[40..56], &[0, 1, 0, 12, 11, 0x83, 4, 0, 0x10, 0x11, 0x1C, 0x84, 3, 0, 3, 7]);
        let mut at = 4;
        while at < tpc.len() {
            let len = u16::from_be_bytes([tpc[at + 2], tpc[at + 3]]) as usize;
            assert_eq!((len + 4) % 4, 0);
            at += 4 + len;
        }
        assert_eq!(at, tpc.len());
        let serial = inquiry(&[0x12, 1, 0x80, 0, 255, 0], Some(&l), &n, 1).unwrap();
        assert_eq!(&serial[3..], b"\x06SER123");
        let bl = inquiry(&[0x12, 1, 0xB0, 0, 255, 0], Some(&l), &n, 1).unwrap();
        assert_eq!(bl.len(), 64);
        assert_eq!(bl[3], 0x3C);
        assert_eq!(u32::from_be_bytes(bl[24..28].try_into().unwrap()), limits::MAX_UNMAP_DESCRIPTORS);
        let bc = inquiry(&[0x12, 1, 0xB1, 0, 255, 0], Some(&l), &n, 1).unwrap();
        assert_eq!(&bc[4..6], &[0, 1]);
        let lbp = inquiry(&[0x12, 1, 0xB2, 0, 255, 0], Some(&l), &n, 1).unwrap();
        assert_eq!(lbp[5], 0xE4);

        let id = inquiry(&[0x12, 1, 0x83, 0, 255, 0], Some(&l), &n, 1).unwrap();
        assert_eq!(u16::from_be_bytes([id[2], id[3]]) as usize, id.len() - 4);
        assert_eq!(&id[4..8], &[0x01, 0x03, 0, 8]);
        assert_eq!(id[8] >> 4, 5); // NAA 5h
        let text = String::from_utf8_lossy(&id);
        assert!(text.contains("PALISADESER123"));
        assert!(text.contains("iqn.t,t,0x0001\0"));
    }

    /// The designators of VPD 83h as (code set, PIV/association/type, value).
    fn designators(page: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 4;
        while at + 4 <= page.len() {
            let len = page[at + 3] as usize;
            out.push((page[at], page[at + 1], page[at + 4..at + 4 + len].to_vec()));
            at += 4 + len;
        }
        assert_eq!(at, page.len());
        out
    }

    #[test]
    fn device_identification_names_the_relative_port_and_group_of_the_receiving_port() {
        let l = lun();
        let single = inquiry(&[0x12, 1, 0x83, 0, 255, 0], Some(&l), &nexus(), 1).unwrap();
        // Gateway 2 of a cluster, portal group 1: relative port 0x0201, group 2.
        let gateway_port = nexus().with_relative_port(0x0201);
        let cluster = inquiry(&[0x12, 1, 0x83, 0, 255, 0], Some(&l), &gateway_port, 2).unwrap();
        let (single, cluster) = (designators(&single), designators(&cluster));
        assert_eq!(single.len(), 5);
        // NAA and T10 vendor ID (logical unit) are identical through every port.
        assert_eq!(single[..2], cluster[..2]);
        assert_eq!((single[0].0, single[0].1), (0x01, 0x03));
        // SPC-4 §7.8.6.7 type 4 and §7.8.6.8 type 5: iSCSI, PIV, target port association.
        assert_eq!(single[2], (0x51, 0x94, vec![0, 0, 0, 1]));
        assert_eq!(single[3], (0x51, 0x95, vec![0, 0, 0, 1]));
        assert_eq!(cluster[2], (0x51, 0x94, vec![0, 0, 0x02, 0x01]));
        assert_eq!(cluster[3], (0x51, 0x95, vec![0, 0, 0, 2]));
        // SPC-4 §7.8.6.11 target port name: SCSI name string, UTF-8, target port association.
        assert_eq!((single[4].0, single[4].1), (0x53, 0x98));
        assert!(single[4].2.starts_with(b"iqn.t,t,0x0001\0"));
    }
}
