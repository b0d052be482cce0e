//! SNACK Request (RFC 7143 §11.16). A target at ErrorRecoveryLevel 0 answers it with a Reject.

use bytes::Bytes;

use crate::bhs::BhsBuf;
use crate::error::DecodeError;
use crate::framing::Pdu;
use crate::opcode::Opcode;
use crate::OutPdu;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snack {
    pub kind: u8,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub exp_stat_sn: u32,
    pub beg_run: u32,
    pub run_length: u32,
}

impl Snack {
    pub fn decode(pdu: &Pdu) -> Result<Self, DecodeError> {
        let b = pdu.bhs();
        Ok(Snack {
            kind: b.flags() & 0x0f,
            lun: b.lun(),
            itt: b.itt(),
            ttt: b.u32_at(20),
            exp_stat_sn: b.u32_at(28),
            beg_run: b.u32_at(40),
            run_length: b.u32_at(44),
        })
    }

    pub fn encode(&self) -> OutPdu {
        let bhs = BhsBuf::new(Opcode::SNACK_REQUEST)
            .flags(0x80 | (self.kind & 0x0f))
            .lun(self.lun)
            .itt(self.itt)
            .u32(20, self.ttt)
            .u32(28, self.exp_stat_sn)
            .u32(40, self.beg_run)
            .u32(44, self.run_length);
        OutPdu::new(bhs, Bytes::new())
    }
}
