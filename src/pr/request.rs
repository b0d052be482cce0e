//! Decoding of PERSISTENT RESERVE OUT (SPC-4 §6.16): CDB fields plus the parameter list into
//! a `Request`, with every length and field check the standard prescribes.

use super::state::{InitiatorId, PrType};
use super::transport_id;
use pdu::be::{be32, be64};

/// PERSISTENT RESERVE OUT service actions (SPC-4 §6.16.2 Table 213).
pub mod sa {
    pub const REGISTER: u8 = 0x00;
    pub const RESERVE: u8 = 0x01;
    pub const RELEASE: u8 = 0x02;
    pub const CLEAR: u8 = 0x03;
    pub const PREEMPT: u8 = 0x04;
    pub const PREEMPT_AND_ABORT: u8 = 0x05;
    pub const REGISTER_AND_IGNORE_EXISTING_KEY: u8 = 0x06;
    pub const REGISTER_AND_MOVE: u8 = 0x07;
}

/// The basic parameter list is 24 bytes (SPC-4 §6.16.3).
pub const BASIC_LEN: usize = 24;
/// Largest parameter list accepted: room for 64 maximal TransportIDs. Bigger lists are refused
/// before any data is transferred.
pub const MAX_PARAM_LEN: usize = BASIC_LEN + 4 + 64 * 228;

/// Errors of the reservation manager, each with one status/sense in the SCSI layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrError {
    /// RESERVATION CONFLICT status, no sense.
    Conflict,
    /// INVALID FIELD IN CDB at byte/bit.
    InvalidCdbField { byte: usize, bit: Option<u8> },
    /// INVALID FIELD IN PARAMETER LIST at byte/bit.
    InvalidParamField { byte: usize, bit: Option<u8> },
    /// PARAMETER LIST LENGTH ERROR.
    ParamListLength,
    /// INVALID RELEASE OF PERSISTENT RESERVATION (SPC-4 Annex D 26h/04h).
    InvalidRelease,
    /// INSUFFICIENT REGISTRATION RESOURCES (55h/04h).
    InsufficientResources,
    /// The APTPL store failed; nothing changed.
    Store(String),
    /// A cluster gateway could not commit the change to the shared store (etcd unreachable, or
    /// this gateway's membership lost): the change may or may not be in effect; the initiator
    /// retries, through this path or another (NOT READY, ALUA transitioning).
    Unavailable(String),
}

/// One decoded PERSISTENT RESERVE OUT command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Register { key: u64, new_key: u64, ignore_existing: bool, all_tg_pt: bool, aptpl: bool, spec: Vec<InitiatorId> },
    Reserve { key: u64, kind: PrType },
    Release { key: u64, kind: PrType },
    Clear { key: u64 },
    Preempt { key: u64, victim: u64, kind: PrType, abort: bool },
    RegisterAndMove { key: u64, new_key: u64, aptpl: bool, unregister: bool, rel_tgt_port: u16, dest: InitiatorId },
}

/// SPC-4 §6.16.1: the PARAMETER LIST LENGTH field (CDB bytes 5..9) checked before any data-out
/// is requested: a list that cannot even hold the basic 24 bytes, or is absurdly large, is a
/// PARAMETER LIST LENGTH ERROR.
pub fn check_param_len(param_len: usize) -> Result<(), PrError> {
    if !(BASIC_LEN..=MAX_PARAM_LEN).contains(&param_len) {
        return Err(PrError::ParamListLength);
    }
    Ok(())
}

