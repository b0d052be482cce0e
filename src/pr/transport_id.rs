//! iSCSI TransportIDs (SPC-4 §7.6.4.6): format 00b names an initiator device, format 01b an
//! initiator port ("<name>,i,0x<ISID>"). Used by SPEC_I_PT, REGISTER AND MOVE and READ FULL
//! STATUS.

use super::state::InitiatorId;

/// SPC-4 §7.6.1 Table 477: protocol identifier of iSCSI.
pub const PROTOCOL_ISCSI: u8 = 0x5;
/// RFC 7143 §4.2.7.2: an iSCSI name is at most 223 bytes.
const MAX_NAME: usize = 223;

/// Why a TransportID was refused, with the byte (relative to the TransportID) at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadTransportId {
    pub byte: usize,
}

/// Decodes one TransportID at the start of `data`; returns it and its total length.
pub fn decode(data: &[u8]) -> Result<(InitiatorId, usize), BadTransportId> {
    if data.len() < 4 {
        return Err(BadTransportId { byte: 0 });
    }
    let format = data[0] >> 6;
    if data[0] & 0x0F != PROTOCOL_ISCSI || format > 1 || data[0] & 0x30 != 0 {
        return Err(BadTransportId { byte: 0 });
    }
    // §7.6.4.6: ADDITIONAL LENGTH is at least 20 and a multiple of four.
    let additional = u16::from_be_bytes([data[2], data[3]]) as usize;
    if additional < 20 || !additional.is_multiple_of(4) || 4 + additional > data.len() {
        return Err(BadTransportId { byte: 2 });
    }
    let body = &data[4..4 + additional];
    // The name (and ISID) is null-terminated; padding after it must be zeros too.
    let Some(nul) = body.iter().position(|&b| b == 0) else {
        return Err(BadTransportId { byte: 4 });
    };
    let text = std::str::from_utf8(&body[..nul]).map_err(|_| BadTransportId { byte: 4 })?;
    let id = if format == 0 {
        if text.contains(",i,0x") || !valid_name(text) {
            return Err(BadTransportId { byte: 4 });
        }
        InitiatorId::device(text)
    } else {
        let lower = text.to_ascii_lowercase();
        let Some((name, isid_hex)) = lower.rsplit_once(",i,0x") else {
            return Err(BadTransportId { byte: 4 });
        };
        let isid = parse_isid(isid_hex).ok_or(BadTransportId { byte: 4 + name.len() + 5 })?;
        if !valid_name(name) {
            return Err(BadTransportId { byte: 4 });
        }
        InitiatorId::port(name, isid)
    };
    Ok((id, 4 + additional))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && !name.contains(',') && !name.chars().any(char::is_whitespace)
}

fn parse_isid(hex: &str) -> Option<[u8; 6]> {
    if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut isid = [0u8; 6];
    for (i, byte) in isid.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(isid)
}

/// Length of `encode(id)`, without building it.
pub fn encoded_len(id: &InitiatorId) -> usize {
    let text_len = id.name.len() + if id.isid.is_some() { ",i,0x".len() + 12 } else { 0 };
    4 + body_len(text_len)
}

/// The null-terminated text padded to a multiple of four, at least 20 bytes (§7.6.4.6).
fn body_len(text_len: usize) -> usize {
    (text_len + 1).next_multiple_of(4).max(20)
}

/// Encodes a TransportID: format 01b for a port, 00b for a device; null-terminated and padded
/// to a multiple of four, at least 24 bytes in all (§7.6.4.6).
pub fn encode(id: &InitiatorId) -> Vec<u8> {
    let text = id.display_name();
    let body_len = body_len(text.len());
    let mut out = vec![0u8; 4 + body_len];
    out[0] = (if id.isid.is_some() { 0x40 } else { 0x00 }) | PROTOCOL_ISCSI;
    out[2..4].copy_from_slice(&(body_len as u16).to_be_bytes());
    out[4..4 + text.len()].copy_from_slice(text.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spc4_7_6_4_6_port_format_round_trips() {
        let id = InitiatorId::port("iqn.1994-05.com.example:host", [0x80, 0x12, 0x34, 0x56, 0x78, 0x9a]);
        let wire = encode(&id);
        assert_eq!(wire[0], 0x45);
        assert_eq!(wire.len() % 4, 0);
        assert_eq!(&wire[4..9], b"iqn.1");
        assert_eq!(decode(&wire), Ok((id, wire.len())));
    }

    #[test]
    fn spc4_7_6_4_6_device_format_names_every_port() {
        let id = InitiatorId::device("iqn.1994-05.com.example:host");
        let wire = encode(&id);
        assert_eq!(wire[0], 0x05);
        let (back, len) = decode(&wire).unwrap();
        assert_eq!((back.isid, len), (None, wire.len()));
        // Short names are padded to the 20-byte minimum.
        assert_eq!(encode(&InitiatorId::device("iqn.x")).len(), 24);
        for name in ["iqn.x", "iqn.1994-05.com.example:host", &"n".repeat(223)] {
            for id in [InitiatorId::device(name), InitiatorId::port(name, [1; 6])] {
                assert_eq!(encoded_len(&id), encode(&id).len(), "{id:?}");
            }
        }
    }

    #[test]
    fn upper_case_separator_and_isid_are_accepted() {
        let mut wire = encode(&InitiatorId::port("iqn.a:b", [0xAB, 0, 0, 0, 0, 1]));
        let text = b"iqn.a:b,I,0XAB0000000001";
        wire[4..4 + text.len()].copy_from_slice(text);
        assert_eq!(decode(&wire).unwrap().0, InitiatorId::port("iqn.a:b", [0xAB, 0, 0, 0, 0, 1]));
    }

    #[test]
    fn malformed_transport_ids_point_at_the_bad_byte() {
        let good = encode(&InitiatorId::port("iqn.a:b", [0, 0, 0, 0, 0, 1]));
        let mut fc = good.clone();
        fc[0] = 0x40; // protocol 0 = Fibre Channel
        assert_eq!(decode(&fc), Err(BadTransportId { byte: 0 }));
        let mut odd = good.clone();
        odd[3] = 21;
        assert_eq!(decode(&odd), Err(BadTransportId { byte: 2 }));
        assert_eq!(decode(&good[..good.len() - 4]), Err(BadTransportId { byte: 2 }));
        let mut no_nul = good.clone();
        for b in &mut no_nul[4..] {
            if *b == 0 {
                *b = b'x';
            }
        }
        assert_eq!(decode(&no_nul), Err(BadTransportId { byte: 4 }));
        let mut short_isid = encode(&InitiatorId::device("iqn.a:b,i,0x0001"));
        short_isid[0] = 0x45;
        assert!(decode(&short_isid).is_err());
        // Format 00b must not carry an ISID.
        let mut device_with_isid = good.clone();
        device_with_isid[0] = 0x05;
        assert_eq!(decode(&device_with_isid), Err(BadTransportId { byte: 4 }));
        assert_eq!(decode(&[0x45, 0]), Err(BadTransportId { byte: 0 }));
    }
}
