//! Outgoing PDUs: a 48-byte header built in place plus a `Bytes` data segment that is never
//! copied. `WireWriter` gathers headers, padding and digests into one small scratch buffer and
//! the data segments by reference, ready for a vectored write.

use bytes::{BufMut, Bytes, BytesMut};

use crate::bhs::{Bhs, BhsBuf};
use crate::digest::{self, pad_len};
use crate::framing::Digests;

/// A PDU ready to send. DataSegmentLength is set from `data` when it is encoded.
#[derive(Clone)]
pub struct OutPdu {
    pub bhs: BhsBuf,
    /// Additional header segments, already padded to 4 bytes (rarely used by a target).
    pub ahs: Bytes,
    pub data: Bytes,
}

impl OutPdu {
    pub fn new(bhs: BhsBuf, data: Bytes) -> OutPdu {
        OutPdu { bhs, ahs: Bytes::new(), data }
    }

    /// The BHS with its length fields filled in.
    pub fn finished_bhs(&self) -> BhsBuf {
        self.bhs.clone().lengths(self.ahs.len(), self.data.len())
    }

    pub fn view(&self) -> Bhs<'_> {
        self.bhs.view()
    }

    /// Number of bytes this PDU takes on the wire.
    pub fn wire_len(&self, digests: Digests) -> usize {
        let mut n = crate::BHS_LEN + self.ahs.len();
        if digests.header {
            n += 4;
        }
        if !self.data.is_empty() {
            n += self.data.len() + pad_len(self.data.len());
            if digests.data {
                n += 4;
            }
        }
        n
    }

    /// The whole PDU as one contiguous buffer (copies; for tests and login, not the data path).
    pub fn to_bytes(&self, digests: Digests) -> Bytes {
        let mut w = WireWriter::new();
        w.push(self, digests);
        let mut out = BytesMut::with_capacity(self.wire_len(digests));
        for c in w.take_chunks() {
            out.extend_from_slice(&c);
        }
        out.freeze()
    }
}

/// Accumulates PDUs for one vectored write. Small parts (headers, pads, digests) go to a scratch
/// buffer; data segments are referenced as they are.
pub struct WireWriter {
    scratch: BytesMut,
    chunks: Vec<Bytes>,
    len: usize,
}

impl Default for WireWriter {
    fn default() -> Self {
        Self::new()
    }
}

const SMALL_DATA: usize = 512;

impl WireWriter {
    pub fn new() -> WireWriter {
        WireWriter { scratch: BytesMut::with_capacity(8192), chunks: Vec::with_capacity(16), len: 0 }
    }

    /// Bytes queued so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends one PDU: header (+ header digest), data (+ padding + data digest).
    pub fn push(&mut self, pdu: &OutPdu, digests: Digests) {
        let start = self.scratch.len();
        let bhs = pdu.finished_bhs();
        self.scratch.put_slice(&bhs.0);
        self.scratch.put_slice(&pdu.ahs);
        if digests.header {
            let crc = digest::header_digest(&self.scratch[start..]);
            self.scratch.put_slice(&digest::digest_bytes(crc));
        }
        if !pdu.data.is_empty() {
            let pad = pad_len(pdu.data.len());
            if digests.data {
                // RFC 7143 §11.2.3: the digest covers exactly the bytes sent. A data segment may
                // be a view of memory that others write meanwhile (a file LUN's page-cache
                // mapping), so with a data digest it is copied once and digested from the copy.
                let data_start = self.scratch.len();
                self.scratch.put_slice(&pdu.data);
                self.scratch.put_bytes(0, pad);
                let crc = digest::data_digest([&self.scratch[data_start..data_start + pdu.data.len()]], pdu.data.len());
                self.scratch.put_slice(&digest::digest_bytes(crc));
            } else {
                if pdu.data.len() <= SMALL_DATA {
                    // Copying a few hundred bytes is cheaper than another iovec.
                    self.scratch.put_slice(&pdu.data);
                } else {
                    self.flush_scratch();
                    self.chunks.push(pdu.data.clone());
                }
                self.scratch.put_bytes(0, pad);
            }
        }
        self.len += pdu.wire_len(digests);
    }

    fn flush_scratch(&mut self) {
        if !self.scratch.is_empty() {
            self.chunks.push(self.scratch.split().freeze());
        }
    }

    /// Hands out the queued chunks in order and resets the writer.
    pub fn take_chunks(&mut self) -> Vec<Bytes> {
        self.flush_scratch();
        self.len = 0;
        std::mem::take(&mut self.chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Opcode;

    fn data_in(len: usize) -> OutPdu {
        let data = Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>());
        OutPdu::new(BhsBuf::new(Opcode::SCSI_DATA_IN), data)
    }

    #[test]
    fn large_segments_are_referenced_without_a_data_digest() {
        let mut w = WireWriter::new();
        w.push(&data_in(4096), Digests::default());
        let chunks = w.take_chunks();
        assert_eq!(chunks.len(), 2, "header, then the segment itself");
        assert_eq!(chunks[1].len(), 4096);
    }

    #[test]
    fn with_a_data_digest_the_segment_is_copied_and_digested_from_the_copy() {
        let pdu = data_in(4097);
        let mut w = WireWriter::new();
        w.push(&pdu, Digests { header: false, data: true });
        let chunks = w.take_chunks();
        assert_eq!(chunks.len(), 1, "one owned buffer: nobody can change the bytes after the digest");
        let wire = &chunks[0];
        assert_eq!(wire.len(), pdu.wire_len(Digests { header: false, data: true }));
        let data = &wire[48..48 + 4097];
        assert_eq!(data, &pdu.data[..]);
        let digest_at = 48 + 4097 + pad_len(4097);
        let crc = digest::digest_bytes(digest::data_digest_of(&pdu.data));
        assert_eq!(&wire[digest_at..digest_at + 4], &crc);
    }
}
