//! Splitting a received byte stream into whole PDUs (RFC 7143 §11.2) without copying.
//!
//! `Framer::decode` looks at the BHS, bounds the data segment by the receiver's
//! MaxRecvDataSegmentLength *before* buffering it, waits until the whole PDU is in the buffer,
//! then splits it off as one frozen `Bytes`: the BHS, AHS and data segment of a [`Pdu`] are
//! views into that one allocation.

use bytes::{Bytes, BytesMut};

use crate::bhs::Bhs;
use crate::digest::{self, pad_len};
use crate::error::DecodeError;
use crate::{BHS_LEN, DIGEST_LEN};

/// Which digests are in force on a connection (RFC 7143 §13.1, HeaderDigest/DataDigest).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digests {
    pub header: bool,
    pub data: bool,
}

/// Stateless framing rules for one connection direction.
#[derive(Clone, Copy, Debug)]
pub struct Framer {
    pub digests: Digests,
    /// Largest data segment this side accepts (its declared MaxRecvDataSegmentLength; 8192
    /// during login, RFC 7143 §13.12 and §6.1).
    pub max_data_segment: u32,
}

/// One received PDU. Everything is a view into `raw`.
#[derive(Clone)]
pub struct Pdu {
    raw: Bytes,
    ahs_len: usize,
    data_off: usize,
    data_len: usize,
    data_digest_ok: bool,
}

impl Pdu {
    /// Builds a PDU from a whole BHS+AHS+data buffer without digests (for tests and encoders).
    pub fn from_parts(raw: Bytes) -> Result<Pdu, DecodeError> {
        let bhs = Bhs::from_slice(&raw).ok_or(DecodeError::InvalidField("short BHS"))?;
        let ahs_len = bhs.total_ahs_len();
        let data_len = bhs.data_segment_len() as usize;
        let data_off = BHS_LEN + ahs_len;
        if raw.len() < data_off + data_len {
            return Err(DecodeError::InvalidField("truncated PDU"));
        }
        Ok(Pdu { raw, ahs_len, data_off, data_len, data_digest_ok: true })
    }

    pub fn bhs(&self) -> Bhs<'_> {
        Bhs::from_slice(&self.raw).expect("a Pdu always holds a whole BHS")
    }

    /// The Additional Header Segments (RFC 7143 §11.2.2), possibly empty.
    pub fn ahs(&self) -> &[u8] {
        &self.raw[BHS_LEN..BHS_LEN + self.ahs_len]
    }

    /// The data segment without padding or digest: a refcounted slice, no copy.
    pub fn data(&self) -> Bytes {
        self.raw.slice(self.data_off..self.data_off + self.data_len)
    }

    pub fn data_len(&self) -> usize {
        self.data_len
    }

    /// False when a data digest was negotiated and did not match (RFC 7143 §7.8). The header was
    /// intact, so the PDU can still be answered (Reject with reason 0x02, or a CHECK CONDITION).
    pub fn data_digest_ok(&self) -> bool {
        self.data_digest_ok
    }

    /// The 48 header bytes, e.g. to return in a Reject PDU's data segment (§11.17).
    pub fn header_bytes(&self) -> Bytes {
        self.raw.slice(..BHS_LEN)
    }
}

impl std::fmt::Debug for Pdu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pdu").field("bhs", &self.bhs()).field("data_len", &self.data_len).finish()
    }
}

/// Sizes of the parts of a PDU on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub ahs_len: usize,
    pub data_len: usize,
    pub total: usize,
}

impl Framer {
    /// Framing during login: no digests, 8192-byte data segments (RFC 7143 §6.1, §13.12).
    pub fn login() -> Framer {
        Framer { digests: Digests::default(), max_data_segment: 8192 }
    }

    /// Computes the wire layout from a BHS, rejecting a data segment over the limit.
    pub fn layout(&self, bhs: &Bhs<'_>) -> Result<Layout, DecodeError> {
        let dsl = bhs.data_segment_len();
        if dsl > self.max_data_segment {
            return Err(DecodeError::DataSegmentTooLong { len: dsl, max: self.max_data_segment });
        }
        let ahs_len = bhs.total_ahs_len();
        let data_len = dsl as usize;
        let mut total = BHS_LEN + ahs_len;
        if self.digests.header {
            total += DIGEST_LEN;
        }
        if data_len > 0 {
            total += data_len + pad_len(data_len);
            if self.digests.data {
                total += DIGEST_LEN;
            }
        }
        Ok(Layout { ahs_len, data_len, total })
    }

    /// Takes one whole PDU off the front of `buf`, or returns `Ok(None)` if more bytes are needed
    /// (having reserved room for the rest, so a large PDU lands in one allocation).
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Pdu>, DecodeError> {
        if buf.len() < BHS_LEN {
            buf.reserve(BHS_LEN - buf.len());
            return Ok(None);
        }
        let layout = {
            let bhs = Bhs::from_slice(&buf[..BHS_LEN]).expect("48 bytes checked");
            self.layout(&bhs)?
        };
        if buf.len() < layout.total {
            buf.reserve(layout.total - buf.len());
            return Ok(None);
        }
        let raw = buf.split_to(layout.total).freeze();
        let header_end = BHS_LEN + layout.ahs_len;
        let mut data_off = header_end;
        if self.digests.header {
            // RFC 7143 §11.2.3: the header digest covers the BHS and all AHS.
            let want = u32::from_le_bytes(raw[header_end..header_end + 4].try_into().unwrap());
            if digest::header_digest(&raw[..header_end]) != want {
                return Err(DecodeError::HeaderDigest);
            }
            data_off += DIGEST_LEN;
        }
        let mut data_digest_ok = true;
        if self.digests.data && layout.data_len > 0 {
            // RFC 7143 §11.2.4: the data digest covers the data segment and its padding.
            let padded = layout.data_len + pad_len(layout.data_len);
            let at = data_off + padded;
            let want = u32::from_le_bytes(raw[at..at + 4].try_into().unwrap());
            data_digest_ok = crc32c::crc32c(&raw[data_off..at]) == want;
        }
        Ok(Some(Pdu { raw, ahs_len: layout.ahs_len, data_off, data_len: layout.data_len, data_digest_ok }))
    }
}
