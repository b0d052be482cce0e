//! The admin Unix socket: created mode 0600 (only the server's user may ask), refuses to take
//! over a socket another live server answers on, replaces a stale one, and serves
//! line-delimited JSON requests (protocol.rs) until the server stops.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::protocol::{parse_request, RequestKind, Response, MAX_REQUEST_LINE};
use super::{view, AdminState};

/// Operator tools are few; more simultaneous clients than this wait for a slot.
const MAX_CLIENTS: usize = 16;
/// A client that sends nothing for this long is disconnected.
const IDLE: Duration = Duration::from_secs(60);

/// Removes the socket file when the server stops.
#[derive(Debug)]
pub(super) struct SocketFile(pub PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Binds the socket at `path` with mode 0600.
pub(super) fn bind(path: &Path) -> Result<(StdUnixListener, SocketFile), String> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match StdUnixStream::connect(path) {
            Ok(_) => return Err(format!("admin socket {shown}: another palisade server is answering on it")),
            // Left behind by a server that did not stop cleanly.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)
                .map_err(|e| format!("admin socket {shown}: cannot remove the stale socket: {e}"))?,
            Err(e) => return Err(format!("admin socket {shown}: {e}")),
        },
        Ok(_) => return Err(format!("admin socket {shown}: exists and is not a socket")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("admin socket {shown}: {e}")),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("admin socket folder {}: {e}", dir.display()))?;
    }
    // bind(2) creates the file with 0777 & ~umask: narrow the umask for that one call so the
    // socket is never reachable by others, not even between bind and chmod. Startup is
    // single-threaded at this point (no connection is served yet).
    // SAFETY: umask(2) only swaps the process file-mode mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = StdUnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|e| format!("admin socket {shown}: {e}"))?;
    let file = SocketFile(path.to_path_buf());
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("admin socket {shown}: chmod 0600: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| format!("admin socket {shown}: {e}"))?;
    Ok((listener, file))
}

pub(super) async fn serve(listener: UnixListener, state: Arc<AdminState>) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                warn!(error = %e, "admin socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = client(stream, &state).await {
                debug!(error = %e, "admin client ended");
            }
            drop(slot);
        });
    }
}

/// Answers request lines until the client closes, idles out, or sends an oversized line.
async fn client(stream: UnixStream, state: &AdminState) -> io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limited = (&mut rd).take(MAX_REQUEST_LINE as u64 + 1);
        let n = match tokio::time::timeout(IDLE, read_line(limited, &mut line)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        let oversized = !line.ends_with(b"\n") && n > MAX_REQUEST_LINE;
        let response = if oversized {
            Response::error(format!("request line longer than {MAX_REQUEST_LINE} bytes"))
        } else {
            match std::str::from_utf8(&line).map_err(|_| "request is not UTF-8".to_string()).and_then(parse_request) {
                Ok(kind) => answer(kind, state),
                Err(e) => Response::error(e),
            }
        };
        let mut text = serde_json::to_vec(&response)
            .unwrap_or_else(|e| format!("{{\"ok\":false,\"error\":\"{e}\"}}").into_bytes());
        text.push(b'\n');
        wr.write_all(&text).await?;
        if oversized {
            return Ok(());
        }
    }
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(mut rd: R, line: &mut Vec<u8>) -> io::Result<usize> {
    rd.read_until(b'\n', line).await
}

pub(super) fn answer(kind: RequestKind, state: &AdminState) -> Response {
    let registry = &state.registry;
    let mut r = Response { ok: true, ..Response::default() };
    match kind {
        RequestKind::Sessions => r.sessions = Some(view::sessions(registry)),
        RequestKind::Reservations => r.reservations = Some(view::reservations(registry)),
        RequestKind::Luns => r.luns = Some(view::luns(registry, &state.notes)),
        RequestKind::Cluster => match &state.cluster {
            Some(status) => r.cluster = Some(status.view()),
            None => return Response::error("this server is a single node (its configuration has no [cluster] table)"),
        },
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iscsi::registry::{Registry, SessionSettings};
    use tokio::io::AsyncBufReadExt;

    fn temp_socket(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("palisade-admin-{}-{name}.sock", std::process::id()))
    }

    async fn serve_empty(path: &Path) -> SocketFile {
        let (listener, file) = bind(path).expect("bind");
        let registry = Arc::new(Registry::new(Vec::new(), SessionSettings::default(), None, true));
        let state = Arc::new(AdminState { registry, notes: Default::default(), cluster: None });
        tokio::spawn(serve(UnixListener::from_std(listener).unwrap(), state));
        file
    }

    async fn ask(stream: &mut BufReader<UnixStream>, line: &[u8]) -> String {
        stream.get_mut().write_all(line).await.unwrap();
        let mut answer = String::new();
        stream.read_line(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn answers_each_line_and_refuses_bad_or_oversized_requests() {
        let path = temp_socket("lines");
        let _file = serve_empty(&path).await;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mut s = BufReader::new(UnixStream::connect(&path).await.unwrap());
        assert_eq!(ask(&mut s, b"{\"request\":\"luns\"}\n").await, "{\"ok\":true,\"luns\":[]}\n");
        assert_eq!(ask(&mut s, b"sessions\n").await, "{\"ok\":true,\"sessions\":[]}\n");
        assert!(ask(&mut s, b"{\"request\":\"shutdown\"}\n")
            .await
            .starts_with("{\"ok\":false,\"error\":\"bad request"));
        assert!(ask(&mut s, &[0xff, b'\n']).await.contains("not UTF-8"));
        // A line longer than the limit gets one error and the connection is closed.
        let answer = ask(&mut s, &vec![b'x'; MAX_REQUEST_LINE + 100]).await;
        assert!(answer.contains("longer than"), "{answer}");
        let mut rest = String::new();
        assert_eq!(s.read_line(&mut rest).await.unwrap(), 0, "closed after an oversized line");
    }

    #[tokio::test]
    async fn a_live_socket_is_never_taken_over_and_a_stale_one_is_replaced() {
        let path = temp_socket("takeover");
        let file = serve_empty(&path).await;
        let err = bind(&path).unwrap_err();
        assert!(err.contains("another palisade server"), "{err}");
        drop(file);
        assert!(!path.exists(), "the socket file goes with its server");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let (_listener, _file) = bind(&path).expect("a stale socket is replaced");
        let plain = temp_socket("plain-file");
        std::fs::write(&plain, b"not a socket").unwrap();
        assert!(bind(&plain).unwrap_err().contains("not a socket"));
        std::fs::remove_file(&plain).unwrap();
    }
}
