//! Offloaded data transfer (SBC-3 §4.30, what Windows calls ODX): POPULATE TOKEN (SBC-3 §5.8,
//! 83h/10h) makes a ROD token for ranges of the addressed logical unit, WRITE USING TOKEN
//! (SBC-3 §5.45, 83h/11h) writes the data a token represents (or zeros, for the block device
//! zero ROD token) to ranges of the addressed logical unit. The bytes go backend to backend
//! inside the server (`Backend::copy_to`: copy_file_range between file LUNs).
//!
//! Security, as for EXTENDED COPY (xcopy.rs, CVE-2020-28374): the source of a copy is the
//! logical unit the token table recorded, never anything named in the token's bytes, and it is
//! used only if the nexus redeeming the token may itself see it (LUN masking). Reservations are
//! checked for the populating nexus on the source (a read), and, chunk by chunk under the
//! fencing gates, for the writing nexus on the source (a read) and the destination (a write).

use super::block::{be16, be32, be64, check_range, check_writable};
use super::lun::Lun;
use super::rod_status::{OpHandle, OpStatus};
use super::rod_token::{self, ByteRange, NewToken, TokenEntry, TokenTable, TOKEN_LEN};
use super::sense::{Sense, SenseReason};
use super::target::pr_conflict;
use super::task::ItNexus;
use crate::backend::CopyPath;
use crate::pr::PrClass;
use std::sync::Arc;

/// Block device range descriptors per command (Block Device ROD Token Limits, SBC-3 §6.6.6.2).
pub(crate) const MAX_RANGE_DESCRIPTORS: u16 = 64;
/// MAXIMUM TOKEN TRANSFER SIZE in bytes: what one token may represent and one WRITE USING
/// TOKEN may write. 1 GiB keeps one command well inside an initiator's command timeout on a
/// slow disk.
pub(crate) const MAX_TOKEN_BYTES: u64 = 1 << 30;
/// OPTIMAL TRANSFER COUNT in bytes.
pub(crate) const OPTIMAL_TRANSFER_BYTES: u64 = 256 << 20;
/// Bytes moved per step: progress, COPY OPERATION ABORT and token revocation are looked at
/// between steps, and the buffered path holds at most this much.
const COPY_CHUNK: u64 = 8 << 20;

/// Parameter list headers (SBC-3 §5.8.2 Table 60, §5.45.2).
const PT_HEADER: usize = 16;
const WUT_HEADER: usize = 536;
const RANGE_LEN: usize = 16;

pub(crate) const SA_POPULATE_TOKEN: u8 = 0x10;
pub(crate) const SA_WRITE_USING_TOKEN: u8 = 0x11;

pub(crate) fn max_token_blocks(block_size: u32) -> u64 {
    MAX_TOKEN_BYTES / block_size as u64
}

/// Why an offloaded transfer did not complete: sense, or RESERVATION CONFLICT status.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Sense(Sense),
    Conflict,
}

impl From<Sense> for Refusal {
    fn from(sense: Sense) -> Self {
        Refusal::Sense(sense)
    }
}

impl From<SenseReason> for Refusal {
    fn from(reason: SenseReason) -> Self {
        Refusal::Sense(reason.into())
    }
}

/// LIST IDENTIFIER (CDB bytes 6-9) and PARAMETER LIST LENGTH (bytes 10-13) of POPULATE TOKEN
/// and WRITE USING TOKEN (SBC-3 §5.8.1, §5.45.1).
pub(crate) fn cdb_fields(cdb: &[u8]) -> (u32, usize) {
    (be32(&cdb[6..10]) as u32, be32(&cdb[10..14]) as usize)
}

/// The parameter list may not exceed the header plus MAXIMUM RANGE DESCRIPTORS descriptors;
/// refused before any data-out is accepted.
pub(crate) fn check_parameter_list_length(service_action: u8, param_len: usize) -> Result<(), Sense> {
    let header = if service_action == SA_POPULATE_TOKEN { PT_HEADER } else { WUT_HEADER };
    if param_len > header + MAX_RANGE_DESCRIPTORS as usize * RANGE_LEN {
        return Err(SenseReason::ParameterListLengthError.into());
    }
    Ok(())
}

