//! ROD tokens (SPC-4 §5.17.6 ROD token format; SBC-3 §4.30 offloaded data transfer): what a
//! POPULATE TOKEN hands out and a WRITE USING TOKEN redeems, and the bounded table that makes
//! them unforgeable.
//!
//! Unforgeable: a token is honoured only if the table of the target that made it holds an entry
//! under its COPY MANAGER ROD TOKEN IDENTIFIER whose 512 bytes are exactly the presented ones.
//! The bytes carry 32 bytes from the operating system's CSPRNG (vendor-specific extended ROD
//! token data), so a token cannot be guessed, and nothing in it is trusted: the source logical
//! unit and its ranges come from the table entry, never from the token.
//!
//! ROD type (SPC-4 §5.17.6.2 Table 110): by default 800001h, point in time copy — change
//! vulnerable. A write of any kind to a source range after POPULATE TOKEN revokes the token
//! (`SourceWatch`, hooked into every write's range lock), and WRITE USING TOKEN fails with
//! INVALID TOKEN OPERATION, TOKEN REVOKED; a WRITE USING TOKEN that is running when the source
//! changes stops at its next chunk with the same sense. So every completed copy is the source
//! as it was at POPULATE TOKEN, or nothing is claimed. With RTV set an initiator may ask for
//! access upon reference (10000h): the copy then reads the source as it is at copy time.

use super::lun::Lun;
use super::sense::SenseReason;
use crate::nexus::InitiatorPort;
use rand::RngCore;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// SPC-4 §5.17.6.1: a ROD token is 512 bytes; its ROD TOKEN LENGTH field says 1F8h.
pub(crate) const TOKEN_LEN: usize = 512;
const TOKEN_LENGTH_FIELD: u16 = (TOKEN_LEN - 8) as u16;

/// SPC-4 Table 110 ROD types.
pub(crate) const ROD_ACCESS_UPON_REFERENCE: u32 = 0x0001_0000;
pub(crate) const ROD_PIT_DEFAULT: u32 = 0x0080_0000;
pub(crate) const ROD_PIT_CHANGE_VULNERABLE: u32 = 0x0080_0001;
pub(crate) const ROD_PIT_ANY: u32 = 0x0080_FFFF;
/// SBC-3 §4.30.4 block device zero ROD token: represents zeros, made by nobody, used as is.
pub(crate) const ROD_BLOCK_DEVICE_ZERO: u32 = 0xFFFF_0001;

/// Live tokens per target. Windows keeps a handful per running copy; 1024 is far above that
/// while bounding what a hostile initiator can pin (each entry is ~0.6 KiB plus its ranges).
pub(crate) const MAX_TOKENS: usize = 1024;
/// Inactivity timeouts in seconds (Block Device ROD Token Limits, SBC-3 §6.6.6.2): the
/// default used when POPULATE TOKEN asks for 0, and the most it may ask for. Windows asks
/// for 0 and relies on the default; 60 s/600 s are what FreeBSD CTL offers Windows.
pub(crate) const DEFAULT_INACTIVITY_SECS: u32 = 60;
pub(crate) const MAX_INACTIVITY_SECS: u32 = 600;
/// Absolute lifetime of a token, however active (ROD Token Features MAXIMUM TOKEN LIFETIME).
pub(crate) const MAX_LIFETIME_SECS: u32 = 3600;
/// Identifiers of ended tokens remembered to tell "expired/deleted/revoked" from "unknown".
const MAX_TOMBSTONES: usize = 1024;

const STATE_VALID: u8 = 0;
const STATE_REVOKED: u8 = 1;

/// A byte range of a logical unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteRange {
    pub offset: u64,
    pub len: u64,
}

impl ByteRange {
    fn overlaps(&self, offset: u64, len: u64) -> bool {
        offset < self.offset + self.len && self.offset < offset.saturating_add(len)
    }
}

