//! M2P's errors (problem+json), side by side with its table:
//!
//! | HTTP | `businessCode` / `message` | when |
//! |---|---|---|
//! | 400 | `error.validation` + `fieldErrors` | a field missing, mistyped or not agreeing with the card, the cardholder or the OTP (`mobile`: "Invalid contact"); a weak PIN (`newPin`) |
//! | 400 | `error.http.400` "Unable to convert http message" | the body is not JSON |
//! | 401 | `error.http.401` | no, forged or expired token; `X-TENANT-ID` missing or not the token's tenant; bad client credentials |
//! | 409 | `card.not.found` "No account found" | no card with that kit for that entityId |
//! | 409 | `entity.not.found` "Customer does not exist" | no cardholder with that entityId |
//! | 409 | `PPCUST_042` | the 3rd wrong OTP, and every PIN change for the next 10 minutes |
//! | 409 | `PP_MIDD_034` | the same lock, on `otp/validate-otp` |
//! | 409 | `PPCUST_032` | the status machine refuses the move |
//! | 409 | `invalid.card.status` | the card's status does not allow the operation |
//! | 409 | `invalid.otp` / `otp.expired` | wrong OTP (1st and 2nd), or a right one too late |
//! | 409 | `invalid.pin` / `pin.locked` / `pin.not.set` | wrong current PIN, PIN blocked after 3 wrong ones, no PIN yet |
//! | 409 | `otp.rate.limited` | more than 5 OTPs in 15 minutes for a card (M2P: "returns a 409") |
//! | 500 | `error.http.500` | a bug or corrupt data (logged, never shown) |
//! | 503 | `error.http.503` | the database is down |

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cardcore_domain::{LifecycleAction, RuleViolation};
use cardcore_service::ServiceError;
use serde::Serialize;

/// The title (and detail) of the OTP lock, verbatim from M2P's page.
pub const OTP_LOCK_TITLE: &str = "Change/Pin is Locked for 10 minutes, due to invalid OTPs being entered in attempts 3";

/// The title (and detail) of the same lock on `otp/validate-otp`, verbatim
/// from M2P's page (https://dev.m2p.app/docs/prepaidv2/api-library/authentication/validateOtp).
pub const OTP_VALIDATION_TITLE: &str = "Otp Validation is not allowed more than 3 times in 24hrs";

const CONSTRAINT_TYPE: &str = "https://www.m2pfintech.com/problem/constraint-violation";
const PROBLEM_TYPE: &str = "https://www.m2pfintech.com/problem/problem-with-message";

/// Which call failed: names the object of M2P's field errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Auth,
    Token,
    GenerateOtp,
    ValidateOtp,
    ChangeCardPin,
    SetCardPin,
    ValidateCardPin,
    UpdateCardStatus,
    FetchAllCards,
    UpdatePreferences,
}