/// The header checks POPULATE TOKEN and WRITE USING TOKEN share: the first `header` bytes and
/// the DATA LENGTH field (bytes 0-1, n-1) must be present, and IMMED (byte 2 bit 0) is refused —
/// the operation always runs in the foreground here.
fn check_parameter_list(param: &[u8], header: usize) -> Result<(), Sense> {
    if param.len() < header || be16(&param[0..2]) as usize + 2 > param.len() {
        return Err(SenseReason::ParameterListLengthError.into());
    }
    if param[2] & 0x01 != 0 {
        return Err(Sense::invalid_param_field(2, Some(0)));
    }
    Ok(())
}

/// Block device range descriptors (SBC-3 §5.8.3) at `base` of the parameter list, as byte
/// ranges of `lun` in list order; zero-length descriptors are skipped. `length_at` is where
/// BLOCK DEVICE RANGE DESCRIPTOR LENGTH sits.
pub(crate) fn parse_ranges(param: &[u8], length_at: usize, lun: &Lun) -> Result<Vec<ByteRange>, Sense> {
    let base = length_at + 2;
    let list_len = be16(&param[length_at..base]) as usize;
    if base + list_len > param.len() {
        return Err(SenseReason::ParameterListLengthError.into());
    }
    if list_len == 0 || !list_len.is_multiple_of(RANGE_LEN) {
        return Err(Sense::invalid_param_field(length_at, None));
    }
    if list_len / RANGE_LEN > MAX_RANGE_DESCRIPTORS as usize {
        return Err(SenseReason::TooManySegmentDescriptors.into());
    }
    let bs = lun.block_size() as u64;
    let mut ranges: Vec<ByteRange> = Vec::new();
    let mut total_blocks = 0u64;
    for (i, d) in param[base..base + list_len].chunks(RANGE_LEN).enumerate() {
        let (lba, blocks) = (be64(&d[0..8]), be32(&d[8..12]));
        check_range(lun, lba, blocks)?;
        if blocks == 0 {
            continue;
        }
        let range = ByteRange { offset: lba * bs, len: blocks * bs };
        // Overlapping ranges have no defined ROD order: refused.
        if ranges.iter().any(|r| range.offset < r.offset + r.len && r.offset < range.offset + range.len) {
            return Err(Sense::invalid_param_field(base + i * RANGE_LEN, None));
        }
        total_blocks += blocks;
        ranges.push(range);
    }
    if total_blocks > max_token_blocks(lun.block_size()) {
        return Err(Sense::invalid_param_field(length_at, None));
    }
    Ok(ranges)
}

