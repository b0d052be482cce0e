//! Byte sizes written as integers or as strings with a unit ("1GiB", "512 MiB", "10GB").

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;
const PIB: u64 = 1 << 50;

/// Units accepted after the number. Binary (KiB…) and decimal (kB…) units are both spelled
/// out: a bare "G" is ambiguous and is rejected rather than guessed.
const UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kib", KIB),
    ("mib", MIB),
    ("gib", GIB),
    ("tib", TIB),
    ("pib", PIB),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("pb", 1_000_000_000_000_000),
];

/// Parses "1GiB", "512 MiB", "4096", "10GB" (decimal), case-insensitively, into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '_')).unwrap_or(trimmed.len());
    let (number_text, unit_text) = trimmed.split_at(digits_end);
    let number_text: String = number_text.chars().filter(|&c| c != '_').collect();
    if number_text.is_empty() {
        return Err(format!("`{text}` is not a size; write e.g. \"1GiB\", \"512MiB\" or a byte count"));
    }
    if unit_text.starts_with('.') {
        return Err(format!("`{text}`: fractional sizes are not accepted; use a smaller unit, e.g. \"1536MiB\""));
    }
    let number: u64 = number_text.parse().map_err(|_| format!("`{text}`: number too large"))?;
    let unit_key = unit_text.trim().to_ascii_lowercase();
    let multiplier = if unit_key.is_empty() {
        1
    } else {
        UNITS.iter().find(|(name, _)| *name == unit_key).map(|&(_, factor)| factor).ok_or_else(|| {
            format!(
                "`{text}`: unknown unit `{}`; use B, KiB, MiB, GiB, TiB (binary) or kB, MB, GB, TB (decimal)",
                unit_text.trim()
            )
        })?
    };
    number.checked_mul(multiplier).ok_or_else(|| format!("`{text}`: size overflows 64 bits"))
}

/// Formats a byte count with the largest binary unit that divides it exactly.
pub fn format_size(bytes: u64) -> String {
    for (name, factor) in [("PiB", PIB), ("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
        if bytes >= factor && bytes.is_multiple_of(factor) {
            return format!("{}{}", bytes / factor, name);
        }
    }
    format!("{bytes}B")
}

/// A size as written in the file: TOML integer (bytes) or a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeValue(pub u64);

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = SizeValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a byte count or a size string such as \"1GiB\"")
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<SizeValue, E> {
                u64::try_from(value)
                    .map(SizeValue)
                    .map_err(|_| E::custom(format!("size must not be negative, got {value}")))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<SizeValue, E> {
                Ok(SizeValue(value))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<SizeValue, E> {
                parse_size(value).map(SizeValue).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_units() {
        assert_eq!(parse_size("1GiB"), Ok(GIB));
        assert_eq!(parse_size("512MiB"), Ok(512 * MIB));
        assert_eq!(parse_size("512 MiB"), Ok(512 * MIB));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("2TiB"), Ok(2 * TIB));
        assert_eq!(parse_size("1gib"), Ok(GIB));
    }

    #[test]
    fn parses_decimal_units_and_plain_bytes() {
        assert_eq!(parse_size("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_size("1kB"), Ok(1000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert_eq!(parse_size("1_048_576"), Ok(MIB));
    }

    #[test]
    fn rejects_ambiguous_fractional_and_garbage() {
        assert!(parse_size("1G").unwrap_err().contains("unknown unit `G`"));
        assert!(parse_size("1.5GiB").unwrap_err().contains("fractional"));
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("-1GiB").is_err());
        assert!(parse_size("20000000PiB").unwrap_err().contains("overflows"));
        assert!(parse_size("99999999999999999999").unwrap_err().contains("too large"));
    }

    #[test]
    fn formats_with_largest_exact_unit() {
        assert_eq!(format_size(GIB), "1GiB");
        assert_eq!(format_size(1536 * MIB), "1536MiB");
        assert_eq!(format_size(4096), "4KiB");
        assert_eq!(format_size(1000), "1000B");
        assert_eq!(format_size(0), "0B");
    }

    #[derive(Deserialize)]
    struct Holder {
        size: SizeValue,
    }

    #[test]
    fn deserializes_from_integer_or_string() {
        let from_int: Holder = toml::from_str("size = 8192").unwrap();
        assert_eq!(from_int.size, SizeValue(8192));
        let from_text: Holder = toml::from_str("size = \"2MiB\"").unwrap();
        assert_eq!(from_text.size, SizeValue(2 * MIB));
        let negative = toml::from_str::<Holder>("size = -5").err().unwrap();
        assert!(negative.to_string().contains("must not be negative"));
        let bad = toml::from_str::<Holder>("size = \"3 parsecs\"").err().unwrap();
        assert!(bad.to_string().contains("unknown unit"));
    }
}
