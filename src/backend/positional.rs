//! Positional I/O on a file descriptor shared by the file and block-device backends. Runtime
//! threads never block on the disk: a read first takes what the page cache holds on the calling
//! thread with preadv2(RWF_NOWAIT), which fails with EAGAIN rather than wait for the device, and
//! only the rest goes to `spawn_blocking`; every other call runs inside `spawn_blocking`.

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
}

async fn blocking<T: Send + 'static>(job: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(job).await.map_err(|join| io::Error::other(format!("I/O worker failed: {join}")))?
}

impl PositionalFile {
    pub(crate) fn new(file: File) -> Self {
        PositionalFile { file: Arc::new(file), nowait_reads: Arc::new(AtomicBool::new(true)) }
    }

    /// Reads exactly `len` bytes at `offset`. What the page cache holds is copied here, without
    /// a thread hand-off (the command can then complete inline); the rest, if any, is read on a
    /// blocking thread.
    pub(crate) async fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = BytesMut::with_capacity(len);
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

    /// Writes each segment at its own offset (no coalescing copy); `fua` adds an fdatasync.
    pub(crate) async fn write(&self, offset: u64, data: &[Bytes], fua: bool) -> io::Result<()> {
        let file = self.file.clone();
        let segments: Vec<Bytes> = data.to_vec();
        blocking(move || {
            let mut at = offset;
            for segment in &segments {
                file.write_all_at(segment, at)?;
                at += segment.len() as u64;
            }
            if fua {
                file.sync_data()?;
            }
            Ok(())
        })
        .await
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
