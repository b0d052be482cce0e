//! iSCSI node name validation and normalization (RFC 7143 §4.2.7, RFC 3722).

/// RFC 7143 §4.2.7: iSCSI names are at most 223 bytes.
pub const MAX_ISCSI_NAME_BYTES: usize = 223;

/// Validates an iSCSI name and returns its normalized (lowercase) form.
///
/// RFC 7143 §4.2.7 / RFC 3722: names are compared after stringprep, which maps ASCII upper
/// case to lower case, so "IQN.2026-11.IO.Example" and "iqn.2026-11.io.example" are one name.
/// This server accepts only the ASCII subset RFC 3722 §6.1 permits (a–z, 0–9, '-', '.', ':');
/// international names would need full nameprep, which we do not implement.
pub fn normalize_iscsi_name(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("iSCSI name must not be empty".into());
    }
    if raw.len() > MAX_ISCSI_NAME_BYTES {
        return Err(format!(
            "iSCSI name is {} bytes; RFC 7143 §4.2.7 allows at most {MAX_ISCSI_NAME_BYTES}",
            raw.len()
        ));
    }
    let name = raw.to_ascii_lowercase();
    if let Some(bad) =
        name.chars().find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':')))
    {
        return Err(format!(
            "iSCSI name `{raw}` contains `{bad}`; only letters, digits, '-', '.' and ':' are allowed (RFC 3722 §6.1)"
        ));
    }
    if let Some(rest) = name.strip_prefix("iqn.") {
        check_iqn(rest).map_err(|why| format!("`{raw}` is not a valid iqn name: {why}"))?;
    } else if let Some(hex) = name.strip_prefix("eui.") {
        // RFC 7143 §4.2.7.3: "eui." followed by an EUI-64 in 16 hex digits.
        if hex.len() != 16 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("`{raw}`: an eui name is \"eui.\" followed by exactly 16 hex digits"));
        }
    } else if let Some(hex) = name.strip_prefix("naa.") {
        // RFC 7143 §4.2.7.4: "naa." followed by a 64-bit or 128-bit NAA identifier in hex.
        if !matches!(hex.len(), 16 | 32) || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("`{raw}`: an naa name is \"naa.\" followed by 16 or 32 hex digits"));
        }
    } else {
        return Err(format!(
            "`{raw}` is not an iSCSI name; it must start with \"iqn.\", \"eui.\" or \"naa.\" (RFC 7143 §4.2.7)"
        ));
    }
    Ok(name)
}

/// RFC 7143 §4.2.7.2: iqn.<yyyy-mm>.<reversed domain name>[:<unique string>].
fn check_iqn(rest: &str) -> Result<(), String> {
    let (date, after_date) = rest.split_once('.').ok_or("expected iqn.yyyy-mm.reversed.domain[:identifier]")?;
    let date_bytes = date.as_bytes();
    let date_shape_ok = date_bytes.len() == 7
        && date_bytes[4] == b'-'
        && date_bytes[..4].iter().all(u8::is_ascii_digit)
        && date_bytes[5..].iter().all(u8::is_ascii_digit);
    if !date_shape_ok {
        return Err(format!("date `{date}` must be yyyy-mm"));
    }
    let month: u8 = date[5..].parse().map_err(|_| "bad month")?;
    if !(1..=12).contains(&month) {
        return Err(format!("month {month:02} in `{date}` is not 01..12"));
    }
    let (authority, unique) = match after_date.split_once(':') {
        Some((authority, unique)) => (authority, Some(unique)),
        None => (after_date, None),
    };
    if authority.is_empty() {
        return Err("the reversed domain name after the date is missing".into());
    }
    for label in authority.split('.') {
        if label.is_empty() {
            return Err(format!("empty label in domain `{authority}`"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("domain label `{label}` must not start or end with '-'"));
        }
    }
    if unique == Some("") {
        return Err("nothing follows the ':'".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_three_name_types() {
        for name in [
            "iqn.2026-11.io.palisade:default",
            "iqn.1991-05.com.microsoft",
            "iqn.2001-04.com.example:storage:diskarrays-sn-a8675309",
            "iqn.2001-04.com.example.storage.tape.sys1.xyz",
            "eui.02004567a425678d",
            "naa.52004567ba64678d",
            "naa.62004567ba64678d0123456789abcdef",
        ] {
            assert_eq!(normalize_iscsi_name(name).as_deref(), Ok(name), "{name}");
        }
    }

    #[test]
    fn normalizes_case_to_lowercase() {
        assert_eq!(normalize_iscsi_name("IQN.2026-11.IO.Palisade:Disk1").unwrap(), "iqn.2026-11.io.palisade:disk1");
        assert_eq!(normalize_iscsi_name("eui.02004567A425678D").unwrap(), "eui.02004567a425678d");
    }

    #[test]
    fn rejects_bad_prefixes_and_characters() {
        assert!(normalize_iscsi_name("").is_err());
        assert!(normalize_iscsi_name("target0").unwrap_err().contains("must start with"));
        assert!(normalize_iscsi_name("iqn.2026-11.io.pal isade").unwrap_err().contains("` `"));
        assert!(normalize_iscsi_name("iqn.2026-11.io.palisade:a_b").unwrap_err().contains("`_`"));
        assert!(normalize_iscsi_name("iqn.2026-11.io.palisadé").is_err());
    }

    #[test]
    fn rejects_malformed_iqn() {
        let err = |n: &str| normalize_iscsi_name(n).unwrap_err();
        assert!(err("iqn.26-11.io.example").contains("yyyy-mm"));
        assert!(err("iqn.2026-13.io.example").contains("month 13"));
        assert!(err("iqn.2026-00.io.example").contains("month 00"));
        assert!(err("iqn.2026-11").contains("expected iqn."));
        assert!(err("iqn.2026-11.").contains("missing"));
        assert!(err("iqn.2026-11.io..example").contains("empty label"));
        assert!(err("iqn.2026-11.-io.example").contains("start or end"));
        assert!(err("iqn.2026-11.io.example:").contains("nothing follows"));
    }

    #[test]
    fn rejects_wrong_hex_lengths() {
        assert!(normalize_iscsi_name("eui.02004567a425678").is_err());
        assert!(normalize_iscsi_name("eui.02004567a425678g").is_err());
        assert!(normalize_iscsi_name("naa.52004567ba64678d00").is_err());
    }

    #[test]
    fn enforces_223_byte_limit() {
        let prefix = "iqn.2026-11.io.palisade:";
        let fits = format!("{prefix}{}", "a".repeat(MAX_ISCSI_NAME_BYTES - prefix.len()));
        assert!(normalize_iscsi_name(&fits).is_ok());
        let too_long = format!("{fits}a");
        assert!(normalize_iscsi_name(&too_long).unwrap_err().contains("at most 223"));
    }
}
