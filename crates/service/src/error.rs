//! Service errors: what a use case can answer besides success. The HTTP
//! layer maps each to a status and a stable code, in one place per API.

use cardcore_domain::{RuleViolation, ValidationErrors};
use cardcore_store::StoreError;
pub use cardcore_store::{chain, Failure};

/// Why an operation did not succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed or a field is invalid. `code` is
    /// `validation_error` unless a more precise one applies (e.g. `invalid_pin_block`).
    #[error("{code}: {errors}")]
    Invalid {
        code: &'static str,
        errors: ValidationErrors,
    },
    /// The object does not exist for this tenant (another tenant's object
    /// answers exactly the same).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request conflicts with existing state, e.g. a taken external id.
    #[error("{code}: {message}")]
    Conflict { code: &'static str, message: String },
    /// A business rule refuses the request.
    #[error(transparent)]
    Rule(#[from] RuleViolation),
    /// No valid credentials.
    #[error("unauthorized")]
    Unauthorized,
    /// Valid credentials without the needed permission.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// Too many calls: `limit` per `period` for this `scope` (`card`, or
    /// `api_key` at the HTTP edge). Nothing was done.
    #[error("rate limited: more than {limit} calls a {period} for this {scope}; retry in {retry_after_seconds} s")]
    RateLimited {
        limit: u32,
        period: &'static str,
        scope: &'static str,
        retry_after_seconds: u64,
    },
    /// The database is unavailable; the outcome is unknown.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The database aborted the unit of work (serialization failure or
    /// deadlock) and nothing of it was written. [`crate::Service`] runs the
    /// unit again; one that still reaches a caller means the retries ran
    /// out and is answered like `Unavailable` (503).
    #[error("transaction aborted by the database: {0}")]
    Retryable(String),
    /// A configuration or key problem found at start.
    #[error("{0}")]
    Startup(String),
    /// A bug or corrupt data; the detail (with its source chain) is
    /// logged, never answered.
    #[error("internal error: {0}")]
    Internal(#[source] Failure),
}

impl ServiceError {
    /// A bug or corrupt data, said in `what`.
    pub fn internal(what: impl Into<String>) -> Self {
        Self::Internal(Failure::new(what))
    }

    /// `what` went wrong because of `cause` (kept as the source, logged
    /// with the whole chain).
    pub fn caused(what: impl Into<String>, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(Failure::caused(what, cause))
    }

    /// One invalid field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code: "validation_error",
            errors: ValidationErrors::single(field, message),
        }
    }

    /// One invalid field, with a precise code.
    pub fn invalid_with(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            errors: ValidationErrors::single(field, message),
        }
    }
}

impl From<ValidationErrors> for ServiceError {
    fn from(errors: ValidationErrors) -> Self {
        Self::Invalid {
            code: "validation_error",
            errors,
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Self::Unavailable(m),
            StoreError::NotFound(what) => Self::invalid(what, "does not name an existing item"),
            StoreError::Retryable(m) => Self::Retryable(m),
            e @ StoreError::Internal(_) => Self::Internal(Failure::caused(e.to_string(), e)),
        }
    }
}

/// Result of a service operation.
pub type ServiceResult<T> = Result<T, ServiceError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A 5xx's log line (`chain`) names every cause down to the driver's
    /// error, each once.
    #[test]
    fn internal_errors_keep_their_source_chain() {
        let driver = std::io::Error::other("disk says no");
        let store = StoreError::caused("column pin_failures", driver);
        let e = ServiceError::from(store);
        assert!(matches!(e, ServiceError::Internal(_)));
        let line = chain(&e);
        assert_eq!(
            line,
            "internal error: database error: column pin_failures: disk says no"
        );
        let source = std::error::Error::source(&e).expect("a source");
        assert!(
            std::error::Error::source(source).is_some(),
            "the store error keeps the driver's"
        );
        assert_eq!(
            chain(&ServiceError::internal("card without cardholder")),
            "internal error: card without cardholder"
        );
    }
}
