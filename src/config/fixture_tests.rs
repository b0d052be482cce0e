//! Tests over the files in fixtures/config: the documented full example parses to the
//! expected values, and every bad file is rejected with an error naming its field.

use super::*;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/config")
}

fn chap(user: &str, secret: &str) -> Option<ChapConfig> {
    Some(ChapConfig { user: user.into(), secret: secret.into() })
}

#[test]
fn full_example_parses_to_expected_values() {
    let config = Config::load(&fixtures().join("full.toml")).unwrap_or_else(|e| panic!("{e}"));
    let both = vec!["storage-a".to_string(), "storage-b".to_string()];
    let expected = Config {
        portals: vec![
            Portal { name: "storage-a".into(), listen: "10.0.1.10:3260".parse().unwrap(), tpgt: 1 },
            Portal { name: "storage-b".into(), listen: "10.0.2.10:3260".parse().unwrap(), tpgt: 2 },
        ],
        targets: vec![
            TargetConfig {
                name: "iqn.2026-11.io.palisade:cluster-shared".into(),
                alias: Some("Cluster shared disks".into()),
                portals: both,
                luns: vec![
                    LunConfig {
                        serial: Some("PALQ0001".into()),
                        ..LunConfig::new(
                            0,
                            BackendConfig::File {
                                path: "/srv/palisade/quorum.img".into(),
                                size: Some(1 << 30),
                                direct_io: false,
                            },
                        )
                    },
                    LunConfig {
                        block_size: 4096,
                        physical_block_size: 4096,
                        naa: Some(0x5001405abcdef012),
                        write_cache: false,
                        ..LunConfig::new(
                            1,
                            BackendConfig::BlockDevice {
                                path: "/dev/disk/by-id/nvme-eui.0025388b91c1a2b3".into(),
                                direct_io: false,
                            },
                        )
                    },
                    LunConfig {
                        read_only: true,
                        product: Some("ARCHIVE".into()),
                        ..LunConfig::new(
                            2,
                            BackendConfig::File {
                                path: "/srv/palisade/archive.img".into(),
                                size: Some(500 << 30),
                                direct_io: true,
                            },
                        )
                    },
                ],
                acl: Some(vec![
                    AclEntry { initiator: "iqn.2026-11.com.example:node1".into(), luns: None },
                    AclEntry { initiator: "iqn.2026-11.com.example:node2".into(), luns: None },
                    AclEntry { initiator: "iqn.1991-05.com.microsoft:backup-host".into(), luns: Some(vec![2]) },
                ]),
                chap: chap("cluster-node", "node-Secret-2026"),
                // Read from secrets/array-chap.secret; the file's trailing newline is dropped.
                mutual_chap: chap("palisade-array", "array-Secret-26!"),
            },
            TargetConfig {
                name: "iqn.2026-11.io.palisade:scratch".into(),
                alias: None,
                portals: vec!["storage-b".into()],
                luns: vec![LunConfig {
                    product: Some("SCRATCH RAMDISK".into()),
                    ..LunConfig::new(0, BackendConfig::Memory { size: 4 << 30 })
                }],
                acl: None,
                chap: None,
                mutual_chap: None,
            },
        ],
        discovery: DiscoveryConfig { chap: chap("discovery", "disc0very-Secret"), mutual_chap: None, acl_filter: true },
        session: SessionConfig {
            nop_interval_secs: 10,
            nop_timeout_secs: 20,
            max_recv_data_segment_length: 262_144,
            max_burst_length: 1_048_576,
            first_burst_length: 262_144,
            max_outstanding_r2t: 4,
            immediate_data: true,
            initial_r2t: false,
            max_cmdsn_window: 256,
            login_timeout_secs: 20,
        },
        admin: AdminConfig::in_data_dir(std::path::Path::new("/var/lib/palisade")),
        limits: LimitsConfig::default(),
        cluster: None,
        data_dir: "/var/lib/palisade".into(),
        warnings: Vec::new(),
    };
    assert_eq!(config, expected);
}

#[test]
fn full_example_acl_masking_behaves() {
    let config = Config::load(&fixtures().join("full.toml")).unwrap();
    let shared = config.target("IQN.2026-11.io.palisade:cluster-shared").unwrap();
    assert!(shared.admits("iqn.2026-11.com.example:node1"));
    assert!(!shared.admits("iqn.2026-11.com.example:intruder"));
    assert!(shared.lun_visible("iqn.2026-11.com.example:node2", 1));
    assert!(shared.lun_visible("iqn.1991-05.com.microsoft:backup-host", 2));
    assert!(!shared.lun_visible("iqn.1991-05.com.microsoft:backup-host", 0));
    assert!(!shared.lun_visible("iqn.2026-11.com.example:node1", 7), "no such LUN");
    let scratch = config.target("iqn.2026-11.io.palisade:scratch").unwrap();
    assert!(scratch.admits("iqn.2026-11.com.example:anyone"));
    assert!(scratch.lun_visible("iqn.2026-11.com.example:anyone", 0));
}

/// Each bad fixture states what it must produce in `# expect-field:` (a field path the
/// error must name) and/or `# expect-text:` lines (substrings of the displayed error).
#[test]
fn every_bad_fixture_is_rejected_naming_its_field() {
    let bad_dir = fixtures().join("bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&bad_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "expected the full set of bad fixtures, found {}", files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect_fields: Vec<&str> =
            text.lines().filter_map(|l| l.strip_prefix("# expect-field:")).map(str::trim).collect();
        let expect_texts: Vec<&str> =
            text.lines().filter_map(|l| l.strip_prefix("# expect-text:")).map(str::trim).collect();
        assert!(!expect_fields.is_empty() || !expect_texts.is_empty(), "{} states no expectation", file.display());
        let error = match Config::load(&file) {
            Ok(_) => panic!("{} was accepted", file.display()),
            Err(error) => error,
        };
        let shown = error.to_string();
        for field in expect_fields {
            assert!(error.mentions_field(field), "{}: error does not name `{field}`:\n{shown}", file.display());
            assert!(shown.contains(&format!("{field}: ")) || shown.contains(&format!("{field}[")), "{shown}");
        }
        for expected in expect_texts {
            assert!(shown.contains(expected), "{}: error lacks `{expected}`:\n{shown}", file.display());
        }
        assert!(shown.contains(&file.display().to_string()), "error should name the file: {shown}");
    }
}

#[test]
fn documentation_shows_the_tested_example_verbatim() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let docs = std::fs::read_to_string(docs).unwrap();
    let example = std::fs::read_to_string(fixtures().join("full.toml")).unwrap();
    assert!(
        docs.contains(&format!("```toml\n{example}```")),
        "docs/configuration.md must quote fixtures/config/full.toml exactly"
    );
}