/// POPULATE TOKEN from `nexus` to `lun`. The token is handed out by RECEIVE ROD TOKEN
/// INFORMATION with the same list identifier.
pub(crate) async fn populate_token(
    lun: &Arc<Lun>,
    nexus: &ItNexus,
    tokens: &TokenTable,
    list_id: u32,
    param: &[u8],
) -> Result<(), Refusal> {
    // SBC-3 §5.8.1: a zero PARAMETER LIST LENGTH is not an error and makes no token.
    if param.is_empty() {
        return Ok(());
    }
    check_parameter_list(param, PT_HEADER)?;
    // A point-in-time token is revoked by writes to its source, and a cluster gateway sees only
    // the writes made through itself: there it offers access upon reference only, which reads
    // the source when the token is used and so holds whatever gateway wrote it.
    let point_in_time = !lun.shared_across_gateways();
    let rod_type = match (param[2] & 0x02 != 0, be32(&param[8..12]) as u32) {
        // RTV clear: the copy manager chooses point in time, change vulnerable (access upon
        // reference on a cluster gateway).
        (false, _) if point_in_time => rod_token::ROD_PIT_CHANGE_VULNERABLE,
        (false, _) => rod_token::ROD_ACCESS_UPON_REFERENCE,
        (true, rod_token::ROD_PIT_DEFAULT | rod_token::ROD_PIT_CHANGE_VULNERABLE | rod_token::ROD_PIT_ANY)
            if !point_in_time =>
        {
            return Err(Sense::invalid_param_field(8, None).into())
        }
        (true, rod_token::ROD_ACCESS_UPON_REFERENCE) => rod_token::ROD_ACCESS_UPON_REFERENCE,
        (true, rod_token::ROD_PIT_DEFAULT | rod_token::ROD_PIT_CHANGE_VULNERABLE | rod_token::ROD_PIT_ANY) => {
            rod_token::ROD_PIT_CHANGE_VULNERABLE
        }
        // Persistent point in time, block device zero (token in only) and the rest.
        (true, _) => return Err(Sense::invalid_param_field(8, None).into()),
    };
    let inactivity_secs = match be32(&param[4..8]) as u32 {
        0 => rod_token::DEFAULT_INACTIVITY_SECS,
        t if t > rod_token::MAX_INACTIVITY_SECS => return Err(Sense::invalid_param_field(4, None).into()),
        t => t,
    };
    let ranges = parse_ranges(param, 14, lun)?;
    // A token for no blocks represents nothing: refused rather than made, so a client that
    // loops until the ROD is used up (ddpt 0.97 with a plain skip=) stops at once instead of
    // filling the token table.
    if ranges.is_empty() {
        return Err(Sense::invalid_param_field(14, None).into());
    }
    let blocks: u64 = ranges.iter().map(|r| r.len).sum::<u64>() / lun.block_size() as u64;
    let op = lun.rod_operations().begin(nexus.initiator_port(), list_id, SA_POPULATE_TOKEN)?;
    // SPC-4 §5.13.1: making a token reads the source; checked under the fencing gate so a
    // PREEMPT cannot slip between the check and the token's creation.
    let gate = lun.pr().read().await;
    if pr_conflict(&gate, nexus, PrClass::Read) || lun.reserved_by_other(nexus) {
        op.finish(OpStatus::Terminated, 0, None);
        return Err(Refusal::Conflict);
    }
    let made = tokens.create(NewToken {
        source: lun.clone(),
        ranges,
        rod_type,
        inactivity_secs,
        creator: nexus.initiator_port().clone(),
    });
    drop(gate);
    match made {
        Ok(token) => {
            op.finish(OpStatus::Completed, blocks, Some(token));
            Ok(())
        }
        Err(reason) => {
            op.finish(OpStatus::Failed(reason.into()), 0, None);
            Err(reason.into())
        }
    }
}

/// WRITE USING TOKEN from `nexus` to `dest`; `visible` are the LUNs that nexus may access.
pub(crate) async fn write_using_token(
    dest: &Arc<Lun>,
    nexus: &ItNexus,
    tokens: &TokenTable,
    visible: &[Arc<Lun>],
    list_id: u32,
    param: &[u8],
) -> Result<(), Refusal> {
    // SBC-3 §5.45.1: a zero PARAMETER LIST LENGTH writes nothing and is not an error.
    if param.is_empty() {
        return Ok(());
    }
    check_parameter_list(param, WUT_HEADER)?;
    let delete_token = param[2] & 0x02 != 0;
    let offset_into_rod = be64(&param[8..16]);
    let token = &param[16..16 + TOKEN_LEN];
    check_writable(dest)?;
    let ranges = parse_ranges(param, 534, dest)?;
    let op = dest.rod_operations().begin(nexus.initiator_port(), list_id, SA_WRITE_USING_TOKEN)?;
    let mut written = 0u64;
    let outcome =
        redeem_and_write(dest, nexus, tokens, visible, token, offset_into_rod, &ranges, &op, &mut written).await;
    let blocks = written / dest.block_size() as u64;
    let wanted: u64 = ranges.iter().map(|r| r.len).sum();
    match outcome {
        Ok(entry) => {
            if let (Some(entry), true) = (&entry, delete_token) {
                tokens.delete(entry);
            }
            op.finish(if written < wanted { OpStatus::Residual } else { OpStatus::Completed }, blocks, None);
            Ok(())
        }
        Err(Refusal::Sense(sense)) if sense.reason == SenseReason::CopyAborted && op.abort_requested() => {
            op.finish(OpStatus::Terminated, blocks, None);
            Err(sense.into())
        }
        Err(Refusal::Sense(sense)) => {
            op.finish(OpStatus::Failed(sense), blocks, None);
            Err(sense.into())
        }
        Err(Refusal::Conflict) => {
            op.finish(OpStatus::Terminated, blocks, None);
            Err(Refusal::Conflict)
        }
    }
}