/// Decodes the service action `action`, the SCOPE/TYPE byte and the parameter list (exactly
/// PARAMETER LIST LENGTH bytes).
pub fn decode(action: u8, scope_type: u8, param: &[u8]) -> Result<Request, PrError> {
    check_param_len(param.len())?;
    let key = be64(&param[0..8]);
    let new_key = be64(&param[8..16]);
    let flags = param[20];
    let spec_i_pt = flags & 0x08 != 0;
    let all_tg_pt = flags & 0x04 != 0;
    let aptpl = flags & 0x01 != 0;
    // SPC-4 §6.16.3: SPEC_I_PT is valid only with REGISTER.
    if spec_i_pt && action != sa::REGISTER {
        return Err(PrError::InvalidParamField { byte: 20, bit: Some(3) });
    }
    // SPC-4 §6.16.1: without SPEC_I_PT the list is exactly 24 bytes (REGISTER AND MOVE has its own).
    if action != sa::REGISTER_AND_MOVE && !spec_i_pt && param.len() != BASIC_LEN {
        return Err(PrError::ParamListLength);
    }
    // SPC-4 §6.15.3.3: only LU_SCOPE; the type matters for RESERVE, RELEASE and PREEMPT.
    let kind = || {
        if scope_type >> 4 != 0 {
            return Err(PrError::InvalidCdbField { byte: 2, bit: Some(7) });
        }
        PrType::from_code(scope_type & 0x0F).ok_or(PrError::InvalidCdbField { byte: 2, bit: Some(3) })
    };
    Ok(match action {
        sa::REGISTER | sa::REGISTER_AND_IGNORE_EXISTING_KEY => {
            let spec = if spec_i_pt { decode_spec(param)? } else { Vec::new() };
            let ignore_existing = action == sa::REGISTER_AND_IGNORE_EXISTING_KEY;
            Request::Register { key, new_key, ignore_existing, all_tg_pt, aptpl, spec }
        }
        sa::RESERVE => Request::Reserve { key, kind: kind()? },
        sa::RELEASE => Request::Release { key, kind: kind()? },
        sa::CLEAR => Request::Clear { key },
        sa::PREEMPT | sa::PREEMPT_AND_ABORT => {
            Request::Preempt { key, victim: new_key, kind: kind()?, abort: action == sa::PREEMPT_AND_ABORT }
        }
        sa::REGISTER_AND_MOVE => decode_move(param, key, new_key)?,
        _ => return Err(PrError::InvalidCdbField { byte: 1, bit: Some(4) }),
    })
}

/// SPC-4 §6.16.3: with SPEC_I_PT, bytes 24..28 give the length of the TransportIDs that follow.
fn decode_spec(param: &[u8]) -> Result<Vec<InitiatorId>, PrError> {
    if param.len() < BASIC_LEN + 4 {
        return Err(PrError::ParamListLength);
    }
    let total = be32(&param[24..28]) as usize;
    if 28 + total != param.len() {
        return Err(PrError::ParamListLength);
    }
    let mut ids = Vec::new();
    let mut at = 28;
    while at < param.len() {
        let (id, len) = transport_id::decode(&param[at..])
            .map_err(|e| PrError::InvalidParamField { byte: at + e.byte, bit: None })?;
        ids.push(id);
        at += len;
    }
    Ok(ids)
}

/// SPC-4 §6.16.4 Table 217: the REGISTER AND MOVE parameter list.
fn decode_move(param: &[u8], key: u64, new_key: u64) -> Result<Request, PrError> {
    let unregister = param[17] & 0x02 != 0;
    let aptpl = param[17] & 0x01 != 0;
    let rel_tgt_port = u16::from_be_bytes([param[18], param[19]]);
    let tid_len = be32(&param[20..24]) as usize;
    if 24 + tid_len > param.len() || tid_len < 24 {
        return Err(PrError::ParamListLength);
    }
    let (dest, len) = transport_id::decode(&param[24..24 + tid_len])
        .map_err(|e| PrError::InvalidParamField { byte: 24 + e.byte, bit: None })?;
    if len != tid_len {
        return Err(PrError::InvalidParamField { byte: 20, bit: None });
    }
    Ok(Request::RegisterAndMove { key, new_key, aptpl, unregister, rel_tgt_port, dest })
}

#[cfg(test)]
pub(crate) mod build {
    //! Parameter lists as an initiator would send them.
    use super::*;

