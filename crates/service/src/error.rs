//! Service errors: what a use case can answer besides success. The HTTP
//! layer maps each to a status and a stable code, in one place per API.

use cardcore_domain::{RuleViolation, ValidationErrors};
use cardcore_store::StoreError;

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
    /// A configuration or key problem found at start.
    #[error("{0}")]
    Startup(String),
    /// A bug or corrupt data; the detail is logged, never answered.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
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
            StoreError::Internal(m) => Self::Internal(m),
        }
    }
}

/// Result of a service operation.
pub type ServiceResult<T> = Result<T, ServiceError>;
