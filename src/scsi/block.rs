//! SBC-3 data-path commands: `prepare_io` validates a CDB synchronously into an `IoOp`;
//! `IoOp::execute` does the backend I/O under the LUN's range lock (see range_lock.rs).
//! Read-compare-write commands live in compare.rs, provisioning commands in provisioning.rs.

use super::commands::{Command, CommandInfo};
use super::compare;
use super::limits;
use super::lun::Lun;
use super::provisioning;
use super::sense::{Sense, SenseReason};
use super::task::DataOut;
use bytes::Bytes;
use std::sync::Arc;

/// SBC-3 §5.33 VERIFY BYTCHK: what the medium is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByteCheck {
    /// 00b: medium verification only (read it back).
    Medium,
    /// 01b: compare with a data-out buffer covering the whole range.
    Range,
    /// 11b: compare every block with one block of data-out.
    OneBlock,
}

/// A validated data-path command, in bytes.
#[derive(Debug)]
pub(crate) enum IoOp {
    Read { offset: u64, len: usize },
    Write { offset: u64, len: usize, fua: bool },
    Verify { offset: u64, len: u64, check: ByteCheck },
    WriteVerify { offset: u64, len: usize },
    CompareAndWrite { offset: u64, len: usize, fua: bool },
    OrWrite { offset: u64, len: usize, fua: bool },
    WriteSame { offset: u64, len: u64, unmap: bool, ndob: bool },
    Unmap { param_len: usize },
    Synchronize { immediate: bool },
    PreFetch { offset: u64, len: u64 },
    GetLbaStatus { lba: u64, allocation_length: usize },
}

/// CDB and parameter-list fields: one big-endian reader for the whole server (`pdu::be`).
pub(crate) use pdu::be::{be16, be32, be64};

/// SBC-3 §4.5: the range [lba, lba + blocks) must lie within the medium.
pub(crate) fn check_range(lun: &Lun, lba: u64, blocks: u64) -> Result<(), Sense> {
    match lba.checked_add(blocks) {
        Some(end) if end <= lun.block_count() => Ok(()),
        _ => Err(SenseReason::LbaOutOfRange.into()),
    }
}

/// SBC-3 §4.11 write protection: a read-only LUN or the control page SWP bit (SPC-4 §7.5.8).
pub(crate) fn check_writable(lun: &Lun) -> Result<(), Sense> {
    if lun.read_only() {
        return Err(SenseReason::WriteProtected.into());
    }
    if lun.mode().swp {
        return Err(SenseReason::SoftwareWriteProtected.into());
    }
    Ok(())
}

pub(crate) fn prepare_io(info: &CommandInfo, cdb: &[u8], lun: &Lun, expected_data_out_len: u32) -> Result<IoOp, Sense> {
    use Command::*;
    let command = info.command;
    let (lba, blocks, length_at) = info.layout.read(cdb);
    let bs = lun.block_size() as u64;
    let fua = cdb[1] & 0x08 != 0 && !matches!(command, Read6 | Write6);
    // SBC-3 §6.5.3 MAXIMUM TRANSFER LENGTH: larger transfers are refused, never allocated.
    let bounded = |blocks: u64| {
        if blocks > limits::max_transfer_blocks(lun.block_size()) as u64 {
            Err(Sense::invalid_cdb_field(length_at, None))
        } else {
            Ok((blocks * bs) as usize)
        }
    };
    let op = match command {
        Read6 | Read10 | Read12 | Read16 => {
            check_range(lun, lba, blocks)?;
            IoOp::Read { offset: lba * bs, len: bounded(blocks)? }
        }
        Write6 | Write10 | Write12 | Write16 => {
            check_range(lun, lba, blocks)?;
            let len = bounded(blocks)?;
            check_writable(lun)?;
            IoOp::Write { offset: lba * bs, len, fua }
        }
        Verify10 | Verify12 | Verify16 => {
            check_range(lun, lba, blocks)?;
            let check = match (cdb[1] >> 1) & 0x03 {
                0b00 => ByteCheck::Medium,
                0b01 => ByteCheck::Range,
                0b11 => ByteCheck::OneBlock,
                // SBC-3 §5.33 Table 66: BYTCHK 10b is reserved.
                _ => return Err(Sense::invalid_cdb_field(1, Some(2))),
            };
            if check == ByteCheck::Range {
                bounded(blocks)?;
            }
            IoOp::Verify { offset: lba * bs, len: blocks * bs, check }
        }
        WriteVerify10 | WriteVerify12 | WriteVerify16 => {
            // SBC-3 §5.36: BYTCHK 0 verifies the medium, 1 compares with the data written; both
            // are done here by reading the written range back and comparing it.
            check_range(lun, lba, blocks)?;
            let len = bounded(blocks)?;
            check_writable(lun)?;
            IoOp::WriteVerify { offset: lba * bs, len }
        }
        CompareAndWrite => {
            check_range(lun, lba, blocks)?;
            // SBC-3 §5.2: more than MAXIMUM COMPARE AND WRITE LENGTH → INVALID FIELD IN CDB.
            if blocks > limits::MAX_COMPARE_AND_WRITE_BLOCKS as u64 {
                return Err(Sense::invalid_cdb_field(13, None));
            }
            check_writable(lun)?;
            // The data-out buffer is the verify instance followed by the write instance; an
            // expected length that disagrees (even with zero blocks) means initiator and CDB
            // disagree about the two halves, so the command is refused rather than guessed at.
            if expected_data_out_len as u64 != 2 * blocks * bs {
                return Err(Sense::invalid_cdb_field(13, None));
            }
            IoOp::CompareAndWrite { offset: lba * bs, len: (blocks * bs) as usize, fua }
        }
        OrWrite16 => {
            check_range(lun, lba, blocks)?;
            let len = bounded(blocks)?;
            check_writable(lun)?;
            IoOp::OrWrite { offset: lba * bs, len, fua }
        }
        WriteSame10 | WriteSame16 => {
            provisioning::prepare_write_same(command, cdb, lun, lba, blocks, length_at, expected_data_out_len)?
        }
        Unmap => provisioning::prepare_unmap(cdb, lun)?,
        GetLbaStatus => provisioning::prepare_get_lba_status(cdb, lun)?,
        SynchronizeCache10 | SynchronizeCache16 => {
            // SBC-3 §5.26: zero blocks means through the last LBA.
            let blocks = if blocks == 0 { lun.block_count().saturating_sub(lba) } else { blocks };
            check_range(lun, lba, blocks)?;
            IoOp::Synchronize { immediate: cdb[1] & 0x02 != 0 }
        }
        PreFetch10 | PreFetch16 => {
            // SBC-3 §5.9: PREFETCH LENGTH zero means through the last LBA.
            let blocks = if blocks == 0 { lun.block_count().saturating_sub(lba) } else { blocks };
            check_range(lun, lba, blocks)?;
            IoOp::PreFetch { offset: lba * bs, len: blocks * bs }
        }
        other => unreachable!("{other:?} is not a data-path command"),
    };
    Ok(op)
}

