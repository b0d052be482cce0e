//! Regular-file backend: a sparse image file, holes punched on UNMAP. With `direct_io` the data
//! path goes through [`DirectFile`] (O_DIRECT, aligned buffers); otherwise through the page cache.

use super::direct::{self, DirectFile};
use super::mapped::{MappedFile, ZERO_COPY_MIN};
use super::positional::{write_zeros, PositionalFile};
use super::Extent;
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
    /// The page-cache read path: views of a read-only mapping (None: not mappable, or direct).
    mapped: Option<MappedFile>,
    size: u64,
}

impl FileBackend {
    /// Opens `path`, creating it as a sparse file of `size` bytes when missing. An existing file
    /// shorter than `size` is extended (sparsely); a longer one keeps its data and its length
    /// is used as is.
    pub fn open(path: &Path, size: u64, read_only: bool) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(!read_only).create(!read_only).truncate(false).open(path)?;
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
        let io = PositionalFile::new(file);
        // Stores into the mapping only where the file's pages are memory (see mapped.rs).
        let memory_backed = io.memory_backed();
        let mapped = MappedFile::new(io.file(), size, !read_only && memory_backed, memory_backed);
        Ok(FileBackend { io, direct: None, mapped, size })
    }

    /// Like [`open`](Self::open), with reads and writes through O_DIRECT. Fails when the file
    /// system cannot do direct I/O at `block_size` granularity.
    pub fn open_direct(path: &Path, size: u64, read_only: bool, block_size: u32) -> io::Result<Self> {
        let mut backend = Self::open(path, size, read_only)?;
        let direct = DirectFile::new(direct::open(path, read_only)?, path)?;
        direct.check_block_size(block_size)?;
        backend.direct = Some(direct);
        // Direct I/O bypasses the page cache: no mapping of it either.
        backend.mapped = None;
        Ok(backend)
    }

    pub(crate) async fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        match &self.direct {
            Some(d) => d.read(offset, len).await,
            // A file on tmpfs/ramfs reads through its mapping at any size. A file on a disk only
            // for views (one copy less); its small reads take the positional path, whose one
            // RWF_NOWAIT read both copies from the page cache and hears from the file system
            // (EIO once it has failed: MEDIUM ERROR, SBC-3 §4.18), and a view is preceded by a
            // one-byte probe for the same reason.
            None if self.io.memory_backed() || len >= ZERO_COPY_MIN => {
                match self.mapped.as_ref().and_then(|m| m.read_resident(offset, len)) {
                    Some(data) => {
                        if !self.io.memory_backed() {
                            self.io.check_readable(offset)?;
                        }
                        Ok(data)
                    }
                    None => self.io.read(offset, len).await,
                }
            }
            None => self.io.read(offset, len).await,
        }
    }

    pub(crate) async fn write(&self, offset: u64, data: &[Bytes], fua: bool) -> io::Result<()> {
        match &self.direct {
            Some(d) => d.write(offset, data, fua).await,
            None => match &self.mapped {
                // Only a tmpfs/ramfs file's mapping is writable: its fdatasync never waits for a
                // device, so it runs here as the positional path's does (SBC-3 §5.40 FUA).
                Some(m) if m.write_resident(offset, data)? => match fua {
                    true => self.io.file().sync_data(),
                    false => Ok(()),
                },
                _ => {
                    self.io.write(offset, data, fua).await?;
                    if let Some(m) = &self.mapped {
                        m.filled(offset, data.iter().map(|d| d.len() as u64).sum());
                    }
                    Ok(())
                }
            },
        }
    }

    /// Kernel copy to another file LUN (copy_file_range); Ok(false) when either side bypasses
    /// the page cache (a buffered kernel copy would not be coherent with O_DIRECT I/O) or the
    /// kernel cannot copy between these files.
    pub(crate) async fn copy_to(
        &self,
        offset: u64,
        dest: &FileBackend,
        dest_offset: u64,
        len: u64,
        durable: bool,
    ) -> io::Result<bool> {
        if self.direct.is_some() || dest.direct.is_some() {
            return Ok(false);
        }
        let copied = self.io.copy_to(offset, &dest.io, dest_offset, len, durable).await;
        if let Some(m) = &dest.mapped {
            m.filled(dest_offset, len);
        }
        copied
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
        let punched = self
            .io
            .with_file(move |file| {
                let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
                // SAFETY: plain syscall on a descriptor we own; no pointers involved.
                let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset as libc::off_t, len as libc::off_t) };
                if rc == 0 {
                    return Ok(());
                }
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => write_zeros(file, offset, len),
                    _ => Err(err),
                }
            })
            .await;
        // Even a failed punch may have freed some pages: the mapping must check them again.
        if let Some(m) = &self.mapped {
            m.forget(offset, len);
        }
        punched
    }

    pub(crate) async fn prefetch(&self, offset: u64, len: u64) {
        self.io.prefetch(offset, len).await
    }

    /// Data and hole runs from SEEK_DATA/SEEK_HOLE (lseek(2)); a filesystem without them
    /// reports the whole range as data.
    pub(crate) async fn allocation(&self, offset: u64, len: u64, max_extents: usize) -> io::Result<Vec<Extent>> {
        self.io.with_file(move |file| allocation_runs(file.as_raw_fd(), offset, len, max_extents)).await
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.size
    }
}

