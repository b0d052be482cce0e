//! A logical unit: backend, geometry, identity and the small shared state (mode pages, unit
//! attention queues, SPC-2 reservation) that lives behind one short-held mutex.

use super::alua::{AccessState, Alua};
use super::copy_results::CopyResults;
use super::mode::ModePages;
use super::range_lock::{RangeGuard, RangeLock};
use super::rod_status::RodOperations;
use super::rod_token::SourceWatch;
use super::sense::SenseReason;
use super::task::ItNexus;
use crate::backend::Backend;
use crate::nexus::InitiatorPort;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Highest LUN reachable with flat space addressing (SAM-5 §4.7.6: 14 bits).
pub const MAX_LUN: u64 = 16383;
/// SPC-4 §6.6.2 T10 vendor identification.
pub const VENDOR_ID: &str = "PALISADE";
/// Unit attentions queued per nexus beyond this are dropped (oldest kept, SAM-5 §5.14 allows it).
const MAX_PENDING_UA: usize = 8;

/// IEEE company ID used in generated NAA designators: 0x02xxxx has the locally administered
/// (U/L) bit set, so it is never an IEEE-assigned OUI. Operators with their own OUI set `naa`.
pub const LOCAL_COMPANY_ID: u64 = 0x02_5041;

/// Identity strings reported by INQUIRY (SPC-4 §6.6).
#[derive(Debug, Clone)]
pub struct LunIdentity {
    pub product: String,
    pub revision: String,
    pub serial: String,
    /// 8-byte NAA identifier for VPD page 83h.
    pub naa: u64,
}

impl LunIdentity {
    /// Derives an NAA IEEE Registered identifier (NAA 5h, SPC-4 §7.8.6.6.4) from the serial,
    /// so the same serial always yields the same designator. NAA 5h rather than the locally
    /// assigned 3h because Linux ranks 3h no higher than the T10 vendor designator when it picks
    /// a device's WWID; multipath and udev then key on `naa.5…`. The company ID is
    /// [`LOCAL_COMPANY_ID`]: locally administered, so it cannot collide with an assigned OUI.
    pub fn new(product: &str, revision: &str, serial: &str) -> Self {
        // FNV-1a: stable across builds and platforms, unlike std's hasher.
        let hash = serial.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
        LunIdentity {
            product: product.to_string(),
            revision: revision.to_string(),
            serial: serial.to_string(),
            naa: (0x5u64 << 60) | (LOCAL_COMPANY_ID << 36) | (hash & 0xF_FFFF_FFFF),
        }
    }
}

/// Mutable per-LUN state; every critical section is a few field updates.
#[derive(Debug)]
pub(crate) struct LunState {
    pub mode: ModePages,
    /// Pending unit attentions per I_T nexus (SAM-5 §5.14: one initiator port through two
    /// target ports is two nexuses, each told on its own); a nexus absent here has not been
    /// seen since power on and gets POWER ON, RESET OR BUS DEVICE RESET OCCURRED first.
    unit_attentions: HashMap<ItNexus, VecDeque<SenseReason>>,
    /// SPC-2 RESERVE holder (initiator port).
    pub reservation: Option<InitiatorPort>,
}

