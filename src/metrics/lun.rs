//! Per-LUN command statistics. Each SCSI command gets a [`CommandProbe`] when it arrives and
//! finishes it when its response is queued: one clock read at each end and four or five relaxed
//! atomic additions in between. Counts need no ordering with anything else, so `Relaxed` is
//! enough; a scrape may see one command's counters half-updated, which Prometheus tolerates.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// Upper bounds (µs) of the latency histogram buckets; one more bucket holds everything slower.
pub const LATENCY_BUCKETS_MICROS: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];
const BUCKETS: usize = LATENCY_BUCKETS_MICROS.len() + 1;

/// What a command does to the medium, by opcode (SBC-3 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Read = 0,
    Write = 1,
    Other = 2,
}

impl OpKind {
    pub const ALL: [OpKind; 3] = [OpKind::Read, OpKind::Write, OpKind::Other];

    pub fn of(opcode: u8) -> OpKind {
        match opcode {
            // READ (6/10/12/16).
            0x08 | 0x28 | 0xA8 | 0x88 => OpKind::Read,
            // WRITE (6/10/12/16), WRITE AND VERIFY (10/12/16), WRITE SAME (10/16), COMPARE AND WRITE.
            0x0A | 0x2A | 0xAA | 0x8A | 0x2E | 0xAE | 0x8E | 0x41 | 0x93 | 0x89 => OpKind::Write,
            _ => OpKind::Other,
        }
    }

    pub fn name(self) -> &'static str {
        ["read", "write", "other"][self as usize]
    }
}

/// Why a command did not end GOOD: its status, and for CHECK CONDITION the sense key
/// (SAM-5 §5.3, SPC-4 §4.5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotReady,
    MediumError,
    HardwareError,
    IllegalRequest,
    UnitAttention,
    DataProtect,
    AbortedCommand,
    Miscompare,
    OtherSense,
    ReservationConflict,
    Busy,
    TaskSetFull,
    TaskAborted,
    OtherStatus,
    /// Ended without any response: aborted by task management, PREEMPT AND ABORT, or the
    /// connection closing.
    NoResponse,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 15] = [
        ErrorKind::NotReady,
        ErrorKind::MediumError,
        ErrorKind::HardwareError,
        ErrorKind::IllegalRequest,
        ErrorKind::UnitAttention,
        ErrorKind::DataProtect,
        ErrorKind::AbortedCommand,
        ErrorKind::Miscompare,
        ErrorKind::OtherSense,
        ErrorKind::ReservationConflict,
        ErrorKind::Busy,
        ErrorKind::TaskSetFull,
        ErrorKind::TaskAborted,
        ErrorKind::OtherStatus,
        ErrorKind::NoResponse,
    ];

    /// None for GOOD (and CONDITION MET, which is a success too).
    pub fn classify(status: u8, sense: Option<&[u8]>) -> Option<ErrorKind> {
        Some(match status {
            0x00 | 0x04 => return None,
            0x02 => match sense_key(sense) {
                Some(0x2) => ErrorKind::NotReady,
                Some(0x3) => ErrorKind::MediumError,
                Some(0x4) => ErrorKind::HardwareError,
                Some(0x5) => ErrorKind::IllegalRequest,
                Some(0x6) => ErrorKind::UnitAttention,
                Some(0x7) => ErrorKind::DataProtect,
                Some(0xB) => ErrorKind::AbortedCommand,
                Some(0xE) => ErrorKind::Miscompare,
                _ => ErrorKind::OtherSense,
            },
            0x08 => ErrorKind::Busy,
            0x18 => ErrorKind::ReservationConflict,
            0x28 => ErrorKind::TaskSetFull,
            0x40 => ErrorKind::TaskAborted,
            _ => ErrorKind::OtherStatus,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::NotReady => "not_ready",
            ErrorKind::MediumError => "medium_error",
            ErrorKind::HardwareError => "hardware_error",
            ErrorKind::IllegalRequest => "illegal_request",
            ErrorKind::UnitAttention => "unit_attention",
            ErrorKind::DataProtect => "data_protect",
            ErrorKind::AbortedCommand => "aborted_command",
            ErrorKind::Miscompare => "miscompare",
            ErrorKind::OtherSense => "other_sense",
            ErrorKind::ReservationConflict => "reservation_conflict",
            ErrorKind::Busy => "busy",
            ErrorKind::TaskSetFull => "task_set_full",
            ErrorKind::TaskAborted => "task_aborted",
            ErrorKind::OtherStatus => "other_status",
            ErrorKind::NoResponse => "no_response",
        }
    }
}

