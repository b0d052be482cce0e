//! The in-process server the loopback benchmarks drive: the real `Server` on 127.0.0.1:0 with
//! memory LUNs, on the runtime it is given, without an admin socket (several bench processes
//! may share the temp folder's parent).

use std::net::SocketAddr;

use palisade::config::{
    AdminConfig, BackendConfig, Config, DiscoveryConfig, LimitsConfig, LunConfig, Portal, SessionConfig, TargetConfig,
    DEFAULT_TARGET_NAME,
};
use palisade::server::Server;

/// Serves `luns` memory LUNs of `lun_bytes` each as LUN 0, 1, …; returns the portal address.
#[allow(dead_code)] // not every bench serves memory LUNs
pub fn start_server(rt: &tokio::runtime::Runtime, tag: &str, luns: u64, lun_bytes: u64) -> SocketAddr {
    let luns = (0..luns).map(|id| LunConfig::new(id, BackendConfig::Memory { size: lun_bytes })).collect();
    start_server_with(rt, tag, luns)
}

/// The temp folder a benchmark's server (and its file LUNs) lives in.
pub fn data_dir(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("palisade-{tag}-bench-{}", std::process::id()))
}

/// Serves the given LUNs; returns the portal address.
pub fn start_server_with(rt: &tokio::runtime::Runtime, tag: &str, luns: Vec<LunConfig>) -> SocketAddr {
    let data_dir = data_dir(tag);
    let config = Config {
        portals: vec![Portal { name: "bench".into(), listen: SocketAddr::from(([127, 0, 0, 1], 0)), tpgt: 1 }],
        targets: vec![TargetConfig {
            name: DEFAULT_TARGET_NAME.into(),
            alias: None,
            portals: vec!["bench".into()],
            luns,
            acl: None,
            chap: None,
            mutual_chap: None,
        }],
        discovery: DiscoveryConfig::default(),
        session: SessionConfig::default(),
        data_dir,
        admin: AdminConfig { socket: None, metrics_listen: None },
        limits: LimitsConfig::default(),
        cluster: None,
        warnings: Vec::new(),
    };
    rt.block_on(async {
        let server = Server::bind(&config).await.expect("bind the in-process server");
        let addr = server.portals()[0].addr;
        let (stop, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _keep_sender = stop;
            server.run(rx).await.expect("server runs");
        });
        addr
    })
}
