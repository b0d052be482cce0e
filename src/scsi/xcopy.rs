//! EXTENDED COPY (LID1) (SPC-4 §6.5): block-to-block copies (segment descriptor 02h) between
//! logical units of this target, named by identification CSCD descriptors (E4h) that carry the
//! NAA designator of VPD page 83h.
//!
//! Security (LIO CVE-2020-28374): a CSCD descriptor is resolved only among the LUNs the
//! requesting initiator may itself access (after LUN masking), so a copy can never read or
//! write a logical unit the initiator could not address directly.

use super::block::{be16, be32, be64, check_writable};
use super::lun::Lun;
use super::sense::{Sense, SenseReason};
use super::target::pr_conflict;
use super::task::ItNexus;
use crate::pr::PrClass;
use std::sync::Arc;

/// Limits reported in OPERATING PARAMETERS and VPD page 8Fh (SPC-4 §6.22, §7.8.17).
pub(crate) const MAX_CSCD_DESCRIPTORS: u16 = 8;
pub(crate) const MAX_SEGMENT_DESCRIPTORS: u16 = 64;
/// CSCD plus segment descriptor bytes: room for the maxima above.
pub(crate) const MAX_DESCRIPTOR_LIST_LENGTH: u32 = 8 * 32 + 64 * 28;
/// Descriptor type codes implemented: block→block segment, identification CSCD.
pub(crate) const SUPPORTED_DESCRIPTORS: [u8; 2] = [SEGMENT_BLOCK_TO_BLOCK, CSCD_IDENTIFICATION];

const HEADER_LEN: usize = 16;
const CSCD_LEN: usize = 32;
const SEGMENT_BLOCK_TO_BLOCK: u8 = 0x02;
const CSCD_IDENTIFICATION: u8 = 0xE4;
/// Bytes moved per read/write step, so a copy never holds more than this in memory.
const COPY_CHUNK: u64 = 1 << 20;

/// MAXIMUM SEGMENT LENGTH: the 16-bit block count of descriptor 02h, in bytes.
pub(crate) fn max_segment_bytes(block_size: u32) -> u32 {
    (u16::MAX as u32).saturating_mul(block_size)
}

/// SPC-4 §6.4.1: the parameter list may not exceed header + MAXIMUM DESCRIPTOR LIST LENGTH
/// (no inline data is supported); checked before any data-out is accepted.
pub(crate) fn check_parameter_list_length(param_len: usize) -> Result<(), Sense> {
    if param_len > HEADER_LEN + MAX_DESCRIPTOR_LIST_LENGTH as usize {
        return Err(SenseReason::ParameterListLengthError.into());
    }
    Ok(())
}

/// One block→block segment, resolved to byte ranges.
#[derive(Debug)]
struct Segment {
    source: Arc<Lun>,
    source_offset: u64,
    destination: Arc<Lun>,
    destination_offset: u64,
    bytes: u64,
}

/// The parsed parameter list header (SPC-4 §6.4.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    list_id: u8,
    hold: bool,
    tracked: bool,
    cscd_len: usize,
    segments_len: usize,
}

fn parse_header(param: &[u8]) -> Result<Header, Sense> {
    if param.len() < HEADER_LEN {
        return Err(SenseReason::ParameterListLengthError.into());
    }
    let list_id = param[0];
    // LIST ID USAGE (byte 1 bits 4-3): 00b hold, 10b do not hold, 11b no list identifier
    // (which must then be zero), 01b reserved.
    let (hold, tracked) = match (param[1] >> 3) & 0x03 {
        0b00 => (true, true),
        0b10 => (false, true),
        0b11 if list_id == 0 => (false, false),
        0b11 => return Err(Sense::invalid_param_field(0, None)),
        _ => return Err(Sense::invalid_param_field(1, Some(4))),
    };
    let cscd_len = be16(&param[2..4]) as usize;
    let segments_len = be32(&param[8..12]) as usize;
    let inline_len = be32(&param[12..16]) as usize;
    // §6.4.3.1: lists longer than the parameter data, or over the advertised maximum.
    let total = HEADER_LEN as u64 + cscd_len as u64 + segments_len as u64 + inline_len as u64;
    if total > param.len() as u64 || (cscd_len + segments_len) as u64 > MAX_DESCRIPTOR_LIST_LENGTH as u64 {
        return Err(SenseReason::ParameterListLengthError.into());
    }
    if inline_len != 0 {
        // MAXIMUM INLINE DATA LENGTH is zero.
        return Err(Sense::invalid_param_field(12, None));
    }
    Ok(Header { list_id, hold, tracked, cscd_len, segments_len })
}

