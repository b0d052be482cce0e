//! Block-device backend: like the file backend, but the size comes from BLKGETSIZE64 and the
//! device is never resized; UNMAP issues BLKDISCARD. With `direct_io` reads and writes bypass
//! the host page cache through [`DirectFile`] (O_DIRECT), as tgt's `bsoflags=direct` does.

use super::direct::{self, DirectFile};
use super::positional::PositionalFile;
use bytes::Bytes;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;

// linux/fs.h: BLKGETSIZE64 = _IOR(0x12, 114, size_t), BLKDISCARD = _IO(0x12, 119).
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
const BLKDISCARD: libc::c_ulong = 0x1277;

#[derive(Debug)]
pub struct BlockDeviceBackend {
    io: PositionalFile,
    /// Set when the LUN bypasses the page cache; reads and writes then go through it.
    direct: Option<DirectFile>,
    size: u64,
    discard: bool,
}

impl BlockDeviceBackend {
    /// Opens the device; `discard` says whether UNMAP may issue BLKDISCARD (the device must
    /// then read zeros after discard for LBPRZ to be true, which is the caller's promise).
    /// `direct_block_size`: read and write with O_DIRECT, for a LUN of that logical block size
    /// (refused when the device's direct-I/O alignment does not divide it).
    pub fn open(path: &Path, read_only: bool, discard: bool, direct_block_size: Option<u32>) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(!read_only).open(path)?;
        let mut size: u64 = 0;
        // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which is valid for that.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64 as _, &mut size as *mut u64) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let direct = match direct_block_size {
            Some(block_size) => {
                let direct = DirectFile::new(direct::open(path, read_only)?, path)?;
                direct.check_block_size(block_size)?;
                Some(direct)
            }
            None => None,
        };
        Ok(BlockDeviceBackend { io: PositionalFile::new(file), direct, size, discard })
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

    pub(crate) async fn unmap(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        if !self.discard {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        self.io
            .with_file(move |file| {
                let range: [u64; 2] = [offset, len];
                // SAFETY: BLKDISCARD reads two u64 (start, length) through the pointer.
                let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKDISCARD as _, range.as_ptr()) };
                if rc == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            })
            .await
    }

    pub(crate) async fn prefetch(&self, offset: u64, len: u64) {
        self.io.prefetch(offset, len).await
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.size
    }

    pub(crate) fn supports_unmap(&self) -> bool {
        self.discard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_file_is_not_a_block_device() {
        let path = std::env::temp_dir().join(format!("palisade-blk-{}", std::process::id()));
        std::fs::write(&path, [0u8; 4096]).unwrap();
        let err = BlockDeviceBackend::open(&path, true, false, None).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTTY));
        std::fs::remove_file(&path).unwrap();
    }
}
