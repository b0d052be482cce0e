//! The cluster tests' world: three real etcd members on loopback (Debian's `etcd-server`,
//! installed by scripts/install-deps.sh), each killable and restartable, and a TCP proxy the
//! test controls to cut one gateway off from etcd (a blackhole: connections open, no byte
//! passes) and to heal it. Every process is ours and stopped on drop; nothing else is touched.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{free_port, unique_temp_dir};

/// One etcd member: its ports, data folder and process.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// A three-member etcd cluster on 127.0.0.1 with fast elections (50 ms heartbeat, 500 ms
/// election timeout), so a test sees a new leader in about a second.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: PathBuf,
    token: String,
}

impl EtcdCluster {
    pub fn start() -> EtcdCluster {
        let dir = unique_temp_dir("palisade-etcd");
        let members = (0..3)
            .map(|i| Member { name: format!("m{i}"), client_port: free_port(), peer_port: free_port(), child: None })
            .collect();
        let token = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut cluster = EtcdCluster { members, dir, token };
        for i in 0..3 {
            cluster.start_member(i);
        }
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    }

    fn start_member(&mut self, index: usize) {
        let initial: Vec<String> =
            self.members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port)).collect();
        let m = &self.members[index];
        let data = self.dir.join(&m.name);
        let log = std::fs::File::create(self.dir.join(format!("{}.log", m.name))).expect("etcd log");
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new("etcd")
            .args(["--name", &m.name, "--data-dir", &data.to_string_lossy()])
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial.join(","), "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("cannot run etcd: install it with scripts/install-deps.sh (Debian etcd-server)");
        self.members[index].child = Some(child);
    }

    /// `http://127.0.0.1:PORT` of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("http://127.0.0.1:{}", m.client_port)).collect()
    }

    pub fn client_addr(&self, index: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.members[index].client_port))
    }

    /// SIGKILL one member (its data stays; `restart` brings it back).
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self, index: usize) {
        assert!(self.members[index].child.is_none(), "member {index} is running");
        self.start_member(index);
    }

    /// Waits until a majority of members answers `/health` with `"health":"true"` (a leader
    /// exists and the member can serve).
    pub fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let healthy = (0..self.members.len()).filter(|&i| self.healthy(i)).count();
            if healthy * 2 > self.members.len() {
                return;
            }
            assert!(Instant::now() < deadline, "etcd not healthy after {within:?}:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn healthy(&self, index: usize) -> bool {
        self.http_get(index, "/health").contains("\"health\":\"true\"")
    }

    /// The running member that says it is the raft leader (its `/metrics` gauge
    /// `etcd_server_is_leader` is 1), if one does.
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].child.is_some())
            .find(|&i| self.http_get(i, "/metrics").lines().any(|l| l.trim() == "etcd_server_is_leader 1"))
    }

    /// The answer (headers and body) of member `index` to `GET path`; empty when unreachable.
    fn http_get(&self, index: usize, path: &str) -> String {
        let Ok(mut s) = TcpStream::connect_timeout(&self.client_addr(index), Duration::from_millis(200)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).is_err() {
            return String::new();
        }
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    }

    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let text = std::fs::read_to_string(self.dir.join(format!("{}.log", m.name))).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                format!(
                    "--- etcd {} (last lines) ---\n{}\n",
                    m.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for i in 0..self.members.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP proxy on a free loopback port forwarding to `upstream`, until `cut`: then every open
/// connection stops passing bytes and new ones are accepted but never forwarded — a network
/// partition as the gateway sees it (no reset, only silence). `heal` forwards new connections
/// again and closes the silenced ones, as a partition that ends resets stale TCP state.
/// `set_latency` delays every byte by a fixed time in both directions (a slow link).
pub struct TcpProxy {
    port: u16,
    cut: Arc<AtomicBool>,
    latency_us: Arc<AtomicU64>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl TcpProxy {
    pub fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let port = listener.local_addr().expect("proxy addr").port();
        listener.set_nonblocking(true).expect("nonblocking accept");
        let proxy = TcpProxy {
            port,
            cut: Arc::new(AtomicBool::new(false)),
            latency_us: Arc::new(AtomicU64::new(0)),
            connections: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (cut, connections, stop) = (proxy.cut.clone(), proxy.connections.clone(), proxy.stop.clone());
        let latency = proxy.latency_us.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let (client, _) = match listener.accept() {
                    Ok(pair) => pair,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                let _ = client.set_nonblocking(false);
                connections.lock().unwrap().push(client.try_clone().expect("clone"));
                if cut.load(Ordering::SeqCst) {
                    continue; // held open, never forwarded
                }
                let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(1)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                connections.lock().unwrap().push(server.try_clone().expect("clone"));
                let link = Link { cut: cut.clone(), latency_us: latency.clone() };
                pipe(client.try_clone().expect("clone"), server.try_clone().expect("clone"), link.clone());
                pipe(server, client, link);
            }
        });
        proxy
    }

    /// `http://127.0.0.1:PORT`: give this to the gateway instead of the member's address.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Every byte read from now on is forwarded `latency` after it was read (order kept).
    pub fn set_latency(&self, latency: Duration) {
        self.latency_us.store(latency.as_micros() as u64, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        let mut connections = self.connections.lock().unwrap();
        for c in connections.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.connections.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

/// What a pipe consults for every chunk: cut (drop it) and latency (hold it back).
#[derive(Clone)]
struct Link {
    cut: Arc<AtomicBool>,
    latency_us: Arc<AtomicU64>,
}

/// Copies `from` → `to` while not cut; once cut, reads are discarded (the bytes are lost in the
/// partition) until the connection is closed. A second thread writes each chunk once its
/// latency has passed, so a slow link still reads at full speed.
fn pipe(mut from: TcpStream, mut to: TcpStream, link: Link) {
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        for (due, chunk) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if link.cut.load(Ordering::SeqCst) {
                continue;
            }
            let due = Instant::now() + Duration::from_micros(link.latency_us.load(Ordering::SeqCst));
            if tx.send((due, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
}
