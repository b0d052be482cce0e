//! The self-describing block pattern of `--verify`. Every logical block written carries a magic,
//! its own LBA, a generation and a CRC32C, so a read can tell a good block from a corrupted,
//! misplaced (wrong LBA), stale (older generation) or never-written one without keeping a copy.
//!
//! Layout of one block of `len` bytes (len >= 512):
//! `[0..8)` magic, `[8..16)` LBA, `[16..24)` generation (all little-endian), `[24..len-4)`
//! filler derived from (LBA, generation), `[len-4..len)` CRC32C of everything before it.

use bytes::{BufMut, Bytes, BytesMut};

const MAGIC: [u8; 8] = *b"PALBENCH";
const HEADER: usize = 24;

/// Why a block failed verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// All zeros: never written (or unmapped).
    Unwritten,
    /// No magic: not written by `palisade bench --verify`.
    Foreign,
    /// Magic present but the checksum does not match: the block was altered.
    Checksum,
    /// A valid block, but of another LBA: data landed in the wrong place.
    WrongLba { found: u64 },
    /// A valid block older than the last write this run completed to it.
    Stale { found: u64, expected: u64 },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Unwritten => f.write_str("unwritten (all zeros)"),
            Mismatch::Foreign => f.write_str("no bench pattern"),
            Mismatch::Checksum => f.write_str("checksum mismatch"),
            Mismatch::WrongLba { found } => write!(f, "block of LBA {found}"),
            Mismatch::Stale { found, expected } => {
                write!(f, "stale generation {found:#x}, expected at least {expected:#x}")
            }
        }
    }
}

/// xorshift64*: cheap, deterministic filler (and the workload's random source).
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        // A zero state would stay zero forever.
        XorShift(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is negligible for n far below 2^64.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Appends `count` pattern blocks starting at `lba` to `out`.
pub fn fill(out: &mut BytesMut, lba: u64, count: u64, block_len: usize, generation: u64) {
    for i in 0..count {
        let start = out.len();
        let this = lba + i;
        out.put_slice(&MAGIC);
        out.put_u64_le(this);
        out.put_u64_le(generation);
        let mut rng = XorShift::new(this.rotate_left(32) ^ generation);
        let filler = block_len - HEADER - 4;
        for _ in 0..filler / 8 {
            out.put_u64_le(rng.next_u64());
        }
        out.put_bytes(0xa5, filler % 8);
        let crc = crc32c::crc32c(&out[start..]);
        out.put_u32_le(crc);
    }
}

/// `count` pattern blocks as one buffer.
pub fn blocks(lba: u64, count: u64, block_len: usize, generation: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(count as usize * block_len);
    fill(&mut out, lba, count, block_len, generation);
    out.freeze()
}

/// Checks one block read from `lba`. `expected` is the generation of the last write to it that
/// completed before the read was issued, if this run wrote it. Returns the generation found.
pub fn check(block: &[u8], lba: u64, expected: Option<u64>) -> Result<u64, Mismatch> {
    let len = block.len();
    if block[..MAGIC.len()] != MAGIC {
        return Err(if block.iter().all(|&b| b == 0) { Mismatch::Unwritten } else { Mismatch::Foreign });
    }
    let want = u32::from_le_bytes(block[len - 4..].try_into().expect("4 bytes"));
    if crc32c::crc32c(&block[..len - 4]) != want {
        return Err(Mismatch::Checksum);
    }
    let found_lba = u64::from_le_bytes(block[8..16].try_into().expect("8 bytes"));
    if found_lba != lba {
        return Err(Mismatch::WrongLba { found: found_lba });
    }
    let generation = u64::from_le_bytes(block[16..24].try_into().expect("8 bytes"));
    if let Some(expected) = expected {
        // Generations of one run share their upper half (the run id); only those compare.
        if generation >> 32 == expected >> 32 && generation < expected {
            return Err(Mismatch::Stale { found: generation, expected });
        }
    }
    Ok(generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_blocks_verify() {
        let data = blocks(100, 8, 512, 0x7_0000_0001);
        assert_eq!(data.len(), 4096);
        for (i, b) in data.chunks(512).enumerate() {
            assert_eq!(check(b, 100 + i as u64, Some(0x7_0000_0001)), Ok(0x7_0000_0001));
        }
        let big = blocks(0, 1, 4096, 9);
        assert_eq!(check(&big, 0, None), Ok(9));
    }

    #[test]
    fn each_kind_of_damage_is_named() {
        let good = blocks(5, 1, 512, 0x2_0000_0010).to_vec();
        let mut flipped = good.clone();
        flipped[300] ^= 1;
        assert_eq!(check(&flipped, 5, None), Err(Mismatch::Checksum));
        assert_eq!(check(&good, 6, None), Err(Mismatch::WrongLba { found: 5 }));
        assert_eq!(
            check(&good, 5, Some(0x2_0000_0011)),
            Err(Mismatch::Stale { found: 0x2_0000_0010, expected: 0x2_0000_0011 })
        );
        // Another run's generation never counts as stale.
        assert_eq!(check(&good, 5, Some(0x3_0000_0011)), Ok(0x2_0000_0010));
        assert_eq!(check(&[0u8; 512], 5, None), Err(Mismatch::Unwritten));
        assert_eq!(check(&[1u8; 512], 5, None), Err(Mismatch::Foreign));
    }

    #[test]
    fn xorshift_is_not_stuck() {
        let mut r = XorShift::new(0);
        let a = r.next_u64();
        assert_ne!(a, r.next_u64());
        assert!((0..1000).all(|_| r.below(7) < 7));
    }
}
