//! A shared mapping of a file LUN (memmap2), the page-cache read path with one copy: a read of
//! [`ZERO_COPY_MIN`] bytes or more is a `Bytes` view of the mapping that `writev` copies straight
//! from the page cache to the socket; a smaller one is copied out of it (no system call). On a
//! file on tmpfs, whose pages are memory, writes to resident pages are copies into the mapping
//! too: no system call and no inode lock, which `pwrite` takes for every write to the file, so
//! concurrent writes to different blocks run in parallel as on the memory LUN. (On a disk file
//! the first store to a clean page starts a journal transaction and may sleep: writes there stay
//! positional.) Two guards:
//!
//! - Residency: `mincore(2)` must report every page of the range in the page cache, else the
//!   read takes the positional path (preadv2 RWF_NOWAIT, then the blocking pool), so touching
//!   the mapping never waits for a disk on a runtime thread. On a memory file system the answer
//!   is remembered per 2 MiB region (residency.rs), so mincore runs once per region, not per
//!   command.
//! - Length: the mapping covers the LUN's size, fixed at open. A file truncated under the server
//!   (an administrator's error) would make a touch of a vanished page raise SIGBUS; the handler
//!   installed by [`guard_truncation`] maps a zero page over that page instead, marks the mapping
//!   lost (later reads and writes take the positional path, which reports the short file as an
//!   I/O error) and lets the process go on. The kernel's own copy (`writev`) of a vanished page
//!   fails with EFAULT, never a signal. Writes go only to pages mincore found resident, so a
//!   store never allocates a tmpfs page (which could fail with SIGBUS when tmpfs is full).
//!
//! A view shows the page cache as it is when the socket takes it: a write to the same blocks
//! that lands before that is visible, as for any read that overlaps a write in flight.

use super::residency::RegionCache;
use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once};

/// Reads at least this long are views of the mapping; shorter ones are copied (a copy of a
/// few KiB costs less than the refcounted view's bookkeeping and frees the page at once).
pub(crate) const ZERO_COPY_MIN: usize = 128 * 1024;

/// Mappings the SIGBUS handler knows; more mapped LUNs than this simply read positionally.
const SLOTS: usize = 1024;

/// One registered mapping: [start, end) of its addresses, and whether a page vanished.
struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
    lost: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)] // the array initialiser below, nothing else
const EMPTY: Slot = Slot { start: AtomicUsize::new(0), end: AtomicUsize::new(0), lost: AtomicBool::new(false) };
static REGISTRY: [Slot; SLOTS] = [EMPTY; SLOTS];

#[derive(Debug)]
pub(crate) struct MappedFile {
    map: Arc<Mapping>,
}

#[derive(Debug)]
struct Mapping {
    map: MmapRaw,
    writable: bool,
    slot: usize,
    /// Residency remembered per region; only for a file whose pages are memory.
    regions: Option<RegionCache>,
}

impl Mapping {
    fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        assert!(offset + len <= self.map.len());
        // SAFETY: in bounds (checked); the mapping lives as long as `self`. Its bytes may change
        // under the slice (writes to the file), which is what a view of the page cache means.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(offset), len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        let slot = &REGISTRY[self.slot];
        slot.end.store(0, Ordering::Release);
        slot.start.store(0, Ordering::Release);
    }
}

/// A view of part of the mapping that keeps the mapping alive while the socket holds it.
struct View {
    map: Arc<Mapping>,
    offset: usize,
    len: usize,
}

impl AsRef<[u8]> for View {
    fn as_ref(&self) -> &[u8] {
        self.map.bytes(self.offset, self.len)
    }
}

