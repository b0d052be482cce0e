//! Positional I/O on a file descriptor shared by the file and block-device backends. Runtime
//! threads never block on the disk: a read first takes what the page cache holds on the calling
//! thread with preadv2(RWF_NOWAIT), which fails with EAGAIN rather than wait for the device, and
//! only the rest goes to `spawn_blocking`; every other call runs inside `spawn_blocking`. A file
//! on tmpfs or ramfs has no device behind it (its pages are memory), so its reads and writes
//! run on the calling thread, as a memory LUN's do (tmpfs refuses RWF_NOWAIT).

use super::handoff::blocking;
use bytes::{Bytes, BytesMut};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub(crate) struct PositionalFile {
    file: Arc<File>,
    /// Cleared once the file system refuses RWF_NOWAIT (EOPNOTSUPP): reads then go straight to
    /// a blocking thread instead of trying first.
    nowait_reads: Arc<AtomicBool>,
    /// The file lives on tmpfs or ramfs: I/O never waits for a device.
    memory_backed: bool,
}

/// statfs(2) f_type of the file systems whose files are memory.
const TMPFS_MAGIC: u64 = 0x0102_1994;
const RAMFS_MAGIC: u64 = 0x8584_58f6;

/// A regular file on tmpfs or ramfs. Only a regular file: a device node lives on devtmpfs, which
/// reports TMPFS_MAGIC too, yet its I/O goes to the device (a loop device or a disk).
fn on_memory_file_system(file: &File) -> bool {
    if !file.metadata().is_ok_and(|m| m.file_type().is_file()) {
        return false;
    }
    // SAFETY: statfs is plain old data; fstatfs fills it for an open descriptor.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a pointer to a live statfs.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
    rc == 0 && matches!(st.f_type as u64, TMPFS_MAGIC | RAMFS_MAGIC)
}

impl PositionalFile {
    pub(crate) fn new(file: File) -> Self {
        let memory_backed = on_memory_file_system(&file);
        PositionalFile { file: Arc::new(file), nowait_reads: Arc::new(AtomicBool::new(true)), memory_backed }
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// True for a file on tmpfs or ramfs (its pages are memory, no device behind them).
    pub(crate) fn memory_backed(&self) -> bool {
        self.memory_backed
    }

    /// Reads exactly `len` bytes at `offset`. What the page cache holds is copied here, without
    /// a thread hand-off (the command can then complete inline); the rest, if any, is read on a
    /// blocking thread.
    pub(crate) async fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = BytesMut::with_capacity(len);
        if self.memory_backed {
            fill(&self.file, &mut buf, offset, len, 0)?;
            return Ok(buf.freeze());
        }
        if self.nowait_reads.load(Ordering::Relaxed) {
            match fill(&self.file, &mut buf, offset, len, libc::RWF_NOWAIT) {
                Ok(()) => return Ok(buf.freeze()),
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {}
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    self.nowait_reads.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let file = self.file.clone();
        blocking(move || {
            fill(&file, &mut buf, offset, len, 0)?;
            Ok(buf.freeze())
        })
        .await
    }

    /// Asks the file system whether the file can still be read at `offset`, without waiting for
    /// a device (one byte, RWF_NOWAIT): a page-cache hit through the mapping never asks it, so a
    /// file system that has failed (EIO after a shutdown) would go unnoticed. "Not cached"
    /// (EAGAIN) and "cannot tell" (EOPNOTSUPP) are not failures.
    pub(crate) fn check_readable(&self, offset: u64) -> io::Result<()> {
        let mut probe = BytesMut::with_capacity(1);
        match fill(&self.file, &mut probe, offset, 1, libc::RWF_NOWAIT) {
            Err(e) if e.raw_os_error() != Some(libc::EAGAIN) && e.raw_os_error() != Some(libc::EOPNOTSUPP) => Err(e),
            _ => Ok(()),
        }
    }

    /// Writes each segment at its own offset (no coalescing copy); `fua` adds an fdatasync.
    pub(crate) async fn write(&self, offset: u64, data: &[Bytes], fua: bool) -> io::Result<()> {
        if self.memory_backed {
            return write_segments(&self.file, offset, data, fua);
        }
        let file = self.file.clone();
        let segments: Vec<Bytes> = data.to_vec();
        blocking(move || write_segments(&file, offset, &segments, fua)).await
    }

    pub(crate) async fn flush(&self) -> io::Result<()> {
        let file = self.file.clone();
        blocking(move || file.sync_data()).await
    }

    /// Runs `job` with the descriptor on a blocking thread (ioctl/fallocate helpers).
    pub(crate) async fn with_file<T: Send + 'static>(
        &self,
        job: impl FnOnce(&File) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let file = self.file.clone();
        blocking(move || job(&file)).await
    }
}

impl PositionalFile {
    /// Copies `len` bytes from this file at `offset` to `dest` at `dest_offset` inside the
    /// kernel with copy_file_range(2) (a reflink or server-side copy where the file system has
    /// one, a page-cache copy otherwise): no byte enters user space. Ok(false) when the kernel
    /// cannot do it for these files (EXDEV, EINVAL, EOPNOTSUPP, ENOSYS before anything was
    /// copied): the caller then copies through a buffer.
    pub(crate) async fn copy_to(
        &self,
        offset: u64,
        dest: &PositionalFile,
        dest_offset: u64,
        len: u64,
        durable: bool,
    ) -> io::Result<bool> {
        let (from, to) = (self.file.clone(), dest.file.clone());
        let job = move || {
            let offloaded = copy_file_range_all(&from, offset, &to, dest_offset, len)?;
            if offloaded && durable {
                to.sync_data()?;
            }
            Ok(offloaded)
        };
        if self.memory_backed && dest.memory_backed {
            return job();
        }
        blocking(job).await
    }