/// SPC-4 §4.5.2 / §4.5.3: the sense key of fixed (70h/71h) or descriptor (72h/73h) sense data.
fn sense_key(sense: Option<&[u8]>) -> Option<u8> {
    let s = sense?;
    match s.first()? & 0x7F {
        0x70 | 0x71 => s.get(2).map(|b| b & 0x0F),
        0x72 | 0x73 => s.get(1).map(|b| b & 0x0F),
        _ => None,
    }
}

/// A reservation change that completed with GOOD: the PERSISTENT RESERVE OUT service actions
/// (SPC-4 §6.16.2 Table 213) and SPC-2 RESERVE / RELEASE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrEvent {
    Register,
    Reserve,
    Release,
    Clear,
    Preempt,
    PreemptAndAbort,
    RegisterAndIgnoreExistingKey,
    RegisterAndMove,
    Spc2Reserve,
    Spc2Release,
}

impl PrEvent {
    pub const ALL: [PrEvent; 10] = [
        PrEvent::Register,
        PrEvent::Reserve,
        PrEvent::Release,
        PrEvent::Clear,
        PrEvent::Preempt,
        PrEvent::PreemptAndAbort,
        PrEvent::RegisterAndIgnoreExistingKey,
        PrEvent::RegisterAndMove,
        PrEvent::Spc2Reserve,
        PrEvent::Spc2Release,
    ];

    /// The event a CDB asks for, if it is a reservation command.
    pub fn of(cdb: &[u8]) -> Option<PrEvent> {
        Some(match (cdb.first()?, cdb.get(1).map(|b| b & 0x1F)) {
            (0x5F, Some(action)) => *PrEvent::ALL[..8].get(action as usize)?,
            (0x16 | 0x56, _) => PrEvent::Spc2Reserve,
            (0x17 | 0x57, _) => PrEvent::Spc2Release,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            PrEvent::Register => "register",
            PrEvent::Reserve => "reserve",
            PrEvent::Release => "release",
            PrEvent::Clear => "clear",
            PrEvent::Preempt => "preempt",
            PrEvent::PreemptAndAbort => "preempt_and_abort",
            PrEvent::RegisterAndIgnoreExistingKey => "register_and_ignore_existing_key",
            PrEvent::RegisterAndMove => "register_and_move",
            PrEvent::Spc2Reserve => "spc2_reserve",
            PrEvent::Spc2Release => "spc2_release",
        }
    }
}

/// The counters of one logical unit.
#[derive(Debug, Default)]
pub struct LunStats {
    /// Commands ended, answered or not, by [`OpKind`].
    commands: [AtomicU64; 3],
    /// Bytes moved by GOOD reads and writes.
    bytes: [AtomicU64; 2],
    errors: [AtomicU64; ErrorKind::ALL.len()],
    /// Non-cumulative bucket counts per [`OpKind`]; cumulated at render time.
    latency: [[AtomicU64; BUCKETS]; 3],
    latency_sum_micros: [AtomicU64; 3],
    pr_events: [AtomicU64; PrEvent::ALL.len()],
}

/// A consistent-enough copy of [`LunStats`] for rendering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LunCounts {
    pub commands: [u64; 3],
    pub bytes: [u64; 2],
    pub errors: [u64; ErrorKind::ALL.len()],
    pub latency: [[u64; BUCKETS]; 3],
    pub latency_sum_micros: [u64; 3],
    pub pr_events: [u64; PrEvent::ALL.len()],
}

