//! RAM backend: 1 MiB chunks, each behind its own RwLock and allocated on first write, so
//! concurrent I/O to different regions never contends and an untouched LUN costs no memory.
//! Chunks are refcounted `Bytes`: a large read within one chunk is a slice of it (no copy, no
//! allocation); a write to a chunk that an unsent read still shares copies it first.

use super::Extent;
use bytes::{BufMut, Bytes, BytesMut};
use std::io;
use std::sync::RwLock;

const CHUNK: u64 = 1 << 20;

/// Reads at least this long within one chunk are slices of it. Smaller ones are copied: a
/// queued slice pins its whole chunk version, so a peer that stops reading while the chunk is
/// rewritten pins at most CHUNK / ZERO_COPY_MIN = 8× the bytes its send queue may hold.
const ZERO_COPY_MIN: usize = 128 * 1024;

/// What never-written chunks read as: reads of them slice this instead of allocating.
static ZEROS: [u8; CHUNK as usize] = [0; CHUNK as usize];

#[derive(Debug)]
pub struct MemoryBackend {
    chunks: Vec<RwLock<Option<Bytes>>>,
    size: u64,
}

impl MemoryBackend {
    pub fn new(size: u64) -> Self {
        let count = size.div_ceil(CHUNK) as usize;
        MemoryBackend { chunks: (0..count).map(|_| RwLock::new(None)).collect(), size }
    }

    fn chunk_len(&self, index: usize) -> usize {
        (self.size - index as u64 * CHUNK).min(CHUNK) as usize
    }

