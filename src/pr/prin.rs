//! PERSISTENT RESERVE IN parameter data (SPC-4 §6.14): READ KEYS, READ RESERVATION, REPORT
//! CAPABILITIES and READ FULL STATUS. Lengths describe the full data; the caller truncates to
//! the allocation length.

use super::request::PrError;
use super::state::State;
use super::transport_id;

/// SPC-4 §6.14.1 Table 199 service actions.
pub mod sa {
    pub const READ_KEYS: u8 = 0x00;
    pub const READ_RESERVATION: u8 = 0x01;
    pub const REPORT_CAPABILITIES: u8 = 0x02;
    pub const READ_FULL_STATUS: u8 = 0x03;
}

/// Builds the parameter data for `action`, truncated to `allocation_length`.
pub fn respond(state: &State, action: u8, allocation_length: usize) -> Result<Vec<u8>, PrError> {
    let mut data = match action {
        sa::READ_KEYS => read_keys(state),
        sa::READ_RESERVATION => read_reservation(state),
        sa::REPORT_CAPABILITIES => report_capabilities_for(state),
        sa::READ_FULL_STATUS => read_full_status(state),
        _ => return Err(PrError::InvalidCdbField { byte: 1, bit: Some(4) }),
    };
    data.truncate(allocation_length);
    Ok(data)
}

fn header(state: &State, additional: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + additional);
    out.extend_from_slice(&state.generation.to_be_bytes());
    out.extend_from_slice(&(additional as u32).to_be_bytes());
    out
}

/// SPC-4 §6.14.2: one key per registered I_T nexus (duplicates included).
fn read_keys(state: &State) -> Vec<u8> {
    let mut out = header(state, 8 * state.registrants.len());
    for r in &state.registrants {
        out.extend_from_slice(&r.key.to_be_bytes());
    }
    out
}

/// SPC-4 §6.14.3: the reservation, if any; the key is zero for all-registrants types.
fn read_reservation(state: &State) -> Vec<u8> {
    let Some(res) = &state.reservation else { return header(state, 0) };
    let mut out = header(state, 16);
    out.extend_from_slice(&state.reservation_key().unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&[0; 4]); // obsolete
    out.push(0);
    out.push(res.kind.code()); // SCOPE = LU_SCOPE (0h) in bits 7..4
    out.extend_from_slice(&[0; 2]);
    out
}

/// SPC-4 §6.14.4 Table 204: CRH, SIP_C, ATP_C and PTPL_C are supported; ALLOW COMMANDS
/// 001b (TEST UNIT READY passes Write Exclusive and Exclusive Access reservations); PTPL_A
/// reports whether APTPL is active; every type of Table 212 is offered.
fn report_capabilities() -> Vec<u8> {
    // Byte 2: RLR_C(7)=0, CRH(4), SIP_C(3), ATP_C(2), PTPL_C(0). Byte 3: TMV(7), ALLOW COMMANDS(6..4).
    // Bytes 4-5: WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX | EX_AC_AR.
    vec![0x00, 0x08, 0x10 | 0x08 | 0x04 | 0x01, 0x80 | 0x10, 0x80 | 0x40 | 0x20 | 0x08 | 0x02, 0x01, 0, 0]
}

/// REPORT CAPABILITIES with PTPL_A set from the state.
pub fn report_capabilities_for(state: &State) -> Vec<u8> {
    let mut out = report_capabilities();
    out[3] |= state.aptpl as u8;
    out
}

