//! The Basic Header Segment (RFC 7143 §11.2.1): 48 bytes at fixed offsets. `Bhs` reads it in
//! place; `BhsBuf` builds one for sending. Field offsets are given per getter.

use crate::opcode::Opcode;
use crate::BHS_LEN;

/// Read-only view of a received BHS.
#[derive(Clone, Copy)]
pub struct Bhs<'a>(&'a [u8; BHS_LEN]);

impl<'a> Bhs<'a> {
    pub fn new(bytes: &'a [u8; BHS_LEN]) -> Self {
        Bhs(bytes)
    }

    pub fn from_slice(bytes: &'a [u8]) -> Option<Self> {
        bytes.get(..BHS_LEN).map(|b| Bhs(b.try_into().expect("48 bytes")))
    }

    pub fn bytes(&self) -> &'a [u8; BHS_LEN] {
        self.0
    }

    /// Byte 0, bits 0-5 (§11.2.1.2).
    pub fn opcode(&self) -> Opcode {
        Opcode(self.0[0] & 0x3f)
    }

    /// Byte 0, bit 6: the I (immediate delivery) bit (§11.2.1.2).
    pub fn immediate(&self) -> bool {
        self.0[0] & 0x40 != 0
    }

    /// Byte 1: opcode-specific flags; bit 7 is the F (final) bit for most PDUs.
    pub fn flags(&self) -> u8 {
        self.0[1]
    }

    pub fn final_bit(&self) -> bool {
        self.0[1] & 0x80 != 0
    }

    pub fn byte(&self, at: usize) -> u8 {
        self.0[at]
    }

    /// Byte 4: TotalAHSLength in 4-byte words (§11.2.1.5).
    pub fn total_ahs_len(&self) -> usize {
        self.0[4] as usize * 4
    }

    /// Bytes 5-7: DataSegmentLength, without padding (§11.2.1.6).
    pub fn data_segment_len(&self) -> u32 {
        u32::from_be_bytes([0, self.0[5], self.0[6], self.0[7]])
    }

    /// Bytes 8-15: LUN or opcode-specific (§11.2.1.7).
    pub fn lun(&self) -> u64 {
        self.u64_at(8)
    }

    /// Bytes 16-19: Initiator Task Tag (§11.2.1.8).
    pub fn itt(&self) -> u32 {
        self.u32_at(16)
    }

    pub fn u16_at(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.0[at], self.0[at + 1]])
    }

    pub fn u32_at(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.0[at..at + 4].try_into().expect("4 bytes"))
    }

    pub fn u64_at(&self, at: usize) -> u64 {
        u64::from_be_bytes(self.0[at..at + 8].try_into().expect("8 bytes"))
    }
}

impl std::fmt::Debug for Bhs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bhs")
            .field("opcode", &self.opcode())
            .field("immediate", &self.immediate())
            .field("flags", &format_args!("0x{:02x}", self.flags()))
            .field("ahs_len", &self.total_ahs_len())
            .field("dsl", &self.data_segment_len())
            .field("itt", &format_args!("0x{:08x}", self.itt()))
            .finish()
    }
}

/// A BHS under construction for sending.
#[derive(Clone)]
pub struct BhsBuf(pub [u8; BHS_LEN]);

impl BhsBuf {
    pub fn new(opcode: Opcode) -> Self {
        let mut b = [0u8; BHS_LEN];
        b[0] = opcode.0 & 0x3f;
        BhsBuf(b)
    }

    pub fn immediate(mut self, yes: bool) -> Self {
        if yes {
            self.0[0] |= 0x40;
        }
        self
    }

    pub fn flags(mut self, flags: u8) -> Self {
        self.0[1] = flags;
        self
    }

    pub fn byte(mut self, at: usize, v: u8) -> Self {
        self.0[at] = v;
        self
    }

    pub fn u16(mut self, at: usize, v: u16) -> Self {
        self.0[at..at + 2].copy_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u32(mut self, at: usize, v: u32) -> Self {
        self.0[at..at + 4].copy_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u64(mut self, at: usize, v: u64) -> Self {
        self.0[at..at + 8].copy_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bytes(mut self, at: usize, v: &[u8]) -> Self {
        self.0[at..at + v.len()].copy_from_slice(v);
        self
    }

    pub fn lun(self, lun: u64) -> Self {
        self.u64(8, lun)
    }

    pub fn itt(self, itt: u32) -> Self {
        self.u32(16, itt)
    }

    /// Sets TotalAHSLength (in bytes; must be a multiple of 4) and DataSegmentLength.
    pub fn lengths(mut self, ahs_bytes: usize, data_len: usize) -> Self {
        debug_assert!(ahs_bytes.is_multiple_of(4) && ahs_bytes <= 255 * 4);
        debug_assert!(data_len <= crate::MAX_DATA_SEGMENT_LEN as usize);
        self.0[4] = (ahs_bytes / 4) as u8;
        let l = (data_len as u32).to_be_bytes();
        self.0[5..8].copy_from_slice(&l[1..]);
        self
    }

    pub fn view(&self) -> Bhs<'_> {
        Bhs(&self.0)
    }
}