#[derive(Debug)]
pub struct Lun {
    id: u64,
    backend: Backend,
    block_size: u32,
    block_count: u64,
    identity: LunIdentity,
    read_only: bool,
    /// SBC-3 §6.4.4 / READ CAPACITY(16): log2(logical blocks per physical block).
    physical_exponent: u8,
    /// Overlapping commands serialise here (SBC-3 §5.2 COMPARE AND WRITE atomicity).
    ranges: RangeLock,
    /// EXTENDED COPY statuses held for RECEIVE COPY RESULTS (SPC-4 §6.25).
    copies: CopyResults,
    /// POPULATE TOKEN / WRITE USING TOKEN operations for RECEIVE ROD TOKEN INFORMATION.
    rod_ops: RodOperations,
    /// Point-in-time ROD tokens whose source is this LU (revoked by writes to their ranges).
    source_watch: SourceWatch,
    state: Mutex<LunState>,
    /// SPC-4 §5.13 persistent reservations and the fencing gate.
    pr: crate::pr::Unit,
    /// Metrics (src/metrics): command counters, fed by the transport's response path.
    stats: std::sync::Arc<crate::metrics::LunStats>,
    /// SAM-5 §4.8: the tasks of every I_T nexus on this LU.
    tasks: super::task_set::TaskSet,
    /// The server's ALUA state (SPC-4 §5.16.2), set when a target with ALUA takes this LU: read
    /// again when a data command executes, so a port that stopped serving while the command
    /// waited for its Data-Out does not touch the medium.
    alua: OnceLock<Arc<Alua>>,
    /// Cluster mode: the gateway's self-fence (docs/cluster.md); `None` on a single node,
    /// where writes are never fenced by time.
    write_fence: Option<std::sync::Arc<super::write_fence::WriteFence>>,
    /// Cluster mode: the reservation state every gateway shares (set once the gateway has
    /// joined and loaded it); PERSISTENT RESERVE OUT commits through it.
    shared_reservations: OnceLock<Arc<dyn super::shared_pr::SharedReservations>>,
}

impl Lun {
    /// `block_size` must be 512 or 4096 (SBC-3 §4.5); the capacity is the backend size in
    /// whole blocks.
    pub fn new(id: u64, backend: Backend, block_size: u32, identity: LunIdentity, read_only: bool) -> io::Result<Self> {
        let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        if id > MAX_LUN {
            return Err(invalid(format!("LUN {id} exceeds {MAX_LUN}")));
        }
        if block_size != 512 && block_size != 4096 {
            return Err(invalid(format!("block size {block_size} is not 512 or 4096")));
        }
        let block_count = backend.size_bytes() / block_size as u64;
        if block_count == 0 {
            return Err(invalid(format!("LUN {id} backend is smaller than one block")));
        }
        Ok(Lun {
            id,
            backend,
            block_size,
            block_count,
            identity,
            read_only,
            physical_exponent: 0,
            ranges: RangeLock::default(),
            copies: CopyResults::default(),
            rod_ops: RodOperations::default(),
            source_watch: SourceWatch::default(),
            state: Mutex::new(LunState {
                mode: ModePages::default(),
                unit_attentions: HashMap::new(),
                reservation: None,
            }),
            pr: crate::pr::Unit::volatile(),
            stats: Default::default(),
            tasks: Default::default(),
            alua: OnceLock::new(),
            write_fence: None,
            shared_reservations: OnceLock::new(),
        })
    }

    /// Ties this LU to the server's ALUA state (the first call wins: one server, one `Alua`).
    pub(crate) fn use_alua(&self, alua: &Arc<Alua>) {
        let _ = self.alua.set(alua.clone());
    }

    /// The access state of the target port group this server reports (Active/Optimized when
    /// no ALUA state was attached).
    pub(crate) fn access_state(&self) -> AccessState {
        self.alua.get().map_or(AccessState::ActiveOptimized, |alua| alua.local_state())
    }

    /// The LU's task set (SAM-5 §4.8).
    pub fn task_set(&self) -> &super::task_set::TaskSet {
        &self.tasks
    }

    pub fn id(&self) -> u64 {
        self.id
    }
    pub fn backend(&self) -> &Backend {
        &self.backend
    }
    pub fn block_size(&self) -> u32 {
        self.block_size
    }
    pub fn block_count(&self) -> u64 {
        self.block_count
    }
    pub fn identity(&self) -> &LunIdentity {
        &self.identity
    }
    pub fn read_only(&self) -> bool {
        self.read_only
    }
    pub fn physical_block_exponent(&self) -> u8 {
        self.physical_exponent
    }
    /// Metrics counters of this logical unit (read by the admin module's scrape).
    pub fn stats(&self) -> &std::sync::Arc<crate::metrics::LunStats> {
        &self.stats
    }
    pub(crate) fn ranges(&self) -> &RangeLock {
        &self.ranges
    }
    pub(crate) fn copy_results(&self) -> &CopyResults {
        &self.copies
    }
    pub(crate) fn rod_operations(&self) -> &RodOperations {
        &self.rod_ops
    }
    pub(crate) fn source_watch(&self) -> &SourceWatch {
        &self.source_watch
    }