impl LunStats {
    fn record(&self, op: OpKind, event: Option<PrEvent>, status: u8, sense: Option<&[u8]>, bytes: u64, micros: u64) {
        let i = op as usize;
        self.commands[i].fetch_add(1, Relaxed);
        let bucket = LATENCY_BUCKETS_MICROS.iter().position(|&b| micros <= b).unwrap_or(BUCKETS - 1);
        self.latency[i][bucket].fetch_add(1, Relaxed);
        self.latency_sum_micros[i].fetch_add(micros, Relaxed);
        match ErrorKind::classify(status, sense) {
            Some(kind) => {
                self.errors[kind as usize].fetch_add(1, Relaxed);
            }
            None => {
                if op != OpKind::Other {
                    self.bytes[i].fetch_add(bytes, Relaxed);
                }
                if let Some(e) = event {
                    self.pr_events[e as usize].fetch_add(1, Relaxed);
                }
            }
        }
    }

    fn record_unanswered(&self, op: OpKind) {
        self.commands[op as usize].fetch_add(1, Relaxed);
        self.errors[ErrorKind::NoResponse as usize].fetch_add(1, Relaxed);
    }

    pub fn counts(&self) -> LunCounts {
        let load = |a: &AtomicU64| a.load(Relaxed);
        LunCounts {
            commands: self.commands.each_ref().map(load),
            bytes: self.bytes.each_ref().map(load),
            errors: self.errors.each_ref().map(load),
            latency: self.latency.each_ref().map(|row| row.each_ref().map(load)),
            latency_sum_micros: self.latency_sum_micros.each_ref().map(load),
            pr_events: self.pr_events.each_ref().map(load),
        }
    }
}

/// One command in flight, from arrival to response. Dropped without [`finish`](Self::finish)
/// (the task was aborted or its connection closed), it counts as [`ErrorKind::NoResponse`].
#[derive(Debug)]
pub struct CommandProbe {
    stats: Option<Arc<LunStats>>,
    op: OpKind,
    event: Option<PrEvent>,
    start: Instant,
}

impl CommandProbe {
    /// `stats`: the addressed LUN's counters (None for a LUN that does not exist: nothing is
    /// counted). `cdb`: the command descriptor block.
    pub fn start(stats: Option<Arc<LunStats>>, cdb: &[u8]) -> CommandProbe {
        CommandProbe {
            op: cdb.first().map_or(OpKind::Other, |&op| OpKind::of(op)),
            event: PrEvent::of(cdb),
            stats,
            start: Instant::now(),
        }
    }

    /// The command's status is known and its response is about to be sent; `bytes` is the data
    /// it moved (counted only when the status is GOOD).
    pub fn finish(&mut self, status: u8, sense: Option<&[u8]>, bytes: u64) {
        if let Some(stats) = self.stats.take() {
            let micros = self.start.elapsed().as_micros().min(u64::MAX as u128) as u64;
            stats.record(self.op, self.event, status, sense, bytes, micros);
        }
    }
}

