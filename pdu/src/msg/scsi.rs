//! SCSI Command (RFC 7143 §11.3) and SCSI Response (§11.4).

use bytes::{BufMut, Bytes, BytesMut};

use super::{seq_of, with_seq, TargetSeq};
use crate::bhs::BhsBuf;
use crate::error::DecodeError;
use crate::framing::Pdu;
use crate::opcode::Opcode;
use crate::OutPdu;

/// Task attributes, byte 1 bits 0-2 (RFC 7143 §11.3.1.1).
pub mod attr {
    pub const UNTAGGED: u8 = 0;
    pub const SIMPLE: u8 = 1;
    pub const ORDERED: u8 = 2;
    pub const HEAD_OF_QUEUE: u8 = 3;
    pub const ACA: u8 = 4;
}

/// AHS types (RFC 7143 §11.2.2.2).
const AHS_EXTENDED_CDB: u8 = 1;
const AHS_BIDI_READ_LENGTH: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiCommand {
    pub immediate: bool,
    pub final_bit: bool,
    pub read: bool,
    pub write: bool,
    pub attr: u8,
    pub lun: u64,
    pub itt: u32,
    pub expected_data_transfer_length: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub cdb: [u8; 16],
    /// CDB bytes beyond the first 16, from an Extended CDB AHS (§11.2.2.3).
    pub extended_cdb: Bytes,
    /// Bidirectional Read Expected Data Transfer Length AHS (§11.2.2.4).
    pub bidi_read_length: Option<u32>,
    /// Immediate data (§11.3.4).
    pub data: Bytes,
}

impl ScsiCommand {
    pub fn decode(pdu: &Pdu) -> Result<Self, DecodeError> {
        let b = pdu.bhs();
        let flags = b.flags();
        let mut cmd = ScsiCommand {
            immediate: b.immediate(),
            final_bit: flags & 0x80 != 0,
            read: flags & 0x40 != 0,
            write: flags & 0x20 != 0,
            attr: flags & 0x07,
            lun: b.lun(),
            itt: b.itt(),
            expected_data_transfer_length: b.u32_at(20),
            cmd_sn: b.u32_at(24),
            exp_stat_sn: b.u32_at(28),
            cdb: b.bytes()[32..48].try_into().unwrap(),
            extended_cdb: Bytes::new(),
            bidi_read_length: None,
            data: pdu.data(),
        };
        let mut ahs = pdu.ahs();
        while !ahs.is_empty() {
            // Each AHS: 2-byte AHSLength (excluding the 3-byte prefix+reserved), type, payload,
            // padded to 4 bytes (§11.2.2).
            if ahs.len() < 4 {
                return Err(DecodeError::InvalidField("truncated AHS"));
            }
            let len = u16::from_be_bytes([ahs[0], ahs[1]]) as usize;
            let kind = ahs[2];
            let total = (3 + len).div_ceil(4) * 4;
            if total > ahs.len() || len == 0 {
                return Err(DecodeError::InvalidField("AHS length"));
            }
            let body = &ahs[3..3 + len];
            match kind {
                AHS_EXTENDED_CDB => {
                    // First byte of the body is reserved; the rest is CDB bytes 17...
                    cmd.extended_cdb = Bytes::copy_from_slice(&body[1..]);
                }
                AHS_BIDI_READ_LENGTH if len == 5 => {
                    cmd.bidi_read_length = Some(u32::from_be_bytes(body[1..5].try_into().unwrap()));
                }
                _ => return Err(DecodeError::InvalidField("AHS type")),
            }
            ahs = &ahs[total..];
        }
        Ok(cmd)
    }

    pub fn encode(&self) -> OutPdu {
        let mut flags = self.attr & 0x07;
        if self.final_bit {
            flags |= 0x80;
        }
        if self.read {
            flags |= 0x40;
        }
        if self.write {
            flags |= 0x20;
        }
        let bhs = BhsBuf::new(Opcode::SCSI_COMMAND)
            .immediate(self.immediate)
            .flags(flags)
            .lun(self.lun)
            .itt(self.itt)
            .u32(20, self.expected_data_transfer_length)
            .u32(24, self.cmd_sn)
            .u32(28, self.exp_stat_sn)
            .bytes(32, &self.cdb);
        let mut ahs = BytesMut::new();
        if !self.extended_cdb.is_empty() {
            let len = self.extended_cdb.len() + 1;
            ahs.put_u16(len as u16);
            ahs.put_u8(AHS_EXTENDED_CDB);
            ahs.put_u8(0);
            ahs.put_slice(&self.extended_cdb);
            ahs.put_bytes(0, crate::digest::pad_len(3 + len));
        }
        if let Some(n) = self.bidi_read_length {
            ahs.put_u16(5);
            ahs.put_u8(AHS_BIDI_READ_LENGTH);
            ahs.put_u8(0);
            ahs.put_u32(n);
        }
        OutPdu { bhs, ahs: ahs.freeze(), data: self.data.clone() }
    }
}