    /// posix_fadvise(WILLNEED): asks the kernel to start reading the range into its cache.
    pub(crate) async fn prefetch(&self, offset: u64, len: u64) {
        let advised = self
            .with_file(move |file| {
                // SAFETY: plain syscall on a descriptor we own; no pointers involved.
                let rc = unsafe {
                    libc::posix_fadvise(
                        file.as_raw_fd(),
                        offset as libc::off_t,
                        len as libc::off_t,
                        libc::POSIX_FADV_WILLNEED,
                    )
                };
                if rc == 0 {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(rc))
                }
            })
            .await;
        if let Err(e) = advised {
            tracing::debug!("prefetch hint failed: {e}");
        }
    }
}

fn copy_file_range_all(from: &File, offset: u64, to: &File, dest_offset: u64, len: u64) -> io::Result<bool> {
    let (mut off_in, mut off_out) = (offset as libc::loff_t, dest_offset as libc::loff_t);
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(1 << 30) as usize;
        // SAFETY: both descriptors are open for the call; the offsets are locals the kernel
        // updates; no user buffer is involved.
        let n = unsafe { libc::copy_file_range(from.as_raw_fd(), &mut off_in, to.as_raw_fd(), &mut off_out, want, 0) };
        match n {
            n if n > 0 => done += n as u64,
            0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            _ => {
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EXDEV | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS) if done == 0 => {
                        return Ok(false)
                    }
                    _ => return Err(err),
                }
            }
        }
    }
    Ok(true)
}

fn write_segments(file: &File, offset: u64, segments: &[Bytes], fua: bool) -> io::Result<()> {
    let mut at = offset;
    for segment in segments {
        file.write_all_at(segment, at)?;
        at += segment.len() as u64;
    }
    if fua {
        file.sync_data()?;
    }
    Ok(())
}

/// Writes `len` zero bytes at `offset` in bounded chunks (fallback when deallocation is unsupported).
pub(crate) fn write_zeros(file: &File, offset: u64, len: u64) -> io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let zeros = vec![0u8; CHUNK.min(len) as usize];
    let mut done = 0;
    while done < len {
        let n = CHUNK.min(len - done);
        file.write_all_at(&zeros[..n as usize], offset + done)?;
        done += n;
    }
    Ok(())
}

/// Fills `buf` up to `len` bytes with the file's data from `offset + buf.len()` on, with
/// preadv2(2) `flags`, writing straight into the spare capacity (no zero-fill first). With
/// RWF_NOWAIT it stops with EAGAIN at the first byte the page cache does not hold, keeping
/// what it already read; `buf` must have capacity for `len`.
fn fill(file: &File, buf: &mut BytesMut, offset: u64, len: usize, flags: libc::c_int) -> io::Result<()> {
    debug_assert!(buf.capacity() >= len);
    while buf.len() < len {
        let done = buf.len();
        let spare = buf.spare_capacity_mut();
        let iov = libc::iovec { iov_base: spare.as_mut_ptr().cast::<libc::c_void>(), iov_len: len - done };
        // SAFETY: the one iovec covers `len - done` bytes of spare capacity (capacity >= len),
        // which preadv2 only writes; the descriptor is open for the call's duration.
        let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, (offset + done as u64) as libc::off_t, flags) };
        match n {
            n if n > 0 => {
                // SAFETY: preadv2 initialised the next `n` bytes.
                unsafe { buf.set_len(done + n as usize) };
            }
            0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn scratch(dir: &Path, tag: &str) -> (PathBuf, PositionalFile) {
        let path = dir.join(format!("palisade-positional-{tag}-{}", std::process::id()));
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        file.set_len(1 << 20).unwrap();
        (path, PositionalFile::new(file))
    }

    async fn round_trip(file: &PositionalFile) {
        let data: Vec<u8> = (0..12288u32).map(|i| (i * 7) as u8).collect();
        file.write(4096, &[Bytes::copy_from_slice(&data[..5000]), Bytes::copy_from_slice(&data[5000..])], false)
            .await
            .unwrap();
        assert_eq!(&file.read(4096, data.len()).await.unwrap()[..], &data[..]);
        // Past the end of the file is an error, not a short or zero-filled read.
        assert!(file.read((1 << 20) - 100, 200).await.is_err());
    }

    #[tokio::test]
    async fn a_file_on_disk_reads_through_the_page_cache_first() {
        // The repository's target folder is on a disk file system (temp_dir may be tmpfs).
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&dir).unwrap();
        let (path, file) = scratch(&dir, "disk");
        assert!(!file.memory_backed, "{} is on a disk file system", dir.display());
        round_trip(&file).await;
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_device_node_is_not_memory_though_devtmpfs_says_tmpfs() {
        // /dev is devtmpfs (f_type TMPFS_MAGIC); its nodes' I/O goes to a device, which may be
        // slow: it must never run on a runtime thread.
        let node = std::fs::File::open("/dev/null").unwrap();
        assert!(!PositionalFile::new(node).memory_backed);
    }

    #[tokio::test]
    async fn a_file_on_tmpfs_is_read_and_written_in_place() {
        let (path, file) = scratch(Path::new("/dev/shm"), "tmpfs");
        assert!(file.memory_backed, "/dev/shm is tmpfs");
        round_trip(&file).await;
        std::fs::remove_file(path).unwrap();
    }
}
