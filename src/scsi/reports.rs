//! Informational commands: REPORT LUNS, REPORT SUPPORTED OPERATION CODES, READ CAPACITY(10/16)
//! and REQUEST SENSE.

use super::commands::{rows_of, CommandInfo, COMMANDS};
use super::lun::{encode_lun, Lun};
use super::sense::{Sense, SenseReason};
use super::task::ItNexus;
use pdu::be::be32;

/// SPC-4 §6.33 REPORT LUNS over the LUN ids this nexus may see (already masked and sorted).
pub(crate) fn report_luns(cdb: &[u8], visible: &[u64]) -> Result<Vec<u8>, Sense> {
    let luns: &[u64] = match cdb[2] {
        0x00 | 0x02 => visible,
        0x01 => &[], // well known logical units: none implemented
        _ => return Err(Sense::invalid_cdb_field(2, Some(7))),
    };
    if be32(&cdb[6..10]) < 16 {
        return Err(Sense::invalid_cdb_field(6, Some(7)));
    }
    let mut out = Vec::with_capacity(8 + 8 * luns.len());
    out.extend_from_slice(&((8 * luns.len()) as u32).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    for &id in luns {
        out.extend_from_slice(&encode_lun(id));
    }
    Ok(out)
}

/// SPC-4 §6.35.4 command timeouts descriptor. Zero timeouts mean "not specified": the time a
/// command takes depends on the backend, which this target cannot promise.
fn timeouts_descriptor(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x00, 0x0A, 0, 0]);
    out.extend_from_slice(&[0; 8]);
}

fn one_command(out: &mut Vec<u8>, info: Option<&CommandInfo>, rctd: bool) {
    match info {
        None => out.extend_from_slice(&[0, 0x01, 0, 0]), // SUPPORT 001b: not supported
        Some(info) => {
            out.extend_from_slice(&[0, (if rctd { 0x80 } else { 0 }) | 0x03]);
            out.extend_from_slice(&(info.usage.len() as u16).to_be_bytes());
            out.extend_from_slice(info.usage);
            if rctd {
                timeouts_descriptor(out);
            }
        }
    }
}

/// SPC-4 §6.35 REPORT SUPPORTED OPERATION CODES, listing exactly the command table.
/// `offered` leaves out rows this LU does not serve now (reservations on a cluster gateway).
pub(crate) fn report_supported_opcodes(cdb: &[u8], offered: impl Fn(&CommandInfo) -> bool) -> Result<Vec<u8>, Sense> {
    let rctd = cdb[2] & 0x80 != 0;
    let opcode = cdb[3];
    let sa = u16::from_be_bytes([cdb[4], cdb[5]]);
    let rows: Vec<&CommandInfo> = rows_of(opcode).iter().filter(|c| offered(c)).collect();
    let with_sa = rows.iter().any(|c| c.service_action.is_some());
    let find = |sa: Option<u8>| rows.iter().copied().find(|c| c.service_action == sa);
    let sa_u8 = u8::try_from(sa).ok();
    let mut out = Vec::new();
    match cdb[2] & 0x07 {
        0 => {
            out.extend_from_slice(&[0; 4]);
            for c in COMMANDS.iter().filter(|c| offered(c)) {
                out.extend_from_slice(&[c.opcode, 0]);
                out.extend_from_slice(&(c.service_action.unwrap_or(0) as u16).to_be_bytes());
                let flags = (if rctd { 0x02 } else { 0 }) | (if c.service_action.is_some() { 0x01 } else { 0 });
                out.extend_from_slice(&[0, flags]);
                out.extend_from_slice(&(c.usage.len() as u16).to_be_bytes());
                if rctd {
                    timeouts_descriptor(&mut out);
                }
            }
            let len = (out.len() - 4) as u32;
            out[0..4].copy_from_slice(&len.to_be_bytes());
        }
        // 001b: by opcode; invalid for an opcode that has service actions.
        1 if with_sa => return Err(Sense::invalid_cdb_field(2, Some(2))),
        1 => one_command(&mut out, find(None), rctd),
        // 010b: by opcode and service action; invalid for an opcode without service actions.
        2 if !with_sa && find(None).is_some() => return Err(Sense::invalid_cdb_field(2, Some(2))),
        2 => one_command(&mut out, sa_u8.and_then(|sa| find(Some(sa))), rctd),
        // 011b: service action used only when the opcode has service actions.
        3 if with_sa => one_command(&mut out, sa_u8.and_then(|sa| find(Some(sa))), rctd),
        3 => one_command(&mut out, find(None), rctd),
        _ => return Err(Sense::invalid_cdb_field(2, Some(2))),
    }
    Ok(out)
}

