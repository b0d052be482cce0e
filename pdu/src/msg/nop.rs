//! NOP-Out (RFC 7143 §11.18) and NOP-In (§11.19).

use bytes::Bytes;

use super::{seq_of, with_seq, TargetSeq};
use crate::bhs::BhsBuf;
use crate::error::DecodeError;
use crate::framing::Pdu;
use crate::opcode::Opcode;
use crate::{OutPdu, RESERVED_TAG};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NopOut {
    pub immediate: bool,
    pub lun: u64,
    /// 0xffffffff when this NOP-Out answers a NOP-In (no response wanted, §11.18.2).
    pub itt: u32,
    /// The TTT of the NOP-In being answered, else 0xffffffff (§11.18.3).
    pub ttt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    /// Ping data, echoed back in the NOP-In (§11.18.5).
    pub data: Bytes,
}

impl NopOut {
    pub fn decode(pdu: &Pdu) -> Result<Self, DecodeError> {
        let b = pdu.bhs();
        if !b.final_bit() {
            return Err(DecodeError::InvalidField("NOP-Out without F bit"));
        }
        let nop = NopOut {
            immediate: b.immediate(),
            lun: b.lun(),
            itt: b.itt(),
            ttt: b.u32_at(20),
            cmd_sn: b.u32_at(24),
            exp_stat_sn: b.u32_at(28),
            data: pdu.data(),
        };
        if nop.itt == RESERVED_TAG && nop.ttt == RESERVED_TAG {
            // §11.18.2-3: a NOP-Out that wants no answer and answers nothing carries no meaning
            // unless immediate; both tags reserved is legal only with the I bit.
            if !nop.immediate {
                return Err(DecodeError::InvalidField("NOP-Out ITT and TTT both reserved"));
            }
        }
        Ok(nop)
    }

    pub fn encode(&self) -> OutPdu {
        let bhs = BhsBuf::new(Opcode::NOP_OUT)
            .immediate(self.immediate)
            .flags(0x80)
            .lun(self.lun)
            .itt(self.itt)
            .u32(20, self.ttt)
            .u32(24, self.cmd_sn)
            .u32(28, self.exp_stat_sn);
        OutPdu::new(bhs, self.data.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NopIn {
    pub lun: u64,
    /// The NOP-Out's ITT when answering one, else 0xffffffff (§11.19.1).
    pub itt: u32,
    /// A tag the initiator must echo when the target pings; 0xffffffff when no answer is wanted.
    pub ttt: u32,
    /// StatSN advances only when answering a NOP-Out (ITT != reserved) (§11.19.2).
    pub seq: TargetSeq,
    pub data: Bytes,
}

impl NopIn {
    pub fn decode(pdu: &Pdu) -> Result<Self, DecodeError> {
        let b = pdu.bhs();
        Ok(NopIn { lun: b.lun(), itt: b.itt(), ttt: b.u32_at(20), seq: seq_of(&b), data: pdu.data() })
    }

    pub fn encode(&self) -> OutPdu {
        let bhs = BhsBuf::new(Opcode::NOP_IN).flags(0x80).lun(self.lun).itt(self.itt).u32(20, self.ttt);
        OutPdu::new(with_seq(bhs, self.seq), self.data.clone())
    }
}