impl MappedFile {
    /// Maps the first `size` bytes of `file`, for writing too when `writable` (the file must be
    /// open for writing); None when the file cannot be mapped or every slot is taken (the LUN
    /// then reads and writes positionally). `memory_backed`: the file is on tmpfs/ramfs, whose
    /// pages leave memory only in ways residency.rs accounts for, so residency is remembered.
    pub(crate) fn new(file: &File, size: u64, writable: bool, memory_backed: bool) -> Option<MappedFile> {
        let len = usize::try_from(size).ok().filter(|&l| l > 0)?;
        guard_truncation();
        // Pages can change under us (writes through the file), which views document, and can
        // vanish on truncation, which the SIGBUS guard turns into zero pages and a lost flag.
        let mut options = MmapOptions::new();
        options.len(len);
        let map = if writable { options.map_raw(file) } else { options.map_raw_read_only(file) }.ok()?;
        let start = map.as_ptr() as usize;
        let slot = (0..SLOTS)
            .find(|&i| REGISTRY[i].start.compare_exchange(0, start, Ordering::AcqRel, Ordering::Acquire).is_ok())?;
        REGISTRY[slot].lost.store(false, Ordering::Release);
        REGISTRY[slot].end.store(start + len, Ordering::Release);
        let regions = memory_backed.then(|| RegionCache::new(len));
        Some(MappedFile { map: Arc::new(Mapping { map, writable, slot, regions }) })
    }

    /// The range's bytes if every page of it is in the page cache and the mapping is intact;
    /// None sends the caller to the positional path. The caller has range-checked it.
    pub(crate) fn read_resident(&self, offset: u64, len: usize) -> Option<Bytes> {
        let offset = usize::try_from(offset).ok()?;
        if !self.usable(offset, len) {
            return None;
        }
        if len >= ZERO_COPY_MIN {
            return Some(Bytes::from_owner(View { map: self.map.clone(), offset, len }));
        }
        let copy = Bytes::copy_from_slice(self.map.bytes(offset, len));
        // A truncation during the copy left zero pages in it: not data. The positional path
        // then reports what the file system says (EOF or EIO: MEDIUM ERROR).
        (!self.lost()).then_some(copy)
    }

