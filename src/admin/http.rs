//! A deliberately tiny HTTP/1.1 responder for Prometheus: `GET /metrics` (and `HEAD`) answer
//! the text exposition; anything else gets 404/405/400. One request per connection, bounded
//! request size and time, a few connections at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::AdminState;
use crate::metrics::{self, LunSample, Scrape, SessionCount, CONTENT_TYPE};

const MAX_REQUEST_HEAD: usize = 8192;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CLIENTS: usize = 8;

pub(super) async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Scrapers retry; dropping a connection beyond the limit is the cheap answer.
        let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = tokio::time::timeout(REQUEST_TIMEOUT, respond(stream, &state)).await {
                debug!(error = %e, "metrics request timed out");
            }
            drop(slot);
        });
    }
}

async fn respond(mut stream: TcpStream, state: &AdminState) {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST_HEAD {
            return reply(&mut stream, "431 Request Header Fields Too Large", "", b"", true).await;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.lines().next().unwrap_or("").split(' ');
    let (method, target, version) =
        (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") {
        return reply(&mut stream, "400 Bad Request", "", b"bad request\n", true).await;
    }
    let path = target.split('?').next().unwrap_or("");
    if path != "/metrics" {
        return reply(&mut stream, "404 Not Found", "", b"only /metrics is served here\n", true).await;
    }
    let with_body = match method {
        "GET" => true,
        "HEAD" => false,
        _ => return reply(&mut stream, "405 Method Not Allowed", "Allow: GET, HEAD\r\n", b"", true).await,
    };
    let body = scrape(state);
    let content_type = format!("Content-Type: {CONTENT_TYPE}\r\n");
    reply(&mut stream, "200 OK", &content_type, body.as_bytes(), with_body).await;
}

/// Sends one response and closes; `headers` are extra CRLF-terminated header lines.
async fn reply(stream: &mut TcpStream, status: &str, headers: &str, body: &[u8], with_body: bool) {
    let head = format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = stream.write_all(head.as_bytes()).await;
    if with_body {
        let _ = stream.write_all(body).await;
    }
    let _ = stream.shutdown().await;
    // Lingering close: read what the client still sends (an oversized head) so the kernel
    // does not answer it with a reset that could destroy the response in flight.
    let mut sink = [0u8; 4096];
    let drain = async {
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// Walks the live server into one Prometheus text page.
pub(super) fn scrape(state: &AdminState) -> String {
    let registry = &state.registry;
    let targets = super::view::sorted_targets(registry);
    let mut luns = Vec::new();
    for t in &targets {
        for lun in t.scsi.luns() {
            let pr = lun.pr().snapshot();
            luns.push(LunSample {
                target: &t.name,
                lun: lun.id(),
                stats: lun.stats(),
                pr_registrants: pr.registrants.len(),
                pr_reserved: pr.reservation.is_some(),
                pr_generation: pr.generation,
            });
        }
    }
    let mut sessions: Vec<SessionCount> =
        targets.iter().map(|t| SessionCount { target: Some(t.name.clone()), kind: "normal", count: 0 }).collect();
    let mut discovery = 0;
    for s in registry.sessions.all() {
        match &s.target {
            Some(t) => {
                if let Some(c) = sessions.iter_mut().find(|c| c.target.as_deref() == Some(t.name.as_str())) {
                    c.count += 1;
                }
            }
            None => discovery += 1,
        }
    }
    sessions.push(SessionCount { target: None, kind: "discovery", count: discovery });
    let mut page = metrics::render(&Scrape { luns, sessions, server: &registry.counters });
    if let Some(cluster) = &state.cluster {
        page += &cluster.view().prometheus();
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iscsi::registry::{Registry, SessionSettings};

    async fn endpoint() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let registry = Arc::new(Registry::new(Vec::new(), SessionSettings::default(), None, true));
        registry.counters.login(0, 0);
        tokio::spawn(serve(listener, Arc::new(AdminState { registry, notes: Default::default(), cluster: None })));
        addr
    }

    async fn get(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply).await;
        String::from_utf8_lossy(&reply).into_owned()
    }

    #[tokio::test]
    async fn serves_metrics_and_nothing_else() {
        let addr = endpoint().await;
        let ok = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        let (head, body) = ok.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())), "{head}");
        assert!(body.contains("palisade_logins_total{status=\"success\"} 1\n"), "{body}");
        assert!(body.contains("palisade_sessions{target=\"\",type=\"discovery\"} 0\n"), "{body}");
        let head_only = get(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n").await;
        assert!(head_only.starts_with("HTTP/1.1 200 OK") && head_only.ends_with("\r\n\r\n"), "{head_only}");
        assert!(get(addr, b"GET / HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 404"));
        let post = get(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405") && post.contains("Allow: GET, HEAD\r\n"), "{post}");
        assert!(get(addr, b"GET /metrics SPDY/9\r\n\r\n").await.starts_with("HTTP/1.1 400"));
        let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b'x', 3 * MAX_REQUEST_HEAD));
        assert!(get(addr, &huge).await.starts_with("HTTP/1.1 431"));
    }
}