impl IoOp {
    /// Bytes of data-out this command takes from the initiator.
    pub(crate) fn data_out_len(&self, block_size: u32) -> u32 {
        match *self {
            IoOp::Write { len, .. } | IoOp::WriteVerify { len, .. } | IoOp::OrWrite { len, .. } => len as u32,
            IoOp::Verify { len, check: ByteCheck::Range, .. } => len as u32,
            IoOp::Verify { check: ByteCheck::OneBlock, .. } => block_size,
            IoOp::CompareAndWrite { len, .. } => 2 * len as u32,
            IoOp::WriteSame { ndob, .. } => {
                if ndob {
                    0
                } else {
                    block_size
                }
            }
            IoOp::Unmap { param_len } => param_len as u32,
            _ => 0,
        }
    }

    /// Commands that write or unmap blocks (the ones a self-fenced gateway must refuse).
    fn changes_medium(&self) -> bool {
        matches!(
            self,
            IoOp::Write { .. }
                | IoOp::WriteVerify { .. }
                | IoOp::CompareAndWrite { .. }
                | IoOp::OrWrite { .. }
                | IoOp::WriteSame { .. }
                | IoOp::Unmap { .. }
        )
    }

    pub(crate) async fn execute(self, lun: Arc<Lun>, mut data: DataOut) -> Result<Option<Bytes>, Sense> {
        // Never act on more data-out than the CDB asked for, whatever the transport delivered.
        data.truncate(self.data_out_len(lun.block_size()) as usize);
        let backend = lun.backend();
        let read_err = |e: std::io::Error| Sense::from_io(&e, false);
        let write_err = |e: std::io::Error| Sense::from_io(&e, true);
        // SBC-3 §6.4.5: with WCE clear every write is durable before status.
        let write_through = !lun.mode().wce;
        if self.changes_medium() {
            // A self-fenced cluster gateway submits no write (SPC-4 §5.15.2.4: NOT READY with
            // its ALUA state, so multipath retries another path).
            lun.admit_write()?;
        }
        match self {
            IoOp::Read { offset, len } => {
                if len == 0 {
                    return Ok(None);
                }
                let _range = lun.ranges().lock(offset, len as u64, false).await;
                backend.read(offset, len).await.map(Some).map_err(read_err)
            }
            IoOp::Write { offset, fua, .. } => {
                // Writes what arrived (at most `len`): a short EDTL truncates the transfer.
                if !data.is_empty() {
                    let _range = lun.lock_for_write(offset, data.len() as u64).await;
                    backend.write(offset, data.segments(), fua || write_through).await.map_err(write_err)?;
                }
                Ok(None)
            }
            IoOp::Verify { offset, len, check } => compare::verify(&lun, offset, len, check, &data).await.map(|_| None),
            IoOp::WriteVerify { offset, .. } => compare::write_and_verify(&lun, offset, &data).await.map(|_| None),
            IoOp::CompareAndWrite { offset, len, fua } => {
                compare::compare_and_write(&lun, offset, len, &data, fua || write_through).await.map(|_| None)
            }
            IoOp::OrWrite { offset, fua, .. } => {
                compare::or_write(&lun, offset, &data, fua || write_through).await.map(|_| None)
            }
            IoOp::WriteSame { offset, len, unmap, ndob } => {
                provisioning::write_same(&lun, offset, len, unmap, ndob, &data, write_through).await.map(|_| None)
            }
            IoOp::Unmap { param_len } => provisioning::unmap(&lun, &data, param_len).await.map(|_| None),
            IoOp::GetLbaStatus { lba, allocation_length } => {
                provisioning::get_lba_status(&lun, lba, allocation_length).await.map(Some)
            }
            IoOp::Synchronize { immediate } => {
                if immediate {
                    // SBC-3 §5.26: IMMED returns once the CDB is validated.
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
            IoOp::PreFetch { offset, len } => {
                // SBC-3 §5.9: GOOD (not CONDITION MET) because residency in the host's page
                // cache cannot be promised; the hint only warms it. IMMED changes nothing.
                backend.prefetch(offset, len).await;
                Ok(None)
            }
        }
    }
}
