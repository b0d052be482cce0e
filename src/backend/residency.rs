//! Residency of a tmpfs/ramfs file's mapping, remembered per 2 MiB region, so that the mapped
//! read and write paths need no mincore(2) per command once a region is known whole (issue 13:
//! that system call was most of the file LUN's extra CPU over the memory LUN at 4 KiB QD32).
//!
//! Why a remembered answer stays true: a page of a memory file system leaves memory only by
//! - a hole punch: ours (UNMAP) calls [`RegionCache::forget`] after it; one by another process
//!   makes a later touch allocate a zero page, which is what the hole reads as anyway (and a
//!   full tmpfs then raises SIGBUS, which the truncation guard in mapped.rs turns into a lost
//!   mapping, as for a truncation);
//! - a truncation: the guard in mapped.rs;
//! - swap-out: only with swap on, and then nothing is trusted (see [`swap_active`]), so a touch
//!   never waits for a swap device on a runtime thread.
//!
//! Page-cache eviction of a disk file's pages is none of these: disk files keep mincore.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};

/// Granularity of what is remembered: a huge page's worth, 512 bits of state per GiB.
pub(crate) const REGION: usize = 2 << 20;

/// Not checked yet, or changed since (a hole punched, a hole filled).
const UNKNOWN: u8 = 0;
/// Every page of the region was resident when checked and none has left since.
const RESIDENT: u8 = 1;
/// Checked and found with holes: reads there check their own pages (mincore) each time.
const PARTIAL: u8 = 2;

#[derive(Debug)]
pub(crate) struct RegionCache {
    len: usize,
    state: Box<[AtomicU8]>,
    /// Bumped by every `forget`: a check that raced one does not record its stale answer.
    forgets: AtomicU64,
}

impl RegionCache {
    /// For a mapping of `len` bytes.
    pub(crate) fn new(len: usize) -> RegionCache {
        let state = (0..len.div_ceil(REGION)).map(|_| AtomicU8::new(UNKNOWN)).collect();
        RegionCache { len, state, forgets: AtomicU64::new(0) }
    }

    /// True when every region [offset, offset + len) touches is known resident. The caller has
    /// bounds-checked the range against the mapping.
    pub(crate) fn known_resident(&self, offset: usize, len: usize) -> bool {
        self.regions(offset, len).all(|r| self.state[r].load(Ordering::Acquire) == RESIDENT) && !swap_active()
    }

    /// After the range's own pages were found resident: checks, once each, the regions it
    /// touches with `whole_resident(offset, len)` (mincore over the region) and remembers them.
    pub(crate) fn learn(&self, offset: usize, len: usize, whole_resident: impl Fn(usize, usize) -> bool) {
        for r in self.regions(offset, len) {
            if self.state[r].load(Ordering::Acquire) != UNKNOWN {
                continue;
            }
            let before = self.forgets.load(Ordering::SeqCst);
            let start = r * REGION;
            let found = if whole_resident(start, REGION.min(self.len - start)) { RESIDENT } else { PARTIAL };
            self.state[r].store(found, Ordering::SeqCst);
            // A forget after our check may have cleared the region before our store: undo. (A
            // forget after this load clears the region itself, after our store.)
            if self.forgets.load(Ordering::SeqCst) != before {
                self.state[r].store(UNKNOWN, Ordering::SeqCst);
            }
        }
    }

    /// Pages of the range left memory (a hole was punched): call after the punch.
    pub(crate) fn forget(&self, offset: usize, len: usize) {
        self.forgets.fetch_add(1, Ordering::SeqCst);
        for r in self.regions(offset, len) {
            self.state[r].store(UNKNOWN, Ordering::SeqCst);
        }
    }

    /// Pages of the range were written by another path (holes may have filled): regions found
    /// with holes are checked again when next read.
    pub(crate) fn filled(&self, offset: usize, len: usize) {
        for r in self.regions(offset, len) {
            let _ = self.state[r].compare_exchange(PARTIAL, UNKNOWN, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    fn regions(&self, offset: usize, len: usize) -> std::ops::Range<usize> {
        let end = offset.saturating_add(len.max(1)).min(self.len);
        (offset / REGION).min(self.state.len())..end.div_ceil(REGION)
    }
}

/// Whether any swap area is on (/proc/swaps lists one), re-read at most once a second: with
/// swap, tmpfs pages can leave memory at any time and only mincore is trusted. Unreadable
/// counts as on.
fn swap_active() -> bool {
    static CHECKED_AT: AtomicI64 = AtomicI64::new(i64::MIN);
    static ACTIVE: AtomicBool = AtomicBool::new(true);
    let now = coarse_seconds();
    let last = CHECKED_AT.load(Ordering::Acquire);
    if now != last && CHECKED_AT.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
        // procfs: answered from memory, never a disk, so fine on a runtime thread.
        let active = std::fs::read_to_string("/proc/swaps").map(|s| s.lines().count() > 1).unwrap_or(true);
        ACTIVE.store(active, Ordering::Release);
    }
    ACTIVE.load(Ordering::Acquire)
}

/// CLOCK_MONOTONIC_COARSE in whole seconds (vDSO: no system call).
fn coarse_seconds() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_learned_forgotten_and_rechecked_after_fills() {
        let cache = RegionCache::new(3 * REGION + 4096);
        assert!(!cache.known_resident(0, 4096), "nothing known at first");
        cache.learn(REGION - 4096, 8192, |_, _| true);
        // With swap on nothing is trusted; the rest holds either way.
        let trusted = !swap_active();
        assert_eq!(cache.known_resident(0, 2 * REGION), trusted, "both regions the range touched");
        assert!(!cache.known_resident(0, 2 * REGION + 1), "the third was not checked");
        cache.learn(3 * REGION, 4096, |start, len| {
            assert_eq!((start, len), (3 * REGION, 4096), "the last region is short");
            false
        });
        assert!(!cache.known_resident(3 * REGION, 10), "a region with holes is not known");
        cache.filled(3 * REGION, 10);
        cache.learn(3 * REGION, 4096, |_, _| true);
        assert_eq!(cache.known_resident(3 * REGION, 4096), trusted, "rechecked once filled");
        cache.forget(REGION + 100, 1);
        assert!(!cache.known_resident(REGION, 10), "a punched region is forgotten");
        assert_eq!(cache.known_resident(0, 10), trusted, "its neighbour is not");
    }

    #[test]
    fn a_check_that_raced_a_forget_is_not_recorded() {
        let cache = RegionCache::new(REGION);
        cache.learn(0, 4096, |_, _| {
            cache.forget(0, 4096); // the hole punch lands while mincore runs
            true
        });
        assert!(!cache.known_resident(0, 4096));
    }
}