impl Op {
    /// M2P's `objectName` (the request DTO).
    fn object_name(self) -> &'static str {
        match self {
            Self::Auth | Self::Token => "authToken",
            Self::GenerateOtp => "generateOtp",
            Self::ValidateOtp => "validateOtp",
            Self::ChangeCardPin => "changeCardPin",
            Self::SetCardPin => "setCardPin",
            Self::ValidateCardPin => "validateCardPin",
            Self::UpdateCardStatus => "updateCardStatus",
            Self::FetchAllCards => "fetchAllCards",
            Self::UpdatePreferences => "updatePreferences",
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = M2pFieldError)]
pub(super) struct FieldError {
    field: String,
    message: String,
    object_name: &'static str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = M2pErrorBody)]
pub(super) enum Body {
    #[serde(rename_all = "camelCase")]
    Constraint {
        #[serde(rename = "type")]
        type_uri: &'static str,
        title: &'static str,
        status: u16,
        message: &'static str,
        field_errors: Vec<FieldError>,
    },
    #[serde(rename_all = "camelCase")]
    Problem {
        #[serde(rename = "type")]
        type_uri: &'static str,
        title: String,
        status: u16,
        detail: String,
        message: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        business_code: Option<&'static str>,
    },
}

/// An M2P error response.
#[derive(Debug)]
pub struct M2pError {
    status: StatusCode,
    body: Body,
    retry_after: Option<u64>,
}

impl M2pError {
    fn business(status: StatusCode, code: &'static str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            body: Body::Problem {
                type_uri: PROBLEM_TYPE,
                title: title.to_owned(),
                status: status.as_u16(),
                detail: detail.into(),
                message: "error.business",
                business_code: Some(code),
            },
            retry_after: None,
        }
    }

    fn http(status: StatusCode, detail: impl Into<String>) -> Self {
        let message = match status.as_u16() {
            400 => "error.http.400",
            401 => "error.http.401",
            404 => "error.http.404",
            500 => "error.http.500",
            _ => "error.http.503",
        };
        Self {
            status,
            body: Body::Problem {
                type_uri: PROBLEM_TYPE,
                title: status.canonical_reason().unwrap_or("Error").to_owned(),
                status: status.as_u16(),
                detail: detail.into(),
                message,
                business_code: None,
            },
            retry_after: None,
        }
    }

    fn retry(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

/// M2P's name for a service field.
fn field_name(field: &str) -> String {
    match field {
        "reason_code" => return "reasonCode".into(),
        "reason_message" => return "reasonMsg".into(),
        _ => {}
    }
    // A PIN's parts (`newPin.encrypted_pin`) are the PIN field itself.
    for pin in ["oldPin", "newPin"] {
        if field.starts_with(&format!("{pin}.")) {
            return pin.into();
        }
    }
    if let Some(rest) = field.strip_prefix("channels.") {
        let (channel, limit) = rest.split_once('.').unwrap_or((rest, ""));
        let channel = match channel {
            "atm" => "ATM",
            "ecommerce" => "E-com",
            "pos" => "POS",
            "contactless" => "ContactLess",
            other => other,
        };
        let limit = match limit {
            "per_transaction" => "perTransactionLimit",
            "daily" => "maxTransactionAmountPerDay",
            other => other,
        };
        return format!("userOverridden.{channel}.{limit}");
    }
    super::super::camel_path(field)
}

fn target(action: LifecycleAction) -> &'static str {
    match action {
        LifecycleAction::Activate => "ACTIVE",
        LifecycleAction::Lock => "LOCKED",
        LifecycleAction::Unlock => "UNLOCKED",
        LifecycleAction::Block => "BLOCKED",
        LifecycleAction::Close => "CLOSED",
    }
}

/// THE mapping of service errors to M2P's codes, for the call `op`.
/// A service error as M2P renders it (used by the per-key rate limiter,
/// which answers before any handler runs; the operation only names fields,
/// which a 429 has none of).
pub fn render(e: ServiceError) -> Response {
    m2p_error(e, Op::Auth).into_response()
}

