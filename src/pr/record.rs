//! The APTPL record of one logical unit's reservation state: a versioned, checksummed
//! snapshot (SPC-4 §5.13.5.1). `FileStore` writes it whole at compaction; `journal.rs` records
//! single changes on top of it.

use super::apply::HARD_MAX_REGISTRANTS;
use super::state::{InitiatorId, PrType, Registrant, RegistrantId, Reservation, State, TargetPort};
use std::io;

pub const MAGIC: &[u8; 8] = b"PALISPR\0";
/// Version 3 adds each target port's relative target port identifier to the table (on a
/// cluster gateway it is not the TPGT, and the state is shared through etcd, docs/cluster.md);
/// version 2 (read, never written) had name and TPGT only; version 1 (read) repeated the target
/// name in every registration.
const VERSION: u16 = 3;
const VERSION_2: u16 = 2;
const VERSION_1: u16 = 1;
/// RFC 7143 §4.2.7.2: iSCSI names are at most 223 bytes.
const MAX_NAME: u64 = 223;
/// The largest record the format can hold at `HARD_MAX_REGISTRANTS` with maximal names (a
/// target table entry and a registration for each): anything larger is not ours.
pub const MAX_RECORD: u64 = 64 + HARD_MAX_REGISTRANTS as u64 * ((2 + MAX_NAME + 4) + (REGISTRANT_FIXED + 2 + MAX_NAME));
/// Bytes of a version 2 registration besides its initiator name (key, flags, ISID, target
/// index, name length): `docs/reservations.md` sizes the record from this.
pub const REGISTRANT_FIXED: u64 = 8 + 1 + 6 + 2;

pub(super) fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("reservation record: {what}"))
}

pub(super) fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Registration flags of version 2.
pub(super) const HAS_ISID: u8 = 0x01;
pub(super) const HAS_TARGET: u8 = 0x02;

/// `MAGIC, version u16 (3), aptpl u8, generation u32, target port count u16, target ports
/// (name, TPGT u16, relative target port id u16)..., registrant count u16, reservation (present u8, type u8, holder index
/// u16), registrants (key u64, flags u8, ISID 6 bytes, target port index u16, initiator
/// name)..., CRC32C of everything before`. Names are a u16 length and UTF-8; a registration
/// costs `REGISTRANT_FIXED` + 2 + its initiator name's length in bytes.
pub fn encode(state: &State) -> Vec<u8> {
    let mut targets: Vec<&TargetPort> = Vec::new();
    let mut target_index = std::collections::HashMap::new();
    for t in state.registrants.iter().filter_map(|r| r.id.target.as_ref()) {
        target_index.entry(t).or_insert_with(|| {
            targets.push(t);
            targets.len() - 1
        });
    }
    let names: usize = state.registrants.iter().map(|r| r.id.initiator.name.len()).sum();
    let mut out = Vec::with_capacity(64 + state.registrants.len() * (REGISTRANT_FIXED as usize + 2) + names);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.push(state.aptpl as u8);
    out.extend_from_slice(&state.generation.to_be_bytes());
    out.extend_from_slice(&(targets.len() as u16).to_be_bytes());
    for t in &targets {
        put_str(&mut out, &t.name);
        out.extend_from_slice(&t.tpgt.to_be_bytes());
        out.extend_from_slice(&t.relative_port.to_be_bytes());
    }
    out.extend_from_slice(&(state.registrants.len() as u16).to_be_bytes());
    match &state.reservation {
        Some(res) => {
            let holder = state.registrants.position(&res.holder).unwrap_or(0);
            out.extend_from_slice(&[1, res.kind.code()]);
            out.extend_from_slice(&(holder as u16).to_be_bytes());
        }
        None => out.extend_from_slice(&[0; 4]),
    }
    for r in state.registrants.iter() {
        out.extend_from_slice(&r.key.to_be_bytes());
        let flags = if r.id.initiator.isid.is_some() { HAS_ISID } else { 0 }
            | if r.id.target.is_some() { HAS_TARGET } else { 0 };
        out.push(flags);
        out.extend_from_slice(&r.id.initiator.isid.unwrap_or_default());
        let index = r.id.target.as_ref().map_or(0, |t| target_index[t]);
        out.extend_from_slice(&(index as u16).to_be_bytes());
        put_str(&mut out, &r.id.initiator.name);
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

pub(super) struct Reader<'a> {
    pub(super) data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.data.len() < n {
            return Err(invalid("truncated"));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }
    pub(super) fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u16(&mut self) -> io::Result<u16> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }
    pub(super) fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    pub(super) fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    pub(super) fn string(&mut self) -> io::Result<String> {
        let len = self.u16()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| invalid("name is not UTF-8"))
    }
}

