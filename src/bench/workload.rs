//! Which I/O comes next: pattern, LBA choice and, under `--verify`, the per-unit bookkeeping that
//! keeps verification sound (no two commands on the same unit at once; the generation of the last
//! completed write to each unit).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::pattern::XorShift;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    Read,
    Write,
    Randread,
    Randwrite,
    /// Random reads and writes, `--read-pct` of them reads.
    Mixed,
    /// PERSISTENT RESERVE OUT, REGISTER AND IGNORE EXISTING KEY with a new key each time: every
    /// command changes the reservation state (PRgeneration), so this measures what a change
    /// costs — on a cluster gateway the etcd commit and the barrier. Reported as writes of
    /// the 24-byte parameter list; `--block-size` only picks the region.
    Prout,
}

impl Pattern {
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Read => "read",
            Pattern::Write => "write",
            Pattern::Randread => "randread",
            Pattern::Randwrite => "randwrite",
            Pattern::Mixed => "mixed",
            Pattern::Prout => "prout",
        }
    }

    pub fn is_sequential(self) -> bool {
        matches!(self, Pattern::Read | Pattern::Write)
    }
}

/// The I/O region of one LUN, cut into units of one I/O each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub first_lba: u64,
    /// Logical blocks per I/O.
    pub io_blocks: u64,
    pub units: u64,
}

impl Region {
    pub fn lba_of(&self, unit: u64) -> u64 {
        self.first_lba + unit * self.io_blocks
    }
}

/// State shared by all sessions that drive one LUN.
pub struct LunState {
    pub region: Region,
    pub block_len: u32,
    cursor: AtomicU64,
    pub verify: Option<VerifyMap>,
}

/// Verification state, one entry per unit.
pub struct VerifyMap {
    busy: Vec<AtomicBool>,
    last_generation: Vec<AtomicU64>,
}

/// Units tracked under `--verify` at most (2^26 units = 1 GiB of state): beyond that, narrow
/// `--lba-range` or use larger blocks.
pub const MAX_VERIFY_UNITS: u64 = 1 << 26;

impl VerifyMap {
    fn new(units: u64) -> VerifyMap {
        VerifyMap {
            busy: (0..units).map(|_| AtomicBool::new(false)).collect(),
            last_generation: (0..units).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn try_claim(&self, unit: u64) -> bool {
        self.busy[unit as usize].compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    pub fn release(&self, unit: u64) {
        self.busy[unit as usize].store(false, Ordering::Release);
    }

    /// Generation of the last completed write of this run (None if it wrote none).
    pub fn expected(&self, unit: u64) -> Option<u64> {
        match self.last_generation[unit as usize].load(Ordering::Acquire) {
            0 => None,
            g => Some(g),
        }
    }

    pub fn written(&self, unit: u64, generation: u64) {
        self.last_generation[unit as usize].store(generation, Ordering::Release);
    }
}

impl LunState {
    pub fn new(region: Region, block_len: u32, verify: bool) -> LunState {
        LunState { region, block_len, cursor: AtomicU64::new(0), verify: verify.then(|| VerifyMap::new(region.units)) }
    }

    /// Picks the next unit for `pattern`. With verification on, the unit is claimed (released by
    /// the caller on completion); `None` means every candidate tried is busy right now.
    pub fn next_unit(&self, pattern: Pattern, rng: &mut XorShift) -> Option<u64> {
        let units = self.region.units;
        if pattern.is_sequential() {
            loop {
                let c = self.cursor.load(Ordering::Relaxed);
                let unit = c % units;
                if let Some(v) = &self.verify {
                    if !v.try_claim(unit) {
                        return None;
                    }
                    if self.cursor.compare_exchange(c, c + 1, Ordering::Relaxed, Ordering::Relaxed).is_err() {
                        v.release(unit);
                        continue;
                    }
                } else if self.cursor.compare_exchange_weak(c, c + 1, Ordering::Relaxed, Ordering::Relaxed).is_err() {
                    continue;
                }
                return Some(unit);
            }
        }
        for _ in 0..8 {
            let unit = rng.below(units);
            match &self.verify {
                Some(v) if !v.try_claim(unit) => continue,
                _ => return Some(unit),
            }
        }
        None
    }
}

/// Whether the next I/O of `pattern` is a write.
pub fn is_write(pattern: Pattern, read_pct: u8, rng: &mut XorShift) -> bool {
    match pattern {
        Pattern::Read | Pattern::Randread => false,
        Pattern::Write | Pattern::Randwrite | Pattern::Prout => true,
        Pattern::Mixed => rng.below(100) >= read_pct as u64,
    }
}

/// Write generations: the run id in the upper half, a counter in the lower.
pub struct Generations {
    run_id: u64,
    counter: AtomicU32,
}

impl Generations {
    pub fn new(run_id: u32) -> Generations {
        Generations { run_id: (run_id.max(1) as u64) << 32, counter: AtomicU32::new(0) }
    }

    pub fn next(&self) -> u64 {
        self.run_id | (self.counter.fetch_add(1, Ordering::Relaxed) as u64 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(units: u64) -> Region {
        Region { first_lba: 100, io_blocks: 8, units }
    }

    #[test]
    fn sequential_walks_and_wraps() {
        let lun = LunState::new(region(3), 512, false);
        let mut rng = XorShift::new(1);
        let got: Vec<u64> = (0..5).map(|_| lun.next_unit(Pattern::Read, &mut rng).unwrap()).collect();
        assert_eq!(got, vec![0, 1, 2, 0, 1]);
        assert_eq!(lun.region.lba_of(2), 116);
    }

    #[test]
    fn verify_never_hands_out_a_busy_unit() {
        let lun = LunState::new(region(2), 512, true);
        let mut rng = XorShift::new(7);
        let a = lun.next_unit(Pattern::Write, &mut rng).unwrap();
        let b = lun.next_unit(Pattern::Write, &mut rng).unwrap();
        assert_eq!((a, b), (0, 1));
        assert_eq!(lun.next_unit(Pattern::Write, &mut rng), None, "both units are in flight");
        lun.verify.as_ref().unwrap().release(0);
        assert_eq!(lun.next_unit(Pattern::Write, &mut rng), Some(0));
        // Random picks skip claimed units too.
        lun.verify.as_ref().unwrap().release(1);
        assert_eq!(lun.next_unit(Pattern::Randread, &mut rng), Some(1));
        assert_eq!(lun.next_unit(Pattern::Randread, &mut rng), None);
    }

    #[test]
    fn mixed_honours_read_percentage() {
        let mut rng = XorShift::new(3);
        let writes = (0..10_000).filter(|_| is_write(Pattern::Mixed, 70, &mut rng)).count();
        assert!((2_700..3_300).contains(&writes), "{writes} writes of 10000 at 70 % reads");
        assert!(!is_write(Pattern::Randread, 0, &mut rng));
        assert!(is_write(Pattern::Write, 100, &mut rng));
    }

    #[test]
    fn generations_increase_within_a_run() {
        let g = Generations::new(5);
        let (a, b) = (g.next(), g.next());
        assert!(b > a && a >> 32 == 5);
    }
}
