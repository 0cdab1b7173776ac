//! Errors a user can cause, named as DynamoDB names them.
//!
//! [`ApiError`] is what a request gets back when it is well-formed but cannot be served:
//! a DynamoDB error name ([`ErrorCode`]) and a message that says what to fix. It travels in
//! an error frame (`messages::ErrorResponse`) and the connection stays usable.

use std::fmt;

/// DynamoDB's error names. The discriminants are wire values: never reuse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum ErrorCode {
    ValidationException = 1,
    ResourceNotFoundException = 2,
    ResourceInUseException = 3,
    ConditionalCheckFailedException = 4,
    TransactionCanceledException = 5,
    ProvisionedThroughputExceededException = 6,
    ThrottlingException = 7,
    RequestLimitExceeded = 8,
    LimitExceededException = 9,
    ItemCollectionSizeLimitExceededException = 10,
    InternalServerError = 11,
    ServiceUnavailable = 12,
    /// The frame or its body could not be decoded (bad magic, CRC, archive).
    SerializationException = 13,
    UnknownOperationException = 14,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::ValidationException,
        ErrorCode::ResourceNotFoundException,
        ErrorCode::ResourceInUseException,
        ErrorCode::ConditionalCheckFailedException,
        ErrorCode::TransactionCanceledException,
        ErrorCode::ProvisionedThroughputExceededException,
        ErrorCode::ThrottlingException,
        ErrorCode::RequestLimitExceeded,
        ErrorCode::LimitExceededException,
        ErrorCode::ItemCollectionSizeLimitExceededException,
        ErrorCode::InternalServerError,
        ErrorCode::ServiceUnavailable,
        ErrorCode::SerializationException,
        ErrorCode::UnknownOperationException,
    ];

    /// The DynamoDB error name, e.g. `ValidationException`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::ValidationException => "ValidationException",
            ErrorCode::ResourceNotFoundException => "ResourceNotFoundException",
            ErrorCode::ResourceInUseException => "ResourceInUseException",
            ErrorCode::ConditionalCheckFailedException => "ConditionalCheckFailedException",
            ErrorCode::TransactionCanceledException => "TransactionCanceledException",
            ErrorCode::ProvisionedThroughputExceededException => {
                "ProvisionedThroughputExceededException"
            }
            ErrorCode::ThrottlingException => "ThrottlingException",
            ErrorCode::RequestLimitExceeded => "RequestLimitExceeded",
            ErrorCode::LimitExceededException => "LimitExceededException",
            ErrorCode::ItemCollectionSizeLimitExceededException => {
                "ItemCollectionSizeLimitExceededException"
            }
            ErrorCode::InternalServerError => "InternalServerError",
            ErrorCode::ServiceUnavailable => "ServiceUnavailable",
            ErrorCode::SerializationException => "SerializationException",
            ErrorCode::UnknownOperationException => "UnknownOperationException",
        }
    }

    /// Whether a client may retry the same request (with backoff) and expect success.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::ProvisionedThroughputExceededException
                | ErrorCode::ThrottlingException
                | ErrorCode::RequestLimitExceeded
                | ErrorCode::InternalServerError
                | ErrorCode::ServiceUnavailable
        )
    }

    pub fn from_u16(raw: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| *c as u16 == raw)
    }

    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How an error message begins when the server could not learn whether a write was
/// applied (a replicated write whose leader died with it, or timed out): its code is
/// InternalServerError (retryable), and retrying is safe only for a request that may
/// be applied twice.
pub const OUTCOME_UNKNOWN: &str = "outcome unknown";

/// A typed, user-facing error: DynamoDB name plus a message saying what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::ValidationException, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::ResourceNotFoundException, message)
    }

    pub fn in_use(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::ResourceInUseException, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InternalServerError, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_by_number_and_name() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u16(code as u16), Some(code));
            assert_eq!(ErrorCode::from_name(code.name()), Some(code));
        }
        assert_eq!(ErrorCode::from_u16(0), None);
        assert_eq!(ErrorCode::from_name("NoSuchThing"), None);
    }
}
