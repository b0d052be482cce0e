//! LUN storage backends. One closed enum (static dispatch): the SCSI layer calls these with byte
//! offsets it has already range-checked against `size_bytes()`.

mod blockdev;
mod direct;
mod file;
mod handoff;
mod mapped;
mod memory;
mod positional;
mod residency;
mod stream_copy;
mod uring;

pub use blockdev::BlockDeviceBackend;
pub use file::FileBackend;
pub use handoff::owned_by;
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

/// How `Backend::copy_to` moved the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyPath {
    /// copy_file_range(2): the kernel copied (or shared) the extents; nothing crossed into user space.
    Kernel,
    /// Read into a buffer and written from it.
    Buffered,
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

    /// Copies `len` bytes at `offset` to `dest` at `dest_offset` without the bytes leaving the
    /// server (SBC-3 §4.30 offloaded data transfer): inside the kernel between two file LUNs
    /// (copy_file_range, reflink where the file system has it), else read and written here.
    /// With `durable` the copy is on stable storage before this returns. The caller bounds `len`
    /// (the buffered path holds it in memory).
    pub async fn copy_to(
        &self,
        offset: u64,
        dest: &Backend,
        dest_offset: u64,
        len: u64,
        durable: bool,
    ) -> io::Result<CopyPath> {
        if let (Backend::File(from), Backend::File(to)) = (self, dest) {
            if from.copy_to(offset, to, dest_offset, len, durable).await? {
                return Ok(CopyPath::Kernel);
            }
        }
        let data = self.read(offset, len as usize).await?;
        dest.write(dest_offset, &[data], durable).await?;
        Ok(CopyPath::Buffered)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[tokio::test]
    async fn file_to_file_copies_go_through_the_kernel_others_through_a_buffer() {
        // The repository's target folder is on a disk file system (temp_dir may be tmpfs).
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&dir).unwrap();
        let path = |tag: &str| dir.join(format!("palisade-copy-{tag}-{}", std::process::id()));
        let (a, b) = (path("a"), path("b"));
        let from = Backend::File(FileBackend::open(&a, 4 << 20, false).unwrap());
        let to = Backend::File(FileBackend::open(&b, 4 << 20, false).unwrap());
        let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 253) as u8).collect();
        from.write(4096, &[Bytes::from(data.clone())], false).await.unwrap();
        assert_eq!(from.copy_to(4096, &to, 8192, 1 << 20, true).await.unwrap(), CopyPath::Kernel);
        assert_eq!(&to.read(8192, 1 << 20).await.unwrap()[..], &data[..]);
        // Within one file, and to a memory LUN (buffered).
        assert_eq!(from.copy_to(4096, &from, 2 << 20, 1 << 20, false).await.unwrap(), CopyPath::Kernel);
        assert_eq!(&from.read(2 << 20, 1 << 20).await.unwrap()[..], &data[..]);
        let memory = Backend::Memory(MemoryBackend::new(4 << 20));
        assert_eq!(from.copy_to(4096, &memory, 0, 1 << 20, false).await.unwrap(), CopyPath::Buffered);
        assert_eq!(&memory.read(0, 1 << 20).await.unwrap()[..], &data[..]);
        // Past the end of the source is an error, not a short copy.
        assert!(from.copy_to((4 << 20) - 512, &to, 0, 4096, false).await.is_err());
        std::fs::remove_file(a).unwrap();
        std::fs::remove_file(b).unwrap();
    }
}
