//! SCSI Data-Out (RFC 7143 §11.7) and SCSI Data-In (§11.7), and R2T's partner fields.

use bytes::Bytes;

use super::{seq_of, with_seq, Residual, TargetSeq};
use crate::bhs::BhsBuf;
use crate::error::DecodeError;
use crate::framing::Pdu;
use crate::opcode::Opcode;
use crate::OutPdu;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataOut {
    pub final_bit: bool,
    pub lun: u64,
    pub itt: u32,
    /// 0xffffffff for unsolicited data, else the TTT of the R2T answered (§11.7.4).
    pub ttt: u32,
    pub exp_stat_sn: u32,
    pub data_sn: u32,
    pub buffer_offset: u32,
    pub data: Bytes,
}

impl DataOut {
    pub fn decode(pdu: &Pdu) -> Result<Self, DecodeError> {
        let b = pdu.bhs();
        Ok(DataOut {
            final_bit: b.final_bit(),
            lun: b.lun(),
            itt: b.itt(),
            ttt: b.u32_at(20),
            exp_stat_sn: b.u32_at(28),
            data_sn: b.u32_at(36),
            buffer_offset: b.u32_at(40),
            data: pdu.data(),
        })
    }

    pub fn encode(&self) -> OutPdu {
        let bhs = BhsBuf::new(Opcode::SCSI_DATA_OUT)
            .flags(if self.final_bit { 0x80 } else { 0 })
            .lun(self.lun)
            .itt(self.itt)
            .u32(20, self.ttt)
            .u32(28, self.exp_stat_sn)
            .u32(36, self.data_sn)
            .u32(40, self.buffer_offset);
        OutPdu::new(bhs, self.data.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataIn {
    pub final_bit: bool,
    /// A bit: the initiator should acknowledge (ERL > 0 only, §11.7.2).
    pub ack: bool,
    /// Status carried in this PDU (S bit set, §11.7.3); only on the final Data-In.
    pub status: Option<u8>,
    pub residual: Residual,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    /// StatSN is meaningful only when `status` is present (§11.7.3).
    pub seq: TargetSeq,
    pub data_sn: u32,
    pub buffer_offset: u32,
    pub data: Bytes,
}

impl DataIn {
    pub fn decode(pdu: &Pdu) -> Result<Self, DecodeError> {
        let b = pdu.bhs();
        let flags = b.flags();
        let status = (flags & 0x01 != 0).then(|| b.byte(3));
        if status.is_some() && flags & 0x80 == 0 {
            // §11.7.3: the S bit may be set only together with the F bit.
            return Err(DecodeError::InvalidField("S bit without F bit"));
        }
        let residual = if status.is_some() {
            match (flags & 0x04 != 0, flags & 0x02 != 0) {
                (true, true) => return Err(DecodeError::InvalidField("both O and U set")),
                (true, false) => Residual::Overflow(b.u32_at(44)),
                (false, true) => Residual::Underflow(b.u32_at(44)),
                _ => Residual::None,
            }
        } else {
            Residual::None
        };
        Ok(DataIn {
            final_bit: flags & 0x80 != 0,
            ack: flags & 0x40 != 0,
            status,
            residual,
            lun: b.lun(),
            itt: b.itt(),
            ttt: b.u32_at(20),
            seq: seq_of(&b),
            data_sn: b.u32_at(36),
            buffer_offset: b.u32_at(40),
            data: pdu.data(),
        })
    }

    pub fn encode(&self) -> OutPdu {
        let mut flags = 0u8;
        if self.final_bit {
            flags |= 0x80;
        }
        if self.ack {
            flags |= 0x40;
        }
        let mut bhs = BhsBuf::new(Opcode::SCSI_DATA_IN);
        if let Some(status) = self.status {
            flags |= 0x01 | self.residual.flag_bits();
            bhs = bhs.byte(3, status).u32(44, self.residual.count());
        }
        let bhs = bhs.flags(flags).lun(self.lun).itt(self.itt).u32(20, self.ttt);
        let bhs = with_seq(bhs, self.seq).u32(36, self.data_sn).u32(40, self.buffer_offset);
        OutPdu::new(bhs, self.data.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::roundtrip;

    #[test]
    fn data_in_with_status_roundtrip() {
        let d = DataIn {
            final_bit: true,
            ack: false,
            status: Some(0),
            residual: Residual::Underflow(100),
            lun: 0,
            itt: 5,
            ttt: 0xffff_ffff,
            seq: TargetSeq { stat_sn: 4, exp_cmd_sn: 5, max_cmd_sn: 36 },
            data_sn: 2,
            buffer_offset: 16384,
            data: Bytes::from(vec![1u8; 8191]),
        };
        let pdu = roundtrip(&d.encode());
        assert_eq!(DataIn::decode(&pdu).unwrap(), d);
    }

    #[test]
    fn data_out_roundtrip() {
        let d = DataOut {
            final_bit: true,
            lun: 0,
            itt: 1,
            ttt: 0x10,
            exp_stat_sn: 3,
            data_sn: 0,
            buffer_offset: 8192,
            data: Bytes::from_static(b"abc"),
        };
        assert_eq!(DataOut::decode(&roundtrip(&d.encode())).unwrap(), d);
    }
}