/// One live token: the table's record of what it represents.
#[derive(Debug)]
pub(crate) struct TokenEntry {
    id: u64,
    bytes: [u8; TOKEN_LEN],
    pub source: Arc<Lun>,
    /// The source ranges in ROD order (SBC-3 §4.30.3: the ROD is their concatenation).
    pub ranges: Vec<ByteRange>,
    pub rod_type: u32,
    /// Who made it, and whether RECEIVE ROD TOKEN INFORMATION has handed it out yet (an
    /// undelivered token dies with its I_T nexus: nobody else can ever learn it).
    creator: InitiatorPort,
    delivered: AtomicBool,
    state: AtomicU8,
    created: Instant,
    inactivity: Duration,
    last_used: Mutex<Instant>,
}

impl TokenEntry {
    pub(crate) fn bytes(&self) -> &[u8; TOKEN_LEN] {
        &self.bytes
    }

    /// Bytes the ROD represents.
    pub(crate) fn total_bytes(&self) -> u64 {
        self.ranges.iter().map(|r| r.len).sum()
    }

    pub(crate) fn mark_delivered(&self) {
        self.delivered.store(true, Ordering::Release);
    }

    /// False once a write reached a source range of a point-in-time token (checked by a copy
    /// after each chunk it read; SeqCst pairs with `SourceWatch::written`).
    pub(crate) fn still_valid(&self) -> bool {
        self.state.load(Ordering::SeqCst) == STATE_VALID
    }

    fn revoke(&self) {
        self.state.store(STATE_REVOKED, Ordering::SeqCst);
    }

    fn last_used(&self) -> MutexGuard<'_, Instant> {
        self.last_used.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expired(&self, now: Instant) -> bool {
        now.duration_since(*self.last_used()) > self.inactivity
            || now.duration_since(self.created) > Duration::from_secs(MAX_LIFETIME_SECS as u64)
    }
}

/// Why a token identifier is no longer in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Expired,
    Deleted,
    Revoked,
    Cancelled,
}

impl Ended {
    fn reason(self) -> SenseReason {
        match self {
            Ended::Expired => SenseReason::InvalidTokenExpired,
            Ended::Deleted => SenseReason::InvalidTokenDeleted,
            Ended::Revoked => SenseReason::InvalidTokenRevoked,
            Ended::Cancelled => SenseReason::InvalidTokenCancelled,
        }
    }
}

#[derive(Debug, Default)]
struct Table {
    live: HashMap<u64, Arc<TokenEntry>>,
    tombstones: VecDeque<(u64, Ended)>,
}

impl Table {
    fn bury(&mut self, id: u64, why: Ended) {
        if let Some(entry) = self.live.remove(&id) {
            entry.source.source_watch().forget(id);
        }
        if self.tombstones.len() >= MAX_TOMBSTONES {
            self.tombstones.pop_front();
        }
        self.tombstones.push_back((id, why));
    }

    /// Releases every expired token (called on every token operation, so an idle table holds
    /// at most what was live when the last operation ran, never more than MAX_TOKENS).
    fn sweep(&mut self, now: Instant) {
        let ended: Vec<(u64, Ended)> = self
            .live
            .values()
            .filter_map(|e| match (e.expired(now), e.still_valid()) {
                (_, false) => Some((e.id, Ended::Revoked)),
                (true, true) => Some((e.id, Ended::Expired)),
                (false, true) => None,
            })
            .collect();
        for (id, why) in ended {
            self.bury(id, why);
        }
    }
}

/// The tokens one target has made (SPC-4 §5.17.6: the copy manager that creates a token is the
/// only one that honours it). Clones share the table.
#[derive(Debug, Default, Clone)]
pub(crate) struct TokenTable {
    table: Arc<Mutex<Table>>,
}

/// What POPULATE TOKEN asks for.
pub(crate) struct NewToken {
    pub source: Arc<Lun>,
    pub ranges: Vec<ByteRange>,
    pub rod_type: u32,
    pub inactivity_secs: u32,
    pub creator: InitiatorPort,
}

