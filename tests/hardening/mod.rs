//! What the hardening tests share beyond `common::TargetProcess` (which starts, kills with
//! SIGKILL, signals and restarts their servers): the config they serve and block stamps with
//! checksums.
#![allow(dead_code)] // each test binary uses a different subset

pub use crate::common::{free_port, unique_temp_dir as unique_dir, TargetProcess};

/// TOML for the default target with the given LUN tables and extra tables appended.
pub fn target_toml(luns: &str, extra: &str) -> String {
    format!(
        "data_dir = \"{{DATA_DIR}}\"\n[[portals]]\nname = \"p\"\nlisten = \"127.0.0.1:{{PORT}}\"\n\n\
         [[targets]]\nname = \"iqn.2026-11.io.palisade:default\"\n\n{luns}\n{extra}\n"
    )
}

pub const IQN: &str = "iqn.2026-11.io.palisade:default";

/// A 512-byte block that names itself: magic, round, sequence, LBA, then a filler derived from
/// them and a CRC32C of everything before it, so a lost, stale or torn block is recognised.
pub fn stamp(round: u32, seq: u32, lba: u32) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    b[0..8].copy_from_slice(b"PALSTAMP");
    b[8..12].copy_from_slice(&round.to_be_bytes());
    b[12..16].copy_from_slice(&seq.to_be_bytes());
    b[16..20].copy_from_slice(&lba.to_be_bytes());
    let mut x = round.wrapping_mul(0x9e37_79b9) ^ seq.wrapping_mul(0x85eb_ca6b) ^ lba;
    for byte in &mut b[20..508] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *byte = x as u8;
    }
    let crc = crc32c::crc32c(&b[..508]);
    b[508..].copy_from_slice(&crc.to_be_bytes());
    b
}
