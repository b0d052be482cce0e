//! SBC-3 data-path commands: READ/WRITE(6/10/12/16), VERIFY(10/16), WRITE SAME(10/16), UNMAP
//! and SYNCHRONIZE CACHE(10/16). `prepare_io` validates synchronously; `IoOp::execute` does the
//! backend I/O.

use super::commands::Command;
use super::limits;
use super::lun::Lun;
use super::sense::{Sense, SenseReason};
use super::task::DataOut;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

/// A validated data-path command, in bytes.
#[derive(Debug)]
pub(crate) enum IoOp {
    Read { offset: u64, len: usize },
    Write { offset: u64, len: usize, fua: bool },
    Verify { offset: u64, len: u64, compare: bool },
    WriteSame { offset: u64, len: u64, unmap: bool },
    Unmap { param_len: usize },
    Synchronize { immediate: bool },
}

fn be16(b: &[u8]) -> u64 {
    u16::from_be_bytes([b[0], b[1]]) as u64
}
fn be32(b: &[u8]) -> u64 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64
}
fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}

/// (LBA, transfer length, byte offset of the transfer length field) per CDB layout.
fn lba_and_length(command: Command, cdb: &[u8]) -> (u64, u64, usize) {
    use Command::*;
    match command {
        // SBC-3 §5.9/§5.35: 21-bit LBA; transfer length 0 means 256 blocks.
        Read6 | Write6 => {
            let lba = (((cdb[1] & 0x1F) as u64) << 16) | be16(&cdb[2..4]);
            let len = if cdb[4] == 0 { 256 } else { cdb[4] as u64 };
            (lba, len, 4)
        }
        Read10 | Write10 | Verify10 | SynchronizeCache10 | WriteSame10 => {
            (be32(&cdb[2..6]), be16(&cdb[7..9]), 7)
        }
        Unmap => (0, 0, 7),
        Read12 | Write12 => (be32(&cdb[2..6]), be32(&cdb[6..10]), 6),
        _ => (be64(&cdb[2..10]), be32(&cdb[10..14]), 10),
    }
}

/// SBC-3 §4.5: the range [lba, lba + blocks) must lie within the medium.
fn check_range(lun: &Lun, lba: u64, blocks: u64) -> Result<(), Sense> {
    match lba.checked_add(blocks) {
        Some(end) if end <= lun.block_count() => Ok(()),
        _ => Err(SenseReason::LbaOutOfRange.into()),
    }
}

/// SBC-3 §4.11 write protection: a read-only LUN or the control page SWP bit (SPC-4 §7.5.8).
fn check_writable(lun: &Lun) -> Result<(), Sense> {
    if lun.read_only() {
        return Err(SenseReason::WriteProtected.into());
    }
    if lun.mode().swp {
        return Err(SenseReason::SoftwareWriteProtected.into());
    }
    Ok(())
}

pub(crate) fn prepare_io(
    command: Command,
    cdb: &[u8],
    lun: &Lun,
    expected_data_out_len: u32,
) -> Result<IoOp, Sense> {
    use Command::*;
    let (lba, blocks, length_at) = lba_and_length(command, cdb);
    let bs = lun.block_size() as u64;
    let fua = cdb[1] & 0x08 != 0 && !matches!(command, Read6 | Write6);
    let too_long = blocks > limits::max_transfer_blocks(lun.block_size()) as u64;
    let op = match command {
        Read6 | Read10 | Read12 | Read16 => {
            check_range(lun, lba, blocks)?;
            if too_long {
                return Err(Sense::invalid_cdb_field(length_at, None));
            }
            IoOp::Read { offset: lba * bs, len: (blocks * bs) as usize }
        }
        Write6 | Write10 | Write12 | Write16 => {
            check_range(lun, lba, blocks)?;
            if too_long {
                return Err(Sense::invalid_cdb_field(length_at, None));
            }
            check_writable(lun)?;
            IoOp::Write { offset: lba * bs, len: (blocks * bs) as usize, fua }
        }
        Verify10 | Verify16 => {
            // SBC-3 §5.33: BYTCHK 01b compares with the data-out buffer.
            let compare = cdb[1] & 0x02 != 0;
            check_range(lun, lba, blocks)?;
            if compare && too_long {
                return Err(Sense::invalid_cdb_field(length_at, None));
            }
            IoOp::Verify { offset: lba * bs, len: blocks * bs, compare }
        }
        WriteSame10 | WriteSame16 => {
            // SBC-3 §5.42: WSNZ is set in the block limits page, so zero blocks is invalid.
            if blocks == 0 || blocks > limits::MAX_WRITE_SAME_BLOCKS {
                return Err(Sense::invalid_cdb_field(length_at, None));
            }
            check_range(lun, lba, blocks)?;
            check_writable(lun)?;
            // Exactly one logical block of data-out must accompany the command.
            if expected_data_out_len as u64 != bs {
                return Err(SenseReason::InvalidFieldInCdb.into());
            }
            IoOp::WriteSame { offset: lba * bs, len: blocks * bs, unmap: cdb[1] & 0x08 != 0 }
        }
        Unmap => {
            // SBC-3 §5.28: only offered when the backend really deallocates (LBPU).
            if !lun.backend().supports_unmap() {
                return Err(SenseReason::InvalidOpcode.into());
            }
            check_writable(lun)?;
            IoOp::Unmap { param_len: be16(&cdb[7..9]) as usize }
        }
        SynchronizeCache10 | SynchronizeCache16 => {
            // SBC-3 §5.22: zero blocks means through the last LBA.
            let blocks = if blocks == 0 { lun.block_count().saturating_sub(lba) } else { blocks };
            check_range(lun, lba, blocks)?;
            IoOp::Synchronize { immediate: cdb[1] & 0x02 != 0 }
        }
        other => unreachable!("{other:?} is not a data-path command"),
    };
    Ok(op)
}

