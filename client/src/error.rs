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

    /// The server could not learn whether this write was applied (its leader died with
    /// it, or no quorum answered in time): retrying is safe only for a request that may
    /// be applied twice.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Error::Api { code: ErrorCode::InternalServerError, message }
            if message.starts_with(tern_protocol::error::OUTCOME_UNKNOWN))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_unknown_is_told_apart_from_other_retryable_errors() {
        let unknown = Error::from(ApiError::internal(format!(
            "{}: shard 1: the connection to node 2 dropped; the write may or may not have been applied",
            tern_protocol::error::OUTCOME_UNKNOWN
        )));
        assert!(unknown.is_retryable() && unknown.is_outcome_unknown());
        let unavailable = Error::from(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "shard 0: no leader is elected yet; the request was not applied: retry",
        ));
        assert!(unavailable.is_retryable() && !unavailable.is_outcome_unknown());
        let internal = Error::from(ApiError::internal("something else"));
        assert!(!internal.is_outcome_unknown());
    }
}