impl TokenTable {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes a token; INSUFFICIENT RESOURCES TO CREATE ROD TOKEN when MAX_TOKENS are live.
    pub(crate) fn create(&self, new: NewToken) -> Result<Arc<TokenEntry>, SenseReason> {
        let now = Instant::now();
        let mut table = self.table();
        table.sweep(now);
        if table.live.len() >= MAX_TOKENS {
            return Err(SenseReason::InsufficientResourcesToCreateRodToken);
        }
        let mut rng = rand::rngs::OsRng;
        let id = loop {
            let id = rng.next_u64();
            if !table.live.contains_key(&id) && !table.tombstones.iter().any(|(t, _)| *t == id) {
                break id;
            }
        };
        let total: u64 = new.ranges.iter().map(|r| r.len).sum();
        let mut bytes = [0u8; TOKEN_LEN];
        // SPC-4 §5.17.6.1 ROD token format.
        bytes[0..4].copy_from_slice(&new.rod_type.to_be_bytes());
        bytes[6..8].copy_from_slice(&TOKEN_LENGTH_FIELD.to_be_bytes());
        bytes[8..16].copy_from_slice(&id.to_be_bytes()); // COPY MANAGER ROD TOKEN IDENTIFIER
        bytes[16..48].copy_from_slice(&creator_descriptor(&new.source)); // CREATOR LOGICAL UNIT DESCRIPTOR
        bytes[48..64].copy_from_slice(&(total as u128).to_be_bytes()); // NUMBER OF BYTES REPRESENTED
                                                                       // Device type specific data of a block device ROD token (SBC-3 §4.30.2): the source's
                                                                       // READ CAPACITY(16) geometry — block length, provisioning (LBPME, LBPRZ), exponent.
        bytes[96..100].copy_from_slice(&new.source.block_size().to_be_bytes());
        let thin = if new.source.backend().supports_unmap() { 0xC0 } else { 0 };
        bytes[102] = thin | (new.source.physical_block_exponent() & 0x0F);
        // Extended ROD token data (vendor specific): the unguessable part.
        rng.fill_bytes(&mut bytes[TOKEN_LEN - 32..]);
        let entry = Arc::new(TokenEntry {
            id,
            bytes,
            source: new.source,
            ranges: new.ranges,
            rod_type: new.rod_type,
            creator: new.creator,
            delivered: AtomicBool::new(false),
            state: AtomicU8::new(STATE_VALID),
            created: now,
            inactivity: Duration::from_secs(new.inactivity_secs as u64),
            last_used: Mutex::new(now),
        });
        if entry.rod_type != ROD_ACCESS_UPON_REFERENCE {
            entry.source.source_watch().watch(&entry);
        }
        table.live.insert(id, entry.clone());
        Ok(entry)
    }

    /// Resolves presented token bytes (already of the ROD token length) to a live entry,
    /// refreshing its inactivity timer. Every failure is an INVALID TOKEN OPERATION reason.
    pub(crate) fn redeem(&self, token: &[u8]) -> Result<Arc<TokenEntry>, SenseReason> {
        let now = Instant::now();
        let mut table = self.table();
        table.sweep(now);
        let id = u64::from_be_bytes(token[8..16].try_into().expect("8 bytes"));
        let Some(entry) = table.live.get(&id).cloned() else {
            return Err(match table.tombstones.iter().find(|(t, _)| *t == id) {
                Some((_, why)) => why.reason(),
                None => SenseReason::InvalidTokenUnknown,
            });
        };
        if !constant_time_eq(&entry.bytes, token) {
            // The identifier is ours but the rest was altered: corrupt, and never honoured.
            return Err(SenseReason::InvalidTokenCorrupt);
        }
        *entry.last_used() = now;
        Ok(entry)
    }

