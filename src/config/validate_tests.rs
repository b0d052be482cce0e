//! Unit tests of defaults, path resolution and validation rules not covered by fixtures.

use super::*;
use std::path::{Path, PathBuf};

const PORTAL: &str = "[[portals]]\nlisten = \"127.0.0.1:3260\"\n";
const TARGET: &str = "[[targets]]\nname = \"iqn.2026-11.io.palisade:t0\"\n";
const MEMORY_LUN: &str = "[[targets.luns]]\nid = 0\nbackend = \"memory\"\nsize = \"1MiB\"\n";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, Path::new("/etc/palisade"))
}

fn minimal_with(extra: &str) -> String {
    format!("{PORTAL}{TARGET}{MEMORY_LUN}{extra}")
}

/// A fresh scratch folder per test (no tempfile dependency needed for this).
fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("palisade-config-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn zero_config_serves_one_default_lun() {
    let config = Config::zero_config(Config::default_listen(), PathBuf::from("palisade-data"));
    assert_eq!(
        config.portals,
        vec![Portal { name: "default".into(), listen: "127.0.0.1:3260".parse().unwrap(), tpgt: 1 }]
    );
    let target = &config.targets[0];
    assert_eq!(target.name, "iqn.2026-11.io.palisade:default");
    assert_eq!(normalize_iscsi_name(&target.name).as_deref(), Ok(target.name.as_str()));
    assert_eq!(target.portals, vec!["default".to_string()]);
    assert_eq!((target.acl.clone(), target.chap.clone()), (None, None));
    assert_eq!(
        target.luns,
        vec![LunConfig::new(
            0,
            BackendConfig::File { path: "palisade-data/lun0.img".into(), size: Some(1 << 30), direct_io: false }
        )]
    );
    assert_eq!(config.session, SessionConfig::default());
    assert!(config.discovery.acl_filter && config.discovery.chap.is_none());
}

#[test]
fn minimal_file_gets_documented_defaults() {
    let config = parse(&minimal_with("")).unwrap();
    assert_eq!(config.portals[0].name, "portal0");
    assert_eq!(config.portals[0].tpgt, 1);
    assert_eq!(config.targets[0].portals, vec!["portal0".to_string()]);
    let lun = &config.targets[0].luns[0];
    assert_eq!(*lun, LunConfig::new(0, BackendConfig::Memory { size: 1 << 20 }));
    assert_eq!(config.data_dir, PathBuf::from("/etc/palisade/palisade-data"));
    assert_eq!(config.session, SessionConfig::default());
    assert_eq!(config.discovery, DiscoveryConfig::default());
    assert!(config.warnings.is_empty());
}

#[test]
fn relative_paths_resolve_against_the_base_dir() {
    let text = format!(
        "data_dir = \"state\"\n{PORTAL}{TARGET}[[targets.luns]]\nid = 0\nbackend = \"file\"\npath = \"disks/a.img\"\nsize = \"1GiB\"\n"
    );
    let config = parse(&text).unwrap();
    assert_eq!(config.data_dir, PathBuf::from("/etc/palisade/state"));
    assert_eq!(
        config.targets[0].luns[0].backend,
        BackendConfig::File { path: "/etc/palisade/disks/a.img".into(), size: Some(1 << 30), direct_io: false }
    );
}

#[test]
fn uppercase_names_are_normalized_with_a_warning() {
    let text = format!("{PORTAL}[[targets]]\nname = \"IQN.2026-11.IO.Palisade:T0\"\n{MEMORY_LUN}");
    let config = parse(&text).unwrap();
    assert_eq!(config.targets[0].name, "iqn.2026-11.io.palisade:t0");
    assert!(config.warnings.iter().any(|w| w.starts_with("targets[0].name:") && w.contains("case-insensitive")));
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let text = format!(
        "{PORTAL}[[targets]]\nname = \"bogus\"\n[[targets.luns]]\nid = -1\nbackend = \"memory\"\nsize = \"1MiB\"\nblock_size = 520\n[session]\nmax_outstanding_r2t = 0\n"
    );
    let error = parse(&text).unwrap_err();
    for field in
        ["targets[0].name", "targets[0].luns[0].id", "targets[0].luns[0].block_size", "session.max_outstanding_r2t"]
    {
        assert!(error.mentions_field(field), "missing {field} in {error}");
    }
    assert_eq!(error.problems.len(), 4, "{error}");
}

#[test]
fn parse_errors_carry_line_and_column() {
    let error = parse("[[portals]]\nlisten = 3260\n").unwrap_err();
    assert_eq!(error.problems[0].line_column, Some((2, 10)), "{error}");
    assert!(error.to_string().starts_with("line 2, column 10: "), "{error}");
}