/// Checks the token and writes what it represents; returns the table entry (None for the
/// block device zero token).
#[allow(clippy::too_many_arguments)]
async fn redeem_and_write(
    dest: &Arc<Lun>,
    nexus: &ItNexus,
    tokens: &TokenTable,
    visible: &[Arc<Lun>],
    token: &[u8],
    offset_into_rod: u64,
    ranges: &[ByteRange],
    op: &OpHandle<'_>,
    written: &mut u64,
) -> Result<Option<Arc<TokenEntry>>, Refusal> {
    // SPC-4 §5.17.6.1: ROD TOKEN LENGTH must be 1F8h.
    if be16(&token[6..8]) as usize != TOKEN_LEN - 8 {
        return Err(SenseReason::InvalidTokenLength.into());
    }
    let rod_type = be32(&token[0..4]) as u32;
    if rod_type == rod_token::ROD_BLOCK_DEVICE_ZERO {
        write_zeros(dest, nexus, ranges, op, written).await?;
        return Ok(None);
    }
    if ![rod_token::ROD_ACCESS_UPON_REFERENCE, rod_token::ROD_PIT_CHANGE_VULNERABLE].contains(&rod_type) {
        return Err(SenseReason::InvalidTokenUnsupportedType.into());
    }
    let entry = tokens.redeem(token)?;
    // A nexus that cannot see the source may not read it through a token (not even learn
    // whether it exists: the cause is not reported).
    if !visible.iter().any(|lun| Arc::ptr_eq(lun, &entry.source)) {
        return Err(SenseReason::InvalidTokenCauseNotReportable.into());
    }
    let skip = offset_into_rod.checked_mul(dest.block_size() as u64).filter(|&s| s < entry.total_bytes());
    let Some(skip) = skip else {
        return Err(Sense::invalid_param_field(8, None).into());
    };
    copy_from_token(&entry, skip, dest, nexus, ranges, op, written).await?;
    Ok(Some(entry))
}

/// Walks the ROD (the token's source ranges, from `skip` bytes in) and the destination ranges
/// side by side until either ends.
async fn copy_from_token(
    entry: &TokenEntry,
    mut skip: u64,
    dest: &Arc<Lun>,
    nexus: &ItNexus,
    ranges: &[ByteRange],
    op: &OpHandle<'_>,
    written: &mut u64,
) -> Result<(), Refusal> {
    let mut source = entry.ranges.iter().copied().filter_map(|r| {
        if skip >= r.len {
            skip -= r.len;
            None
        } else {
            let from = std::mem::take(&mut skip);
            Some(ByteRange { offset: r.offset + from, len: r.len - from })
        }
    });
    let mut from = source.next();
    let (mut kernel, mut buffered) = (0u64, 0u64);
    for to in ranges {
        let mut done = 0;
        while done < to.len {
            let Some(src) = from.as_mut() else {
                // The ROD ended before the destination ranges: residual data.
                log_paths(kernel, buffered);
                return Ok(());
            };
            if op.abort_requested() {
                return Err(SenseReason::CopyAborted.into());
            }
            let n = (to.len - done).min(src.len).min(COPY_CHUNK);
            match copy_chunk(entry, src.offset, dest, to.offset + done, n, nexus).await? {
                CopyPath::Kernel => kernel += n,
                CopyPath::Buffered => buffered += n,
            }
            src.offset += n;
            src.len -= n;
            if src.len == 0 {
                from = source.next();
            }
            done += n;
            *written += n;
            op.progress(*written / dest.block_size() as u64);
        }
    }
    log_paths(kernel, buffered);
    Ok(())
}

fn log_paths(kernel: u64, buffered: u64) {
    tracing::debug!(kernel_bytes = kernel, buffered_bytes = buffered, "WRITE USING TOKEN copied");
}

