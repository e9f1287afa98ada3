//! RFC 9457 problem details: `application/problem+json` with a stable `code`.
//!
//! A handler answers a [`Problem`]; the request-id middleware fills in
//! `request_id` on the way out (the handler does not know it).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cardcore_domain::FieldError;
use serde::Serialize;

/// A problem detail.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Extra members (e.g. `retry_after_seconds`, `remaining_attempts`).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Seconds for a `Retry-After` header.
    #[serde(skip)]
    pub retry_after: Option<u64>,
    /// The limit for `RateLimit-Limit` (with `RateLimit-Remaining: 0` and
    /// `RateLimit-Reset` = `retry_after`).
    #[serde(skip)]
    pub rate_limit: Option<u32>,
}

impl Problem {
    /// A problem with a code and a detail.
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            type_uri: format!("urn:cardcore:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            request_id: None,
            errors: Vec::new(),
            extra: serde_json::Map::new(),
            retry_after: None,
            rate_limit: None,
        }
    }

    /// Adds field errors.
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// Adds an extra member.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// Sets `Retry-After` and `retry_after_seconds`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self.with("retry_after_seconds", seconds)
    }

    /// Sets the `RateLimit-*` headers of a 429.
    pub fn rate_limit(mut self, limit: u32) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// One invalid field, 422 `validation_error`.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            format!("{field}: {message}"),
        )
        .with_errors(vec![FieldError::new(field, message)])
    }

    /// The HTTP status.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Renders the problem (called again by the middleware once the request
    /// id is known).
    pub fn render(&self) -> Response {
        let body = serde_json::to_vec(self).unwrap_or_default();
        let mut res = (self.status_code(), body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if let Some(limit) = self.rate_limit {
            let reset = self.retry_after.unwrap_or(1).to_string();
            for (name, value) in [
                ("ratelimit-limit", limit.to_string()),
                ("ratelimit-remaining", "0".into()),
                ("ratelimit-reset", reset),
            ] {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    res.headers_mut().insert(axum::http::HeaderName::from_static(name), v);
                }
            }
        }
        if self.status == 401 {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"cardcore\""),
            );
        }
        res
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut res = self.render();
        res.extensions_mut().insert(self);
        res
    }
}