impl IoOp {
    /// Bytes of data-out this command takes from the initiator.
    pub(crate) fn data_out_len(&self, block_size: u32) -> u32 {
        match *self {
            IoOp::Write { len, .. } => len as u32,
            IoOp::Verify { len, compare: true, .. } => len as u32,
            IoOp::WriteSame { .. } => block_size,
            IoOp::Unmap { param_len } => param_len as u32,
            _ => 0,
        }
    }

    pub(crate) async fn execute(self, lun: Arc<Lun>, mut data: DataOut) -> Result<Option<Bytes>, Sense> {
        // Never act on more data-out than the CDB asked for, whatever the transport delivered.
        data.truncate(self.data_out_len(lun.block_size()) as usize);
        let backend = lun.backend();
        let read_err = |e: std::io::Error| Sense::from_io(&e, false);
        let write_err = |e: std::io::Error| Sense::from_io(&e, true);
        // SBC-3 §6.4.5: with WCE clear every write is durable before status.
        let write_through = !lun.mode().wce;
        match self {
            IoOp::Read { offset, len } => {
                if len == 0 {
                    return Ok(None);
                }
                backend.read(offset, len).await.map(Some).map_err(read_err)
            }
            IoOp::Write { offset, fua, .. } => {
                // Writes what arrived (at most `len`): a short EDTL truncates the transfer.
                if !data.is_empty() {
                    backend.write(offset, data.segments(), fua || write_through).await.map_err(write_err)?;
                }
                Ok(None)
            }
            IoOp::Verify { offset, len, compare: false } => {
                // Read back the range to surface medium errors, one bounded chunk at a time.
                let mut done = 0;
                while done < len {
                    let n = (len - done).min(limits::MAX_TRANSFER_BYTES as u64);
                    backend.read(offset + done, n as usize).await.map_err(read_err)?;
                    done += n;
                }
                Ok(None)
            }
            IoOp::Verify { offset, len, compare: true } => {
                let stored = backend.read(offset, len as usize).await.map_err(read_err)?;
                let mut at = 0usize;
                for segment in data.segments() {
                    let theirs = &segment[..segment.len().min(stored.len() - at)];
                    if let Some(i) = theirs.iter().zip(&stored[at..]).position(|(a, b)| a != b) {
                        // SBC-3 §5.33: INFORMATION = offset of the first miscompared byte.
                        return Err(Sense::from(SenseReason::MiscompareDuringVerify)
                            .with_information((at + i) as u64));
                    }
                    at += theirs.len();
                }
                Ok(None)
            }
            IoOp::WriteSame { offset, len, unmap } => {
                let bs = lun.block_size() as usize;
                let pattern = data.to_vec(bs);
                if pattern.len() < bs {
                    return Err(SenseReason::InvalidFieldInCdb.into());
                }
                // SBC-3 §5.42: UNMAP may deallocate when the result reads back identically,
                // i.e. the block is all zeros and unmapped blocks read as zeros (LBPRZ).
                if unmap && backend.supports_unmap() && pattern.iter().all(|&b| b == 0) {
                    return backend.unmap(offset, len).await.map(|_| None).map_err(write_err);
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
                    backend
                        .write(offset + done, &[chunk.slice(..n)], write_through)
                        .await
                        .map_err(write_err)?;
                    done += n as u64;
                }
                Ok(None)
            }
            IoOp::Unmap { param_len } => {
                let ranges = parse_unmap(&lun, &data.to_vec(param_len), param_len)?;
                for (offset, len) in ranges {
                    backend.unmap(offset, len).await.map_err(write_err)?;
                }
                Ok(None)
            }
            IoOp::Synchronize { immediate } => {
                if immediate {
                    // SBC-3 §5.22: IMMED returns once the CDB is validated.
                    let lun = lun.clone();
                    tokio::spawn(async move {
                        if let Err(e) = lun.backend().flush().await {
                            tracing::warn!(lun = lun.id(), "background cache flush failed: {e}");
                        }
                    });
                    return Ok(None);
                }
                backend.flush().await.map(|_| None).map_err(write_err)
            }
        }
    }
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
