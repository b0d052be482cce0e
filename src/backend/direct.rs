//! O_DIRECT file I/O (`direct_io = true`): the page cache is bypassed, so every buffer, offset
//! and length is aligned to what the file system demands (statx STATX_DIOALIGN). Reads land in
//! an aligned buffer that becomes the `Bytes` sent to the initiator without another copy;
//! writes gather their segments into one aligned buffer (the one copy direct I/O needs). Both go
//! through the LUN's io_uring (uring.rs), or the blocking pool where it is refused.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

use super::handoff::blocking;
use super::uring::Uring;
use bytes::Bytes;

/// Buffer alignment used when the file system does not say (a page is always enough).
const FALLBACK_ALIGN: u32 = 4096;

/// A heap buffer aligned for direct I/O.
struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: AlignedBuf owns its allocation exclusively; moving it between threads is fine.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only reads the bytes.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    fn zeroed(len: usize, align: usize) -> io::Result<AlignedBuf> {
        let layout = Layout::from_size_align(len.max(align), align)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        // SAFETY: layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        Ok(AlignedBuf { ptr, layout })
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for layout.size() bytes and uniquely borrowed here.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: ptr is valid for layout.size() initialised (zeroed) bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `zeroed`.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct DirectFile {
    file: Arc<File>,
    /// Required alignment of buffer addresses.
    mem_align: usize,
    /// Required alignment of file offsets and lengths.
    offset_align: u32,
    /// The LUN's io_uring, started at the first I/O (inside the runtime that reaps it); None
    /// when io_uring cannot be used: the blocking pool then.
    ring: Arc<std::sync::OnceLock<Option<Uring>>>,
}

impl DirectFile {
    /// Wraps a file opened with O_DIRECT, learning its alignment rules.
    pub(crate) fn new(file: File, path: &Path) -> io::Result<DirectFile> {
        let (mem, offset) = dio_alignment(path).unwrap_or((FALLBACK_ALIGN, FALLBACK_ALIGN));
        if mem == 0 || offset == 0 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{}: the file system does not support direct I/O", path.display()),
            ));
        }
        Ok(DirectFile {
            file: Arc::new(file),
            mem_align: mem.max(512) as usize,
            offset_align: offset,
            ring: Arc::default(),
        })
    }

    /// Direct I/O can serve a LUN only if its blocks are at least as large as the alignment.
    pub(crate) fn check_block_size(&self, block_size: u32) -> io::Result<()> {
        if !block_size.is_multiple_of(self.offset_align) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("direct_io needs a block_size that is a multiple of {} on this file system", self.offset_align),
            ));
        }
        Ok(())
    }

    /// The segments back to back in one aligned buffer (the copy direct I/O needs).
    fn gather(&self, segments: &[Bytes], len: usize) -> io::Result<AlignedBuf> {
        let mut buf = AlignedBuf::zeroed(len, self.mem_align)?;
        let mut at = 0;
        for s in segments {
            buf.as_mut_slice()[at..at + s.len()].copy_from_slice(s);
            at += s.len();
        }
        Ok(buf)
    }

    pub(crate) async fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        if let Some(ring) = self.ring.get_or_init(Uring::start) {
            let mut buf = AlignedBuf::zeroed(len, self.mem_align)?;
            let addr = buf.as_mut_slice().as_mut_ptr() as usize;
            let buf = ring.read_exact(&self.file, buf, addr, len, offset).await?;
            return Ok(Bytes::from_owner(buf).slice(..len));
        }
        let this = self.clone();
        blocking(move || {
            let mut buf = AlignedBuf::zeroed(len, this.mem_align)?;
            this.file.read_exact_at(&mut buf.as_mut_slice()[..len], offset)?;
            Ok(Bytes::from_owner(buf).slice(..len))
        })
        .await
    }

    pub(crate) async fn write(&self, offset: u64, data: &[Bytes], fua: bool) -> io::Result<()> {
        if let Some(ring) = self.ring.get_or_init(Uring::start) {
            let len: usize = data.iter().map(|s| s.len()).sum();
            let buf = self.gather(data, len)?;
            let addr = buf.as_ref().as_ptr() as usize;
            // FUA: RWF_DSYNC makes this one write durable, device cache included.
            return ring.write_all(&self.file, buf, addr, len, offset, fua).await;
        }
        let this = self.clone();
        let segments: Vec<Bytes> = data.to_vec();
        blocking(move || {
            let len: usize = segments.iter().map(|s| s.len()).sum();
            let buf = this.gather(&segments, len)?;
            this.file.write_all_at(&buf.as_ref()[..len], offset)?;
            // O_DIRECT bypasses the page cache, not the device's volatile cache.
            if fua {
                this.file.sync_data()?;
            }
            Ok(())
        })
        .await
    }
}

/// (memory alignment, offset alignment) from statx(STATX_DIOALIGN), Linux 6.1+.
fn dio_alignment(path: &Path) -> Option<(u32, u32)> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: zeroed statx is a valid out-parameter; the path is NUL-terminated.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statx(libc::AT_FDCWD, c_path.as_ptr(), 0, libc::STATX_DIOALIGN, &mut stx) };
    if rc != 0 || stx.stx_mask & libc::STATX_DIOALIGN == 0 {
        return None;
    }
    Some((stx.stx_dio_mem_align, stx.stx_dio_offset_align))
}

/// Opens `path` for direct I/O.
pub(crate) fn open(path: &Path, read_only: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).write(!read_only).custom_flags(libc::O_DIRECT).open(path)
}
