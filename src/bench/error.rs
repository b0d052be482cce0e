//! One error type for the bench client: what went wrong, in words an operator can act on.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchError(pub String);

impl BenchError {
    pub fn new(message: impl Into<String>) -> BenchError {
        BenchError(message.into())
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> Self {
        BenchError(format!("I/O error: {e}"))
    }
}

impl From<initiator::Error> for BenchError {
    fn from(e: initiator::Error) -> Self {
        BenchError(e.to_string())
    }
}