/// One chunk, source → destination, with the reservation of `nexus` checked on both under
/// their fencing gates (a destination conflict mid-copy, after a PREEMPT, is RESERVATION
/// CONFLICT; a source conflict is COPY ABORTED, COPY TARGET DEVICE NOT REACHABLE) and the
/// token's validity checked after the source was read.
async fn copy_chunk(
    entry: &TokenEntry,
    src_offset: u64,
    dest: &Arc<Lun>,
    dest_offset: u64,
    n: u64,
    nexus: &ItNexus,
) -> Result<CopyPath, Refusal> {
    let src = &entry.source;
    let durable = !dest.mode().wce;
    let unreachable = || Refusal::from(SenseReason::CopyTargetDeviceNotReachable);
    let aborted = |e: std::io::Error| Refusal::from(Sense::from_io(&e, true));
    let revoked = || Refusal::from(SenseReason::InvalidTokenRevoked);
    let refused =
        |lun: &Lun, gate: &crate::pr::State, class| pr_conflict(gate, nexus, class) || lun.reserved_by_other(nexus);
    let same_lun = Arc::ptr_eq(src, dest);
    if same_lun && src_offset < dest_offset + n && dest_offset < src_offset + n {
        // Overlapping ranges of one LU: read, then write, never holding both range locks.
        let data = {
            let gate = src.pr().read().await;
            if refused(dest, &gate, PrClass::Write) {
                return Err(Refusal::Conflict);
            }
            if refused(src, &gate, PrClass::Read) {
                return Err(unreachable());
            }
            let _range = src.ranges().lock(src_offset, n, false).await;
            let data = src.backend().read(src_offset, n as usize).await.map_err(aborted)?;
            if !entry.still_valid() {
                return Err(revoked());
            }
            data
        };
        let gate = dest.pr().read().await;
        if refused(dest, &gate, PrClass::Write) {
            return Err(Refusal::Conflict);
        }
        // A self-fenced cluster gateway writes nothing (docs/cluster.md).
        dest.admit_write()?;
        let _range = dest.lock_for_write(dest_offset, n).await;
        dest.backend().write(dest_offset, &[data], durable).await.map_err(aborted)?;
        return Ok(CopyPath::Buffered);
    }
    // Both gates and both range locks, each pair taken in one global order (LU address, then
    // offset) so that two copies in opposite directions cannot deadlock.
    let src_first = (Arc::as_ptr(src) as usize, src_offset) < (Arc::as_ptr(dest) as usize, dest_offset);
    let (first, second) = if src_first { (src, dest) } else { (dest, src) };
    let gate_first = first.pr().read().await;
    let gate_second = if same_lun { None } else { Some(second.pr().read().await) };
    let (src_gate, dest_gate) = match (&gate_second, src_first) {
        (None, _) => (&*gate_first, &*gate_first),
        (Some(g2), true) => (&*gate_first, &**g2),
        (Some(g2), false) => (&**g2, &*gate_first),
    };
    // The destination is the LU the command addressed: a conflict there is RESERVATION
    // CONFLICT (SPC-4 §5.13.1); the source is another copy target: COPY ABORTED (SPC-4 §6.4.3.6).
    if refused(dest, dest_gate, PrClass::Write) {
        return Err(Refusal::Conflict);
    }
    if refused(src, src_gate, PrClass::Read) {
        return Err(unreachable());
    }
    // A self-fenced cluster gateway writes nothing (docs/cluster.md).
    dest.admit_write()?;
    let (_src_range, _dest_range) = if src_first {
        let s = src.ranges().lock(src_offset, n, false).await;
        (s, dest.lock_for_write(dest_offset, n).await)
    } else {
        let d = dest.lock_for_write(dest_offset, n).await;
        (src.ranges().lock(src_offset, n, false).await, d)
    };
    let path = src.backend().copy_to(src_offset, dest.backend(), dest_offset, n, durable).await.map_err(aborted)?;
    // A write to the source revokes the token before its data lands (Lun::lock_for_write):
    // still valid now means what was copied is the source as it was at POPULATE TOKEN.
    if !entry.still_valid() {
        return Err(revoked());
    }
    Ok(path)
}

