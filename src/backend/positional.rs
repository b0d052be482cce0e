//! Positional I/O on a file descriptor shared by the file and block-device backends. Every call
//! runs inside `spawn_blocking` so runtime threads never block on the disk.

use bytes::{Bytes, BytesMut};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub(crate) struct PositionalFile {
    file: Arc<File>,
}

async fn blocking<T: Send + 'static>(job: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(job).await.map_err(|join| io::Error::other(format!("I/O worker failed: {join}")))?
}

impl PositionalFile {
    pub(crate) fn new(file: File) -> Self {
        PositionalFile { file: Arc::new(file) }
    }

    pub(crate) async fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let file = self.file.clone();
        blocking(move || read_into_new(&file, offset, len)).await
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

/// Reads exactly `len` bytes at `offset` into a fresh buffer without zero-filling it first:
/// `pread` writes straight into the buffer's spare capacity.
fn read_into_new(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    use std::os::unix::io::AsRawFd;
    let mut buf = BytesMut::with_capacity(len);
    while buf.len() < len {
        let done = buf.len();
        let spare = buf.spare_capacity_mut();
        // SAFETY: pread writes at most `len - done` bytes, which fit in the spare capacity
        // (capacity >= len); it only writes through the pointer, never reads.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                spare.as_mut_ptr().cast::<libc::c_void>(),
                len - done,
                (offset + done as u64) as libc::off_t,
            )
        };
        match n {
            n if n > 0 => {
                // SAFETY: pread initialised the next `n` bytes.
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
    Ok(buf.freeze())
}
