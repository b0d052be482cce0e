//! The admin socket protocol: one JSON object per line each way. A request names what it
//! wants — `{"request":"sessions"}`, `{"request":"reservations"}` or `{"request":"luns"}` or `{"request":"cluster"}` (the
//! bare word works too, for `socat`) — and the answer is `{"ok":true,"<what>":[...]}` or
//! `{"ok":false,"error":"..."}`. Every request is read-only.

use serde::{Deserialize, Serialize};

use super::view::{LunReservations, LunView, SessionView};

/// Longest request line accepted; requests are a few dozen bytes.
pub const MAX_REQUEST_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    Sessions,
    Reservations,
    Luns,
    /// Cluster mode: this gateway's membership and the gateways it sees (docs/cluster.md).
    Cluster,
}

impl RequestKind {
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Sessions => "sessions",
            RequestKind::Reservations => "reservations",
            RequestKind::Luns => "luns",
            RequestKind::Cluster => "cluster",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub request: RequestKind,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<Vec<SessionView>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<Vec<LunReservations>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub luns: Option<Vec<LunView>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::cluster::status::ClusterView>,
}

impl Response {
    pub fn error(message: impl Into<String>) -> Response {
        Response { ok: false, error: Some(message.into()), ..Response::default() }
    }
}

/// Parses one request line (JSON object or bare word).
pub fn parse_request(line: &str) -> Result<RequestKind, String> {
    let line = line.trim();
    if line.starts_with('{') {
        return serde_json::from_str::<Request>(line).map(|r| r.request).map_err(|e| format!("bad request: {e}"));
    }
    match line {
        "sessions" => Ok(RequestKind::Sessions),
        "reservations" => Ok(RequestKind::Reservations),
        "luns" => Ok(RequestKind::Luns),
        "cluster" => Ok(RequestKind::Cluster),
        _ => Err("unknown request; expected {\"request\":\"sessions\"|\"reservations\"|\"luns\"|\"cluster\"}".into()),
    }
}

/// The request line the CLI sends.
pub fn request_line(kind: RequestKind) -> String {
    let mut line = serde_json::to_string(&Request { request: kind }).unwrap_or_default();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_as_json_or_bare_words() {
        assert_eq!(parse_request("{\"request\":\"sessions\"}\n"), Ok(RequestKind::Sessions));
        assert_eq!(parse_request(" luns "), Ok(RequestKind::Luns));
        assert_eq!(parse_request(request_line(RequestKind::Reservations).as_str()), Ok(RequestKind::Reservations));
        assert!(parse_request("{\"request\":\"shutdown\"}").is_err());
        assert!(parse_request("{\"request\":\"luns\",\"x\":1}").is_err());
        assert!(parse_request("drop table").is_err());
    }

    #[test]
    fn errors_carry_no_payload() {
        let text = serde_json::to_string(&Response::error("nope")).unwrap();
        assert_eq!(text, "{\"ok\":false,\"error\":\"nope\"}");
    }
}