/// The block device zero ROD token (SBC-3 §4.30.4): the destination ranges read as zeros
/// afterwards — deallocated where the backend leaves zeros behind, else written with zeros.
async fn write_zeros(
    dest: &Arc<Lun>,
    nexus: &ItNexus,
    ranges: &[ByteRange],
    op: &OpHandle<'_>,
    written: &mut u64,
) -> Result<(), Refusal> {
    let durable = !dest.mode().wce;
    let failed = |e: std::io::Error| Refusal::from(Sense::from_io(&e, true));
    for range in ranges {
        let mut done = 0;
        while done < range.len {
            if op.abort_requested() {
                return Err(SenseReason::CopyAborted.into());
            }
            let n = (range.len - done).min(COPY_CHUNK);
            let at = range.offset + done;
            {
                let gate = dest.pr().read().await;
                if pr_conflict(&gate, nexus, PrClass::Write) || dest.reserved_by_other(nexus) {
                    return Err(Refusal::Conflict);
                }
                // A self-fenced cluster gateway writes nothing (docs/cluster.md).
                dest.admit_write()?;
                let _range = dest.lock_for_write(at, n).await;
                if dest.backend().supports_unmap() {
                    dest.backend().unmap(at, n).await.map_err(failed)?;
                } else {
                    let zeros = bytes::Bytes::from(vec![0u8; n as usize]);
                    dest.backend().write(at, &[zeros], durable).await.map_err(failed)?;
                }
            }
            done += n;
            *written += n;
            op.progress(*written / dest.block_size() as u64);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, MemoryBackend};
    use crate::scsi::lun::LunIdentity;

    fn lun() -> Lun {
        Lun::new(0, Backend::Memory(MemoryBackend::new(1 << 20)), 512, LunIdentity::new("d", "1", "S"), false).unwrap()
    }

    fn ranges_param(length_at: usize, ranges: &[(u64, u32)]) -> Vec<u8> {
        let mut p = vec![0u8; length_at];
        p.extend_from_slice(&((ranges.len() * 16) as u16).to_be_bytes());
        for (lba, blocks) in ranges {
            p.extend_from_slice(&lba.to_be_bytes());
            p.extend_from_slice(&blocks.to_be_bytes());
            p.extend_from_slice(&[0; 4]);
        }
        p
    }

    #[test]
    fn range_descriptor_checks() {
        let l = lun();
        let ok = parse_ranges(&ranges_param(14, &[(8, 8), (0, 0), (100, 1)]), 14, &l).unwrap();
        assert_eq!(ok, vec![ByteRange { offset: 4096, len: 4096 }, ByteRange { offset: 51200, len: 512 }]);
        let overlap = ranges_param(14, &[(8, 8), (15, 2)]);
        assert_eq!(parse_ranges(&overlap, 14, &l).unwrap_err(), Sense::invalid_param_field(32, None));
        let past_end = ranges_param(14, &[(2047, 2)]);
        assert_eq!(parse_ranges(&past_end, 14, &l).unwrap_err().reason, SenseReason::LbaOutOfRange);
        let none = ranges_param(14, &[]);
        assert_eq!(parse_ranges(&none, 14, &l).unwrap_err(), Sense::invalid_param_field(14, None));
        let many = ranges_param(14, &vec![(0, 0); MAX_RANGE_DESCRIPTORS as usize + 1]);
        assert_eq!(parse_ranges(&many, 14, &l).unwrap_err().reason, SenseReason::TooManySegmentDescriptors);
        let mut truncated = ranges_param(14, &[(0, 1)]);
        truncated.pop();
        assert_eq!(parse_ranges(&truncated, 14, &l).unwrap_err().reason, SenseReason::ParameterListLengthError);
        let mut ragged = ranges_param(14, &[(0, 1)]);
        ragged[15] = 15;
        assert_eq!(parse_ranges(&ragged, 14, &l).unwrap_err(), Sense::invalid_param_field(14, None));
        assert!(check_parameter_list_length(SA_POPULATE_TOKEN, 16 + 64 * 16).is_ok());
        assert!(check_parameter_list_length(SA_POPULATE_TOKEN, 17 + 64 * 16).is_err());
        assert!(check_parameter_list_length(SA_WRITE_USING_TOKEN, 536 + 64 * 16).is_ok());
        assert!(check_parameter_list_length(SA_WRITE_USING_TOKEN, 537 + 64 * 16).is_err());
    }
}