    /// Copies the segments back to back into the mapping at `offset` if it is writable, intact
    /// and every page of the range is resident; false (nothing written) sends the caller to the
    /// positional path. The caller has range-checked it.
    ///
    /// Err: the file lost pages under the mapping while the segments were being copied (a
    /// truncation; the SIGBUS guard put zero pages there), so the data may have gone nowhere.
    pub(crate) fn write_resident(&self, offset: u64, segments: &[Bytes]) -> std::io::Result<bool> {
        let Ok(offset) = usize::try_from(offset) else { return Ok(false) };
        let len: usize = segments.iter().map(|s| s.len()).sum();
        if !self.map.writable || !self.usable(offset, len) {
            return Ok(false);
        }
        let mut at = offset;
        for segment in segments {
            // SAFETY: [at, at + len) lies in the mapping (usable checked the whole range), which
            // is mapped writable; the source is a separate heap buffer, so they do not overlap.
            unsafe { super::stream_copy::copy_to(self.map.map.as_mut_ptr().add(at), segment) };
            at += segment.len();
        }
        if self.lost() {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(true)
    }

    /// Pages of the range left the file (a hole was punched): call after the punch.
    pub(crate) fn forget(&self, offset: u64, len: u64) {
        if let (Some(regions), Ok(offset), Ok(len)) = (&self.map.regions, usize::try_from(offset), usize::try_from(len))
        {
            regions.forget(offset.min(self.map.map.len()), len);
        }
    }

    /// The range was written other than through the mapping (holes there may have filled).
    pub(crate) fn filled(&self, offset: u64, len: u64) {
        if let (Some(regions), Ok(offset), Ok(len)) = (&self.map.regions, usize::try_from(offset), usize::try_from(len))
        {
            regions.filled(offset.min(self.map.map.len()), len);
        }
    }

    /// Whether a page of the file vanished under the mapping (see `guard_truncation`).
    fn lost(&self) -> bool {
        REGISTRY[self.map.slot].lost.load(Ordering::Acquire)
    }

    /// In bounds, not lost, and every page resident.
    fn usable(&self, offset: usize, len: usize) -> bool {
        let map = &self.map.map;
        match offset.checked_add(len) {
            Some(end) if end <= map.len() => {}
            _ => return false,
        }
        if self.lost() {
            return false;
        }
        let Some(regions) = &self.map.regions else { return resident(map, offset, len) };
        if regions.known_resident(offset, len) {
            return true;
        }
        let found = resident(map, offset, len);
        if found {
            regions.learn(offset, len, |start, len| resident(map, start, len));
        }
        found
    }
}

/// mincore(2) over the pages of [offset, offset + len): true when all are in the page cache.
fn resident(map: &MmapRaw, offset: usize, len: usize) -> bool {
    const PAGE: usize = 4096;
    const BATCH: usize = 512; // pages per mincore call: 2 MiB, a residency region
    let base = map.as_ptr() as usize;
    let mut page = (base + offset) & !(PAGE - 1);
    let end = base + offset + len;
    let mut vec = [0u8; BATCH];
    while page < end {
        let pages = (end - page).div_ceil(PAGE).min(BATCH);
        // SAFETY: [page, page + pages * PAGE) lies in our mapping (page-aligned, which mmap is);
        // mincore writes one byte per page into `vec`, which has room for BATCH.
        let rc = unsafe { libc::mincore(page as *mut libc::c_void, pages * PAGE, vec.as_mut_ptr()) };
        if rc != 0 || vec[..pages].iter().any(|v| v & 1 == 0) {
            return false;
        }
        page += pages * PAGE;
    }
    true
}

/// The SIGBUS action in force before ours: faults outside our mappings are handed back to it.
static PREVIOUS: AtomicUsize = AtomicUsize::new(0);
static mut PREVIOUS_ACTION: Option<libc::sigaction> = None;

/// Installs (once) the SIGBUS handler that makes a truncated LUN file survivable.
fn guard_truncation() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: a zeroed sigaction with our handler and SA_SIGINFO is valid; the old action is
        // written into PREVIOUS_ACTION before any fault can consult it (Once orders this).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, &action, &mut old) == 0 {
                PREVIOUS_ACTION = Some(old);
                PREVIOUS.store(1, Ordering::Release);
            }
        }
    });
}