/// Resolves CSCD descriptors (§6.4.5) to LUNs; None for one naming no accessible LUN (an
/// error only if a segment uses it).
fn parse_cscds(list: &[u8], visible: &[Arc<Lun>]) -> Result<Vec<Option<Arc<Lun>>>, Sense> {
    if list.len() / CSCD_LEN > MAX_CSCD_DESCRIPTORS as usize {
        return Err(SenseReason::TooManyTargetDescriptors.into());
    }
    let mut cscds = Vec::new();
    for (i, d) in list.chunks(CSCD_LEN).enumerate() {
        let at = HEADER_LEN + i * CSCD_LEN;
        if d[0] != CSCD_IDENTIFICATION {
            return Err(SenseReason::UnsupportedTargetDescriptorType.into());
        }
        if d.len() < CSCD_LEN {
            return Err(SenseReason::ParameterListLengthError.into());
        }
        // PERIPHERAL DEVICE TYPE must be 00h (direct access): only block copies exist here.
        // LU ID TYPE and NUL are ignored, as SPC-4 §6.4.5.1 makes them obsolete for E4h.
        if d[1] & 0x1F != 0 {
            return Err(Sense::invalid_param_field(at + 1, Some(4)));
        }
        cscds.push(resolve_identification(d, visible));
        if let Some(lun) = cscds.last().and_then(Option::as_ref) {
            // Block device type specific parameters: DISK BLOCK LENGTH must be the LUN's.
            let block_length = u32::from_be_bytes([0, d[29], d[30], d[31]]);
            if block_length != lun.block_size() {
                return Err(Sense::invalid_param_field(at + 29, None));
            }
        }
    }
    Ok(cscds)
}

/// SPC-4 §6.4.5.6 identification descriptor: the embedded designation descriptor must be the
/// NAA logical unit designator of one of `visible`.
fn resolve_identification(d: &[u8], visible: &[Arc<Lun>]) -> Option<Arc<Lun>> {
    let (code_set, assoc_type, len) = (d[4] & 0x0F, d[5] & 0x3F, d[7] as usize);
    // Binary code set, association 00b (logical unit), designator type 3h (NAA), 8 bytes.
    if code_set != 0x01 || assoc_type != 0x03 || len != 8 {
        return None;
    }
    let naa = be64(&d[8..16]);
    visible.iter().find(|lun| lun.identity().naa == naa).cloned()
}

fn parse_segments(list: &[u8], cscds: &[Option<Arc<Lun>>]) -> Result<Vec<Segment>, Sense> {
    let base = HEADER_LEN + cscds.len() * CSCD_LEN;
    // Count first, so an over-long list is refused as such (§6.4.3.5).
    let mut bounds = Vec::new();
    let mut at = 0;
    while at < list.len() {
        if list.len() - at < 4 {
            return Err(SenseReason::ParameterListLengthError.into());
        }
        let len = 4 + be16(&list[at + 2..at + 4]) as usize;
        bounds.push((at, len));
        at += len;
    }
    if bounds.len() > MAX_SEGMENT_DESCRIPTORS as usize {
        return Err(SenseReason::TooManySegmentDescriptors.into());
    }
    let mut segments = Vec::with_capacity(bounds.len());
    for (at, len) in bounds {
        let d = &list[at..(at + len).min(list.len())];
        if d[0] != SEGMENT_BLOCK_TO_BLOCK {
            return Err(SenseReason::UnsupportedSegmentDescriptorType.into());
        }
        // §6.4.6.5: DESCRIPTOR LENGTH of a block→block descriptor is 0018h.
        if len != 28 || d.len() < 28 {
            return Err(Sense::invalid_param_field(base + at + 2, None));
        }
        // An index naming no CSCD, or a CSCD naming no accessible LUN: the copy target
        // cannot be reached (§6.4.3.6), reported as COPY ABORTED.
        let pick = |index: u64| {
            cscds
                .get(index as usize)
                .and_then(Option::clone)
                .ok_or(Sense::from(SenseReason::CopyTargetDeviceNotReachable))
        };
        let source = pick(be16(&d[4..6]))?;
        let destination = pick(be16(&d[6..8]))?;
        // DC (byte 1 bit 1): the block count is in destination (1) or source (0) blocks.
        let unit = if d[1] & 0x02 != 0 { destination.block_size() } else { source.block_size() } as u64;
        let bytes = be16(&d[10..12]) * unit;
        let (source_lba, destination_lba) = (be64(&d[12..20]), be64(&d[20..28]));
        let fits = |lun: &Lun, lba: u64, at: usize| {
            let bs = lun.block_size() as u64;
            let in_range =
                bytes.is_multiple_of(bs) && lba.checked_add(bytes / bs).is_some_and(|end| end <= lun.block_count());
            // §6.4.3.6: a segment reaching past the end of a copy target aborts the copy;
            // the segment pointer names the offending LBA field in the parameter list.
            if in_range {
                Ok(lba * bs)
            } else {
                Err(Sense::copy_aborted_at(base + at))
            }
        };
        let source_offset = fits(&source, source_lba, at + 12)?;
        let destination_offset = fits(&destination, destination_lba, at + 20)?;
        check_writable(&destination)?;
        segments.push(Segment { source, source_offset, destination, destination_offset, bytes });
    }
    Ok(segments)
}