/// SPC-4 §6.36 REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS: what the transport's task
/// management (src/iscsi/tmf.rs) carries out: ABORT TASK, ABORT TASK SET, CLEAR TASK SET,
/// LOGICAL UNIT RESET and TARGET RESET (warm and cold). No CLEAR ACA, QUERY TASK(SET),
/// QUERY ASYNCHRONOUS EVENT or I_T NEXUS RESET.
pub(crate) fn report_supported_tmf(cdb: &[u8]) -> Vec<u8> {
    const ATS: u8 = 0x80;
    const ATSS: u8 = 0x40;
    const CTSS: u8 = 0x10;
    const LURS: u8 = 0x08;
    const TRS: u8 = 0x02;
    let mut out = vec![ATS | ATSS | CTSS | LURS | TRS, 0, 0, 0];
    // REPD (SPC-4 §6.36): the extended format, 16 bytes with ADDITIONAL DATA LENGTH 0Ch.
    if cdb[2] & 0x80 != 0 {
        out.extend_from_slice(&[0x0C]);
        out.resize(16, 0);
    }
    out
}

/// SBC-3 §5.17/§5.18 READ DEFECT DATA(10/12): a virtual medium has no defects, so both lists
/// are valid and empty, in the format asked for.
pub(crate) fn read_defect_data(cdb: &[u8], twelve: bool) -> Vec<u8> {
    let request = if twelve { cdb[1] } else { cdb[2] };
    // PLISTV/GLISTV mirror REQ_PLIST/REQ_GLIST; DEFECT LIST FORMAT echoes the request.
    let flags = request & 0x1F;
    if twelve {
        vec![0, flags, 0, 0, 0, 0, 0, 0]
    } else {
        vec![0, flags, 0, 0]
    }
}

/// SBC-3 §5.15 READ CAPACITY(10).
pub(crate) fn read_capacity10(cdb: &[u8], lun: &Lun) -> Result<Vec<u8>, Sense> {
    // PMI zero requires LOGICAL BLOCK ADDRESS zero.
    if cdb[8] & 0x01 == 0 && be32(&cdb[2..6]) != 0 {
        return Err(Sense::invalid_cdb_field(2, None));
    }
    let last = u32::try_from(lun.block_count() - 1).unwrap_or(u32::MAX);
    let mut out = last.to_be_bytes().to_vec();
    out.extend_from_slice(&lun.block_size().to_be_bytes());
    Ok(out)
}

/// SBC-3 §5.16 READ CAPACITY(16); LBPME/LBPRZ set when UNMAP really deallocates to zeros.
pub(crate) fn read_capacity16(cdb: &[u8], lun: &Lun) -> Result<Vec<u8>, Sense> {
    if cdb[14] & 0x01 == 0 && cdb[2..10].iter().any(|&b| b != 0) {
        return Err(Sense::invalid_cdb_field(2, None));
    }
    let mut out = vec![0u8; 32];
    out[0..8].copy_from_slice(&(lun.block_count() - 1).to_be_bytes());
    out[8..12].copy_from_slice(&lun.block_size().to_be_bytes());
    // LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT.
    out[13] = lun.physical_block_exponent() & 0x0F;
    if lun.backend().supports_unmap() {
        out[14] = 0x80 | 0x40;
    }
    Ok(out)
}