/// Residual count and direction (RFC 7143 §11.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Residual {
    #[default]
    None,
    /// The command wanted to move more than the Expected Data Transfer Length.
    Overflow(u32),
    /// Fewer bytes moved than the Expected Data Transfer Length.
    Underflow(u32),
}

impl Residual {
    /// O/U flag bits as in the SCSI Response and Data-In headers (§11.4.1, §11.7.1).
    pub fn flag_bits(self) -> u8 {
        match self {
            Residual::None => 0,
            Residual::Overflow(_) => 0x04,
            Residual::Underflow(_) => 0x02,
        }
    }

    pub fn count(self) -> u32 {
        match self {
            Residual::None => 0,
            Residual::Overflow(n) | Residual::Underflow(n) => n,
        }
    }

    fn from_bits(flags: u8, count: u32) -> Result<Residual, DecodeError> {
        match (flags & 0x04 != 0, flags & 0x02 != 0) {
            (false, false) => Ok(Residual::None),
            (true, false) => Ok(Residual::Overflow(count)),
            (false, true) => Ok(Residual::Underflow(count)),
            (true, true) => Err(DecodeError::InvalidField("both O and U set")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiResponse {
    pub residual: Residual,
    pub bidi_residual: Residual,
    /// iSCSI service response (§11.4.3): 0x00 command completed at target.
    pub response: u8,
    pub status: u8,
    pub itt: u32,
    pub seq: TargetSeq,
    pub exp_data_sn: u32,
    /// SenseLength + sense data + response data (§11.4.7).
    pub data: Bytes,
}

impl ScsiResponse {
    /// The data segment for sense data: 2-byte SenseLength then the sense bytes (§11.4.7.2).
    pub fn sense_segment(sense: &[u8]) -> Bytes {
        let mut b = BytesMut::with_capacity(2 + sense.len());
        b.put_u16(sense.len() as u16);
        b.put_slice(sense);
        b.freeze()
    }

    /// The sense bytes of the data segment, if any.
    pub fn sense(&self) -> Option<Bytes> {
        if self.data.len() < 2 {
            return None;
        }
        let n = u16::from_be_bytes([self.data[0], self.data[1]]) as usize;
        (n > 0 && self.data.len() >= 2 + n).then(|| self.data.slice(2..2 + n))
    }

    pub fn decode(pdu: &Pdu) -> Result<Self, DecodeError> {
        let b = pdu.bhs();
        let flags = b.flags();
        Ok(ScsiResponse {
            residual: Residual::from_bits(flags, b.u32_at(44))?,
            bidi_residual: Residual::from_bits(flags >> 2, b.u32_at(40))?,
            response: b.byte(2),
            status: b.byte(3),
            itt: b.itt(),
            seq: seq_of(&b),
            exp_data_sn: b.u32_at(36),
            data: pdu.data(),
        })
    }

    pub fn encode(&self) -> OutPdu {
        let flags = 0x80 | self.residual.flag_bits() | (self.bidi_residual.flag_bits() << 2);
        let bhs = BhsBuf::new(Opcode::SCSI_RESPONSE)
            .flags(flags)
            .byte(2, self.response)
            .byte(3, self.status)
            .itt(self.itt)
            .u32(36, self.exp_data_sn)
            .u32(40, self.bidi_residual.count())
            .u32(44, self.residual.count());
        OutPdu::new(with_seq(bhs, self.seq), self.data.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::roundtrip;

    #[test]
    fn command_roundtrip_with_ahs() {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x2a;
        let cmd = ScsiCommand {
            immediate: false,
            final_bit: true,
            read: false,
            write: true,
            attr: attr::SIMPLE,
            lun: 0x0001_0000_0000_0000,
            itt: 7,
            expected_data_transfer_length: 4096,
            cmd_sn: 9,
            exp_stat_sn: 3,
            cdb,
            extended_cdb: Bytes::from_static(&[1, 2, 3, 4, 5]),
            bidi_read_length: Some(512),
            data: Bytes::from(vec![0xab; 100]),
        };
        let back = ScsiCommand::decode(&roundtrip(&cmd.encode())).unwrap();
        assert_eq!(back, cmd);
    }

    #[test]
    fn response_with_sense() {
        let rsp = ScsiResponse {
            residual: Residual::Underflow(512),
            bidi_residual: Residual::None,
            response: 0,
            status: 2,
            itt: 1,
            seq: TargetSeq { stat_sn: 1, exp_cmd_sn: 2, max_cmd_sn: 33 },
            exp_data_sn: 0,
            data: ScsiResponse::sense_segment(&[0x70, 0, 5]),
        };
        let back = ScsiResponse::decode(&roundtrip(&rsp.encode())).unwrap();
        assert_eq!(back, rsp);
        assert_eq!(&back.sense().unwrap()[..], &[0x70, 0, 5]);
    }
}
