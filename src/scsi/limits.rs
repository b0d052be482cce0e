//! Limits advertised in the block limits VPD page (SBC-3 §6.5.3) and enforced by the handlers,
//! so no command can make the target allocate more than `MAX_TRANSFER_BYTES` at once.

/// Largest READ/WRITE/VERIFY data transfer accepted in one command. 32 MiB is 65536 blocks
/// of 512 bytes: libiscsi's WRITE SAME(16) unmap test writes that much in one WRITE(16), and
/// Linux caps its own requests far lower (max_sectors_kb), so more buys nothing.
pub const MAX_TRANSFER_BYTES: u32 = 32 << 20;
/// MAXIMUM UNMAP LBA COUNT per UNMAP block descriptor.
pub const MAX_UNMAP_LBA_COUNT: u32 = 1 << 20;
/// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT per UNMAP command.
pub const MAX_UNMAP_DESCRIPTORS: u32 = 256;
/// MAXIMUM WRITE SAME LENGTH in blocks.
pub const MAX_WRITE_SAME_BLOCKS: u64 = 1 << 20;

/// MAXIMUM COMPARE AND WRITE LENGTH in blocks (one byte in the page and in the CDB). VMware's
/// ATS uses one block; 255 keeps the data-out at most 2 × 255 × 4 KiB = 2 MiB.
pub const MAX_COMPARE_AND_WRITE_BLOCKS: u8 = 255;

/// MAXIMUM TRANSFER LENGTH in blocks of `block_size`.
pub fn max_transfer_blocks(block_size: u32) -> u32 {
    MAX_TRANSFER_BYTES / block_size
}
