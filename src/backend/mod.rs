//! LUN storage backends. One closed enum (static dispatch): the SCSI layer calls these with byte
//! offsets it has already range-checked against `size_bytes()`.

mod blockdev;
mod direct;
mod file;
mod mapped;
mod memory;
mod positional;

pub use blockdev::BlockDeviceBackend;
pub use file::FileBackend;
pub use memory::MemoryBackend;

use bytes::Bytes;
use std::io;

/// A run of bytes with one allocation state, as `Backend::allocation` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub len: u64,
    /// False when the range is deallocated (a hole / an unallocated chunk): it reads as zeros
    /// and occupies no storage.
    pub mapped: bool,
}

/// Storage behind a logical unit. All methods take `&self`: one backend is shared by every session.
#[derive(Debug)]
pub enum Backend {
    File(FileBackend),
    Memory(MemoryBackend),
    BlockDevice(BlockDeviceBackend),
}

impl Backend {
    /// Reads `len` bytes at `offset`.
    pub async fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        match self {
            Backend::File(b) => b.read(offset, len).await,
            Backend::Memory(b) => b.read(offset, len),
            Backend::BlockDevice(b) => b.read(offset, len).await,
        }
    }

    /// Writes the segments back to back starting at `offset`; with `fua` the data is durable
    /// before this returns (SBC-3 §5.11 FUA).
    pub async fn write(&self, offset: u64, data: &[Bytes], fua: bool) -> io::Result<()> {
        match self {
            Backend::File(b) => b.write(offset, data, fua).await,
            Backend::Memory(b) => b.write(offset, data),
            Backend::BlockDevice(b) => b.write(offset, data, fua).await,
        }
    }

    /// Makes every completed write durable (SBC-3 §5.26 SYNCHRONIZE CACHE).
    pub async fn flush(&self) -> io::Result<()> {
        match self {
            Backend::File(b) => b.flush().await,
            Backend::Memory(_) => Ok(()),
            Backend::BlockDevice(b) => b.flush().await,
        }
    }

    /// Deallocates the range; afterwards it reads as zeros (so LBPRZ may be reported).
    pub async fn unmap(&self, offset: u64, len: u64) -> io::Result<()> {
        match self {
            Backend::File(b) => b.unmap(offset, len).await,
            Backend::Memory(b) => b.unmap(offset, len),
            Backend::BlockDevice(b) => b.unmap(offset, len).await,
        }
    }

    /// Consecutive extents from `offset`, covering at most `len` bytes and at most `max_extents`
    /// runs (SBC-3 §5.4 GET LBA STATUS). A block device reports everything mapped: the kernel
    /// does not say which sectors a discard really freed.
    pub async fn allocation(&self, offset: u64, len: u64, max_extents: usize) -> io::Result<Vec<Extent>> {
        match self {
            Backend::File(b) => b.allocation(offset, len, max_extents).await,
            Backend::Memory(b) => Ok(b.allocation(offset, len, max_extents)),
            Backend::BlockDevice(_) => Ok(vec![Extent { len, mapped: true }]),
        }
    }

    /// Hints that the range will be read soon (SBC-3 §5.9 PRE-FETCH); best effort.
    pub async fn prefetch(&self, offset: u64, len: u64) {
        match self {
            Backend::File(b) => b.prefetch(offset, len).await,
            Backend::Memory(_) => {}
            Backend::BlockDevice(b) => b.prefetch(offset, len).await,
        }
    }

    pub fn size_bytes(&self) -> u64 {
        match self {
            Backend::File(b) => b.size_bytes(),
            Backend::Memory(b) => b.size_bytes(),
            Backend::BlockDevice(b) => b.size_bytes(),
        }
    }

    /// True when `unmap` really deallocates and leaves zeros behind.
    pub fn supports_unmap(&self) -> bool {
        match self {
            Backend::File(_) | Backend::Memory(_) => true,
            Backend::BlockDevice(b) => b.supports_unmap(),
        }
    }
}
