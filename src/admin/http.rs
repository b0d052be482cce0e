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
    metrics::render(&Scrape { luns, sessions, server: &registry.counters })
}
