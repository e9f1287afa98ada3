//! Native API authentication: `Authorization: Bearer <key>` or `x-api-key`.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use cardcore_domain::Channel;
use cardcore_service::{Ctx, Principal, Service, ServiceError, ServiceResult};

use crate::error::ApiError;
use crate::middleware::RequestId;
use crate::AppState;

/// The API key a request carries, if any.
pub fn api_key_of(parts: &Parts) -> Option<&str> {
    if let Some(v) = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let mut it = v.splitn(2, ' ');
        if let (Some(scheme), Some(token)) = (it.next(), it.next()) {
            if scheme.eq_ignore_ascii_case("bearer") {
                return Some(token.trim());
            }
        }
    }
    parts
        .headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The request id set by the middleware.
pub fn request_id_of(parts: &Parts) -> Option<String> {
    parts.extensions.get::<RequestId>().map(|r| r.0.clone())
}

/// An authenticated native request.
pub struct Auth(pub Ctx);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = api_key_of(parts).ok_or(ServiceError::Unauthorized)?;
        let principal = authenticate(parts, &state.service, key).await?;
        Ok(Auth(Ctx::new(principal, Channel::NATIVE, request_id_of(parts))))
    }
}

/// The caller behind an API key, counted against the key's rate limit
/// (every API's authentication goes through here or [`crate::ratelimit::admit`]).
pub async fn authenticate(parts: &Parts, service: &Service, secret: &str) -> ServiceResult<Principal> {
    let principal = service.authenticate(secret).await.inspect_err(|e| {
        crate::ratelimit::note_failure(parts, e);
    })?;
    crate::ratelimit::admit(parts, secret, &principal)?;
    Ok(principal)
}
