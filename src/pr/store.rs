//! APTPL persistence (SPC-4 §5.13.4): the state of a logical unit survives power loss when the
//! last REGISTER asked for it. `Store` is the seam a cluster-wide store can plug into;
//! `FileStore` writes one versioned, checksummed record atomically (temp file, fsync, rename,
//! fsync of the directory), so a crash leaves either the old or the new record, never a torn one.

use super::apply::HARD_MAX_REGISTRANTS;
use super::state::{InitiatorId, PrType, Registrant, RegistrantId, Reservation, State, TargetPort};
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Where a logical unit's reservation state is kept across restarts.
pub trait Store: Send + Sync + Debug {
    /// The persisted state, or None when nothing (or a state without APTPL) was saved.
    fn load(&self) -> io::Result<Option<State>>;
    /// Durably records `state`; returns only once a crash can no longer lose it.
    fn save(&self, state: &State) -> io::Result<()>;
}

const MAGIC: &[u8; 8] = b"PALISPR\0";
const VERSION: u16 = 1;
/// Records are small; a larger file is not ours.
const MAX_RECORD: u64 = 1 << 20;

/// One file per logical unit, e.g. `<data_dir>/<serial>.pr`.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    pub fn new(path: PathBuf) -> Self {
        FileStore { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Store for FileStore {
    fn load(&self) -> io::Result<Option<State>> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        file.take(MAX_RECORD + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_RECORD {
            return Err(invalid("record too large"));
        }
        let state = decode(&bytes)?;
        Ok(state.aptpl.then_some(state))
    }

    fn save(&self, state: &State) -> io::Result<()> {
        let tmp = self.path.with_extension("pr.tmp");
        {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
            f.write_all(&encode(state))?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        // The rename is durable only once the directory entry is.
        let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        File::open(dir)?.sync_all()
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("reservation record: {what}"))
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// `MAGIC, version u16, aptpl u8, generation u32, registrant count u16, reservation (present
/// u8, type u8, holder index u16), registrants (key u64, initiator name, ISID flag + 6 bytes,
/// target flag, target name, TPGT u16)..., CRC32C of everything before`.
pub fn encode(state: &State) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + state.registrants.len() * 96);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.push(state.aptpl as u8);
    out.extend_from_slice(&state.generation.to_be_bytes());
    out.extend_from_slice(&(state.registrants.len() as u16).to_be_bytes());
    match &state.reservation {
        Some(res) => {
            let holder = state.registrants.iter().position(|r| r.id == res.holder).unwrap_or(0);
            out.extend_from_slice(&[1, res.kind.code()]);
            out.extend_from_slice(&(holder as u16).to_be_bytes());
        }
        None => out.extend_from_slice(&[0; 4]),
    }
    for r in &state.registrants {
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

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.data.len() < n {
            return Err(invalid("truncated"));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> io::Result<u16> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn string(&mut self) -> io::Result<String> {
        let len = self.u16()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| invalid("name is not UTF-8"))
    }
}

/// Decodes a record, rejecting a bad magic, version, checksum or structure.
pub fn decode(bytes: &[u8]) -> io::Result<State> {
    if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(invalid("bad magic"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body).to_be_bytes() != crc {
        return Err(invalid("checksum mismatch"));
    }
    let mut r = Reader { data: &body[MAGIC.len()..] };
    if r.u16()? != VERSION {
        return Err(invalid("unsupported version"));
    }
    let aptpl = r.u8()? != 0;
    let generation = r.u32()?;
    let count = r.u16()? as usize;
    if count > HARD_MAX_REGISTRANTS {
        return Err(invalid("too many registrants"));
    }
    let (has_res, code, holder) = (r.u8()? != 0, r.u8()?, r.u16()? as usize);
    let mut registrants = Vec::with_capacity(count);
    for _ in 0..count {
        let key = r.u64()?;
        let name = r.string()?;
        let has_isid = r.u8()? != 0;
        let isid: [u8; 6] = r.take(6)?.try_into().expect("6");
        let has_target = r.u8()? != 0;
        let target_name = r.string()?;
        let tpgt = r.u16()?;
        let initiator = InitiatorId { name, isid: has_isid.then_some(isid) };
        let target = has_target.then_some(TargetPort { name: target_name, tpgt });
        registrants.push(Registrant { id: RegistrantId { initiator, target }, key });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pr::state::fixtures::nexus;

    fn sample() -> State {
        let a = RegistrantId::of(&nexus("a", 1), false);
        State {
            generation: 41,
            registrants: vec![
                Registrant { id: RegistrantId::of(&nexus("b", 3), true), key: 2 },
                Registrant { id: a.clone(), key: u64::MAX },
                Registrant { id: RegistrantId { initiator: InitiatorId::device("iqn.x:dev"), target: None }, key: 9 },
            ]
            .into(),
            reservation: Some(Reservation { holder: a, kind: PrType::ExclusiveAccessRegistrantsOnly }),
            aptpl: true,
        }
    }

    #[test]
    fn record_round_trips() {
        assert_eq!(decode(&encode(&sample())).unwrap(), sample());
        assert_eq!(decode(&encode(&State::default())).unwrap(), State::default());
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

    #[test]
    fn spc4_5_13_4_file_store_keeps_only_aptpl_states() {
        let dir = std::env::temp_dir().join(format!("palisade-pr-store-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let store = FileStore::new(dir.join("lun0.pr"));
        assert_eq!(store.load().unwrap(), None);
        store.save(&sample()).unwrap();
        assert_eq!(store.load().unwrap(), Some(sample()));
        assert!(!dir.join("lun0.pr.tmp").exists());
        // APTPL cleared: the next start begins without registrations.
        store.save(&State { aptpl: false, ..sample() }).unwrap();
        assert_eq!(store.load().unwrap(), None);
        fs::write(store.path(), b"garbage").unwrap();
        assert!(store.load().is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