/// SPC-4 §6.14.5: one descriptor per registration with its TransportID.
fn read_full_status(state: &State) -> Vec<u8> {
    let mut body = Vec::new();
    for r in &state.registrants {
        let tid = transport_id::encode(&r.id.initiator);
        body.extend_from_slice(&r.key.to_be_bytes());
        body.extend_from_slice(&[0; 4]);
        let holder = state.holds(&r.id);
        body.push((r.id.target.is_none() as u8) << 1 | holder as u8);
        body.push(if holder { state.reservation.as_ref().map_or(0, |res| res.kind.code()) } else { 0 });
        body.extend_from_slice(&[0; 4]);
        // RELATIVE TARGET PORT IDENTIFIER: ignored (zero) with ALL_TG_PT (§6.14.5).
        body.extend_from_slice(&r.id.target.as_ref().map_or(0, |t| t.tpgt).to_be_bytes());
        body.extend_from_slice(&(tid.len() as u32).to_be_bytes());
        body.extend_from_slice(&tid);
    }
    let mut out = header(state, body.len());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pr::state::fixtures::nexus;
    use crate::pr::state::{PrType, Registrant, RegistrantId, Reservation};

    fn state(kind: Option<PrType>) -> State {
        let a = RegistrantId::of(&nexus("a", 1), false);
        State {
            generation: 7,
            registrants: vec![
                Registrant { id: a.clone(), key: 0xA },
                Registrant { id: RegistrantId::of(&nexus("b", 1), true), key: 0xB },
            ]
            .into(),
            reservation: kind.map(|kind| Reservation { holder: a, kind }),
            aptpl: true,
        }
    }

    #[test]
    fn spc4_6_14_2_read_keys_lists_every_registration_and_truncates() {
        let data = respond(&state(None), sa::READ_KEYS, 1024).unwrap();
        assert_eq!(&data[..8], &[0, 0, 0, 7, 0, 0, 0, 16]);
        assert_eq!(&data[8..16], &0xAu64.to_be_bytes());
        assert_eq!(&data[16..24], &0xBu64.to_be_bytes());
        // Truncated data keeps the full ADDITIONAL LENGTH.
        assert_eq!(respond(&state(None), sa::READ_KEYS, 10).unwrap(), data[..10].to_vec());
    }

    #[test]
    fn spc4_6_14_3_read_reservation_reports_holder_key_or_zero_for_all_registrants() {
        assert_eq!(respond(&state(None), sa::READ_RESERVATION, 100).unwrap(), vec![0, 0, 0, 7, 0, 0, 0, 0]);
        let data = respond(&state(Some(PrType::ExclusiveAccess)), sa::READ_RESERVATION, 100).unwrap();
        assert_eq!(data.len(), 24);
        assert_eq!(&data[4..8], &[0, 0, 0, 16]);
        assert_eq!(&data[8..16], &0xAu64.to_be_bytes());
        assert_eq!(data[21], 3);
        let ar = respond(&state(Some(PrType::WriteExclusiveAllRegistrants)), sa::READ_RESERVATION, 100).unwrap();
        assert_eq!(&ar[8..16], &[0; 8]);
        assert_eq!(ar[21], 7);
    }

    #[test]
    fn spc4_6_14_4_report_capabilities_offers_every_type() {
        let data = report_capabilities_for(&state(None));
        assert_eq!(u16::from_be_bytes([data[0], data[1]]), 8);
        assert_eq!(data[3] & 0x01, 1); // PTPL_A
        assert_eq!(data[3] >> 4 & 0x7, 1); // ALLOW COMMANDS
        assert_eq!(data[4], 0xEA);
        assert_eq!(data[5], 0x01);
    }

    #[test]
    fn spc4_6_14_5_read_full_status_has_transport_ids_and_holder_flags() {
        let s = state(Some(PrType::WriteExclusive));
        let data = respond(&s, sa::READ_FULL_STATUS, 4096).unwrap();
        let additional = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
        assert_eq!(additional, data.len() - 8);
        let first = &data[8..];
        assert_eq!(&first[..8], &0xAu64.to_be_bytes());
        assert_eq!(first[12], 0x01); // R_HOLDER, not ALL_TG_PT
        assert_eq!(first[13], 1);
        assert_eq!(&first[18..20], &[0, 1]);
        let tid_len = u32::from_be_bytes(first[20..24].try_into().unwrap()) as usize;
        let (id, len) = transport_id::decode(&first[24..24 + tid_len]).unwrap();
        assert_eq!((id, len), (nexus("a", 1).initiator(), tid_len));
        let second = &first[24 + tid_len..];
        assert_eq!(second[12], 0x02); // ALL_TG_PT, not holder
        assert_eq!(&second[18..20], &[0, 0]);
        assert_eq!(respond(&s, 4, 10), Err(PrError::InvalidCdbField { byte: 1, bit: Some(4) }));
    }
}