pub fn m2p_error(e: ServiceError, op: Op) -> M2pError {
    use StatusCode as S;
    let fields = |errors: Vec<(String, String)>| M2pError {
        status: S::BAD_REQUEST,
        body: Body::Constraint {
            type_uri: CONSTRAINT_TYPE,
            title: "Method argument not valid",
            status: 400,
            message: "error.validation",
            field_errors: errors
                .into_iter()
                .map(|(field, message)| FieldError {
                    field: field_name(&field),
                    message,
                    object_name: op.object_name(),
                })
                .collect(),
        },
        retry_after: None,
    };
    match e {
        ServiceError::Invalid {
            code: super::super::MALFORMED_JSON,
            ..
        } => M2pError::http(S::BAD_REQUEST, "Unable to convert http message"),
        ServiceError::Invalid { errors, .. } => fields(errors.0.into_iter().map(|f| (f.field, f.message)).collect()),
        ServiceError::NotFound(super::super::ROUTE) => M2pError::http(S::NOT_FOUND, "No such route; see /openapi.json"),
        // M2P answers a business 409 for both, titled as below on its pages
        // (fetchCardBalance: "Customer does not exist"; generateOtp: "No
        // account found"); their business codes are not shown there.
        ServiceError::NotFound("cardholder") => M2pError::business(
            S::CONFLICT,
            "entity.not.found",
            "Customer does not exist",
            "Customer does not exist for the given entityId",
        ),
        ServiceError::NotFound(_) => M2pError::business(
            S::CONFLICT,
            "card.not.found",
            "No account found",
            "No card found for the given entityId and kit",
        ),
        ServiceError::Rule(rule) => match rule {
            RuleViolation::OtpLocked { retry_after_seconds } if op == Op::ValidateOtp => {
                M2pError::business(S::CONFLICT, "PP_MIDD_034", OTP_VALIDATION_TITLE, OTP_VALIDATION_TITLE)
                    .retry(retry_after_seconds)
            }
            RuleViolation::OtpLocked { retry_after_seconds } => {
                M2pError::business(S::CONFLICT, "PPCUST_042", OTP_LOCK_TITLE, OTP_LOCK_TITLE).retry(retry_after_seconds)
            }
            RuleViolation::InvalidStatusTransition { from, action } => M2pError::business(
                S::CONFLICT,
                "PPCUST_032",
                "Card status change not allowed",
                format!("A {} card cannot be moved to {}", from.as_str(), target(action)),
            ),
            RuleViolation::ReplaceNotAllowed { .. }
            | RuleViolation::NotReplaceable
            | RuleViolation::AlreadyReplaced => M2pError::business(
                S::CONFLICT,
                "PPCUST_032",
                "Card status change not allowed",
                rule.to_string(),
            ),
            RuleViolation::InvalidCardStatus { .. } | RuleViolation::CardTypeNotAllowed { .. } => M2pError::business(
                S::CONFLICT,
                "invalid.card.status",
                "Operation not allowed for current card status",
                rule.to_string(),
            ),
            RuleViolation::PinTooWeak(_) | RuleViolation::PinLength { .. } => {
                fields(vec![("newPin".into(), rule.to_string())])
            }
            RuleViolation::PinNotSet => M2pError::business(S::CONFLICT, "pin.not.set", "PIN not set", rule.to_string()),
            RuleViolation::PinBlocked => M2pError::business(
                S::CONFLICT,
                "pin.locked",
                "PIN locked due to exceeded retry attempts",
                rule.to_string(),
            ),
            RuleViolation::PinIncorrect { .. } => {
                M2pError::business(S::CONFLICT, "invalid.pin", "Invalid PIN", rule.to_string())
            }
            // No M2P route activates a card; a wrong code is a wrong code.
            RuleViolation::OtpInvalid { .. } | RuleViolation::ActivationCodeInvalid { .. } => {
                M2pError::business(S::CONFLICT, "invalid.otp", "Invalid OTP", rule.to_string())
            }
            RuleViolation::ActivationLocked { retry_after_seconds } => M2pError::business(
                S::CONFLICT,
                "activation.locked",
                "Activation locked due to invalid codes",
                rule.to_string(),
            )
            .retry(retry_after_seconds),
            RuleViolation::OtpExpired => {
                M2pError::business(S::CONFLICT, "otp.expired", "OTP has expired", rule.to_string())
            }
            // M2P: "Exceeding limits returns a 409 error" (generateOtp's page).
            RuleViolation::OtpRateLimited { retry_after_seconds } => {
                M2pError::business(S::CONFLICT, "otp.rate.limited", "OTP limit exceeded", rule.to_string())
                    .retry(retry_after_seconds)
            }
        },
        ServiceError::Conflict { message, .. } => {
            M2pError::business(S::CONFLICT, "PPCUST_032", "Card status change not allowed", message)
        }
        // No M2P route reads card data, so a key's permission never refuses.
        ServiceError::Unauthorized | ServiceError::Forbidden(_) => M2pError::http(
            S::UNAUTHORIZED,
            "Full authentication is required: send Authorization: Bearer <access_token from POST /auth/token> \
             and X-TENANT-ID of the token's tenant",
        ),
        e @ ServiceError::RateLimited {
            retry_after_seconds, ..
        } => M2pError::business(S::TOO_MANY_REQUESTS, "rate.limited", "Too many requests", e.to_string())
            .retry(retry_after_seconds),
        ServiceError::Unavailable(cause) | ServiceError::Retryable(cause) => {
            tracing::warn!(%cause, "database unavailable");
            M2pError::http(S::SERVICE_UNAVAILABLE, "The service is temporarily unavailable").retry(1)
        }
        e @ (ServiceError::Startup(_) | ServiceError::Internal(_)) => {
            crate::error::log_internal(&e);
            M2pError::http(S::INTERNAL_SERVER_ERROR, "An internal error occurred")
        }
    }
}

impl IntoResponse for M2pError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body).unwrap_or_default();
        let mut res = (self.status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}
