//! One error type for everything the initiator does, in words an operator can act on.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The target refused the login with this Status-Class / Status-Detail (RFC 7143 §11.13.5).
    LoginRefused { class: u8, detail: u8 },
    /// The target closed (or reset) the connection.
    Closed,
    /// The target owed an answer and sent none in time.
    Timeout(String),
    /// Anything else: a protocol violation by the target, an I/O error, a bad option.
    Other(String),
}

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error::Other(message.into())
    }
}

/// RFC 7143 §11.13.5: what each login Status-Class / Status-Detail means.
fn login_status_text(class: u8, detail: u8) -> &'static str {
    match (class, detail) {
        (1, _) => "target moved (redirect)",
        (2, 0x01) => "authentication failed",
        (2, 0x02) => "authorization failure (ACL)",
        (2, 0x03) => "target not found",
        (2, 0x06) => "too many connections",
        (2, 0x07) => "missing parameter",
        (2, _) => "initiator error",
        (3, _) => "target error",
        _ => "login failed",
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::LoginRefused { class, detail } => {
                write!(f, "login: {} (status {class:02x}/{detail:02x})", login_status_text(*class, *detail))
            }
            Error::Closed => f.write_str("target closed the connection"),
            Error::Timeout(what) => f.write_str(what),
            Error::Other(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::UnexpectedEof => Error::Closed,
            _ => Error::Other(format!("I/O error: {e}")),
        }
    }
}

impl From<pdu::DecodeError> for Error {
    fn from(e: pdu::DecodeError) -> Self {
        Error::Other(format!("bad PDU from target: {e}"))
    }
}
