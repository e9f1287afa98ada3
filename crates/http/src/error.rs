//! The one place where service errors become native problems. A 5xx is
//! logged with its cause's whole source chain ([`log_internal`]) and
//! answered with a generic body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cardcore_domain::RuleViolation;
use cardcore_service::ServiceError;

use crate::problem::Problem;

/// An error on its way to becoming a native problem: from the service, or
/// already a problem (input the HTTP layer refused itself).
#[derive(Debug)]
pub enum ApiError {
    Service(ServiceError),
    Problem(Box<Problem>),
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self::Service(e)
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        Self::Problem(Box::new(p))
    }
}

impl From<RuleViolation> for ApiError {
    fn from(e: RuleViolation) -> Self {
        Self::Service(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Service(e) => problem_of(e).into_response(),
            Self::Problem(p) => p.into_response(),
        }
    }
}

/// The native problem for a rule violation.
pub fn rule_problem(rule: &RuleViolation) -> Problem {
    use RuleViolation as R;
    let detail = rule.to_string();
    match rule {
        R::InvalidStatusTransition { from, action } => {
            Problem::new(StatusCode::CONFLICT, "invalid_status_transition", detail)
                .with("current_status", from.as_str())
                .with("action", action.as_str())
        }
        R::ReplaceNotAllowed { from } => Problem::new(StatusCode::CONFLICT, "invalid_status_transition", detail)
            .with("current_status", from.as_str()),
        R::NotReplaceable => Problem::new(StatusCode::CONFLICT, "card_not_replaceable", detail),
        R::AlreadyReplaced => Problem::new(StatusCode::CONFLICT, "card_already_replaced", detail),
        R::InvalidCardStatus { status, .. } => {
            Problem::new(StatusCode::CONFLICT, "invalid_card_status", detail).with("current_status", status.as_str())
        }
        R::CardTypeNotAllowed { .. } => Problem::new(StatusCode::CONFLICT, "invalid_card_type", detail),
        R::ActivationCodeInvalid { remaining_attempts } => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "activation_code_invalid", detail)
                .with("remaining_attempts", *remaining_attempts)
        }
        R::ActivationLocked { retry_after_seconds } => {
            Problem::new(StatusCode::CONFLICT, "activation_locked", detail).retry_after(*retry_after_seconds)
        }
        R::PinTooWeak(w) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "pin_too_weak", detail).with("rule", w.as_str())
        }
        R::PinLength { .. } => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "pin_invalid", detail),
        R::PinNotSet => Problem::new(StatusCode::CONFLICT, "pin_not_set", detail),
        R::PinBlocked => Problem::new(StatusCode::CONFLICT, "pin_blocked", detail),
        R::PinIncorrect { remaining_attempts } => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "pin_incorrect", detail)
                .with("remaining_attempts", *remaining_attempts)
        }
        R::OtpInvalid { remaining_attempts } => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "otp_invalid", detail)
            .with("remaining_attempts", *remaining_attempts),
        R::OtpExpired => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "otp_expired", detail),
        R::OtpLocked { retry_after_seconds } => {
            Problem::new(StatusCode::CONFLICT, "otp_locked", detail).retry_after(*retry_after_seconds)
        }
        R::OtpRateLimited { retry_after_seconds } => {
            Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail).retry_after(*retry_after_seconds)
        }
    }
}

/// Logs a 5xx's cause with its whole source chain (`a: b: c`), under the
/// request's span (so with its request id). The answer stays generic.
pub fn log_internal(e: &ServiceError) {
    tracing::error!(cause = %cardcore_service::chain(e), "internal error");
}

/// The native problem for any service error.
pub fn problem_of(e: ServiceError) -> Problem {
    match e {
        ServiceError::Invalid { code, errors } => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, errors.to_string()).with_errors(errors.0)
        }
        ServiceError::NotFound(what) => Problem::new(
            StatusCode::NOT_FOUND,
            &format!("{what}_not_found"),
            format!("no {what} with this id exists for your tenant"),
        ),
        ServiceError::Conflict { code, message } => Problem::new(StatusCode::CONFLICT, code, message),
        ServiceError::Rule(rule) => rule_problem(&rule),
        ServiceError::Unauthorized => Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send a valid API key as `Authorization: Bearer <key>` or `x-api-key: <key>`",
        ),
        ServiceError::Forbidden(why) => Problem::new(StatusCode::FORBIDDEN, "forbidden", why),
        e @ ServiceError::RateLimited {
            limit,
            retry_after_seconds,
            ..
        } => Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string())
            .retry_after(retry_after_seconds)
            .rate_limit(limit),
        ServiceError::Unavailable(cause) | ServiceError::Retryable(cause) => {
            tracing::warn!(%cause, "database unavailable");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "the database is unavailable; the outcome is unknown: retry with the same Idempotency-Key",
            )
            .retry_after(1)
        }
        e @ (ServiceError::Startup(_) | ServiceError::Internal(_)) => {
            crate::error::log_internal(&e);
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "an internal error occurred; it has been logged with this request_id",
            )
        }
    }
}