/// Decodes a record (version 3, or 2 and 1 as written before), rejecting a bad magic, version,
/// checksum or structure.
pub fn decode(bytes: &[u8]) -> io::Result<State> {
    if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(invalid("bad magic"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body).to_be_bytes() != crc {
        return Err(invalid("checksum mismatch"));
    }
    let mut r = Reader { data: &body[MAGIC.len()..] };
    let version = r.u16()?;
    if ![VERSION, VERSION_2, VERSION_1].contains(&version) {
        return Err(invalid("unsupported version"));
    }
    let aptpl = r.u8()? != 0;
    let generation = r.u32()?;
    let targets = if version == VERSION_1 { Vec::new() } else { target_table(&mut r, version)? };
    let count = r.u16()? as usize;
    if count > HARD_MAX_REGISTRANTS {
        return Err(invalid("too many registrants"));
    }
    let (has_res, code, holder) = (r.u8()? != 0, r.u8()?, r.u16()? as usize);
    let mut registrants = Vec::with_capacity(count);
    for _ in 0..count {
        registrants.push(if version == VERSION_1 { registrant_v1(&mut r)? } else { registrant(&mut r, &targets)? });
    }
    if !r.data.is_empty() {
        return Err(invalid("trailing bytes"));
    }
    let reservation = if has_res {
        let kind = PrType::from_code(code).ok_or_else(|| invalid("bad type"))?;
        let holder = registrants.get(holder).ok_or_else(|| invalid("holder is not a registrant"))?.id.clone();
        Some(Reservation { holder, kind })
    } else {
        None
    };
    Ok(State { generation, registrants: registrants.into(), reservation, aptpl })
}

fn target_table(r: &mut Reader, version: u16) -> io::Result<Vec<TargetPort>> {
    let count = r.u16()? as usize;
    let mut targets = Vec::with_capacity(count.min(r.data.len() / 4));
    for _ in 0..count {
        let name = r.string()?;
        let mut port = TargetPort::new(&name, r.u16()?);
        // Version 2 was single-node state only, where the relative port is the TPGT (nexus.rs).
        if version >= VERSION {
            port.relative_port = r.u16()?;
        }
        targets.push(port);
    }
    Ok(targets)
}

fn registrant(r: &mut Reader, targets: &[TargetPort]) -> io::Result<Registrant> {
    let key = r.u64()?;
    let flags = r.u8()?;
    if flags & !(HAS_ISID | HAS_TARGET) != 0 {
        return Err(invalid("unknown registration flags"));
    }
    let isid: [u8; 6] = r.take(6)?.try_into().expect("6");
    let index = r.u16()? as usize;
    let name = r.string()?;
    let target = match flags & HAS_TARGET {
        0 => None,
        _ => Some(targets.get(index).ok_or_else(|| invalid("target port index out of range"))?.clone()),
    };
    let initiator = InitiatorId { name, isid: (flags & HAS_ISID != 0).then_some(isid) };
    Ok(Registrant { id: RegistrantId { initiator, target }, key })
}

/// Version 1: key, initiator name, ISID flag + 6 bytes, target flag, target name, TPGT.
fn registrant_v1(r: &mut Reader) -> io::Result<Registrant> {
    let key = r.u64()?;
    let name = r.string()?;
    let has_isid = r.u8()? != 0;
    let isid: [u8; 6] = r.take(6)?.try_into().expect("6");
    let has_target = r.u8()? != 0;
    let target_name = r.string()?;
    let tpgt = r.u16()?;
    let initiator = InitiatorId { name, isid: has_isid.then_some(isid) };
    let target = has_target.then_some(TargetPort::new(&target_name, tpgt));
    Ok(Registrant { id: RegistrantId { initiator, target }, key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pr::state::fixtures::{nexus, sample};
    use crate::pr::state::ItNexus;

    #[test]
    fn record_round_trips() {
        assert_eq!(decode(&encode(&sample())).unwrap(), sample());
        assert_eq!(decode(&encode(&State::default())).unwrap(), State::default());
    }

    /// A version 1 record as the previous release wrote it.
    fn encode_v1(state: &State) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&VERSION_1.to_be_bytes());
        out.push(state.aptpl as u8);
        out.extend_from_slice(&state.generation.to_be_bytes());
        out.extend_from_slice(&(state.registrants.len() as u16).to_be_bytes());
        let res = state.reservation.as_ref().expect("sample is reserved");
        out.extend_from_slice(&[1, res.kind.code()]);
        out.extend_from_slice(&(state.registrants.position(&res.holder).unwrap() as u16).to_be_bytes());
        for r in state.registrants.iter() {
            out.extend_from_slice(&r.key.to_be_bytes());
            put_str(&mut out, &r.id.initiator.name);
            out.push(r.id.initiator.isid.is_some() as u8);
            out.extend_from_slice(&r.id.initiator.isid.unwrap_or_default());
            out.push(r.id.target.is_some() as u8);
            let (name, tpgt) = r.id.target.as_ref().map_or(("", 0), |t| (t.name.as_str(), t.tpgt));
            put_str(&mut out, name);
            out.extend_from_slice(&tpgt.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// The version 2 record of `state` (whose relative ports equal their TPGTs): version 3's
    /// bytes without the relative port of each target table entry.
    fn encode_v2(state: &State) -> Vec<u8> {
        let v3 = encode(state);
        let body = &v3[..v3.len() - 4];
        let mut out = body[..MAGIC.len()].to_vec();
        out.extend_from_slice(&VERSION_2.to_be_bytes());
        let mut at = MAGIC.len() + 2;
        out.extend_from_slice(&body[at..at + 5]); // aptpl, generation
        at += 5;
        let count = u16::from_be_bytes([body[at], body[at + 1]]) as usize;
        out.extend_from_slice(&body[at..at + 2]);
        at += 2;
        for _ in 0..count {
            let name_len = u16::from_be_bytes([body[at], body[at + 1]]) as usize;
            out.extend_from_slice(&body[at..at + 2 + name_len + 2]); // name, TPGT
            at += 2 + name_len + 2 + 2; // and the relative port, dropped
        }
        out.extend_from_slice(&body[at..]);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    #[test]
    fn version_2_records_of_the_previous_release_are_read() {
        assert_eq!(decode(&encode_v2(&sample())).unwrap(), sample());
    }

    #[test]
    fn relative_target_port_ids_of_cluster_gateways_survive() {
        // Gateway 2's portal with TPGT 1 is relative port 0x0201 (docs/cluster.md).
        let mut nexus = nexus("host", 1);
        nexus.target.relative_port = 0x0201;
        let state = State {
            registrants: vec![Registrant { id: RegistrantId::of(&nexus, false), key: 9 }].into(),
            ..State::default()
        };
        let back = decode(&encode(&state)).unwrap();
        assert_eq!(back, state);
        assert_eq!(back.registrants.iter().next().unwrap().id.target.as_ref().unwrap().relative_port, 0x0201);
    }

    #[test]
    fn version_1_records_of_the_previous_release_are_read() {
        assert_eq!(decode(&encode_v1(&sample())).unwrap(), sample());
    }

    #[test]
    fn a_registration_costs_its_fixed_part_and_its_name() {
        let one = |name: &str| State {
            registrants: vec![Registrant { id: RegistrantId::of(&nexus(name, 1), false), key: 1 }].into(),
            ..State::default()
        };
        let two = |name: &str| {
            let mut s = one(name);
            s.registrants.push(Registrant { id: RegistrantId::of(&nexus(name, 2), false), key: 1 });
            s
        };
        let name_len = nexus("host", 1).initiator.name.as_str().len() as u64;
        let per_registrant = encode(&two("host")).len() - encode(&one("host")).len();
        assert_eq!(per_registrant as u64, REGISTRANT_FIXED + 2 + name_len);
        // The target port is named once, however many registrations use it.
        let max_name = format!("iqn.1994-05.com.example:{}", "x".repeat(MAX_NAME as usize - 24));
        assert_eq!(max_name.len() as u64, MAX_NAME);
        let big = State {
            registrants: (0..4096u32)
                .map(|i| {
                    let n = ItNexus::new(&max_name, [0x80, 0, 0, 0, (i >> 8) as u8, i as u8], "iqn.t", 1);
                    Registrant { id: RegistrantId::of(&n, false), key: i as u64 + 1 }
                })
                .collect::<Vec<_>>()
                .into(),
            ..State::default()
        };
        let size = encode(&big).len() as u64;
        assert!(size < 4096 * (REGISTRANT_FIXED + 2 + MAX_NAME) + 64, "{size}");
        assert!(size < 1536 * 1024, "4,096 maximal registrations must fit etcd's 1.5 MiB request limit: {size}");
        assert_eq!(decode(&encode(&big)).unwrap(), big);
    }

    #[test]
    fn every_single_bit_flip_and_truncation_is_rejected() {
        let record = encode(&sample());
        for i in 0..record.len() {
            let mut bad = record.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "flip at {i} accepted");
            assert!(decode(&record[..i]).is_err(), "truncation at {i} accepted");
        }
    }
}