/// lseek(fd, from, whence) → Some(position), None for ENXIO (no such region after `from`).
fn seek(fd: libc::c_int, from: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    // SAFETY: plain syscall; the returned file offset is not relied upon by other I/O here,
    // which is all positional (pread/pwrite).
    let rc = unsafe { libc::lseek(fd, from as libc::off_t, whence) };
    if rc >= 0 {
        return Ok(Some(rc as u64));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENXIO) => Ok(None),
        _ => Err(err),
    }
}

fn allocation_runs(fd: libc::c_int, offset: u64, len: u64, max_extents: usize) -> io::Result<Vec<Extent>> {
    let end = offset + len;
    let mut runs: Vec<Extent> = Vec::new();
    let push = |runs: &mut Vec<Extent>, len: u64, mapped: bool| match runs.last_mut() {
        Some(last) if last.mapped == mapped => last.len += len,
        _ => runs.push(Extent { len, mapped }),
    };
    let mut pos = offset;
    while pos < end && runs.len() < max_extents {
        let data = match seek(fd, pos, libc::SEEK_DATA) {
            Ok(found) => found.unwrap_or(end).min(end),
            // EINVAL: SEEK_DATA unsupported here; call it all data.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                push(&mut runs, end - pos, true);
                break;
            }
            Err(e) => return Err(e),
        };
        if data > pos {
            push(&mut runs, data - pos, false);
            pos = data;
            continue;
        }
        let hole = seek(fd, pos, libc::SEEK_HOLE)?.unwrap_or(end).min(end);
        push(&mut runs, hole.max(pos + 1) - pos, true);
        pos = hole.max(pos + 1);
    }
    Ok(runs)
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
        backend.write(4096, &[Bytes::from_static(b"hello "), Bytes::from_static(b"world")], true).await.unwrap();
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
    async fn allocation_follows_holes_punched_by_unmap() {
        let path = temp_path("file-alloc");
        let _ = std::fs::remove_file(&path);
        let mib = 1u64 << 20;
        let backend = FileBackend::open(&path, 8 * mib, false).unwrap();
        // Fresh sparse file: one hole.
        assert_eq!(backend.allocation(0, 8 * mib, 16).await.unwrap(), vec![Extent { len: 8 * mib, mapped: false }]);
        backend.write(mib, &[Bytes::from(vec![7u8; 2 * mib as usize])], false).await.unwrap();
        backend.unmap(2 * mib, mib / 2).await.unwrap();
        let runs = backend.allocation(0, 8 * mib, 16).await.unwrap();
        let expected = [(mib, false), (mib, true), (mib / 2, false), (mib / 2, true), (5 * mib, false)];
        let got: Vec<(u64, bool)> = runs.iter().map(|e| (e.len, e.mapped)).collect();
        if got.len() == 1 {
            // tmpfs/filesystems without SEEK_DATA report all data: acceptable, but then the
            // whole range must be one mapped run.
            assert_eq!(got, vec![(8 * mib, true)]);
        } else {
            assert_eq!(got, expected);
            // The cap on runs is honoured and a window inside a run starts at the window.
            assert_eq!(backend.allocation(0, 8 * mib, 2).await.unwrap().len(), 2);
            assert_eq!(backend.allocation(mib + 512, 1024, 8).await.unwrap(), vec![Extent { len: 1024, mapped: true }]);
        }
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
