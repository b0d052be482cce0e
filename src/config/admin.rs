//! Validation of `[admin]`: the operator's Unix socket (on by default, local only) and the
//! Prometheus metrics endpoint (off by default, loopback unless explicitly allowed).

use super::model::DEFAULT_ADMIN_SOCKET;
use super::raw::RawAdmin;
use super::validate::{parse_listen_addr, Validator};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// `sun_path` holds 108 bytes including the terminating NUL (unix(7)).
const MAX_SOCKET_PATH_BYTES: usize = 107;

/// Where operators reach a running server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// The admin socket (line-delimited JSON, mode 0600); `None` = no socket.
    pub socket: Option<PathBuf>,
    /// Address of the Prometheus text endpoint (`GET /metrics`); `None` = no endpoint.
    pub metrics_listen: Option<SocketAddr>,
}

impl AdminConfig {
    /// The default: a socket in the data folder, no metrics endpoint.
    pub fn in_data_dir(data_dir: &Path) -> AdminConfig {
        AdminConfig { socket: Some(data_dir.join(DEFAULT_ADMIN_SOCKET)), metrics_listen: None }
    }

    /// Without a configuration file nothing can move the socket: a data folder too deep for a
    /// socket address leaves the server without one (and says so) rather than unable to start.
    pub(super) fn for_zero_config(data_dir: &Path, warnings: &mut Vec<String>) -> AdminConfig {
        let mut admin = AdminConfig::in_data_dir(data_dir);
        if let Some(path) = admin.socket.take_if(|p| p.as_os_str().len() > MAX_SOCKET_PATH_BYTES) {
            warnings.push(format!(
                "no admin socket: {} is longer than a Unix socket address ({MAX_SOCKET_PATH_BYTES} bytes); \
                 use a shorter --data-dir, or --config with [admin] socket",
                path.display()
            ));
        }
        admin
    }
}

impl Validator<'_> {
    pub(super) fn admin(&mut self, raw: &RawAdmin, data_dir: &Path) -> AdminConfig {
        let socket = match (raw.socket_enabled.unwrap_or(true), &raw.socket) {
            (false, _) => None,
            (true, None) => Some(data_dir.join(DEFAULT_ADMIN_SOCKET)),
            (true, Some(path)) if path.as_os_str().is_empty() => {
                self.problem("admin.socket", "must not be empty (set socket_enabled = false to disable it)");
                None
            }
            (true, Some(path)) => Some(self.resolve(path)),
        };
        if let Some(path) = &socket {
            let bytes = path.as_os_str().len();
            if bytes > MAX_SOCKET_PATH_BYTES {
                self.problem(
                    "admin.socket",
                    format!(
                        "{} is {bytes} bytes; a Unix socket path holds at most {MAX_SOCKET_PATH_BYTES}",
                        path.display()
                    ),
                );
            }
        }
        let metrics_listen = raw.metrics_listen.as_deref().and_then(|text| match parse_listen_addr(text) {
            Err(why) => {
                self.problem("admin.metrics_listen", why);
                None
            }
            Ok(addr) if text.trim().parse::<SocketAddr>().is_err() => {
                // parse_listen_addr defaults to the iSCSI port, which is never right here.
                self.problem("admin.metrics_listen", format!("`{text}` needs a port, e.g. \"127.0.0.1:9470\""));
                let _ = addr;
                None
            }
            Ok(addr) if !addr.ip().is_loopback() && !raw.metrics_allow_remote.unwrap_or(false) => {
                // Metrics reveal initiator activity; exposing them is a deliberate choice.
                self.problem(
                    "admin.metrics_listen",
                    format!("{addr} is not a loopback address; set admin.metrics_allow_remote = true to serve metrics on it"),
                );
                None
            }
            Ok(addr) => Some(addr),
        });
        AdminConfig { socket, metrics_listen }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, DEFAULT_ADMIN_SOCKET};
    use std::path::Path;

    const BASE: &str = "[[portals]]\nlisten = \"127.0.0.1:3260\"\n[[targets]]\nname = \"iqn.2026-11.io.palisade:t\"\n\
                        [[targets.luns]]\nid = 0\nbackend = \"memory\"\nsize = \"1MiB\"\n";

    fn load(admin: &str) -> Result<Config, String> {
        Config::from_toml_str(&format!("data_dir = \"/srv/pal\"\n{BASE}\n[admin]\n{admin}"), Path::new("/etc/palisade"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_to_a_socket_in_the_data_dir_and_no_metrics() {
        let c = load("").unwrap();
        assert_eq!(c.admin.socket.as_deref(), Some(Path::new("/srv/pal").join(DEFAULT_ADMIN_SOCKET).as_path()));
        assert_eq!(c.admin.metrics_listen, None);
        let zero = Config::zero_config("127.0.0.1:3260".parse().unwrap(), "/d".into());
        assert_eq!(zero.admin.socket.as_deref(), Some(Path::new("/d/palisade.sock")));
        assert!(zero.warnings.is_empty());
        let deep = format!("/{}", "d".repeat(120));
        let zero = Config::zero_config("127.0.0.1:3260".parse().unwrap(), deep.into());
        assert_eq!(zero.admin.socket, None);
        assert!(zero.warnings[0].contains("no admin socket"), "{:?}", zero.warnings);
    }

    #[test]
    fn socket_can_move_or_be_disabled() {
        assert_eq!(
            load("socket = \"run/p.sock\"").unwrap().admin.socket.as_deref(),
            Some(Path::new("/etc/palisade/run/p.sock"))
        );
        assert_eq!(load("socket_enabled = false").unwrap().admin.socket, None);
        assert!(load("socket = \"\"").unwrap_err().contains("admin.socket"));
        let long = format!("socket = \"/{}\"", "x".repeat(120));
        assert!(load(&long).unwrap_err().contains("at most 107"));
    }

    #[test]
    fn metrics_stay_on_loopback_unless_allowed() {
        let c = load("metrics_listen = \"127.0.0.1:9470\"").unwrap();
        assert_eq!(c.admin.metrics_listen, Some("127.0.0.1:9470".parse().unwrap()));
        assert!(load("metrics_listen = \"[::1]:9470\"").is_ok());
        let refused = load("metrics_listen = \"0.0.0.0:9470\"").unwrap_err();
        assert!(refused.contains("metrics_allow_remote"), "{refused}");
        assert!(load("metrics_listen = \"0.0.0.0:9470\"\nmetrics_allow_remote = true").is_ok());
        assert!(load("metrics_listen = \"127.0.0.1\"").unwrap_err().contains("needs a port"));
        assert!(load("metrics_listen = \"localhost:1\"").is_err());
        assert!(load("bogus = 1").unwrap_err().contains("bogus"));
    }
}
