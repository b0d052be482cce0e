//! Logical block provisioning (SBC-3 §4.7): WRITE SAME(10/16) with UNMAP and NDOB (§5.42,
//! §5.43), UNMAP (§5.28) and GET LBA STATUS (§5.4). The provisioning bits this LUN reports
//! (VPD B2h, READ CAPACITY(16)) come from `Backend::supports_unmap`; GET LBA STATUS reports
//! what the backend really has allocated.

use super::block::{be16, be32, be64, check_range, check_writable, IoOp};
use super::commands::Command;
use super::limits;
use super::lun::Lun;
use super::sense::{Sense, SenseReason};
use super::task::DataOut;
use bytes::{Bytes, BytesMut};

fn write_err(e: std::io::Error) -> Sense {
    Sense::from_io(&e, true)
}

pub(crate) fn prepare_write_same(
    command: Command,
    cdb: &[u8],
    lun: &Lun,
    lba: u64,
    blocks: u64,
    length_at: usize,
    expected_data_out_len: u32,
) -> Result<IoOp, Sense> {
    let bs = lun.block_size() as u64;
    // SBC-3 §5.42: WSNZ is set in the block limits page, so zero blocks is invalid.
    if blocks == 0 || blocks > limits::MAX_WRITE_SAME_BLOCKS {
        return Err(Sense::invalid_cdb_field(length_at, None));
    }
    check_range(lun, lba, blocks)?;
    check_writable(lun)?;
    let unmap = cdb[1] & 0x08 != 0;
    // SBC-4 §5.53 NDOB (WRITE SAME(16) only): no data-out, the blocks become zeros.
    let ndob = command == Command::WriteSame16 && cdb[1] & 0x01 != 0;
    // Otherwise exactly one logical block of data-out must accompany the command.
    if !ndob && expected_data_out_len as u64 != bs {
        return Err(SenseReason::InvalidFieldInCdb.into());
    }
    Ok(IoOp::WriteSame { offset: lba * bs, len: blocks * bs, unmap, ndob })
}

pub(crate) fn prepare_unmap(cdb: &[u8], lun: &Lun) -> Result<IoOp, Sense> {
    // SBC-3 §5.28: only offered when the backend really deallocates (LBPU).
    if !lun.backend().supports_unmap() {
        return Err(SenseReason::InvalidOpcode.into());
    }
    check_writable(lun)?;
    Ok(IoOp::Unmap { param_len: be16(&cdb[7..9]) as usize })
}

pub(crate) fn prepare_get_lba_status(cdb: &[u8], lun: &Lun) -> Result<IoOp, Sense> {
    let lba = be64(&cdb[2..10]);
    // SBC-3 §5.4: a STARTING LOGICAL BLOCK ADDRESS beyond the last LBA is out of range.
    if lba >= lun.block_count() {
        return Err(SenseReason::LbaOutOfRange.into());
    }
    Ok(IoOp::GetLbaStatus { lba, allocation_length: be32(&cdb[10..14]) as usize })
}

pub(crate) async fn write_same(
    lun: &Lun,
    offset: u64,
    len: u64,
    unmap: bool,
    ndob: bool,
    data: &DataOut,
    write_through: bool,
) -> Result<(), Sense> {
    let backend = lun.backend();
    let bs = lun.block_size() as usize;
    let pattern = if ndob { vec![0u8; bs] } else { data.to_vec(bs) };
    if pattern.len() < bs {
        return Err(SenseReason::InvalidFieldInCdb.into());
    }
    let _range = lun.lock_for_write(offset, len).await;
    // SBC-3 §5.42: UNMAP may deallocate when the result reads back identically, i.e. the
    // block is all zeros and unmapped blocks read as zeros (LBPRZ).
    if unmap && backend.supports_unmap() && pattern.iter().all(|&b| b == 0) {
        return backend.unmap(offset, len).await.map_err(write_err);
    }
    let per_chunk = ((1usize << 20) / bs).min(len as usize / bs).max(1);
    let mut chunk = BytesMut::with_capacity(per_chunk * bs);
    for _ in 0..per_chunk {
        chunk.extend_from_slice(&pattern);
    }
    let chunk = chunk.freeze();
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(chunk.len() as u64) as usize;
        backend.write(offset + done, &[chunk.slice(..n)], write_through).await.map_err(write_err)?;
        done += n as u64;
    }
    Ok(())
}