    /// DEL_TKN (SBC-3 §5.34.2): the token ends once the WRITE USING TOKEN that used it is done.
    pub(crate) fn delete(&self, entry: &TokenEntry) {
        self.table().bury(entry.id, Ended::Deleted);
    }

    /// SAM-5 §6.3.4 I_T nexus loss: tokens that nexus made but never received are cancelled;
    /// no other nexus can ever learn them, so nothing may keep them alive.
    pub(crate) fn nexus_lost(&self, port: &InitiatorPort) {
        let mut table = self.table();
        let orphans: Vec<u64> = table
            .live
            .values()
            .filter(|e| e.creator == *port && !e.delivered.load(Ordering::Acquire))
            .map(|e| e.id)
            .collect();
        for id in orphans {
            table.bury(id, Ended::Cancelled);
        }
    }

    /// Live tokens.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.table().live.len()
    }

    /// Makes every token look idle for `by` longer (tests of expiry, without sleeping).
    #[cfg(test)]
    pub(crate) fn age(&self, by: Duration) {
        for entry in self.table().live.values() {
            let mut last = entry.last_used();
            *last = last.checked_sub(by).unwrap_or(*last);
        }
    }
}

/// SPC-4 §6.4.5.6 identification CSCD descriptor (E4h) of the creating logical unit, with the
/// NAA designator of its VPD page 83h and its block length.
fn creator_descriptor(lun: &Lun) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[0] = 0xE4;
    d[4] = 0x01; // binary code set
    d[5] = 0x03; // association: logical unit; designator type: NAA
    d[7] = 8;
    d[8..16].copy_from_slice(&lun.identity().naa.to_be_bytes());
    d[29..32].copy_from_slice(&lun.block_size().to_be_bytes()[1..]);
    d
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The point-in-time tokens whose source is one logical unit, so each write to it can revoke
/// those whose ranges it touches. Costs one atomic load per write while no token watches.
#[derive(Debug, Default)]
pub(crate) struct SourceWatch {
    count: AtomicUsize,
    tokens: Mutex<Vec<(u64, Weak<TokenEntry>)>>,
}

