//! Validation of `[[targets.luns]]` entries and their backends.

use super::model::*;
use super::raw::{RawLun, RawNaa};
use super::size::format_size;
use super::validate::Validator;
use std::path::Path;

impl Validator<'_> {
    pub(super) fn luns(&mut self, target_field: &str, raw: &[RawLun]) -> Vec<LunConfig> {
        if raw.is_empty() {
            self.problem(format!("{target_field}.luns"), "a target needs at least one [[targets.luns]] entry");
        }
        let mut luns: Vec<LunConfig> = Vec::new();
        for (index, raw_lun) in raw.iter().enumerate() {
            let field = format!("{target_field}.luns[{index}]");
            if let Some(lun) = self.lun(&field, raw_lun) {
                if let Some(other) = luns.iter().position(|other| other.id == lun.id) {
                    self.problem(format!("{field}.id"), format!("LUN {} is already defined by luns[{other}]", lun.id));
                }
                luns.push(lun);
            }
        }
        luns
    }

    fn lun(&mut self, field: &str, raw: &RawLun) -> Option<LunConfig> {
        let id = self.ranged::<u64>(&format!("{field}.id"), raw.id, 0..=MAX_LUN_ID as i64);
        let block_size = match raw.block_size.unwrap_or(512) {
            size @ (512 | 4096) => Some(size as u32),
            other => {
                self.problem(format!("{field}.block_size"), format!("must be 512 or 4096, got {other}"));
                None
            }
        };
        let physical_block_size = self.physical_block_size(field, raw, block_size.unwrap_or(512));
        let backend = self.backend(field, raw, block_size.unwrap_or(512));
        let serial = raw.serial.as_ref().and_then(|serial| {
            // SPC-4 §7.8.18: the unit serial number is ASCII data; 64 bytes keeps VPD 80h small.
            self.ascii_text(&format!("{field}.serial"), serial, 64).then(|| serial.clone())
        });
        let product = raw.product.as_ref().and_then(|product| {
            // SPC-4 §6.6.2: PRODUCT IDENTIFICATION is 16 bytes of ASCII data.
            self.ascii_text(&format!("{field}.product"), product, 16).then(|| product.clone())
        });
        let naa = raw.naa.as_ref().and_then(|naa| self.naa(&format!("{field}.naa"), naa));
        Some(LunConfig {
            id: id?,
            backend: backend?,
            block_size: block_size?,
            physical_block_size: physical_block_size?,
            read_only: raw.read_only.unwrap_or(false),
            serial,
            naa,
            product,
            write_cache: raw.write_cache.unwrap_or(true),
        })
    }

    /// SBC-3 §6.4.2 READ CAPACITY(16): the physical block is 2^LOGICAL BLOCKS PER PHYSICAL BLOCK
    /// EXPONENT logical blocks. Accepted: the logical block size times a power of two, up to
    /// 4096 bytes (a 512e disk reports 512-byte blocks in 4096-byte physical blocks).
    fn physical_block_size(&mut self, field: &str, raw: &RawLun, block_size: u32) -> Option<u32> {
        let value = raw.physical_block_size.unwrap_or(i64::from(block_size));
        let ok = value >= i64::from(block_size)
            && value <= 4096
            && value % i64::from(block_size) == 0
            && (value / i64::from(block_size)).count_ones() == 1;
        if !ok {
            self.problem(
                format!("{field}.physical_block_size"),
                format!("must be block_size ({block_size}) times a power of two, at most 4096, got {value}"),
            );
            return None;
        }
        Some(value as u32)
    }

    /// SPC-4 §4.3.1: ASCII data fields hold printable characters 20h..7Eh.
    fn ascii_text(&mut self, field: &str, text: &str, max_len: usize) -> bool {
        if text.trim().is_empty() || text.len() > max_len {
            self.problem(field, format!("must be 1..={max_len} characters, got {}", text.len()));
            false
        } else if !text.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            self.problem(field, "must contain printable ASCII characters only");
            false
        } else {
            true
        }
    }

    /// An 8-byte NAA designator (SPC-4 §7.8.6.6): NAA type 2 (IEEE extended),
    /// 3 (locally assigned) or 5 (IEEE registered) in the top nibble.
    fn naa(&mut self, field: &str, raw: &RawNaa) -> Option<u64> {
        let value = match raw {
            RawNaa::Number(n) => u64::try_from(*n).ok(),
            RawNaa::Text(text) => {
                let lower = text.trim().to_ascii_lowercase();
                let hex = lower.strip_prefix("naa.").or_else(|| lower.strip_prefix("0x")).unwrap_or(&lower);
                (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok()).flatten()
            }
        };
        let Some(value) = value else {
            self.problem(field, "must be a 64-bit NAA identifier: 16 hex digits, e.g. 0x5001405abcdef012");
            return None;
        };
        let naa_type = value >> 60;
        if !matches!(naa_type, 2 | 3 | 5) {
            self.problem(
                field,
                format!("NAA type {naa_type:X} (first hex digit) must be 2, 3 or 5 for an 8-byte designator"),
            );
            return None;
        }
        Some(value)
    }

    fn backend(&mut self, field: &str, raw: &RawLun, block_size: u32) -> Option<BackendConfig> {
        let size = raw.size.map(|s| s.0);
        match raw.backend.as_str() {
            "file" => {
                let Some(path) = raw.path.as_deref() else {
                    self.problem(format!("{field}.path"), "a file backend needs `path`");
                    return None;
                };
                let path = self.resolve(path);
                let size = self.file_size(field, &path, size, block_size)?;
                Some(BackendConfig::File { path, size, direct_io: raw.direct_io.unwrap_or(false) })
            }
            "memory" => {
                self.refuse(field, "path", raw.path.is_some(), "memory");
                self.refuse(field, "direct_io", raw.direct_io.is_some(), "memory");
                let Some(size) = size else {
                    self.problem(format!("{field}.size"), "a memory backend needs `size`, e.g. \"1GiB\"");
                    return None;
                };
                if size > MAX_MEMORY_LUN_SIZE {
                    self.problem(
                        format!("{field}.size"),
                        format!(
                            "memory LUNs are limited to {}, got {}",
                            format_size(MAX_MEMORY_LUN_SIZE),
                            format_size(size)
                        ),
                    );
                    return None;
                }
                self.block_multiple(field, size, block_size).then_some(BackendConfig::Memory { size })
            }
            "block" => {
                self.refuse(field, "size", size.is_some(), "block");
                let Some(path) = raw.path.as_deref() else {
                    self.problem(format!("{field}.path"), "a block backend needs `path`, e.g. \"/dev/sdb\"");
                    return None;
                };
                Some(BackendConfig::BlockDevice { path: self.resolve(path), direct_io: raw.direct_io.unwrap_or(false) })
            }
            other => {
                self.problem(
                    format!("{field}.backend"),
                    format!("must be \"file\", \"memory\" or \"block\", got \"{other}\""),
                );
                None
            }
        }
    }

    fn refuse(&mut self, field: &str, key: &str, present: bool, backend: &str) {
        if present {
            self.problem(format!("{field}.{key}"), format!("not used by a {backend} backend; remove it"));
        }
    }

    fn block_multiple(&mut self, field: &str, size: u64, block_size: u32) -> bool {
        if size == 0 || !size.is_multiple_of(u64::from(block_size)) {
            self.problem(
                format!("{field}.size"),
                format!("must be a positive multiple of the block size {block_size}, got {size}"),
            );
            return false;
        }
        true
    }

    /// A configured size is checked against the block size and any existing file (never
    /// shrink data silently); without a size the file must already exist.
    fn file_size(&mut self, field: &str, path: &Path, size: Option<u64>, block_size: u32) -> Option<Option<u64>> {
        let existing = std::fs::metadata(path).ok();
        if let Some(meta) = &existing {
            if !meta.is_file() {
                self.problem(
                    format!("{field}.path"),
                    format!("{} is not a regular file (use backend = \"block\" for devices)", path.display()),
                );
                return None;
            }
        }
        match (size, existing) {
            (Some(size), existing) => {
                if !self.block_multiple(field, size, block_size) {
                    return None;
                }
                if let Some(meta) = existing.filter(|meta| meta.len() > size) {
                    self.problem(
                        format!("{field}.size"),
                        format!(
                            "{} already holds {} bytes, more than size {size}; refusing to truncate",
                            path.display(),
                            meta.len()
                        ),
                    );
                    return None;
                }
                Some(Some(size))
            }
            (None, Some(meta)) => {
                if meta.len() == 0 || !meta.len().is_multiple_of(u64::from(block_size)) {
                    self.problem(
                        format!("{field}.path"),
                        format!(
                            "existing file {} is {} bytes, not a positive multiple of block size {block_size}",
                            path.display(),
                            meta.len()
                        ),
                    );
                    return None;
                }
                Some(None)
            }
            (None, None) => {
                self.problem(
                    format!("{field}.size"),
                    format!("{} does not exist; give `size` so it can be created", path.display()),
                );
                None
            }
        }
    }
}
