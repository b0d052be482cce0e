//! Server configuration: the TOML file model, its validation, and the zero-config default.
//!
//! The file is read into `raw` serde structs (unknown keys rejected), then a validation pass
//! builds the typed [`Config`], naming every problem by its field path.

mod admin;
mod auth;
mod cluster;
mod error;
mod limits;
mod lun;
mod model;
mod names;
mod raw;
mod session;
mod size;
mod summary;
mod validate;

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod validate_tests;

pub use admin::AdminConfig;
pub use auth::{MAX_CHAP_SECRET_BYTES, MIN_CHAP_SECRET_BYTES};
pub use cluster::{ClusterConfig, DEFAULT_KEY_PREFIX};
pub use error::{ConfigError, ConfigProblem};
pub use model::*;
pub use names::{normalize_iscsi_name, MAX_ISCSI_NAME_BYTES};
pub use size::{format_size, parse_size};
pub use validate::parse_listen_addr;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

impl Config {
    /// What `palisade serve` runs without `--config`: one target with LUN 0 backed by a
    /// 1 GiB sparse file `<data_dir>/lun0.img`, one portal, no CHAP, every initiator admitted.
    /// The server creates `data_dir` and the image when they are missing.
    pub fn zero_config(listen: SocketAddr, data_dir: PathBuf) -> Config {
        let image = data_dir.join("lun0.img");
        let mut warnings = Vec::new();
        let admin = AdminConfig::for_zero_config(&data_dir, &mut warnings);
        Config {
            portals: vec![Portal { name: "default".into(), listen, tpgt: 1 }],
            targets: vec![TargetConfig {
                name: DEFAULT_TARGET_NAME.into(),
                alias: Some("palisade".into()),
                portals: vec!["default".into()],
                luns: vec![LunConfig::new(
                    0,
                    BackendConfig::File { path: image, size: Some(DEFAULT_LUN_SIZE), direct_io: false },
                )],
                acl: None,
                chap: None,
                mutual_chap: None,
            }],
            discovery: DiscoveryConfig::default(),
            session: SessionConfig::default(),
            admin,
            limits: LimitsConfig::default(),
            cluster: None,
            data_dir,
            warnings,
        }
    }

    /// The default portal address: loopback only, so a first run exposes nothing.
    pub fn default_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], DEFAULT_ISCSI_PORT))
    }

    /// Parses and validates a configuration. Relative paths (data_dir, LUN files,
    /// secret files) resolve against `base_dir`, normally the file's folder.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|error| ConfigError::from_toml(&error, text))?;
        validate::Validator::new(base_dir).finish(raw)
    }

    /// Reads, parses and validates the file at `path`; errors carry the file name.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError::field("", format!("cannot read: {error}")).with_file(path.to_path_buf()))?;
        let base_dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Config::from_toml_str(&text, &base_dir).map_err(|error| error.with_file(path.to_path_buf()))
    }

    pub fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets.iter().find(|target| target.name.eq_ignore_ascii_case(name))
    }

    pub fn portal(&self, name: &str) -> Option<&Portal> {
        self.portals.iter().find(|portal| portal.name == name)
    }
}
