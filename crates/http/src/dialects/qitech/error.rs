//! QI Tech's errors, `{title, description, translation, code}`, side by
//! side with its table (`translation` is QI's short English summary, as
//! seed 001 and QI's pages show it; for the codes no page shows, cardcore's
//! in the same style):
//!
//! | code | HTTP | when |
//! |---|---|---|
//! | GDF000003 | 400 | no `API-CLIENT-KEY` header |
//! | GDF000018 | 404 | an `API-CLIENT-KEY` cardcore does not know |
//! | QIT000001 | 400 | invalid JSON schema: missing/extra/mistyped field, PIN not 4 digits, a key not a UUID |
//! | CARD000011 | 404 | no such card for that card_key in that wallet (or tenant) |
//! | CARD000013 | 406 | the status machine refuses the move ("Unable to transition from {old} to {new}.") |
//! | CARD000014 | 406 | any move out of a terminated status (lost, robbed, theft, fraud, canceled) |
//! | CARD000017 | 406 | activation is not valid for the card's status |
//! | CARD000020 | 406 | wrong activation code |
//! | QIT000409 | 409 | activation locked after 3 wrong codes, with `Retry-After` (cardcore's code) |
//! | QIT000404 | 404 | a path under `/qitech` that no route serves (cardcore's code) |
//! | CARD000023 | 406 | a password for a card that is not plastic |
//! | CARD000024 | 400 | the password could not be updated (weak PIN: the reason is in `description`) |
//! | CARD000025 | 406 | the card's status does not allow the operation |
//! | QIT000500 | 500 | a bug or corrupt data (cardcore's code; logged, never shown) |
//! | QIT000503 | 503 | the database is down (cardcore's code) |

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cardcore_domain::{CardStatus, LifecycleAction, RuleViolation};
use cardcore_service::ServiceError;
use serde::Serialize;

/// A QI Tech error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = QiTechError)]
pub struct QiError {
    #[serde(skip)]
    status: StatusCode,
    title: &'static str,
    description: String,
    /// QI's short English summary of the error, as its pages show it
    /// ("Unexpected error update password card", "Unable to transition",
    /// "Not Found Card", "Unable to activate card").
    translation: String,
    code: &'static str,
    #[serde(skip)]
    retry_after: Option<u64>,
}

impl QiError {
    fn new(
        status: StatusCode,
        code: &'static str,
        description: impl Into<String>,
        translation: impl Into<String>,
    ) -> Self {
        Self {
            status,
            title: status.canonical_reason().unwrap_or("Error"),
            description: description.into(),
            translation: translation.into(),
            code,
            retry_after: None,
        }
    }

    /// GDF000003: the request has no `API-CLIENT-KEY`.
    pub fn missing_key() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "GDF000003",
            "No API Client Key received",
            "Missing api client key",
        )
    }

    /// CARD000023: only plastic (physical) cards have a password; a vendor
    /// product fact, not a card-state rule.
    pub fn not_plastic() -> Self {
        Self::new(
            StatusCode::NOT_ACCEPTABLE,
            "CARD000023",
            "The card type is invalid for this operation. Only plastic cards are allowed.",
            "Invalid card type",
        )
    }
}

/// What the error is about, for QI's descriptions (which name the card key
/// and the statuses).
#[derive(Debug, Default)]
pub struct Scope {
    /// The `CARD_KEY` as the caller sent it.
    pub card_key: String,
    /// The card's QI status, once loaded.
    pub status: Option<&'static str>,
    /// The QI status asked for, on a status change.
    pub requested: Option<&'static str>,
}