impl SourceWatch {
    fn tokens(&self) -> MutexGuard<'_, Vec<(u64, Weak<TokenEntry>)>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn watch(&self, entry: &Arc<TokenEntry>) {
        let mut tokens = self.tokens();
        tokens.retain(|(_, w)| w.strong_count() > 0);
        tokens.push((entry.id, Arc::downgrade(entry)));
        self.count.store(tokens.len(), Ordering::SeqCst);
    }

    fn forget(&self, id: u64) {
        let mut tokens = self.tokens();
        tokens.retain(|(t, w)| *t != id && w.strong_count() > 0);
        self.count.store(tokens.len(), Ordering::SeqCst);
    }

    /// Called before a write of [offset, offset+len) reaches the backend: revokes every
    /// point-in-time token that represents any of those bytes (SPC-4 Table 110, 800001h).
    pub(crate) fn written(&self, offset: u64, len: u64) {
        if self.count.load(Ordering::SeqCst) == 0 {
            return;
        }
        for (_, weak) in self.tokens().iter() {
            if let Some(entry) = weak.upgrade() {
                if entry.ranges.iter().any(|r| r.overlaps(offset, len)) {
                    entry.revoke();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, MemoryBackend};
    use crate::scsi::lun::LunIdentity;

    fn lun() -> Arc<Lun> {
        let backend = Backend::Memory(MemoryBackend::new(1 << 20));
        Arc::new(Lun::new(0, backend, 512, LunIdentity::new("d", "1", "S"), false).unwrap())
    }

    fn new_token(lun: &Arc<Lun>, rod_type: u32) -> NewToken {
        NewToken {
            source: lun.clone(),
            ranges: vec![ByteRange { offset: 4096, len: 8192 }],
            rod_type,
            inactivity_secs: 60,
            creator: InitiatorPort::new("iqn.a", [0; 6]),
        }
    }

    #[test]
    fn tokens_are_unforgeable_and_end_with_the_right_reason() {
        let (table, lun) = (TokenTable::default(), lun());
        let entry = table.create(new_token(&lun, ROD_PIT_CHANGE_VULNERABLE)).unwrap();
        let token = *entry.bytes();
        assert_eq!(&token[0..4], &ROD_PIT_CHANGE_VULNERABLE.to_be_bytes());
        assert_eq!(&token[6..8], &[0x01, 0xF8]);
        assert_eq!(u128::from_be_bytes(token[48..64].try_into().unwrap()), 8192);
        assert_eq!((&token[96..100], token[102]), (&512u32.to_be_bytes()[..], 0xC0));
        assert!(Arc::ptr_eq(&table.redeem(&token).unwrap(), &entry));
        // Any flipped bit outside the identifier: corrupt; inside it: unknown.
        for byte in [0, 20, 100, 500] {
            let mut forged = token;
            forged[byte] ^= 0x10;
            assert_eq!(table.redeem(&forged).unwrap_err(), SenseReason::InvalidTokenCorrupt);
        }
        let mut other_id = token;
        other_id[15] ^= 1;
        assert_eq!(table.redeem(&other_id).unwrap_err(), SenseReason::InvalidTokenUnknown);
        // Another table (another target or process) never honours it.
        assert_eq!(TokenTable::default().redeem(&token).unwrap_err(), SenseReason::InvalidTokenUnknown);
        // Expiry by inactivity, then the identifier is remembered as expired.
        table.age(Duration::from_secs(61));
        assert_eq!(table.redeem(&token).unwrap_err(), SenseReason::InvalidTokenExpired);
        assert_eq!(table.live(), 0);
        assert_eq!(lun.source_watch().count.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn writes_revoke_point_in_time_tokens_only_where_they_overlap() {
        let (table, lun) = (TokenTable::default(), lun());
        let pit = table.create(new_token(&lun, ROD_PIT_CHANGE_VULNERABLE)).unwrap();
        let aur = table.create(new_token(&lun, ROD_ACCESS_UPON_REFERENCE)).unwrap();
        lun.source_watch().written(0, 4096); // just before the range
        lun.source_watch().written(12288, 512); // just after
        assert!(pit.still_valid());
        lun.source_watch().written(12287, 1);
        assert!(!pit.still_valid() && aur.still_valid());
        assert_eq!(table.redeem(pit.bytes()).unwrap_err(), SenseReason::InvalidTokenRevoked);
        assert!(table.redeem(aur.bytes()).is_ok());
    }

    #[test]
    fn the_table_is_bounded_and_undelivered_tokens_die_with_their_nexus() {
        let (table, lun) = (TokenTable::default(), lun());
        let first = table.create(new_token(&lun, ROD_ACCESS_UPON_REFERENCE)).unwrap();
        first.mark_delivered();
        let second = table.create(new_token(&lun, ROD_ACCESS_UPON_REFERENCE)).unwrap();
        table.nexus_lost(&InitiatorPort::new("iqn.a", [0; 6]));
        assert!(table.redeem(first.bytes()).is_ok());
        assert_eq!(table.redeem(second.bytes()).unwrap_err(), SenseReason::InvalidTokenCancelled);
        for _ in 1..MAX_TOKENS {
            table.create(new_token(&lun, ROD_ACCESS_UPON_REFERENCE)).unwrap();
        }
        let full = table.create(new_token(&lun, ROD_ACCESS_UPON_REFERENCE)).unwrap_err();
        assert_eq!(full, SenseReason::InsufficientResourcesToCreateRodToken);
        table.delete(&first);
        assert_eq!(table.redeem(first.bytes()).unwrap_err(), SenseReason::InvalidTokenDeleted);
        assert!(table.create(new_token(&lun, ROD_ACCESS_UPON_REFERENCE)).is_ok());
    }
}
