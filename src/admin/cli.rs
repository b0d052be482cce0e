//! The CLI side of the admin socket: find the socket, ask one question, print the answer as a
//! table or JSON. Errors are sentences for the operator ("no palisade server is running ...").

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{request_line, RequestKind, Response};
use super::table;
use crate::config::{Config, DEFAULT_ADMIN_SOCKET, DEFAULT_DATA_DIR};

const TIMEOUT: Duration = Duration::from_secs(10);
/// Answers larger than this are not from a palisade server.
const MAX_RESPONSE: u64 = 64 << 20;

/// Where to ask: `--socket`, else the `[admin]` socket of `--config`, else
/// `<--data-dir or ./palisade-data>/palisade.sock`.
pub fn socket_path(data_dir: Option<&Path>, socket: Option<&Path>, config: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(s) = socket {
        return Ok(s.to_path_buf());
    }
    if let Some(path) = config {
        let config = Config::load(path).map_err(|e| e.to_string())?;
        return config.admin.socket.ok_or_else(|| {
            format!("{}: the admin socket is disabled ([admin] socket_enabled = false)", path.display())
        });
    }
    Ok(data_dir.unwrap_or(Path::new(DEFAULT_DATA_DIR)).join(DEFAULT_ADMIN_SOCKET))
}

/// Sends one request and reads the answer.
pub fn query(socket: &Path, kind: RequestKind) -> Result<Response, String> {
    let shown = socket.display();
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            format!("no palisade server is running at {shown} (start one with `palisade serve`, or point to it with --socket, --config or --data-dir)")
        }
        io::ErrorKind::PermissionDenied => {
            format!("permission denied on {shown}: the admin socket is mode 0600; run this as the server's user")
        }
        _ => format!("cannot reach the admin socket {shown}: {e}"),
    })?;
    let io_error = |e: io::Error| format!("admin socket {shown}: {e}");
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io_error)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io_error)?;
    stream.write_all(request_line(kind).as_bytes()).map_err(io_error)?;
    let mut line = String::new();
    BufReader::new(io::Read::take(&stream, MAX_RESPONSE)).read_line(&mut line).map_err(io_error)?;
    if line.is_empty() {
        return Err(format!("admin socket {shown}: the server closed the connection without answering"));
    }
    let response: Response =
        serde_json::from_str(&line).map_err(|e| format!("admin socket {shown}: unexpected answer: {e}"))?;
    if !response.ok {
        return Err(format!("the server refused `{}`: {}", kind.name(), response.error.unwrap_or_default()));
    }
    Ok(response)
}

/// Runs one CLI command: the text to print on success.
pub fn run(kind: RequestKind, socket: &Path, json: bool) -> Result<String, String> {
    let r = query(socket, kind)?;
    let missing = || format!("the server's answer to `{}` has no data", kind.name());
    let to_json = |v: serde_json::Result<String>| v.map(|s| s + "\n").map_err(|e| e.to_string());
    match kind {
        RequestKind::Sessions => {
            let s = r.sessions.ok_or_else(missing)?;
            if json {
                to_json(serde_json::to_string_pretty(&s))
            } else {
                Ok(table::sessions(&s))
            }
        }
        RequestKind::Reservations => {
            let s = r.reservations.ok_or_else(missing)?;
            if json {
                to_json(serde_json::to_string_pretty(&s))
            } else {
                Ok(table::reservations(&s))
            }
        }
        RequestKind::Luns => {
            let s = r.luns.ok_or_else(missing)?;
            if json {
                to_json(serde_json::to_string_pretty(&s))
            } else {
                Ok(table::luns(&s))
            }
        }
        RequestKind::Cluster => {
            let s = r.cluster.ok_or_else(missing)?;
            if json {
                to_json(serde_json::to_string_pretty(&s))
            } else {
                Ok(table::cluster(&s))
            }
        }
    }
}