#[test]
fn listen_addresses_accept_bare_ips_and_ipv6() {
    assert_eq!(parse_listen_addr("10.0.0.1"), Ok("10.0.0.1:3260".parse().unwrap()));
    assert_eq!(parse_listen_addr("[::1]:3261"), Ok("[::1]:3261".parse().unwrap()));
    assert_eq!(parse_listen_addr("::"), Ok("[::]:3260".parse().unwrap()));
    assert_eq!(parse_listen_addr("[fe80::1]"), Ok("[fe80::1]:3260".parse().unwrap()));
    assert!(parse_listen_addr("example.com:3260").is_err());
    assert!(parse_listen_addr("10.0.0.1:99999").is_err());
}

#[test]
fn wildcard_portals_of_different_families_or_ports_coexist() {
    let text = format!(
        "[[portals]]\nlisten = \"0.0.0.0:3260\"\n[[portals]]\nlisten = \"[::]:3260\"\n[[portals]]\nlisten = \"10.0.0.1:3261\"\n{TARGET}{MEMORY_LUN}"
    );
    let config = parse(&text).unwrap();
    assert_eq!(config.portals.iter().map(|p| p.tpgt).collect::<Vec<_>>(), vec![1, 2, 3]);
}

#[test]
fn existing_file_without_size_is_accepted_when_block_aligned() {
    let dir = scratch_dir("existing");
    std::fs::write(dir.join("good.img"), vec![0u8; 8192]).unwrap();
    std::fs::write(dir.join("odd.img"), vec![0u8; 1000]).unwrap();
    let lun = |path: &str, extra: &str| {
        format!("{PORTAL}{TARGET}[[targets.luns]]\nid = 0\nbackend = \"file\"\npath = \"{path}\"\n{extra}")
    };
    let config = Config::from_toml_str(&lun("good.img", ""), &dir).unwrap();
    assert_eq!(
        config.targets[0].luns[0].backend,
        BackendConfig::File { path: dir.join("good.img"), size: None, direct_io: false }
    );
    let odd = Config::from_toml_str(&lun("odd.img", ""), &dir).unwrap_err();
    assert!(odd.mentions_field("targets[0].luns[0].path") && odd.to_string().contains("1000 bytes"), "{odd}");
    let shrink = Config::from_toml_str(&lun("good.img", "size = 4096\n"), &dir).unwrap_err();
    assert!(shrink.mentions_field("targets[0].luns[0].size") && shrink.to_string().contains("refusing to truncate"));
    let grow = Config::from_toml_str(&lun("good.img", "size = \"1MiB\"\n"), &dir).unwrap();
    assert!(matches!(grow.targets[0].luns[0].backend, BackendConfig::File { size: Some(1048576), .. }));
    let folder = Config::from_toml_str(&lun(".", "size = 4096\n"), &dir).unwrap_err();
    assert!(folder.to_string().contains("not a regular file"), "{folder}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn secret_file_drops_one_trailing_line_ending() {
    let dir = scratch_dir("secret");
    std::fs::write(dir.join("crlf.secret"), "windows-secret1\r\n").unwrap();
    let text = format!("{PORTAL}{TARGET}chap = {{ user = \"u\", secret_file = \"crlf.secret\" }}\n{MEMORY_LUN}");
    let config = Config::from_toml_str(&text, &dir).unwrap();
    assert_eq!(config.targets[0].chap.as_ref().unwrap().secret, "windows-secret1");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn secret_file_that_never_ends_is_refused_not_read_forever() {
    let text = format!("{PORTAL}{TARGET}chap = {{ user = \"u\", secret_file = \"/dev/zero\" }}\n{MEMORY_LUN}");
    let err = parse(&text).unwrap_err();
    assert!(err.mentions_field("targets[0].chap.secret_file"), "{err}");
    assert!(err.to_string().contains("longer than 255 bytes"), "{err}");
}

#[test]
fn chap_secret_bounds_and_windows_warning() {
    let with_secret = |secret: &str| {
        parse(&format!("{PORTAL}{TARGET}chap = {{ user = \"u\", secret = \"{secret}\" }}\n{MEMORY_LUN}"))
    };
    assert!(with_secret(&"x".repeat(11)).unwrap_err().mentions_field("targets[0].chap.secret"));
    assert!(with_secret(&"x".repeat(12)).unwrap().warnings.is_empty());
    let long = with_secret(&"x".repeat(17)).unwrap();
    assert!(long.warnings.iter().any(|w| w.contains("Microsoft")), "{:?}", long.warnings);
    assert!(with_secret(&"x".repeat(255)).is_ok());
    assert!(with_secret(&"x".repeat(256)).is_err());
}

#[test]
fn mutual_chap_with_distinct_secret_is_accepted() {
    let text = format!(
        "{PORTAL}{TARGET}chap = {{ user = \"node\", secret = \"node-secret-123\" }}\nmutual_chap = {{ user = \"array\", secret = \"array-secret-12\" }}\n{MEMORY_LUN}"
    );
    let target = &parse(&text).unwrap().targets[0];
    assert_eq!(target.mutual_chap.as_ref().unwrap().user, "array");
}

#[test]
fn discovery_mutual_chap_needs_discovery_chap() {
    let text = minimal_with("[discovery]\nmutual_chap = { user = \"array\", secret = \"array-secret-12\" }\n");
    assert!(parse(&text).unwrap_err().mentions_field("discovery.mutual_chap"));
}

#[test]
fn naa_accepts_integer_and_hex_strings() {
    for naa in ["0x3001405abcdef012", "\"naa.3001405ABCDEF012\"", "\"0x3001405abcdef012\"", "\"3001405abcdef012\""] {
        let config = parse(&minimal_with(&format!("naa = {naa}\n"))).unwrap_or_else(|e| panic!("{naa}: {e}"));
        assert_eq!(config.targets[0].luns[0].naa, Some(0x3001405abcdef012), "{naa}");
    }
    for bad in ["-5", "\"naa.3001\"", "\"zz01405abcdef012\"", "0x1001405abcdef012"] {
        let error = parse(&minimal_with(&format!("naa = {bad}\n"))).unwrap_err();
        assert!(error.mentions_field("targets[0].luns[0].naa"), "{bad}: {error}");
    }
}

#[test]
fn serial_must_be_printable_ascii() {
    assert!(parse(&minimal_with("serial = \"SN 0001\"\n")).is_ok());
    assert!(parse(&minimal_with("serial = \"SN\\u00e9\"\n")).unwrap_err().mentions_field("targets[0].luns[0].serial"));
    assert!(parse(&minimal_with(&format!("serial = \"{}\"\n", "9".repeat(65)))).is_err());
}

#[test]
fn session_limits_at_their_edges() {
    let session = |body: &str| parse(&minimal_with(&format!("[session]\n{body}\n")));
    let equal = session("max_burst_length = 65536\nfirst_burst_length = 65536").unwrap();
    assert_eq!(equal.session.first_burst_length, equal.session.max_burst_length);
    assert_eq!(session("nop_interval_secs = 0").unwrap().session.nop_interval_secs, 0);
    assert!(session("nop_timeout_secs = 0").unwrap_err().mentions_field("session.nop_timeout_secs"));
    assert_eq!(
        session("max_recv_data_segment_length = 16777215").unwrap().session.max_recv_data_segment_length,
        16777215
    );
    assert!(session("max_recv_data_segment_length = \"16MiB\"").is_err(), "16 MiB is 2^24, one past the limit");
    assert!(session("max_burst_length = 511\nfirst_burst_length = 511")
        .unwrap_err()
        .mentions_field("session.max_burst_length"));
    assert_eq!(session("max_outstanding_r2t = 65535").unwrap().session.max_outstanding_r2t, 65535);
    assert!(session("max_outstanding_r2t = 65536").is_err());
    assert!(session("login_timeout_secs = 3601").is_err());
    assert!(session("unknown_knob = 1").unwrap_err().to_string().contains("unknown field `unknown_knob`"));
}

#[test]
fn target_portal_list_must_not_repeat_or_be_empty() {
    let repeat = parse(&format!("{PORTAL}{TARGET}portals = [\"portal0\", \"portal0\"]\n{MEMORY_LUN}")).unwrap_err();
    assert!(repeat.mentions_field("targets[0].portals[1]"));
    let empty = parse(&format!("{PORTAL}{TARGET}portals = []\n{MEMORY_LUN}")).unwrap_err();
    assert!(empty.mentions_field("targets[0].portals"));
}

#[test]
fn masking_lists_must_not_repeat_or_be_empty() {
    let acl = |luns: &str| {
        parse(&minimal_with(&format!("[[targets.acl]]\ninitiator = \"iqn.2026-11.com.example:n1\"\nluns = {luns}\n")))
    };
    assert_eq!(acl("[0]").unwrap().targets[0].acl.as_ref().unwrap()[0].luns, Some(vec![0]));
    assert!(acl("[0, 0]").unwrap_err().to_string().contains("listed twice"));
    assert!(acl("[]").unwrap_err().mentions_field("targets[0].acl[0].luns"));
}

#[test]
fn load_names_the_file_when_missing() {
    let error = Config::load(Path::new("/nonexistent/palisade.toml")).unwrap_err();
    assert!(error.to_string().starts_with("/nonexistent/palisade.toml: "), "{error}");
}
