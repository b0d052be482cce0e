//! Sense data as the target returns it (SPC-4 §4.5): fixed format (response codes 70h/71h,
//! §4.5.3) and descriptor format (72h/73h, §4.5.2). The one parser for the bench and every test.

use pdu::be;

/// Sense key UNIT ATTENTION (SPC-4 §4.5.6, Table 27).
pub const UNIT_ATTENTION: u8 = 0x06;
/// Sense key ILLEGAL REQUEST.
pub const ILLEGAL_REQUEST: u8 = 0x05;

/// The parts of sense data a caller asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sense {
    /// Response code without the VALID bit: 70h/71h fixed, 72h/73h descriptor.
    pub response_code: u8,
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
    /// The INFORMATION field: fixed format when VALID is set (§4.5.3), descriptor format from
    /// an Information descriptor (type 00h, §4.5.2.2) when present.
    pub information: Option<u64>,
    /// Fixed format SENSE KEY SPECIFIC bytes 15..18 when SKSV is set; descriptor format from a
    /// Sense key specific descriptor (type 02h, §4.5.2.4).
    pub key_specific: Option<[u8; 3]>,
}

impl Sense {
    /// Parses sense data; `None` when it is too short or not a format SPC-4 defines.
    pub fn parse(data: &[u8]) -> Option<Sense> {
        let response_code = data.first()? & 0x7f;
        match response_code {
            0x70 | 0x71 if data.len() >= 14 => Some(Sense {
                response_code,
                key: data[2] & 0x0f,
                asc: data[12],
                ascq: data[13],
                // §4.5.3: INFORMATION (bytes 3..7) is meaningful only with VALID (byte 0 bit 7).
                information: (data[0] & 0x80 != 0).then(|| be::u32_at(data, 3)).flatten().map(u64::from),
                key_specific: data.get(15..18).filter(|b| b[0] & 0x80 != 0).map(|b| [b[0], b[1], b[2]]),
            }),
            0x72 | 0x73 if data.len() >= 4 => {
                let mut sense = Sense {
                    response_code,
                    key: data[1] & 0x0f,
                    asc: data[2],
                    ascq: data[3],
                    information: None,
                    key_specific: None,
                };
                // §4.5.2.1: ADDITIONAL SENSE LENGTH (byte 7), then descriptors of 2 + length bytes.
                let end = data.len().min(8 + *data.get(7).unwrap_or(&0) as usize);
                let mut at = 8;
                while at + 2 <= end {
                    let (kind, len) = (data[at], data[at + 1] as usize);
                    let body = data.get(at + 2..(at + 2 + len).min(end)).unwrap_or(&[]);
                    match kind {
                        // §4.5.2.2 Information descriptor: VALID byte, reserved, 8-byte INFORMATION.
                        0x00 if body.len() >= 10 && body[0] & 0x80 != 0 => sense.information = be::u64_at(body, 2),
                        // §4.5.2.4 Sense key specific descriptor: 2 reserved, SKSV + 3 bytes.
                        0x02 if body.len() >= 5 && body[2] & 0x80 != 0 => {
                            sense.key_specific = Some([body[2], body[3], body[4]])
                        }
                        _ => {}
                    }
                    at += 2 + len;
                }
                Some(sense)
            }
            _ => None,
        }
    }

    pub fn triple(&self) -> (u8, u8, u8) {
        (self.key, self.asc, self.ascq)
    }

    pub fn is_descriptor_format(&self) -> bool {
        matches!(self.response_code, 0x72 | 0x73)
    }
}

/// (sense key, ASC, ASCQ) of fixed or descriptor sense data.
pub fn triple(data: &[u8]) -> Option<(u8, u8, u8)> {
    Sense::parse(data).map(|s| s.triple())
}

/// "CHECK CONDITION sense 05/24/00" style text for reports.
pub fn describe_status(status: u8, sense: Option<&[u8]>) -> String {
    match (status, sense.and_then(triple)) {
        (crate::cdb::CHECK_CONDITION, Some((k, asc, ascq))) => {
            format!("CHECK CONDITION sense {k:02x}/{asc:02x}/{ascq:02x}")
        }
        (s, _) => format!("status {s:#04x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format() {
        let mut fixed = [0u8; 18];
        fixed[0] = 0x70;
        fixed[2] = 0x06;
        fixed[12] = 0x29;
        assert_eq!(triple(&fixed), Some((6, 0x29, 0)));
        assert_eq!(Sense::parse(&fixed).unwrap().information, None, "VALID clear");
        fixed[0] = 0xf0;
        fixed[3..7].copy_from_slice(&0x1234u32.to_be_bytes());
        fixed[15] = 0xc0;
        fixed[17] = 0x02;
        let s = Sense::parse(&fixed).unwrap();
        assert_eq!((s.information, s.key_specific), (Some(0x1234), Some([0xc0, 0, 2])));
        assert!(!s.is_descriptor_format());
        assert_eq!(describe_status(2, Some(&fixed)), "CHECK CONDITION sense 06/29/00");
    }

    #[test]
    fn descriptor_format_with_information_and_key_specific() {
        let mut d = vec![0x72, 0x05, 0x24, 0x00, 0, 0, 0, 20];
        d.extend([0x00, 0x0a, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x00]);
        d.extend([0x02, 0x06, 0, 0, 0xc0, 0x00, 0x01, 0]);
        let s = Sense::parse(&d).unwrap();
        assert_eq!(s.triple(), (5, 0x24, 0));
        assert_eq!(s.information, Some(0x1000));
        assert_eq!(s.key_specific, Some([0xc0, 0, 1]));
        assert!(s.is_descriptor_format());
        assert_eq!(triple(&[0x72, 0x05, 0x24, 0x00]), Some((5, 0x24, 0)));
    }

    #[test]
    fn short_or_unknown_sense_is_none() {
        assert_eq!(triple(&[0x70, 0]), None);
        assert_eq!(triple(&[0x7f; 20]), None);
        assert_eq!(triple(&[]), None);
        // A descriptor claiming more than is there is cut at the buffer's end, not read past it.
        assert_eq!(Sense::parse(&[0x72, 5, 0x24, 0, 0, 0, 0, 200, 0x00, 0xff]).unwrap().information, None);
    }
}