    /// Takes [offset, offset+len) exclusively for a write. Every write path goes through here,
    /// so point-in-time ROD tokens over these bytes are revoked before the data can change
    /// (SPC-4 §5.17.6.2 ROD type 800001h, rod_token.rs).
    pub(crate) async fn lock_for_write(&self, offset: u64, len: u64) -> RangeGuard<'_> {
        self.source_watch.written(offset, len);
        self.ranges.lock(offset, len, true).await
    }

    /// Reports 2^`exponent` logical blocks per physical block (SBC-3 §5.16 READ CAPACITY(16)
    /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT); e.g. 3 for 512-byte blocks on 4 KiB storage.
    /// Only a hint to initiators for alignment; at most 4 KiB physical blocks are accepted.
    pub fn with_physical_block_exponent(mut self, exponent: u8) -> io::Result<Self> {
        if (self.block_size as u64) << exponent > 4096 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "physical block larger than 4096 bytes"));
        }
        self.physical_exponent = exponent;
        Ok(self)
    }

    /// Cluster mode: writes are admitted only while `fence` is open (docs/cluster.md).
    /// True on a cluster gateway: other gateways write this LU's backing store too, and this
    /// process does not see those writes (ODX tokens are access upon reference there, docs/odx.md).
    pub fn shared_across_gateways(&self) -> bool {
        self.write_fence.is_some()
    }

    /// Cluster mode: from now on PERSISTENT RESERVE OUT commits through `shared`.
    pub fn share_reservations(&self, shared: Arc<dyn super::shared_pr::SharedReservations>) {
        let _ = self.shared_reservations.set(shared);
    }

    pub fn shared_reservations(&self) -> Option<&Arc<dyn super::shared_pr::SharedReservations>> {
        self.shared_reservations.get()
    }

    pub fn set_write_fence(&mut self, fence: std::sync::Arc<super::write_fence::WriteFence>) {
        self.write_fence = Some(fence);
    }

    /// Whether a command that changes the medium may reach the backend now; called under the
    /// fencing gate, so `pr().quiesce()` after closing the fence waits for every admitted write.
    pub fn admit_write(&self) -> Result<(), SenseReason> {
        self.write_fence.as_ref().map_or(Ok(()), |fence| fence.admit())
    }

    /// Sets the caching mode page's WCE bit (SBC-3 §6.5.4): whether a volatile write cache
    /// is reported, so initiators send SYNCHRONIZE CACHE / FUA.
    pub fn set_write_cache(&self, enabled: bool) {
        self.state().mode.wce = enabled;
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, LunState> {
        // A panic elsewhere must not wedge the LUN; the state stays structurally valid.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when an SPC-2 reservation is held by another I_T nexus.
    pub(crate) fn reserved_by_other(&self, nexus: &ItNexus) -> bool {
        let state = self.state();
        state.reservation.as_ref().is_some_and(|holder| holder != nexus.initiator_port())
    }

    /// SPC-2 §7.21 RESERVE: (re)reserves for this nexus; false when another nexus holds it
    /// (checked again here, under the lock, to close the race with the caller's check).
    pub(crate) fn reserve(&self, nexus: &ItNexus) -> bool {
        let port = nexus.initiator_port();
        let mut state = self.state();
        match &state.reservation {
            Some(holder) if holder != port => false,
            _ => {
                state.reservation = Some(port.clone());
                true
            }
        }
    }

    /// SPC-2 §7.17 RELEASE: only the holder's release has an effect.
    pub(crate) fn release(&self, nexus: &ItNexus) {
        let port = nexus.initiator_port();
        let mut state = self.state();
        if state.reservation.as_ref() == Some(port) {
            state.reservation = None;
        }
    }

    /// Registrations this LU accepts (SPC-4 §5.13.7: INSUFFICIENT REGISTRATION RESOURCES
    /// beyond).
    pub fn set_max_registrants(&mut self, max: usize) {
        self.pr.set_max_registrants(max);
    }

    /// The persistent reservation unit (state + fencing gate).
    pub fn pr(&self) -> &crate::pr::Unit {
        &self.pr
    }

    /// Restores APTPL reservations from `store` (SPC-4 §5.13.5.1) and keeps it for later
    /// changes. A record that cannot be read is returned as an error; the LU then starts with
    /// no reservations.
    pub fn restore_reservations(&mut self, store: std::sync::Arc<dyn crate::pr::Store>) -> io::Result<()> {
        let (mut unit, err) = crate::pr::Unit::restored(store);
        unit.set_max_registrants(self.pr.max_registrants());
        self.pr = unit;
        err.map_or(Ok(()), Err)
    }

    /// Establishes `reason` for every known nexus whose initiator port `select` picks (PR
    /// effects: SPC-4 §5.13 tells "the initiator port associated with" a registration).
    pub(crate) fn establish_unit_attention_where(&self, reason: SenseReason, select: impl Fn(&InitiatorPort) -> bool) {
        let mut state = self.state();
        for (nexus, queue) in state.unit_attentions.iter_mut() {
            if select(nexus.initiator_port()) && !queue.contains(&reason) && queue.len() < MAX_PENDING_UA {
                queue.push_back(reason);
            }
        }
    }

    /// Snapshot of the current mode pages.
    pub(crate) fn mode(&self) -> ModePages {
        self.state().mode
    }

    /// Takes the oldest pending unit attention for this nexus, registering a never-seen nexus
    /// with the power-on condition first (SAM-5 §5.14, §6.3.1).
    pub(crate) fn take_unit_attention(&self, nexus: &ItNexus) -> Option<SenseReason> {
        let mut state = self.state();
        if let Some(queue) = state.unit_attentions.get_mut(nexus) {
            return queue.pop_front();
        }
        // First command of this nexus: it sees POWER ON, RESET OCCURRED, then nothing.
        state.unit_attentions.insert(nexus.clone(), VecDeque::new());
        Some(SenseReason::PowerOnReset)
    }

    /// Establishes `reason` for every known nexus except `except` (SAM-5 §5.14).
    pub(crate) fn establish_unit_attention(&self, reason: SenseReason, except: Option<&ItNexus>) {
        let mut state = self.state();
        for (nexus, queue) in state.unit_attentions.iter_mut() {
            if Some(nexus) == except || queue.contains(&reason) {
                continue;
            }
            // A reset supersedes everything queued before it (SAM-5 §5.14 precedence).
            if matches!(reason, SenseReason::BusDeviceResetFunction | SenseReason::PowerOnReset) {
                queue.clear();
            }
            if queue.len() < MAX_PENDING_UA {
                queue.push_back(reason);
            }
        }
    }

    /// SAM-5 §6.4 logical unit reset: mode pages back to defaults, SPC-2 reservation released,
    /// BUS DEVICE RESET FUNCTION OCCURRED for every I_T nexus.
    pub(crate) fn reset(&self) {
        {
            let mut state = self.state();
            state.mode = ModePages::default();
            state.reservation = None;
        }
        // SPC-4 §6.18: held copy results do not survive a reset.
        self.copies.discard(None);
        self.rod_ops.discard(None);
        self.establish_unit_attention(SenseReason::BusDeviceResetFunction, None);
    }

    /// SAM-5 §6.3.4 I_T nexus loss: drop the nexus' reservation and queue, then leave I_T
    /// NEXUS LOSS OCCURRED for when it logs back in.
    pub(crate) fn nexus_lost(&self, nexus: &ItNexus) {
        let port = nexus.initiator_port();
        self.copies.discard(Some(port));
        self.rod_ops.discard(Some(port));
        let mut state = self.state();
        if state.reservation.as_ref() == Some(port) {
            state.reservation = None;
        }
        if let Some(queue) = state.unit_attentions.get_mut(nexus) {
            queue.clear();
            queue.push_back(SenseReason::ItNexusLoss);
        }
    }
}

/// Decodes the 8-byte SAM LUN field (SAM-5 §4.7): peripheral (00b, bus 0) or flat space (01b)
/// single-level addressing only. Anything else names no LUN of ours.
pub fn decode_lun(field: u64) -> Option<u64> {
    let bytes = field.to_be_bytes();
    if bytes[2..].iter().any(|&b| b != 0) {
        return None;
    }
    match bytes[0] >> 6 {
        0b00 if bytes[0] == 0 => Some(bytes[1] as u64),
        0b01 => Some((((bytes[0] & 0x3F) as u64) << 8) | bytes[1] as u64),
        _ => None,
    }
}

/// Encodes a LUN for REPORT LUNS (SAM-5 §4.7): peripheral addressing up to 255, flat above.
pub fn encode_lun(id: u64) -> [u8; 8] {
    let mut out = [0u8; 8];
    if id <= 255 {
        out[1] = id as u8;
    } else {
        out[0] = 0x40 | ((id >> 8) as u8 & 0x3F);
        out[1] = id as u8;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    fn nexus(isid: u8) -> ItNexus {
        ItNexus::new("iqn.init", [0, 0, 0, 0, 0, isid], "iqn.tgt", 1)
    }

    #[test]
    fn lun_addressing_round_trips() {
        assert_eq!(encode_lun(5), [0, 5, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode_lun(300), [0x41, 0x2C, 0, 0, 0, 0, 0, 0]);
        for id in [0, 1, 255, 256, 300, MAX_LUN] {
            assert_eq!(decode_lun(u64::from_be_bytes(encode_lun(id))), Some(id));
        }
        // Flat addressing of a small LUN is also accepted.
        assert_eq!(decode_lun(0x4005_0000_0000_0000), Some(5));
        assert_eq!(decode_lun(0x0105_0000_0000_0000), None); // bus 1
        assert_eq!(decode_lun(0x0005_0000_0000_0001), None); // second level
        assert_eq!(decode_lun(0xC000_0000_0000_0000), None); // extended
    }

    #[test]
    fn rejects_bad_geometry() {
        let id = LunIdentity::new("disk", "0001", "S1");
        assert!(Lun::new(0, Backend::Memory(MemoryBackend::new(8192)), 1024, id.clone(), false).is_err());
        assert!(Lun::new(0, Backend::Memory(MemoryBackend::new(100)), 512, id.clone(), false).is_err());
        assert!(Lun::new(MAX_LUN + 1, Backend::Memory(MemoryBackend::new(8192)), 512, id, false).is_err());
    }

    #[test]
    fn unit_attention_lifecycle() {
        let id = LunIdentity::new("disk", "0001", "S1");
        assert_eq!(id.naa >> 60, 5);
        assert_eq!((id.naa >> 36) & 0xFF_FFFF, LOCAL_COMPANY_ID);
        let lun = Lun::new(0, Backend::Memory(MemoryBackend::new(8192)), 512, id, false).unwrap();
        let (a, b) = (nexus(1), nexus(2));
        assert_eq!(lun.take_unit_attention(&a), Some(SenseReason::PowerOnReset));
        assert_eq!(lun.take_unit_attention(&a), None);
        lun.establish_unit_attention(SenseReason::ModeParametersChanged, Some(&a));
        assert_eq!(lun.take_unit_attention(&a), None);
        // b was never seen: power on first, then nothing (it did not exist when the change happened).
        assert_eq!(lun.take_unit_attention(&b), Some(SenseReason::PowerOnReset));
        assert_eq!(lun.take_unit_attention(&b), None);
        lun.reset();
        assert_eq!(lun.take_unit_attention(&a), Some(SenseReason::BusDeviceResetFunction));
        assert_eq!(lun.take_unit_attention(&b), Some(SenseReason::BusDeviceResetFunction));
        lun.nexus_lost(&a);
        assert_eq!(lun.take_unit_attention(&a), Some(SenseReason::ItNexusLoss));
    }
}