    fn check_range(&self, offset: u64, len: u64) -> io::Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
        }
    }

    /// Splits [offset, offset+len) into (chunk index, offset in chunk, length) pieces.
    fn pieces(offset: u64, len: u64) -> impl Iterator<Item = (usize, usize, usize)> {
        let mut at = offset;
        let end = offset + len;
        std::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let index = (at / CHUNK) as usize;
            let within = (at % CHUNK) as usize;
            let n = (CHUNK - at % CHUNK).min(end - at) as usize;
            at += n as u64;
            Some((index, within, n))
        })
    }

    pub(crate) fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        self.check_range(offset, len as u64)?;
        let mut pieces = Self::pieces(offset, len as u64);
        if let (Some((index, within, n)), None) = (pieces.next(), pieces.next()) {
            // Within one chunk: a view of it (the chunk's later writes copy it, see `write`).
            let chunk = self.chunks[index].read().unwrap_or_else(|p| p.into_inner());
            match chunk.as_ref() {
                Some(data) if n >= ZERO_COPY_MIN => return Ok(data.slice(within..within + n)),
                Some(data) => return Ok(Bytes::copy_from_slice(&data[within..within + n])),
                None => return Ok(Bytes::from_static(&ZEROS[..n])),
            }
        }
        // Across chunks: each byte is written once, copied from its chunk or zero for an
        // unwritten chunk (no zero-fill-then-overwrite pass over the buffer).
        let mut out = BytesMut::with_capacity(len);
        for (index, within, n) in Self::pieces(offset, len as u64) {
            let chunk = self.chunks[index].read().unwrap_or_else(|p| p.into_inner());
            match chunk.as_ref() {
                Some(data) => out.extend_from_slice(&data[within..within + n]),
                None => out.put_bytes(0, n),
            }
        }
        Ok(out.freeze())
    }

    pub(crate) fn write(&self, offset: u64, data: &[Bytes]) -> io::Result<()> {
        let total: u64 = data.iter().map(|s| s.len() as u64).sum();
        self.check_range(offset, total)?;
        let mut at = offset;
        for segment in data {
            let mut consumed = 0;
            for (index, within, n) in Self::pieces(at, segment.len() as u64) {
                let mut chunk = self.chunks[index].write().unwrap_or_else(|p| p.into_inner());
                // In place when no read still holds a view of the chunk; otherwise copy on
                // write, so that read keeps the data it read.
                let mut buf = match chunk.take() {
                    Some(bytes) => BytesMut::from(bytes),
                    None => BytesMut::zeroed(self.chunk_len(index)),
                };
                buf[within..within + n].copy_from_slice(&segment[consumed..consumed + n]);
                *chunk = Some(buf.freeze());
                consumed += n;
            }
            at += segment.len() as u64;
        }
        Ok(())
    }

    /// Frees whole chunks and zeroes partial ones.
    pub(crate) fn unmap(&self, offset: u64, len: u64) -> io::Result<()> {
        self.check_range(offset, len)?;
        for (index, within, n) in Self::pieces(offset, len) {
            let mut chunk = self.chunks[index].write().unwrap_or_else(|p| p.into_inner());
            if n == self.chunk_len(index) {
                *chunk = None;
            } else if let Some(bytes) = chunk.take() {
                let mut buf = BytesMut::from(bytes);
                buf[within..within + n].fill(0);
                *chunk = Some(buf.freeze());
            }
        }
        Ok(())
    }

    /// Allocated chunks are mapped, never-written or wholly unmapped ones are not.
    pub(crate) fn allocation(&self, offset: u64, len: u64, max_extents: usize) -> Vec<Extent> {
        let mut runs: Vec<Extent> = Vec::new();
        for (index, _, n) in Self::pieces(offset, len.min(self.size.saturating_sub(offset))) {
            let mapped = self.chunks[index].read().unwrap_or_else(|p| p.into_inner()).is_some();
            let count = runs.len();
            match runs.last_mut() {
                Some(last) if last.mapped == mapped => last.len += n as u64,
                _ if count == max_extents => break,
                _ => runs.push(Extent { len: n as u64, mapped }),
            }
        }
        runs
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_across_chunk_boundary() {
        let mem = MemoryBackend::new(3 * CHUNK + 512);
        let at = CHUNK - 3;
        mem.write(at, &[Bytes::from_static(b"abc"), Bytes::from_static(b"defg")]).unwrap();
        assert_eq!(&mem.read(at - 1, 9).unwrap()[..], b"\0abcdefg\0");
        assert_eq!(&mem.read(3 * CHUNK, 512).unwrap()[..], &[0u8; 512][..]);
    }

    #[test]
    fn a_read_keeps_its_data_when_the_chunk_is_written_after_it() {
        let mem = MemoryBackend::new(2 * CHUNK);
        let len = ZERO_COPY_MIN;
        mem.write(4096, &[Bytes::from(vec![7u8; len])]).unwrap();
        let before = mem.read(4096, len).unwrap();
        let small = mem.read(4096, 512).unwrap();
        let unwritten = mem.read(CHUNK, 4096).unwrap();
        mem.write(4096, &[Bytes::from(vec![9u8; len])]).unwrap();
        assert!(mem.read(4096, len).unwrap().iter().all(|&b| b == 9));
        mem.unmap(0, 2 * CHUNK).unwrap();
        assert!(before.iter().all(|&b| b == 7));
        assert!(small.iter().all(|&b| b == 7));
        assert!(unwritten.iter().all(|&b| b == 0));
        mem.write(CHUNK + 1, &[Bytes::from_static(b"x")]).unwrap();
        assert_eq!(&mem.read(CHUNK, 3).unwrap()[..], b"\0x\0");
        assert!(mem.read(0, 4096).unwrap().iter().all(|&b| b == 0));
    }

    #[test]
    fn out_of_range_is_an_error_not_a_panic() {
        let mem = MemoryBackend::new(4096);
        assert!(mem.read(4000, 200).is_err());
        assert!(mem.write(u64::MAX - 1, &[Bytes::from_static(b"xy")]).is_err());
    }

    #[test]
    fn unmap_zeroes_partial_and_frees_whole_chunks() {
        let mem = MemoryBackend::new(2 * CHUNK);
        let ones = Bytes::from(vec![1u8; 2 * CHUNK as usize]);
        mem.write(0, &[ones]).unwrap();
        mem.unmap(CHUNK - 10, CHUNK + 10).unwrap();
        assert!(mem.chunks[1].read().unwrap().is_none());
        // Chunk 0 was only partly unmapped: still allocated (zeroed), so still mapped.
        let runs = mem.allocation(0, 2 * CHUNK, 8);
        assert_eq!(runs, vec![Extent { len: CHUNK, mapped: true }, Extent { len: CHUNK, mapped: false }]);
        assert_eq!(mem.allocation(CHUNK / 2, CHUNK, 1), vec![Extent { len: CHUNK / 2, mapped: true }]);
        let data = mem.read(CHUNK - 11, 12).unwrap();
        assert_eq!(data[0], 1);
        assert!(data[1..].iter().all(|&b| b == 0));
    }
}