    pub fn basic(key: u64, sa_key: u64, flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; BASIC_LEN];
        p[0..8].copy_from_slice(&key.to_be_bytes());
        p[8..16].copy_from_slice(&sa_key.to_be_bytes());
        p[20] = flags;
        p
    }

    pub fn with_spec(key: u64, sa_key: u64, flags: u8, ids: &[InitiatorId]) -> Vec<u8> {
        let mut p = basic(key, sa_key, flags | 0x08);
        let tids: Vec<u8> = ids.iter().flat_map(transport_id::encode).collect();
        p.extend_from_slice(&(tids.len() as u32).to_be_bytes());
        p.extend_from_slice(&tids);
        p
    }

    pub fn register_and_move(key: u64, sa_key: u64, unreg: bool, aptpl: bool, rtp: u16, dest: &InitiatorId) -> Vec<u8> {
        let mut p = basic(key, sa_key, 0);
        p[17] = (unreg as u8) << 1 | aptpl as u8;
        p[18..20].copy_from_slice(&rtp.to_be_bytes());
        let tid = transport_id::encode(dest);
        p[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
        p.extend_from_slice(&tid);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    #[test]
    fn spc4_6_15_3_basic_register_decodes_flags() {
        let req = decode(sa::REGISTER, 0, &basic(0, 0xAB, 0x05)).unwrap();
        assert_eq!(
            req,
            Request::Register {
                key: 0,
                new_key: 0xAB,
                ignore_existing: false,
                all_tg_pt: true,
                aptpl: true,
                spec: vec![]
            }
        );
    }

    #[test]
    fn spc4_6_15_3_parameter_list_must_be_24_bytes_without_spec_i_pt() {
        let mut long = basic(1, 2, 0);
        long.push(0);
        assert_eq!(decode(sa::CLEAR, 0, &long), Err(PrError::ParamListLength));
        assert_eq!(decode(sa::CLEAR, 0, &long[..20]), Err(PrError::ParamListLength));
        assert_eq!(check_param_len(23), Err(PrError::ParamListLength));
        assert_eq!(check_param_len(MAX_PARAM_LEN + 1), Err(PrError::ParamListLength));
    }

    #[test]
    fn spc4_6_15_3_spec_i_pt_only_with_register() {
        let p = with_spec(0, 5, 0, &[InitiatorId::port("iqn.x:y", [1, 2, 3, 4, 5, 6])]);
        assert_eq!(
            decode(sa::REGISTER_AND_IGNORE_EXISTING_KEY, 0, &p),
            Err(PrError::InvalidParamField { byte: 20, bit: Some(3) })
        );
        match decode(sa::REGISTER, 0, &p).unwrap() {
            Request::Register { spec, .. } => assert_eq!(spec, vec![InitiatorId::port("iqn.x:y", [1, 2, 3, 4, 5, 6])]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn spc4_6_15_3_transport_id_length_must_match_the_list() {
        let mut p = with_spec(0, 5, 0, &[InitiatorId::device("iqn.x:y")]);
        p.extend_from_slice(&[0; 4]);
        assert_eq!(decode(sa::REGISTER, 0, &p), Err(PrError::ParamListLength));
        let mut bad = with_spec(0, 5, 0, &[InitiatorId::device("iqn.x:y")]);
        bad[28] = 0x01; // protocol identifier SRP
        assert_eq!(decode(sa::REGISTER, 0, &bad), Err(PrError::InvalidParamField { byte: 28, bit: None }));
    }

    #[test]
    fn spc4_6_15_4_scope_and_type_are_checked_only_where_used() {
        assert_eq!(decode(sa::RESERVE, 0x02, &basic(1, 0, 0)), Err(PrError::InvalidCdbField { byte: 2, bit: Some(3) }));
        assert_eq!(decode(sa::RESERVE, 0x11, &basic(1, 0, 0)), Err(PrError::InvalidCdbField { byte: 2, bit: Some(7) }));
        assert_eq!(decode(sa::CLEAR, 0xFF, &basic(1, 0, 0)), Ok(Request::Clear { key: 1 }));
        assert_eq!(
            decode(sa::PREEMPT_AND_ABORT, 0x05, &basic(1, 2, 0)),
            Ok(Request::Preempt { key: 1, victim: 2, kind: PrType::WriteExclusiveRegistrantsOnly, abort: true })
        );
        assert_eq!(decode(0x08, 0, &basic(1, 2, 0)), Err(PrError::InvalidCdbField { byte: 1, bit: Some(4) }));
    }

    #[test]
    fn spc4_6_15_5_register_and_move_list() {
        let dest = InitiatorId::port("iqn.x:y", [0x40, 0, 0, 0, 0, 9]);
        let p = register_and_move(7, 8, true, false, 1, &dest);
        assert_eq!(
            decode(sa::REGISTER_AND_MOVE, 0, &p),
            Ok(Request::RegisterAndMove { key: 7, new_key: 8, aptpl: false, unregister: true, rel_tgt_port: 1, dest })
        );
        assert_eq!(decode(sa::REGISTER_AND_MOVE, 0, &p[..30]), Err(PrError::ParamListLength));
    }
}
