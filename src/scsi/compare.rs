//! Commands that read the medium and compare or combine it with the data-out buffer:
//! VERIFY with BYTCHK (SBC-3 §5.33-5.35), WRITE AND VERIFY (§5.36-5.38), COMPARE AND WRITE
//! (§5.2) and ORWRITE(16) (§5.5). Each holds its range exclusively (or shared for VERIFY)
//! across the read and the write, so no other command on the LUN sees or makes a partial state.

use super::block::ByteCheck;
use super::limits;
use super::lun::Lun;
use super::sense::{Sense, SenseReason};
use super::task::DataOut;

fn read_err(e: std::io::Error) -> Sense {
    Sense::from_io(&e, false)
}
fn write_err(e: std::io::Error) -> Sense {
    Sense::from_io(&e, true)
}

/// MISCOMPARE DURING VERIFY OPERATION with INFORMATION = offset of the first differing byte
/// (SBC-3 §5.2, §5.33).
fn miscompare(offset: usize) -> Sense {
    Sense::from(SenseReason::MiscompareDuringVerify).with_information(offset as u64)
}

/// Offset of the first byte where `stored` and the data-out segments differ.
fn first_difference(stored: &[u8], data: &DataOut) -> Option<usize> {
    let mut at = 0usize;
    for segment in data.segments() {
        let theirs = &segment[..segment.len().min(stored.len() - at)];
        if let Some(i) = theirs.iter().zip(&stored[at..]).position(|(a, b)| a != b) {
            return Some(at + i);
        }
        at += theirs.len();
        if at == stored.len() {
            break;
        }
    }
    None
}

pub(crate) async fn verify(lun: &Lun, offset: u64, len: u64, check: ByteCheck, data: &DataOut) -> Result<(), Sense> {
    if len == 0 {
        return Ok(());
    }
    let backend = lun.backend();
    let _range = lun.ranges().lock(offset, len, false).await;
    match check {
        ByteCheck::Range => {
            // Bounded by MAXIMUM TRANSFER LENGTH in prepare; compares what arrived.
            let stored = backend.read(offset, data.len().min(len as usize)).await.map_err(read_err)?;
            match first_difference(&stored, data) {
                Some(at) => Err(miscompare(at)),
                None => Ok(()),
            }
        }
        ByteCheck::Medium | ByteCheck::OneBlock => {
            let bs = lun.block_size() as usize;
            let pattern = data.to_vec(bs);
            if check == ByteCheck::OneBlock && pattern.len() < bs {
                return Err(SenseReason::ParameterListLengthError.into());
            }
            // One bounded chunk at a time: VERIFY length is not limited by the transfer limit.
            let mut done = 0u64;
            while done < len {
                let n = (len - done).min(limits::MAX_TRANSFER_BYTES as u64);
                let stored = backend.read(offset + done, n as usize).await.map_err(read_err)?;
                if check == ByteCheck::OneBlock {
                    // SBC-3 §5.33 BYTCHK 11b: each block is compared with the single block sent;
                    // the offset reported counts from the start of the verified range.
                    for (i, block) in stored.chunks(bs).enumerate() {
                        if let Some(j) = block.iter().zip(&pattern).position(|(a, b)| a != b) {
                            return Err(miscompare(done as usize + i * bs + j));
                        }
                    }
                }
                done += n;
            }
            Ok(())
        }
    }
}

/// WRITE AND VERIFY: write what arrived, durably (verification is of the medium), read it back.
pub(crate) async fn write_and_verify(lun: &Lun, offset: u64, data: &DataOut) -> Result<(), Sense> {
    if data.is_empty() {
        return Ok(());
    }
    let backend = lun.backend();
    let _range = lun.lock_for_write(offset, data.len() as u64).await;
    backend.write(offset, data.segments(), true).await.map_err(write_err)?;
    let stored = backend.read(offset, data.len()).await.map_err(read_err)?;
    match first_difference(&stored, data) {
        Some(at) => Err(miscompare(at)),
        None => Ok(()),
    }
}

/// COMPARE AND WRITE: atomically, if the blocks equal the verify instance, write the write
/// instance; otherwise MISCOMPARE and nothing is written (SBC-3 §5.2).
pub(crate) async fn compare_and_write(
    lun: &Lun,
    offset: u64,
    len: usize,
    data: &DataOut,
    durable: bool,
) -> Result<(), Sense> {
    if len == 0 {
        return Ok(());
    }
    let buffer = data.to_vec(2 * len);
    if buffer.len() < 2 * len {
        // The transport delivered less than the CDB requires (checked against EDTL in prepare).
        return Err(Sense::invalid_cdb_field(13, None));
    }
    let (expected, new) = buffer.split_at(len);
    let backend = lun.backend();
    let _range = lun.lock_for_write(offset, len as u64).await;
    let stored = backend.read(offset, len).await.map_err(read_err)?;
    if let Some(at) = stored.iter().zip(expected).position(|(a, b)| a != b) {
        return Err(miscompare(at));
    }
    backend.write(offset, &[bytes::Bytes::copy_from_slice(new)], durable).await.map_err(write_err)
}

/// ORWRITE(16): each stored byte becomes stored | data (SBC-3 §5.5, no protection, no
/// ORWGENERATION handling since only the 16-byte form exists here).
pub(crate) async fn or_write(lun: &Lun, offset: u64, data: &DataOut, durable: bool) -> Result<(), Sense> {
    if data.is_empty() {
        return Ok(());
    }
    let backend = lun.backend();
    let _range = lun.lock_for_write(offset, data.len() as u64).await;
    let mut merged = backend.read(offset, data.len()).await.map_err(read_err)?.to_vec();
    let mut at = 0;
    for segment in data.segments() {
        for (dst, src) in merged[at..at + segment.len()].iter_mut().zip(segment.iter()) {
            *dst |= src;
        }
        at += segment.len();
    }
    backend.write(offset, &[bytes::Bytes::from(merged)], durable).await.map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn data(parts: &[&[u8]]) -> DataOut {
        let mut d = DataOut::new();
        for p in parts {
            d.push(Bytes::copy_from_slice(p));
        }
        d
    }

    #[test]
    fn first_difference_across_segments() {
        let stored = b"abcdefgh";
        assert_eq!(first_difference(stored, &data(&[b"abc", b"defgh"])), None);
        assert_eq!(first_difference(stored, &data(&[b"abc", b"dXfgh"])), Some(4));
        assert_eq!(first_difference(stored, &data(&[b"Xbc"])), Some(0));
        // Data-out longer than what was read is compared only as far as the read goes.
        assert_eq!(first_difference(b"ab", &data(&[b"abZZ"])), None);
    }

    #[test]
    fn miscompare_sense_carries_offset() {
        let s = miscompare(27);
        assert_eq!(s.reason.code(), (0x0E, 0x1D, 0x00));
        assert_eq!(s.information, Some(27));
    }
}
