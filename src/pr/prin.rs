//! PERSISTENT RESERVE IN parameter data (SPC-4 §6.15): READ KEYS, READ RESERVATION, REPORT
//! CAPABILITIES and READ FULL STATUS. Lengths describe the full data; the caller truncates to
//! the allocation length.

use super::request::PrError;
use super::state::{Registrant, State};
use super::transport_id;

/// SPC-4 §6.15.1 Table 201 service actions.
pub mod sa {
    pub const READ_KEYS: u8 = 0x00;
    pub const READ_RESERVATION: u8 = 0x01;
    pub const REPORT_CAPABILITIES: u8 = 0x02;
    pub const READ_FULL_STATUS: u8 = 0x03;
}

/// Builds the parameter data for `action`, cut at `allocation_length`.
pub fn respond(state: &State, action: u8, allocation_length: usize) -> Result<Vec<u8>, PrError> {
    let mut data = match action {
        sa::READ_KEYS => return Ok(read_keys(state, allocation_length)),
        sa::READ_RESERVATION => read_reservation(state),
        sa::REPORT_CAPABILITIES => report_capabilities_for(state),
        sa::READ_FULL_STATUS => return Ok(read_full_status(state, allocation_length)),
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

/// Parameter data cut at the allocation length as it is written (SPC-4 §4.2.5.6), while the
/// ADDITIONAL LENGTH in its header describes the whole list (§6.15.2, §6.15.5): an initiator
/// that asked for too little learns how much to ask for, and thousands of registrations are
/// never built only to be thrown away.
struct Capped {
    out: Vec<u8>,
    cap: usize,
}

impl Capped {
    fn new(state: &State, additional: usize, cap: usize) -> Self {
        let mut out = Vec::with_capacity(cap.min(8 + additional));
        out.extend_from_slice(&state.generation.to_be_bytes());
        out.extend_from_slice(&u32::try_from(additional).unwrap_or(u32::MAX).to_be_bytes());
        out.truncate(cap);
        Capped { out, cap }
    }

    fn full(&self) -> bool {
        self.out.len() >= self.cap
    }

    fn put(&mut self, bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.out.len());
        self.out.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// SPC-4 §6.15.2: one key per registered I_T nexus (duplicates included).
fn read_keys(state: &State, allocation_length: usize) -> Vec<u8> {
    let mut data = Capped::new(state, 8 * state.registrants.len(), allocation_length);
    for r in state.registrants.iter() {
        if data.full() {
            break;
        }
        data.put(&r.key.to_be_bytes());
    }
    data.out
}

/// SPC-4 §6.15.3: the reservation, if any; the key is zero for all-registrants types.
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

/// SPC-4 §6.15.4 Table 207: CRH, SIP_C, ATP_C and PTPL_C are supported; ALLOW COMMANDS
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

/// SPC-4 §6.15.5: one descriptor per registration with its TransportID.
fn read_full_status(state: &State, allocation_length: usize) -> Vec<u8> {
    let descriptor_len = |r: &Registrant| 24 + transport_id::encoded_len(&r.id.initiator);
    let additional = state.registrants.iter().map(descriptor_len).sum();
    let mut data = Capped::new(state, additional, allocation_length);
    for r in state.registrants.iter() {
        if data.full() {
            break;
        }
        let tid = transport_id::encode(&r.id.initiator);
        let mut d = Vec::with_capacity(24 + tid.len());
        d.extend_from_slice(&r.key.to_be_bytes());
        d.extend_from_slice(&[0; 4]);
        let holder = state.holds(&r.id);
        d.push((r.id.target.is_none() as u8) << 1 | holder as u8);
        d.push(if holder { state.reservation.as_ref().map_or(0, |res| res.kind.code()) } else { 0 });
        d.extend_from_slice(&[0; 4]);
        // RELATIVE TARGET PORT IDENTIFIER of the registrant's port, not its TPGT (they differ
        // on a cluster gateway); ignored (zero) with ALL_TG_PT (SPC-4 §6.15.5).
        d.extend_from_slice(&r.id.target.as_ref().map_or(0, |t| t.relative_port).to_be_bytes());
        d.extend_from_slice(&(tid.len() as u32).to_be_bytes());
        d.extend_from_slice(&tid);
        data.put(&d);
    }
    data.out
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
        assert_eq!((id, len), (crate::pr::InitiatorId::of_port(&nexus("a", 1).initiator), tid_len));
        let second = &first[24 + tid_len..];
        assert_eq!(second[12], 0x02); // ALL_TG_PT, not holder
        assert_eq!(&second[18..20], &[0, 0]);
        assert_eq!(respond(&s, 4, 10), Err(PrError::InvalidCdbField { byte: 1, bit: Some(4) }));
    }

    #[test]
    fn spc4_6_14_5_read_full_status_reports_the_relative_target_port_not_the_tpgt() {
        // Gateway 2's portal group 1: TPGT 1, relative target port 2 × 256 + 1.
        let on_gateway_2 = nexus("c", 1).with_relative_port(0x0201);
        let registrant = Registrant { id: RegistrantId::of(&on_gateway_2, false), key: 0xC };
        let s = State { generation: 1, registrants: vec![registrant].into(), reservation: None, aptpl: false };
        let data = respond(&s, sa::READ_FULL_STATUS, 4096).unwrap();
        assert_eq!(&data[8 + 18..8 + 20], &[0x02, 0x01]);
    }

    /// 4,096 registrations, one per host, key = index + 1.
    fn crowd() -> State {
        let registrants: Vec<Registrant> = (0..4096)
            .map(|i| Registrant { id: RegistrantId::of(&nexus(&format!("node-{i:04}"), 1), false), key: i + 1 })
            .collect();
        State { generation: 4096, registrants: registrants.into(), reservation: None, aptpl: false }
    }

    #[test]
    fn spc4_6_14_2_read_keys_of_thousands_fills_the_allocation_length_and_reports_the_whole_list() {
        let s = crowd();
        for alloc in [0, 5, 8, 100, 8 + 8 * 4096, 65535] {
            let data = respond(&s, sa::READ_KEYS, alloc).unwrap();
            assert_eq!(data.len(), alloc.min(8 + 8 * 4096), "allocation length {alloc}");
            if alloc >= 8 {
                assert_eq!(u32::from_be_bytes(data[4..8].try_into().unwrap()), 8 * 4096);
            }
            for (i, key) in data[8.min(data.len())..].chunks_exact(8).enumerate() {
                assert_eq!(u64::from_be_bytes(key.try_into().unwrap()), i as u64 + 1);
            }
        }
    }

    #[test]
    fn spc4_6_14_5_read_full_status_of_thousands_is_a_prefix_of_the_whole_with_its_length() {
        let s = crowd();
        let whole = respond(&s, sa::READ_FULL_STATUS, usize::MAX).unwrap();
        let additional = u32::from_be_bytes(whole[4..8].try_into().unwrap()) as usize;
        assert_eq!(additional, whole.len() - 8);
        assert!(whole.len() > 65535, "4,096 descriptors do not fit a 16-bit allocation length");
        for alloc in [0, 7, 8, 31, 65535] {
            assert_eq!(respond(&s, sa::READ_FULL_STATUS, alloc).unwrap(), whole[..alloc].to_vec());
        }
        // Walk every descriptor of the whole list: 4,096, each naming its own initiator.
        let (mut at, mut count) = (8, 0);
        while at < whole.len() {
            let tid_len = u32::from_be_bytes(whole[at + 20..at + 24].try_into().unwrap()) as usize;
            let (id, _) = transport_id::decode(&whole[at + 24..at + 24 + tid_len]).unwrap();
            assert_eq!(id, s.registrants[count].id.initiator);
            at += 24 + tid_len;
            count += 1;
        }
        assert_eq!(count, 4096);
    }
}
