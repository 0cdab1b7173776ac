//! The client's error type.

use std::io;

use tern_protocol::{ApiError, ErrorCode};

/// What can go wrong talking to tern.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server refused the request: a DynamoDB error name and its message.
    #[error("{code}: {message}")]
    Api { code: ErrorCode, message: String },
    /// The socket failed (connect, read, write, peer closed).
    #[error("I/O error talking to {endpoint}: {source}")]
    Io {
        endpoint: String,
        #[source]
        source: io::Error,
    },
    /// No reply within the configured timeout. The request may or may not have run.
    #[error(
        "no reply from {endpoint} within {timeout_ms} ms (the request may or may not have been applied)"
    )]
    Timeout { endpoint: String, timeout_ms: u64 },
    /// The server sent something this client cannot decode.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The caller passed something invalid (checked before sending).
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl Error {
    /// The DynamoDB error name, when the server answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api { code, .. } => code.is_retryable(),
            Error::Io { .. } => true,
            Error::Timeout { .. } | Error::Protocol(_) | Error::Invalid(_) => false,
        }
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Error {
        Error::Api {
            code: e.code,
            message: e.message,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
