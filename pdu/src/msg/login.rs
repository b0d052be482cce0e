//! Login Request (RFC 7143 §11.12) and Login Response (§11.13). The data segment is text
//! (§6.1); keys are parsed by the caller with [`crate::text`] once continuation is complete.

use bytes::Bytes;

use super::{seq_of, with_seq, TargetSeq};
use crate::bhs::BhsBuf;
use crate::error::DecodeError;
use crate::framing::Pdu;
use crate::opcode::Opcode;
use crate::OutPdu;

/// Login stages, CSG/NSG (RFC 7143 §11.12.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Security = 0,
    Operational = 1,
    FullFeature = 3,
}

impl Stage {
    pub fn from_bits(v: u8) -> Result<Stage, DecodeError> {
        match v {
            0 => Ok(Stage::Security),
            1 => Ok(Stage::Operational),
            3 => Ok(Stage::FullFeature),
            _ => Err(DecodeError::InvalidField("reserved login stage 2")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest {
    /// T bit: the initiator is ready to move to NSG (§11.12.1).
    pub transit: bool,
    /// C bit: the text continues in the next PDU (§11.12.2).
    pub cont: bool,
    pub csg: Stage,
    pub nsg: Stage,
    pub version_max: u8,
    pub version_min: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub data: Bytes,
}

impl LoginRequest {
    pub fn decode(pdu: &Pdu) -> Result<Self, DecodeError> {
        let b = pdu.bhs();
        let flags = b.flags();
        let transit = flags & 0x80 != 0;
        let cont = flags & 0x40 != 0;
        if transit && cont {
            // §11.12.2: T and C must not both be set.
            return Err(DecodeError::InvalidField("login T and C both set"));
        }
        Ok(LoginRequest {
            transit,
            cont,
            csg: Stage::from_bits((flags >> 2) & 0x03)?,
            // NSG is only meaningful with T; a reserved value without T is ignored.
            nsg: if transit {
                Stage::from_bits(flags & 0x03)?
            } else {
                Stage::from_bits(flags & 0x03).unwrap_or(Stage::Security)
            },
            version_max: b.byte(2),
            version_min: b.byte(3),
            isid: b.bytes()[8..14].try_into().unwrap(),
            tsih: b.u16_at(14),
            itt: b.itt(),
            cid: b.u16_at(20),
            cmd_sn: b.u32_at(24),
            exp_stat_sn: b.u32_at(28),
            data: pdu.data(),
        })
    }

    pub fn encode(&self) -> OutPdu {
        let flags = stage_flags(self.transit, self.cont, self.csg, self.nsg);
        let bhs = BhsBuf::new(Opcode::LOGIN_REQUEST)
            .immediate(true) // §11.12: the I bit is always 1 in a Login Request.
            .flags(flags)
            .byte(2, self.version_max)
            .byte(3, self.version_min)
            .bytes(8, &self.isid)
            .u16(14, self.tsih)
            .itt(self.itt)
            .u16(20, self.cid)
            .u32(24, self.cmd_sn)
            .u32(28, self.exp_stat_sn);
        OutPdu::new(bhs, self.data.clone())
    }
}

fn stage_flags(transit: bool, cont: bool, csg: Stage, nsg: Stage) -> u8 {
    let mut flags = ((csg as u8) << 2) | if transit { nsg as u8 } else { 0 };
    if transit {
        flags |= 0x80;
    }
    if cont {
        flags |= 0x40;
    }
    flags
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginResponse {
    pub transit: bool,
    pub cont: bool,
    pub csg: Stage,
    pub nsg: Stage,
    pub version_max: u8,
    pub version_active: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub seq: TargetSeq,
    /// Status-Class and Status-Detail (§11.13.5).
    pub status_class: u8,
    pub status_detail: u8,
    pub data: Bytes,
}

impl LoginResponse {
    pub fn decode(pdu: &Pdu) -> Result<Self, DecodeError> {
        let b = pdu.bhs();
        let flags = b.flags();
        Ok(LoginResponse {
            transit: flags & 0x80 != 0,
            cont: flags & 0x40 != 0,
            csg: Stage::from_bits((flags >> 2) & 0x03)?,
            nsg: Stage::from_bits(flags & 0x03)?,
            version_max: b.byte(2),
            version_active: b.byte(3),
            isid: b.bytes()[8..14].try_into().unwrap(),
            tsih: b.u16_at(14),
            itt: b.itt(),
            seq: seq_of(&b),
            status_class: b.byte(36),
            status_detail: b.byte(37),
            data: pdu.data(),
        })
    }

    pub fn encode(&self) -> OutPdu {
        let flags = stage_flags(self.transit, self.cont, self.csg, self.nsg);
        let bhs = BhsBuf::new(Opcode::LOGIN_RESPONSE)
            .flags(flags)
            .byte(2, self.version_max)
            .byte(3, self.version_active)
            .bytes(8, &self.isid)
            .u16(14, self.tsih)
            .itt(self.itt);
        let bhs = with_seq(bhs, self.seq).byte(36, self.status_class).byte(37, self.status_detail);
        OutPdu::new(bhs, self.data.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::roundtrip;

    #[test]
    fn request_roundtrip() {
        let r = LoginRequest {
            transit: true,
            cont: false,
            csg: Stage::Operational,
            nsg: Stage::FullFeature,
            version_max: 0,
            version_min: 0,
            isid: [0x80, 0x12, 0x34, 0x56, 0x78, 0x9a],
            tsih: 0,
            itt: 0,
            cid: 1,
            cmd_sn: 1,
            exp_stat_sn: 0,
            data: crate::text::encode(&[("InitiatorName", "iqn.x")]),
        };
        let pdu = roundtrip(&r.encode());
        assert!(pdu.bhs().immediate());
        assert_eq!(LoginRequest::decode(&pdu).unwrap(), r);
    }

    #[test]
    fn t_and_c_together_is_invalid() {
        let mut r = LoginRequest::decode(&roundtrip(
            &LoginRequest {
                transit: false,
                cont: true,
                csg: Stage::Security,
                nsg: Stage::Security,
                version_max: 0,
                version_min: 0,
                isid: [0; 6],
                tsih: 0,
                itt: 0,
                cid: 0,
                cmd_sn: 0,
                exp_stat_sn: 0,
                data: Bytes::new(),
            }
            .encode(),
        ))
        .unwrap();
        r.transit = true;
        let mut raw = r.encode().to_bytes(Default::default()).to_vec();
        raw[1] |= 0xc0;
        assert!(LoginRequest::decode(&Pdu::from_parts(raw.into()).unwrap()).is_err());
    }
}