/// THE mapping of service errors to QI Tech's codes.
pub fn qi_error(e: ServiceError, scope: &Scope) -> QiError {
    use StatusCode as S;
    let current = |fallback: &'static str| scope.status.unwrap_or(fallback);
    match e {
        ServiceError::Invalid { errors, .. } => QiError::new(
            S::BAD_REQUEST,
            "QIT000001",
            format!("Invalid Json schema. {errors}"),
            "Invalid Json schema",
        ),
        ServiceError::NotFound(super::super::ROUTE) => QiError::new(
            S::NOT_FOUND,
            "QIT000404",
            "No such route; see /openapi.json.",
            "Rota inexistente; veja /openapi.json.",
        ),
        ServiceError::NotFound(_) => QiError::new(
            S::NOT_FOUND,
            "CARD000011",
            format!(
                "It was not possible to fetch the Card for the card_key {}.",
                scope.card_key
            ),
            "Not Found Card",
        ),
        ServiceError::Rule(RuleViolation::InvalidStatusTransition {
            from,
            action: LifecycleAction::Activate,
        }) => {
            let s = current(from.as_str());
            QiError::new(
                S::NOT_ACCEPTABLE,
                "CARD000017",
                format!("The activation operation is not valid for the current card status [{s}]."),
                "Unable to activate card",
            )
        }
        // QI's page: out of a terminated status (lost, robbed, fraud,
        // canceled, theft) no move is valid at all, CARD000014.
        ServiceError::Rule(RuleViolation::InvalidStatusTransition { from, .. })
            if matches!(from, CardStatus::Blocked | CardStatus::Closed) =>
        {
            let s = current(from.as_str());
            QiError::new(
                S::NOT_ACCEPTABLE,
                "CARD000014",
                format!("The operation is not valid for the current status of the card [{s}]."),
                "Unable to transition",
            )
        }
        ServiceError::Rule(RuleViolation::InvalidStatusTransition { from, action }) => {
            let (s, to) = (current(from.as_str()), scope.requested.unwrap_or(action.as_str()));
            QiError::new(
                S::NOT_ACCEPTABLE,
                "CARD000013",
                format!("Unable to transition from {s} to {to}."),
                "Unable to transition",
            )
        }
        ServiceError::Rule(RuleViolation::InvalidCardStatus { status, .. }) => {
            let s = current(status.as_str());
            QiError::new(
                S::NOT_ACCEPTABLE,
                "CARD000025",
                format!("The status {s} is invalid for the operation."),
                "Invalid card status",
            )
        }
        ServiceError::Rule(RuleViolation::ActivationCodeInvalid { .. }) => QiError::new(
            S::NOT_ACCEPTABLE,
            "CARD000020",
            "Invalid activation code.",
            "Unable to activate card",
        ),
        // cardcore's own code (QI publishes none for it), like QIT000429.
        ServiceError::Rule(RuleViolation::ActivationLocked { retry_after_seconds }) => QiError {
            retry_after: Some(retry_after_seconds),
            ..QiError::new(
                S::CONFLICT,
                "QIT000409",
                format!(
                    "Too many invalid activation codes: the activation of this card is locked; \
                     retry in {retry_after_seconds} seconds."
                ),
                "Activation locked",
            )
        },
        ServiceError::Rule(RuleViolation::CardTypeNotAllowed { .. }) => QiError::not_plastic(),
        // Replacement is not part of QI's routes; any such refusal is a
        // status refusal.
        ServiceError::Rule(
            r @ (RuleViolation::ReplaceNotAllowed { .. }
            | RuleViolation::NotReplaceable
            | RuleViolation::AlreadyReplaced),
        ) => QiError::new(S::NOT_ACCEPTABLE, "CARD000013", r.to_string(), "Unable to transition"),
        ServiceError::Conflict { message, .. } => {
            QiError::new(S::NOT_ACCEPTABLE, "CARD000013", message, "Unable to transition")
        }
        // Weak PIN and every other refusal of the password itself.
        ServiceError::Rule(r) => QiError::new(
            S::BAD_REQUEST,
            "CARD000024",
            format!("We're sorry, but the card could not be update password: {r}."),
            "Unexpected error update password card",
        ),
        // No QI route reads card data, so a key's permission never refuses;
        // an unknown key answers like QI's unknown client key.
        ServiceError::Unauthorized | ServiceError::Forbidden(_) => QiError::new(
            S::NOT_FOUND,
            "GDF000018",
            "No ClientIntegration found for api_client_key.",
            "Not Found ClientIntegration",
        ),
        // cardcore's own code, like QIT000500/QIT000503.
        e @ ServiceError::RateLimited {
            retry_after_seconds, ..
        } => QiError {
            retry_after: Some(retry_after_seconds),
            ..QiError::new(
                S::TOO_MANY_REQUESTS,
                "QIT000429",
                format!("Too many requests: {e}."),
                "Too many requests",
            )
        },
        ServiceError::Unavailable(cause) | ServiceError::Retryable(cause) => {
            tracing::warn!(%cause, "database unavailable");
            QiError::new(
                S::SERVICE_UNAVAILABLE,
                "QIT000503",
                "The service is temporarily unavailable. Please try again later.",
                "Service unavailable",
            )
        }
        e @ (ServiceError::Startup(_) | ServiceError::Internal(_)) => {
            crate::error::log_internal(&e);
            QiError::new(
                S::INTERNAL_SERVER_ERROR,
                "QIT000500",
                "An unexpected error occurred. Please try again later.",
                "Unexpected error",
            )
        }
    }
}

/// A service error as QI Tech renders it (used by the per-key rate limiter,
/// which answers before any handler runs).
pub fn render(e: ServiceError) -> Response {
    qi_error(e, &Scope::default()).into_response()
}

impl IntoResponse for QiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let retry = self.retry_after;
        let mut res = (status, Json(self)).into_response();
        let retry_after = match (retry, status) {
            (Some(s), _) => Some(s),
            (None, StatusCode::SERVICE_UNAVAILABLE) => Some(1),
            _ => None,
        };
        if let Some(v) = retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}
