//! APTPL persistence (SPC-4 §5.13.5.1): the state of a logical unit survives power loss when the
//! last REGISTER asked for it. `Store` is the seam a cluster-wide store can plug into.
//!
//! `FileStore` keeps a snapshot record (record.rs), written atomically (temp file, fsync,
//! rename, fsync of the directory), and a journal of the changes made since (journal.rs),
//! each appended and fdatasync'ed before the command completes: a change costs one entry of
//! a hundred-odd bytes, not a rewrite of thousands of registrations. The journal names the
//! snapshot it extends by length and checksum, so a crash at any point leaves the last
//! acknowledged state or the one being written: a torn last entry was never acknowledged and
//! is dropped; a journal left over from before a compaction names another snapshot and is
//! ignored.

use super::journal;
use super::record::{self, MAX_RECORD};
use super::state::State;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where a logical unit's reservation state is kept across restarts.
pub trait Store: Send + Sync + Debug {
    /// The persisted state, or None when nothing (or a state without APTPL) was saved.
    fn load(&self) -> io::Result<Option<State>>;
    /// Durably records `next`, the state that follows `previous`; returns only once a crash
    /// can no longer lose it. Whenever `previous.aptpl` is set, `previous` is what the store
    /// holds (every change made under APTPL is saved), so only the difference need be written.
    fn save(&self, previous: &State, next: &State) -> io::Result<()>;
}

const JOURNAL_MAGIC: &[u8; 8] = b"PALISPRJ";
/// Magic, snapshot length u32, snapshot checksum.
const JOURNAL_HEADER: usize = 16;
/// The journal grows to the snapshot's size (at least this much) before the next change is
/// written as a new snapshot instead: replay stays bounded, and compaction costs at most one
/// byte written per byte of journal.
const MIN_JOURNAL: u64 = 64 << 10;
/// Entry framing: payload length u32 before, CRC32C of length and payload after.
const ENTRY_OVERHEAD: usize = 8;

/// One file per logical unit, e.g. `<data_dir>/<serial>.pr`, and its journal `<serial>.prj`.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    /// Where the journal on disk ends, once known from a load or from our own writes; None:
    /// the next save writes a snapshot.
    tail: Mutex<Option<Tail>>,
}

#[derive(Debug, Clone, Copy)]
struct Tail {
    /// End of the last valid entry; a torn entry beyond it is cut off by the next append.
    len: u64,
    snapshot_len: u64,
    /// The journal's header, naming the snapshot it extends.
    header: [u8; JOURNAL_HEADER],
}