/// SPC-4 §6.39 REQUEST SENSE: the pending unit attention (which this consumes) or NO SENSE,
/// in the format the DESC bit asks for; for an absent LUN, LOGICAL UNIT NOT SUPPORTED.
pub(crate) fn request_sense(cdb: &[u8], lun: Option<&Lun>, nexus: &ItNexus) -> Vec<u8> {
    let descriptor = cdb[1] & 0x01 != 0;
    let reason = match lun {
        None => SenseReason::LunNotSupported,
        Some(lun) => lun.take_unit_attention(nexus).unwrap_or(SenseReason::NoSense),
    };
    Sense::from(reason).encode(descriptor).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::commands::lookup;

    #[test]
    fn report_luns_flat_addressing_and_errors() {
        let data = report_luns(&[0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[0, 300]).unwrap();
        assert_eq!(&data[..8], &[0, 0, 0, 16, 0, 0, 0, 0]);
        assert_eq!(&data[8..16], &[0; 8]);
        assert_eq!(&data[16..24], &[0x41, 0x2C, 0, 0, 0, 0, 0, 0]);
        let wk = report_luns(&[0xA0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[0, 300]).unwrap();
        assert_eq!(wk, vec![0; 8]);
        let short = report_luns(&[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 0], &[0]).unwrap_err();
        assert_eq!(short, Sense::invalid_cdb_field(6, Some(7)));
        let bad = report_luns(&[0xA0, 0, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[0]).unwrap_err();
        assert_eq!(bad, Sense::invalid_cdb_field(2, Some(7)));
    }

    #[test]
    fn supported_tmf_and_defect_data() {
        assert_eq!(report_supported_tmf(&[0xA3, 0x0D, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0]), vec![0xDA, 0, 0, 0]);
        let extended = report_supported_tmf(&[0xA3, 0x0D, 0x80, 0, 0, 0, 0, 0, 0, 16, 0, 0]);
        assert_eq!(extended.len(), 16);
        assert_eq!(extended[4], 0x0C);
        assert_eq!(read_defect_data(&[0x37, 0, 0x18 | 4, 0, 0, 0, 0, 0, 32, 0], false), vec![0, 0x1C, 0, 0]);
        assert_eq!(
            read_defect_data(&[0xB7, 0x08, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], true),
            vec![0, 0x08, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn rsoc_all_and_one() {
        let all = report_supported_opcodes(&[0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0], |_| true).unwrap();
        assert_eq!(be32(&all) as usize, all.len() - 4);
        assert_eq!(all.len(), 4 + 8 * COMMANDS.len());
        let rctd = report_supported_opcodes(&[0xA3, 0x0C, 0x80, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0], |_| true).unwrap();
        assert_eq!(rctd.len(), 4 + 20 * COMMANDS.len());
        assert_eq!(rctd[4 + 5], 0x02);
        assert_eq!(&rctd[12..14], &[0, 0x0A]);

        let read10 = report_supported_opcodes(&[0xA3, 0x0C, 1, 0x28, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0], |_| true).unwrap();
        assert_eq!(&read10[..4], &[0, 3, 0, 10]);
        assert_eq!(&read10[4..], lookup(&[0x28]).unwrap().usage);
        assert_eq!(read10[5] & 0x18, 0x18);
        // READ CAPACITY(16) has a service action: option 1 invalid, option 2 fine.
        assert!(report_supported_opcodes(&[0xA3, 0x0C, 1, 0x9E, 0, 0x10, 0, 0, 0xFF, 0xFF, 0, 0], |_| true).is_err());
        let rc16 = report_supported_opcodes(&[0xA3, 0x0C, 2, 0x9E, 0, 0x10, 0, 0, 0xFF, 0xFF, 0, 0], |_| true).unwrap();
        assert_eq!(&rc16[..4], &[0, 3, 0, 16]);
        assert!(report_supported_opcodes(&[0xA3, 0x0C, 2, 0x28, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0], |_| true).is_err());
        let unknown = report_supported_opcodes(&[0xA3, 0x0C, 1, 0x5D, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0], |_| true).unwrap();
        assert_eq!(unknown, vec![0, 1, 0, 0]);
        assert!(report_supported_opcodes(&[0xA3, 0x0C, 4, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0], |_| true).is_err());
    }
}