pub(crate) async fn unmap(lun: &Lun, data: &DataOut, param_len: usize) -> Result<(), Sense> {
    let ranges = parse_unmap(lun, &data.to_vec(param_len), param_len)?;
    for (offset, len) in ranges {
        let _range = lun.lock_for_write(offset, len).await;
        lun.backend().unmap(offset, len).await.map_err(write_err)?;
    }
    Ok(())
}

/// SBC-3 §5.28.2 UNMAP parameter list → byte ranges, all validated before any is unmapped.
fn parse_unmap(lun: &Lun, param: &[u8], param_len: usize) -> Result<Vec<(u64, u64)>, Sense> {
    if param_len == 0 {
        return Ok(Vec::new());
    }
    if param.len() < param_len || param_len < 8 {
        return Err(SenseReason::ParameterListLengthError.into());
    }
    let data_len = be16(&param[0..2]) as usize;
    let descriptors_len = be16(&param[2..4]) as usize;
    if data_len + 2 > param_len || descriptors_len + 8 > param_len {
        return Err(SenseReason::ParameterListLengthError.into());
    }
    let count = descriptors_len / 16;
    if count > limits::MAX_UNMAP_DESCRIPTORS as usize {
        return Err(Sense::invalid_param_field(2, None));
    }
    let bs = lun.block_size() as u64;
    let mut ranges = Vec::with_capacity(count);
    for i in 0..count {
        let d = &param[8 + 16 * i..24 + 16 * i];
        let (lba, blocks) = (be64(&d[0..8]), be32(&d[8..12]));
        // SBC-3 §5.28.1: more than MAXIMUM UNMAP LBA COUNT → INVALID FIELD IN PARAMETER LIST.
        if blocks > limits::MAX_UNMAP_LBA_COUNT as u64 {
            return Err(Sense::invalid_param_field(8 + 16 * i + 8, None));
        }
        check_range(lun, lba, blocks)?;
        if blocks > 0 {
            ranges.push((lba * bs, blocks * bs));
        }
    }
    Ok(ranges)
}

/// SBC-3 §6.6.4.2 PROVISIONING STATUS values.
const STATUS_MAPPED: u8 = 0x0;
const STATUS_DEALLOCATED: u8 = 0x1;
/// Descriptors returned at most per command, whatever the allocation length.
const MAX_LBA_STATUS_DESCRIPTORS: usize = 512;

/// GET LBA STATUS parameter data (SBC-3 §5.4): one 16-byte descriptor per run of
/// same-status blocks starting at `lba`, as many as the allocation length holds.
pub(crate) async fn get_lba_status(lun: &Lun, lba: u64, allocation_length: usize) -> Result<Bytes, Sense> {
    let bs = lun.block_size() as u64;
    let wanted = (allocation_length.saturating_sub(8) / 16).clamp(1, MAX_LBA_STATUS_DESCRIPTORS);
    let start = lba * bs;
    let span = (lun.block_count() - lba) * bs;
    let extents = lun.backend().allocation(start, span, wanted).await.map_err(|e| Sense::from_io(&e, false))?;
    let mut out = Vec::with_capacity(8 + 16 * extents.len());
    out.extend_from_slice(&[0; 8]);
    let mut at = lba;
    let mut end_byte = start;
    for extent in extents {
        // Extents are in bytes and normally block aligned; a block straddling two extents is
        // reported with the status of its first byte.
        end_byte += extent.len;
        let end_block = end_byte.div_ceil(bs).min(lun.block_count());
        if end_block <= at {
            continue;
        }
        let blocks = (end_block - at).min(u32::MAX as u64);
        out.extend_from_slice(&at.to_be_bytes());
        out.extend_from_slice(&(blocks as u32).to_be_bytes());
        out.push(if extent.mapped { STATUS_MAPPED } else { STATUS_DEALLOCATED });
        out.extend_from_slice(&[0; 3]);
        at += blocks;
        // Stop at the end of the medium, or when one descriptor could not hold the whole
        // extent (the initiator asks again from where this answer ends).
        if at >= lun.block_count() || at < end_block {
            break;
        }
    }
    let param_len = (out.len() - 4) as u32;
    out[0..4].copy_from_slice(&param_len.to_be_bytes());
    out.truncate(allocation_length);
    Ok(Bytes::from(out))
}
