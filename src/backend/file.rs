//! Regular-file backend: a sparse image file, holes punched on UNMAP. With `direct_io` the data
//! path goes through [`DirectFile`] (O_DIRECT, aligned buffers); otherwise through the page cache.

use super::direct::{self, DirectFile};
use super::positional::{write_zeros, PositionalFile};
use bytes::Bytes;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;

#[derive(Debug)]
pub struct FileBackend {
    io: PositionalFile,
    /// Set when the LUN bypasses the page cache; reads and writes then go through it.
    direct: Option<DirectFile>,
    size: u64,
}

impl FileBackend {
    /// Opens `path`, creating it as a sparse file of `size` bytes when missing. An existing file
    /// shorter than `size` is extended (sparsely); a longer one keeps its data and its length
    /// is used as is.
    pub fn open(path: &Path, size: u64, read_only: bool) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .create(!read_only)
            .truncate(false)
            .open(path)?;
        let current = file.metadata()?.len();
        let size = if current < size {
            if read_only {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is {current} bytes, shorter than {size}", path.display()),
                ));
            }
            file.set_len(size)?;
            size
        } else {
            current
        };
        Ok(FileBackend { io: PositionalFile::new(file), direct: None, size })
    }

    /// Like [`open`](Self::open), with reads and writes through O_DIRECT. Fails when the file
    /// system cannot do direct I/O at `block_size` granularity.
    pub fn open_direct(path: &Path, size: u64, read_only: bool, block_size: u32) -> io::Result<Self> {
        let mut backend = Self::open(path, size, read_only)?;
        let direct = DirectFile::new(direct::open(path, read_only)?, path)?;
        direct.check_block_size(block_size)?;
        backend.direct = Some(direct);
        Ok(backend)
    }

    pub(crate) async fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        match &self.direct {
            Some(d) => d.read(offset, len).await,
            None => self.io.read(offset, len).await,
        }
    }

    pub(crate) async fn write(&self, offset: u64, data: &[Bytes], fua: bool) -> io::Result<()> {
        match &self.direct {
            Some(d) => d.write(offset, data, fua).await,
            None => self.io.write(offset, data, fua).await,
        }
    }

    pub(crate) async fn flush(&self) -> io::Result<()> {
        self.io.flush().await
    }

    /// Punches a hole; filesystems without hole punching get zeros written instead, so the
    /// range reads as zeros either way.
    pub(crate) async fn unmap(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.io
            .with_file(move |file| {
                let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
                // SAFETY: plain syscall on a descriptor we own; no pointers involved.
                let rc = unsafe {
                    libc::fallocate(file.as_raw_fd(), mode, offset as libc::off_t, len as libc::off_t)
                };
                if rc == 0 {
                    return Ok(());
                }
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => write_zeros(file, offset, len),
                    _ => Err(err),
                }
            })
            .await
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn temp_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("palisade-{tag}-{}-{:?}", std::process::id(), std::thread::current().id()))
    }

    #[tokio::test]
    async fn creates_sparse_file_and_round_trips_with_fua() {
        let path = temp_path("file-rt");
        let _ = std::fs::remove_file(&path);
        let backend = FileBackend::open(&path, 1 << 20, false).unwrap();
        assert_eq!(backend.size_bytes(), 1 << 20);
        backend
            .write(4096, &[Bytes::from_static(b"hello "), Bytes::from_static(b"world")], true)
            .await
            .unwrap();
        assert_eq!(&backend.read(4096, 11).await.unwrap()[..], b"hello world");
        backend.flush().await.unwrap();
        backend.unmap(4096, 4096).await.unwrap();
        assert_eq!(&backend.read(4096, 11).await.unwrap()[..], &[0u8; 11][..]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test]
    async fn direct_io_round_trips_and_survives_unmap() {
        // temp_dir may be tmpfs without O_DIRECT; the repository's target folder is on disk.
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("palisade-direct-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let backend = FileBackend::open_direct(&path, 1 << 20, false, 4096).unwrap();
        assert!(backend.direct.is_some());
        let block: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        // Segments of odd sizes, as they arrive from the network, are gathered and aligned.
        let segs = [Bytes::copy_from_slice(&block[..100]), Bytes::copy_from_slice(&block[100..])];
        backend.write(8192, &segs, true).await.unwrap();
        let back = backend.read(8192, 4096).await.unwrap();
        assert_eq!(&back[..], &block[..]);
        assert_eq!(back.as_ptr() as usize % 512, 0, "read buffers are aligned");
        backend.unmap(8192, 4096).await.unwrap();
        assert!(backend.read(8192, 4096).await.unwrap().iter().all(|b| *b == 0));
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test]
    async fn read_past_end_is_an_error() {
        let path = temp_path("file-eof");
        let _ = std::fs::remove_file(&path);
        let backend = FileBackend::open(&path, 8192, false).unwrap();
        assert!(backend.read(8000, 512).await.is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
