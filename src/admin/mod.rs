//! The operator's view of a running server (issues 4 and 6): a Unix socket answering
//! read-only JSON requests (sessions, reservations, LUNs), the optional Prometheus endpoint,
//! and the CLI side (`palisade pr show`, `palisade sessions`, `palisade luns`).
//!
//! Reads the transport's registry, the SCSI LUNs and their reservation state; changes nothing.

pub mod cli;
mod http;
pub mod protocol;
mod socket;
mod table;
pub mod view;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinSet;
use tracing::info;

use crate::config::{BackendConfig, Config};
use crate::iscsi::registry::Registry;
use view::BackendNotes;

/// What request handlers read.
pub(crate) struct AdminState {
    pub registry: Arc<Registry>,
    pub notes: BackendNotes,
    /// Cluster mode: the membership view (`None` on a single node).
    pub cluster: Option<Arc<crate::cluster::status::ClusterStatus>>,
}

/// The admin socket and metrics listener, bound but not yet serving.
#[derive(Debug)]
pub struct Admin {
    socket: Option<(std::os::unix::net::UnixListener, socket::SocketFile)>,
    metrics: Option<tokio::net::TcpListener>,
    notes: BackendNotes,
}

impl Admin {
    /// Binds what `config.admin` enables. Errors name the setting and the cause.
    pub async fn bind(config: &Config) -> Result<Admin, String> {
        let socket = match &config.admin.socket {
            Some(path) => Some(socket::bind(path)?),
            None => None,
        };
        let metrics = match config.admin.metrics_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| format!("admin.metrics_listen: cannot listen on {addr}: {e}"))?,
            ),
            None => None,
        };
        Ok(Admin { socket, metrics, notes: backend_notes(config) })
    }

    pub fn socket_path(&self) -> Option<&Path> {
        self.socket.as_ref().map(|(_, f)| f.0.as_path())
    }

    /// The metrics address actually bound (a port of 0 resolved).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Starts serving; everything stops (and the socket file goes) when the result is dropped.
    pub fn start(
        self,
        registry: Arc<Registry>,
        cluster: Option<Arc<crate::cluster::status::ClusterStatus>>,
    ) -> Result<Running, String> {
        let state = Arc::new(AdminState { registry, notes: self.notes, cluster });
        let mut tasks = JoinSet::new();
        let mut socket_file = None;
        if let Some((listener, file)) = self.socket {
            let listener = tokio::net::UnixListener::from_std(listener).map_err(|e| format!("admin socket: {e}"))?;
            info!(path = %file.0.display(), "admin socket ready");
            tasks.spawn(socket::serve(listener, state.clone()));
            socket_file = Some(file);
        }
        if let Some(listener) = self.metrics {
            if let Ok(addr) = listener.local_addr() {
                info!("metrics at http://{addr}/metrics");
            }
            tasks.spawn(http::serve(listener, state));
        }
        Ok(Running { _tasks: tasks, _socket: socket_file })
    }
}

/// The serving admin tasks; dropping this aborts them and removes the socket file.
pub struct Running {
    _tasks: JoinSet<()>,
    _socket: Option<socket::SocketFile>,
}

/// File paths and direct-I/O flags from the configuration (the running LUN keeps neither).
fn backend_notes(config: &Config) -> BackendNotes {
    let mut notes = BackendNotes::default();
    for t in &config.targets {
        for l in &t.luns {
            let (backend, path) = match &l.backend {
                BackendConfig::File { path, direct_io, .. } => {
                    (if *direct_io { "file (O_DIRECT)" } else { "file" }, Some(path.display().to_string()))
                }
                BackendConfig::Memory { .. } => ("memory", None),
                BackendConfig::BlockDevice { path, direct_io } => {
                    (if *direct_io { "block (O_DIRECT)" } else { "block" }, Some(path.display().to_string()))
                }
            };
            notes.by_lun.insert((t.name.clone(), l.id), (backend.to_string(), path));
        }
    }
    notes
}