impl Drop for CommandProbe {
    fn drop(&mut self) {
        if let Some(stats) = self.stats.take() {
            stats.record_unanswered(self.op);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(stats: &Arc<LunStats>, cdb: &[u8]) -> CommandProbe {
        CommandProbe::start(Some(stats.clone()), cdb)
    }

    #[test]
    fn commands_bytes_and_errors_are_counted_by_kind() {
        let stats = Arc::new(LunStats::default());
        for _ in 0..3 {
            probe(&stats, &[0x2A, 0, 0, 0, 0, 0, 0, 0, 8, 0]).finish(0, None, 4096);
        }
        probe(&stats, &[0x88; 16]).finish(0, None, 512);
        // An unreadable block: fixed-format sense, MEDIUM ERROR.
        let medium = [0x70, 0, 0x03, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x11, 0];
        probe(&stats, &[0x28; 10]).finish(0x02, Some(&medium), 512);
        // Descriptor-format ILLEGAL REQUEST on an INQUIRY; a RESERVATION CONFLICT on a write.
        probe(&stats, &[0x12; 6]).finish(0x02, Some(&[0x72, 0x05, 0x24, 0x00]), 0);
        probe(&stats, &[0x8A; 16]).finish(0x18, None, 4096);
        drop(probe(&stats, &[0x2A; 10]));
        let c = stats.counts();
        assert_eq!(c.commands, [2, 5, 1]);
        assert_eq!(c.bytes, [512, 3 * 4096], "failed commands move no counted bytes");
        assert_eq!(c.errors[ErrorKind::MediumError as usize], 1);
        assert_eq!(c.errors[ErrorKind::IllegalRequest as usize], 1);
        assert_eq!(c.errors[ErrorKind::ReservationConflict as usize], 1);
        assert_eq!(c.errors[ErrorKind::NoResponse as usize], 1);
        assert_eq!(c.errors.iter().sum::<u64>(), 4);
        // The aborted write has no latency; every answered command has exactly one bucket.
        assert_eq!(c.latency[OpKind::Write as usize].iter().sum::<u64>(), 4);
        assert_eq!(c.latency[OpKind::Read as usize].iter().sum::<u64>(), 2);
    }

    #[test]
    fn a_finished_probe_counts_once_and_a_probe_without_lun_counts_nothing() {
        let stats = Arc::new(LunStats::default());
        let mut p = probe(&stats, &[0x00; 6]);
        p.finish(0, None, 0);
        p.finish(0, None, 0);
        drop(p);
        assert_eq!(stats.counts().commands, [0, 0, 1]);
        assert_eq!(stats.counts().errors.iter().sum::<u64>(), 0);
        CommandProbe::start(None, &[0x28; 10]).finish(0, None, 512);
    }

    #[test]
    fn reservation_events_count_only_when_good() {
        let stats = Arc::new(LunStats::default());
        probe(&stats, &[0x5F, 0x06, 0, 0, 0, 0, 0, 0, 24, 0]).finish(0, None, 0);
        probe(&stats, &[0x5F, 0x01, 0x05, 0, 0, 0, 0, 0, 24, 0]).finish(0, None, 0);
        probe(&stats, &[0x5F, 0x05, 0x05, 0, 0, 0, 0, 0, 24, 0]).finish(0x18, None, 0);
        probe(&stats, &[0x16, 0, 0, 0, 0, 0]).finish(0, None, 0);
        let c = stats.counts();
        assert_eq!(c.pr_events[PrEvent::RegisterAndIgnoreExistingKey as usize], 1);
        assert_eq!(c.pr_events[PrEvent::Reserve as usize], 1);
        assert_eq!(c.pr_events[PrEvent::PreemptAndAbort as usize], 0);
        assert_eq!(c.pr_events[PrEvent::Spc2Reserve as usize], 1);
        assert_eq!(PrEvent::of(&[0x5F, 0x1F]), None, "reserved service action");
    }

    #[test]
    fn latency_lands_in_the_first_bucket_that_holds_it() {
        let stats = LunStats::default();
        stats.record(OpKind::Read, None, 0, None, 0, 0);
        stats.record(OpKind::Read, None, 0, None, 0, 100);
        stats.record(OpKind::Read, None, 0, None, 0, 101);
        stats.record(OpKind::Read, None, 0, None, 0, 60_000_000);
        let c = stats.counts();
        let read = &c.latency[0];
        assert_eq!((read[0], read[1], read[2], read[BUCKETS - 1]), (1, 1, 1, 1));
        assert_eq!(c.latency_sum_micros[0], 60_000_201);
    }
}