/// Runs an EXTENDED COPY received by `manager` from `nexus`; `visible` are the LUNs that
/// nexus may access. The outcome is recorded for RECEIVE COPY RESULTS.
pub(crate) async fn extended_copy(
    manager: &Lun,
    nexus: &ItNexus,
    visible: &[Arc<Lun>],
    param: &[u8],
) -> Result<(), Sense> {
    // SPC-4 §6.4.1: a zero PARAMETER LIST LENGTH copies nothing and is not an error.
    if param.is_empty() {
        return Ok(());
    }
    let header = parse_header(param)?;
    let cscd_list = &param[HEADER_LEN..HEADER_LEN + header.cscd_len];
    let segment_list = &param[HEADER_LEN + header.cscd_len..HEADER_LEN + header.cscd_len + header.segments_len];
    let cscds = parse_cscds(cscd_list, visible)?;
    let segments = parse_segments(segment_list, &cscds)?;

    let port = nexus.initiator_port();
    let results = manager.copy_results();
    results.begin(port, header.list_id, header.hold, header.tracked)?;
    let mut copied = 0u64;
    let mut outcome = Ok(());
    for (i, segment) in segments.iter().enumerate() {
        if let Err(e) = copy_segment(segment, nexus, &mut copied).await {
            outcome = Err(e);
            break;
        }
        if header.tracked {
            results.progress(port, header.list_id, (i + 1) as u16, copied);
        }
    }
    if header.tracked {
        results.finish(port, header.list_id, outcome.is_ok());
    }
    outcome
}

/// Moves one segment in bounded chunks; each chunk is read under the source's shared range
/// lock and written under the destination's exclusive one (never both held: source and
/// destination may overlap on one LUN). Each side is also read or written under its LU's
/// fencing gate with the requesting nexus's reservation checked there, exactly like a READ or
/// WRITE from that nexus: a copy is no way around a reservation or a PREEMPT AND ABORT.
async fn copy_segment(s: &Segment, nexus: &ItNexus, copied: &mut u64) -> Result<(), Sense> {
    // SPC-4 §6.4.3.6: failures while segments are processed are reported as COPY ABORTED.
    let aborted = |_e: std::io::Error| Sense::from(SenseReason::CopyAborted);
    // The copy target refused this initiator (reservation held by another nexus).
    let refused = || Sense::from(SenseReason::CopyTargetDeviceNotReachable);
    let durable = !s.destination.mode().wce;
    let mut done = 0;
    while done < s.bytes {
        let n = (s.bytes - done).min(COPY_CHUNK);
        let data = {
            let gate = s.source.pr().read().await;
            if pr_conflict(&gate, nexus, PrClass::Read) || s.source.reserved_by_other(nexus) {
                return Err(refused());
            }
            let _range = s.source.ranges().lock(s.source_offset + done, n, false).await;
            s.source.backend().read(s.source_offset + done, n as usize).await.map_err(aborted)?
        };
        {
            let gate = s.destination.pr().read().await;
            if pr_conflict(&gate, nexus, PrClass::Write) || s.destination.reserved_by_other(nexus) {
                return Err(refused());
            }
            // A self-fenced cluster gateway writes nothing, copies included (docs/cluster.md).
            s.destination.admit_write()?;
            let _range = s.destination.lock_for_write(s.destination_offset + done, n).await;
            s.destination.backend().write(s.destination_offset + done, &[data], durable).await.map_err(aborted)?;
        }
        done += n;
        *copied += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks() {
        let mut p = vec![0u8; 16];
        assert_eq!(parse_header(&p[..15]).unwrap_err().reason, SenseReason::ParameterListLengthError);
        assert!(parse_header(&p).unwrap().hold);
        p[1] = 0x08; // LIST ID USAGE 01b: reserved
        assert_eq!(parse_header(&p).unwrap_err(), Sense::invalid_param_field(1, Some(4)));
        p[1] = 0x18; // 11b requires LIST IDENTIFIER 0
        assert!(!parse_header(&p).unwrap().tracked);
        p[0] = 5;
        assert_eq!(parse_header(&p).unwrap_err(), Sense::invalid_param_field(0, None));
        p[0] = 0;
        p[3] = 32; // a CSCD list the parameter data does not contain
        assert_eq!(parse_header(&p).unwrap_err().reason, SenseReason::ParameterListLengthError);
        assert!(check_parameter_list_length(16 + MAX_DESCRIPTOR_LIST_LENGTH as usize).is_ok());
        assert!(check_parameter_list_length(17 + MAX_DESCRIPTOR_LIST_LENGTH as usize).is_err());
    }
}