impl FileStore {
    pub fn new(path: PathBuf) -> Self {
        FileStore { path, tail: Mutex::new(None) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn journal_path(&self) -> PathBuf {
        self.path.with_extension("prj")
    }

    fn tail(&self) -> std::sync::MutexGuard<'_, Option<Tail>> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `state` as the snapshot and starts an empty journal naming it.
    fn compact(&self, state: &State) -> io::Result<Tail> {
        let snapshot = record::encode(state);
        let tmp = self.path.with_extension("pr.tmp");
        {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
            f.write_all(&snapshot)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        // The new snapshot must be durable before the journal it replaces is emptied.
        sync_dir(&self.path)?;
        {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(self.journal_path())?;
            f.write_all(&journal_header(&snapshot))?;
            f.sync_all()?;
        }
        // A journal created just now must not vanish with the entries appended to it later.
        sync_dir(&self.path)?;
        Ok(Tail { len: JOURNAL_HEADER as u64, snapshot_len: snapshot.len() as u64, header: journal_header(&snapshot) })
    }

    /// Appends `entry`; None when the journal on disk no longer extends the snapshot we know
    /// (another writer, e.g. a LUN reopened by a reload, compacted it): then compact instead.
    fn append(&self, tail: Tail, entry: &[u8]) -> io::Result<Option<Tail>> {
        let mut f = OpenOptions::new().read(true).write(true).open(self.journal_path())?;
        let mut header = [0u8; JOURNAL_HEADER];
        if f.read_exact(&mut header).is_err() || header != tail.header {
            return Ok(None);
        }
        f.set_len(tail.len)?;
        f.seek(SeekFrom::Start(tail.len))?;
        let written = f.write_all(entry).and_then(|()| f.sync_data());
        if let Err(e) = written {
            // The change is refused: do not leave it where a restart would replay it.
            let _ = f.set_len(tail.len).and_then(|()| f.sync_data());
            return Err(e);
        }
        Ok(Some(Tail { len: tail.len + entry.len() as u64, ..tail }))
    }
}

impl Store for FileStore {
    fn load(&self) -> io::Result<Option<State>> {
        let mut tail = self.tail();
        *tail = None;
        let Some(snapshot) = read_bounded(&self.path, MAX_RECORD)? else { return Ok(None) };
        let mut state = record::decode(&snapshot)?;
        let journal = read_bounded(&self.journal_path(), MAX_RECORD.max(MIN_JOURNAL) + MAX_RECORD)?;
        match journal {
            Some(journal) if journal.starts_with(&journal_header(&snapshot)) => {
                let mut at = JOURNAL_HEADER;
                while let Some((delta, len)) = next_entry(&journal[at..]) {
                    journal::replay(&mut state, delta);
                    at += len;
                }
                let header = journal_header(&snapshot);
                *tail = Some(Tail { len: at as u64, snapshot_len: snapshot.len() as u64, header });
            }
            // No journal, or one of an older snapshot: the snapshot alone is the state.
            _ => {}
        }
        Ok(state.aptpl.then_some(state))
    }

    fn save(&self, previous: &State, next: &State) -> io::Result<()> {
        let mut tail = self.tail();
        if let Some(t) = tail.filter(|_| previous.aptpl) {
            let entry = frame(&journal::encode(&journal::diff(previous, next)));
            if t.len + entry.len() as u64 <= t.snapshot_len.max(MIN_JOURNAL) {
                match self.append(t, &entry) {
                    Ok(Some(t)) => {
                        *tail = Some(t);
                        return Ok(());
                    }
                    Ok(None) => {}
                    Err(e) => {
                        *tail = None;
                        return Err(e);
                    }
                }
            }
        }
        *tail = None;
        *tail = Some(self.compact(next)?);
        Ok(())
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// The file's bytes, None when it does not exist; larger than `max` is not ours.
fn read_bounded(path: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(record::invalid("file too large"));
    }
    Ok(Some(bytes))
}

fn journal_header(snapshot: &[u8]) -> [u8; JOURNAL_HEADER] {
    let mut h = [0u8; JOURNAL_HEADER];
    h[..8].copy_from_slice(JOURNAL_MAGIC);
    h[8..12].copy_from_slice(&(snapshot.len() as u32).to_be_bytes());
    h[12..].copy_from_slice(&snapshot[snapshot.len().saturating_sub(4)..]);
    h
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + ENTRY_OVERHEAD);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// The entry at the start of `data` and its framed length; None at the end or at a torn or
/// damaged entry (never acknowledged: it was being written when the server stopped).
fn next_entry(data: &[u8]) -> Option<(journal::Delta, usize)> {
    let len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let framed = data.get(..len.checked_add(ENTRY_OVERHEAD)?)?;
    let (body, crc) = framed.split_at(4 + len);
    if crc32c::crc32c(body).to_be_bytes() != crc {
        return None;
    }
    Some((journal::decode(&body[4..]).ok()?, framed.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pr::state::fixtures::{nexus, sample};
    use crate::pr::state::{Registrant, RegistrantId};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("palisade-pr-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `n` registrations under APTPL.
    fn crowd(n: usize) -> State {
        let registrants: Vec<Registrant> = (0..n)
            .map(|i| Registrant { id: RegistrantId::of(&nexus(&format!("node-{i:04}"), 1), false), key: i as u64 + 1 })
            .collect();
        State { generation: n as u32, registrants: registrants.into(), reservation: None, aptpl: true }
    }

    fn with_newcomer(s: &State, host: &str) -> State {
        let mut next = s.clone();
        next.registrants.push(Registrant { id: RegistrantId::of(&nexus(host, 2), false), key: 0xAB });
        next.generation += 1;
        next
    }

    fn len(path: &Path) -> u64 {
        fs::metadata(path).unwrap().len()
    }

    #[test]
    fn spc4_5_13_4_file_store_keeps_only_aptpl_states() {
        let dir = scratch("aptpl");
        let store = FileStore::new(dir.join("lun0.pr"));
        assert_eq!(store.load().unwrap(), None);
        store.save(&State::default(), &sample()).unwrap();
        assert_eq!(store.load().unwrap(), Some(sample()));
        assert!(!dir.join("lun0.pr.tmp").exists());
        // APTPL cleared: the next start begins without registrations.
        store.save(&sample(), &State { aptpl: false, ..sample() }).unwrap();
        assert_eq!(FileStore::new(dir.join("lun0.pr")).load().unwrap(), None);
        fs::write(store.path(), b"garbage").unwrap();
        assert!(store.load().is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_change_among_thousands_appends_one_small_entry() {
        let dir = scratch("append");
        let store = FileStore::new(dir.join("lun0.pr"));
        let before = crowd(4096);
        store.save(&State::default(), &before).unwrap();
        let (snapshot, journal) = (len(store.path()), len(&store.journal_path()));
        let after = with_newcomer(&before, "newcomer");
        store.save(&before, &after).unwrap();
        assert_eq!(len(store.path()), snapshot, "the snapshot is not rewritten");
        let entry = len(&store.journal_path()) - journal;
        assert!(entry < 128, "{entry} bytes for one registration (snapshot: {snapshot})");
        // What a restart finds.
        assert_eq!(FileStore::new(dir.join("lun0.pr")).load().unwrap(), Some(after));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_last_entry_is_dropped_and_written_over() {
        let dir = scratch("torn");
        let store = FileStore::new(dir.join("lun0.pr"));
        let (s0, s1) = (crowd(10), with_newcomer(&crowd(10), "one"));
        store.save(&State::default(), &s0).unwrap();
        store.save(&s0, &s1).unwrap();
        // A crash in the middle of the next append.
        let s2 = with_newcomer(&s1, "two");
        let torn = frame(&journal::encode(&journal::diff(&s1, &s2)));
        let mut f = OpenOptions::new().append(true).open(store.journal_path()).unwrap();
        f.write_all(&torn[..torn.len() - 3]).unwrap();
        let restarted = FileStore::new(dir.join("lun0.pr"));
        assert_eq!(restarted.load().unwrap(), Some(s1.clone()));
        let s3 = with_newcomer(&s1, "three");
        restarted.save(&s1, &s3).unwrap();
        assert_eq!(FileStore::new(dir.join("lun0.pr")).load().unwrap(), Some(s3));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_journal_left_from_an_older_snapshot_is_ignored() {
        let dir = scratch("stale");
        let store = FileStore::new(dir.join("lun0.pr"));
        let (s0, s1) = (crowd(10), with_newcomer(&crowd(10), "one"));
        store.save(&State::default(), &s0).unwrap();
        store.save(&s0, &s1).unwrap();
        let stale = fs::read(store.journal_path()).unwrap();
        // A store that has not loaded writes a snapshot; a crash then keeps the old journal.
        let s2 = with_newcomer(&s1, "two");
        FileStore::new(dir.join("lun0.pr")).save(&s1, &s2).unwrap();
        fs::write(store.journal_path(), &stale).unwrap();
        assert_eq!(FileStore::new(dir.join("lun0.pr")).load().unwrap(), Some(s2));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_journal_compacted_by_another_writer_is_not_appended_to() {
        let dir = scratch("other-writer");
        let (s0, s1) = (crowd(10), with_newcomer(&crowd(10), "one"));
        let ours = FileStore::new(dir.join("lun0.pr"));
        ours.save(&State::default(), &s0).unwrap();
        // Another store of the same file (a reopened LUN) compacts a state of its own.
        let theirs = FileStore::new(dir.join("lun0.pr"));
        let other = with_newcomer(&s0, "theirs");
        theirs.save(&State::default(), &other).unwrap();
        // Our next change must not land as a delta on their snapshot.
        ours.save(&s0, &s1).unwrap();
        assert_eq!(FileStore::new(dir.join("lun0.pr")).load().unwrap(), Some(s1));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_journal_becomes_a_snapshot_once_it_outgrows_the_bound() {
        let dir = scratch("compact");
        let store = FileStore::new(dir.join("lun0.pr"));
        let mut state = crowd(300);
        store.save(&State::default(), &state).unwrap();
        let mut largest = 0;
        for round in 0..40u64 {
            // Every registration re-keyed: an entry of several KiB.
            let mut next = state.clone();
            let ids: Vec<RegistrantId> = next.registrants.iter().map(|r| r.id.clone()).collect();
            for (i, id) in ids.iter().enumerate() {
                next.registrants.set_key(id, round * 1000 + i as u64 + 1);
            }
            next.generation += 1;
            store.save(&state, &next).unwrap();
            state = next;
            largest = largest.max(len(&store.journal_path()));
        }
        assert!(largest <= MIN_JOURNAL.max(len(store.path())), "journal grew to {largest}");
        assert_eq!(FileStore::new(dir.join("lun0.pr")).load().unwrap(), Some(state));
        fs::remove_dir_all(&dir).unwrap();
    }
}
