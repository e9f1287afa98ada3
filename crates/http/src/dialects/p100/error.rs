//! P100's errors, side by side with its table:
//!
//! | HTTP | body | when |
//! |---|---|---|
//! | 401 | `{"message": "Access Denied. xo1"}` | no `x-api-key` |
//! | 401 | `{"message": "Access Denied. xo2"}` | a key cardcore does not know |
//! | 400 | `P403` (no `errorName`) | validation: bad body, weak PIN, a refused status move, a key that may not read card data |
//! | 400 | `P434` Card not exist | unknown card, or a card of another user or tenant |
//! | 400 | `P459` User not verified | an `externalUserId` cardcore does not know (create, list) |
//! | 400 | `P500` Unknown exception | a bug or corrupt data (logged, never shown) |
//! | 400 | `P501` Service temporarily unavailable | the database is down |
//! | 404 | `P404` (`NOT_FOUND`, assumed) | a path under `/p100` that no route serves |

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cardcore_domain::{LifecycleAction, RuleViolation};
use cardcore_service::ServiceError;
use serde::Serialize;

use super::types::status;

/// A P100 error response.
#[derive(Debug)]
pub struct P100Error {
    status: StatusCode,
    body: Body,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = P100ErrorBody)]
pub(super) enum Body {
    Denied {
        message: &'static str,
    },
    #[serde(rename_all = "camelCase")]
    Coded {
        error_code: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        error_name: Option<&'static str>,
        error_message: String,
    },
}

impl P100Error {
    /// 401 `xo1`: the request has no `x-api-key`.
    pub fn missing_key() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            body: Body::Denied {
                message: "Access Denied. xo1",
            },
            retry_after: None,
        }
    }

    fn coded(code: &'static str, name: Option<&'static str>, message: impl Into<String>) -> Self {
        // P100 answers every coded error with HTTP 400, even P500 and P501.
        Self {
            status: StatusCode::BAD_REQUEST,
            body: Body::Coded {
                error_code: code,
                error_name: name,
                error_message: message.into(),
            },
            retry_after: None,
        }
    }
}

/// A lifecycle action in P100's words.
fn verb(action: LifecycleAction) -> &'static str {
    match action {
        LifecycleAction::Activate => "activate",
        LifecycleAction::Lock => "block",
        LifecycleAction::Unlock => "unblock",
        LifecycleAction::Block => "terminate",
        LifecycleAction::Close => "delete",
    }
}

/// P100's field names are camelCase and its limits have no `channels` level.
fn field_name(field: &str) -> String {
    super::super::camel_path(field.strip_prefix("channels.").unwrap_or(field))
}

/// THE mapping of service errors to P100's codes.
pub fn p100_error(e: ServiceError) -> P100Error {
    match e {
        ServiceError::Unauthorized => P100Error {
            status: StatusCode::UNAUTHORIZED,
            body: Body::Denied {
                message: "Access Denied. xo2",
            },
            retry_after: None,
        },
        // Assumed (P100 publishes a rate-limiting page but no code): HTTP
        // 429 in P100's coded shape, with Retry-After.
        e @ ServiceError::RateLimited {
            retry_after_seconds, ..
        } => P100Error {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after: Some(retry_after_seconds),
            ..P100Error::coded("P429", Some("TOO_MANY_REQUESTS"), e.to_string())
        },
        ServiceError::Invalid { errors, .. } => {
            let parts: Vec<String> = errors
                .0
                .iter()
                .map(|f| format!("{}: {}", field_name(&f.field), f.message))
                .collect();
            P100Error::coded("P403", None, parts.join("; "))
        }
        // Assumed (P100 documents no code for it): a path under `/p100`
        // that no route serves is HTTP 404 in the coded shape.
        ServiceError::NotFound(super::super::ROUTE) => P100Error {
            status: StatusCode::NOT_FOUND,
            ..P100Error::coded("P404", Some("NOT_FOUND"), "No such route; see /openapi.json")
        },
        ServiceError::NotFound("cardholder") => {
            P100Error::coded("P459", Some("USER_NOT_VERIFIED"), "User not verified")
        }
        ServiceError::NotFound(_) => P100Error::coded("P434", Some("CARD_NOT_EXIST"), "Card not exist"),
        // Status refusals speak P100's words (a lock is its "block").
        ServiceError::Rule(RuleViolation::InvalidStatusTransition { from, action }) => P100Error::coded(
            "P403",
            None,
            format!("cannot {} a card whose status is {}", verb(action), status(from)),
        ),
        ServiceError::Rule(RuleViolation::InvalidCardStatus { status: s, operation }) => P100Error::coded(
            "P403",
            None,
            format!("{operation} is not allowed on a card whose status is {}", status(s)),
        ),
        ServiceError::Rule(rule) => P100Error::coded("P403", None, rule.to_string()),
        ServiceError::Conflict { message, .. } => P100Error::coded("P403", None, message),
        ServiceError::Forbidden(why) => P100Error::coded("P403", None, why),
        ServiceError::Unavailable(cause) | ServiceError::Retryable(cause) => {
            tracing::warn!(%cause, "database unavailable");
            P100Error::coded(
                "P501",
                Some("SERVICE_TEMPORARILY_UNAVAILABLE"),
                "Service temporarily unavailable",
            )
        }
        e @ (ServiceError::Startup(_) | ServiceError::Internal(_)) => {
            crate::error::log_internal(&e);
            P100Error::coded("P500", Some("UNKNOWN_EXCEPTION"), "Unknown exception")
        }
    }
}

/// A service error as P100 renders it (used by the per-key rate limiter,
/// which answers before any handler runs).
pub fn render(e: ServiceError) -> Response {
    p100_error(e).into_response()
}

impl From<ServiceError> for P100Error {
    fn from(e: ServiceError) -> Self {
        p100_error(e)
    }
}

impl IntoResponse for P100Error {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(self.body)).into_response();
        if let Some(v) = self
            .retry_after
            .and_then(|s| HeaderValue::from_str(&s.to_string()).ok())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}