/// Async-signal-safe: atomics and mmap(2) only.
extern "C" fn on_sigbus(signal: libc::c_int, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    for slot in REGISTRY.iter() {
        let (start, end) = (slot.start.load(Ordering::Acquire), slot.end.load(Ordering::Acquire));
        if start != 0 && addr >= start && addr < end {
            slot.lost.store(true, Ordering::Release);
            let page = addr & !4095;
            // SAFETY: replaces one page of our own mapping with an anonymous zero page, so the
            // faulting load (or store, hence writable) completes when the handler returns.
            let rc = unsafe {
                libc::mmap(
                    page as *mut libc::c_void,
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if rc != libc::MAP_FAILED {
                return;
            }
        }
    }
    // Not ours (or the remap failed): restore the previous action and return; the fault
    // repeats and that action (a crash report, the default) deals with it.
    if PREVIOUS.load(Ordering::Acquire) == 1 {
        // SAFETY: PREVIOUS_ACTION was written before PREVIOUS was set and is never written again.
        unsafe {
            if let Some(old) = (*std::ptr::addr_of!(PREVIOUS_ACTION)).as_ref() {
                libc::sigaction(signal, old, std::ptr::null_mut());
                return;
            }
        }
    }
    // SAFETY: plain syscall; with the default action restored the repeated fault ends the process.
    unsafe { libc::signal(signal, libc::SIG_DFL) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use std::os::unix::io::AsRawFd;

    fn scratch(tag: &str, len: usize) -> (std::path::PathBuf, File) {
        let path = std::path::Path::new("/dev/shm").join(format!("palisade-mapped-{tag}-{}", std::process::id()));
        let mut file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        file.write_all(&data).unwrap();
        (path, file)
    }

    #[test]
    fn large_reads_are_views_small_ones_copies() {
        let (path, file) = scratch("views", 1 << 20);
        let mapped = MappedFile::new(&file, 1 << 20, true, true).unwrap();
        let big = mapped.read_resident(4096, ZERO_COPY_MIN).unwrap();
        assert_eq!(big.as_ptr() as usize, mapped.map.map.as_ptr() as usize + 4096, "a view, not a copy");
        assert!(big.iter().enumerate().all(|(i, &b)| b == ((4096 + i) % 253) as u8));
        let small = mapped.read_resident(10, 100).unwrap();
        assert_ne!(small.as_ptr() as usize, mapped.map.map.as_ptr() as usize + 10);
        assert_eq!(small[0], 10);
        // A write through the file is what the next read sees.
        file.write_all_at(&[0xEE; 8], 10).unwrap();
        assert_eq!(&mapped.read_resident(10, 8).unwrap()[..], &[0xEE; 8]);
        assert!(mapped.read_resident((1 << 20) - 4, 8).is_none(), "past the mapping");
        // Writes to resident pages go through the mapping and are what the file holds.
        assert!(mapped.write_resident(100, &[Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]).unwrap());
        let mut back = [0u8; 4];
        file.read_exact_at(&mut back, 100).unwrap();
        assert_eq!(&back, b"abcd");
        drop(mapped);
        // The view keeps the mapping alive after the backend let go of it.
        assert_eq!(big[0], (4096 % 253) as u8);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_hole_is_not_resident_and_goes_the_positional_way() {
        let (path, file) = scratch("hole", 4096);
        file.set_len(1 << 20).unwrap();
        let mapped = MappedFile::new(&file, 1 << 20, true, true).unwrap();
        assert!(mapped.read_resident(0, 4096).is_some());
        assert!(mapped.read_resident(512 * 1024, 4096).is_none(), "a tmpfs hole has no page");
        assert!(
            !mapped.write_resident(512 * 1024, &[Bytes::from_static(b"x")]).unwrap(),
            "nor is one allocated by a store"
        );
        assert!(mapped.read_resident(512 * 1024, 4096).is_none());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_punched_hole_is_forgotten_and_read_positionally_again() {
        let (path, file) = scratch("punched", 1 << 20);
        let mapped = MappedFile::new(&file, 1 << 20, true, true).unwrap();
        assert!(mapped.read_resident(0, 4096).is_some(), "the whole region is learned resident");
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        // SAFETY: plain syscall on a descriptor we own.
        assert_eq!(unsafe { libc::fallocate(file.as_raw_fd(), mode, 512 * 1024, 4096) }, 0);
        mapped.forget(512 * 1024, 4096);
        assert!(mapped.read_resident(512 * 1024, 4096).is_none(), "checked again: a hole now");
        assert!(mapped.read_resident(0, 4096).is_some(), "the rest still reads through the mapping");
        assert!(!mapped.write_resident(512 * 1024, &[Bytes::from_static(b"x")]).unwrap(), "no page allocated");
        file.write_all_at(&[1; 4096], 512 * 1024).unwrap();
        mapped.filled(512 * 1024, 4096);
        assert_eq!(mapped.read_resident(512 * 1024, 4096).unwrap()[0], 1, "filled again: mapped");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_truncated_file_reads_zeros_then_is_lost_not_a_crash() {
        let (path, file) = scratch("truncated", 1 << 20);
        let mapped = MappedFile::new(&file, 1 << 20, true, true).unwrap();
        let view = mapped.read_resident(512 * 1024, ZERO_COPY_MIN).unwrap();
        file.set_len(4096).unwrap();
        // Touching the vanished pages would be SIGBUS without the guard.
        assert!(view.iter().all(|&b| b == 0));
        assert!(mapped.read_resident(0, 100).is_none(), "the mapping is lost: positional reads from now on");
        assert!(!mapped.write_resident(0, &[Bytes::from_static(b"x")]).unwrap(), "and positional writes");
        std::fs::remove_file(path).unwrap();
    }
}
