//! `Idempotency-Key` on the native API's POST, PUT, PATCH and DELETE.
//!
//! With the header, a request is fingerprinted (an HMAC under a service key
//! over method, path and body: see `cardcore_service::idempotency`) and
//! registered under (API key, `Idempotency-Key`) before the handler runs:
//!
//! - first time: the handler runs; its answer is kept (sealed) unless it
//!   is a 5xx or a 429 (then the key is forgotten: the outcome is unknown
//!   or nothing was done, and a retry with the same key runs again);
//! - same key, same request, answered: the kept status and body again,
//!   with `Idempotent-Replayed: true`;
//! - same key, another request: `422 idempotency_key_reused`;
//! - same key while the first still runs: `409 idempotency_key_in_progress`
//!   with `Retry-After: 1` (after 60 s the first is presumed dead and a
//!   retry takes the key over).
//!
//! Requests without valid credentials pass through untouched (the handler
//! answers 401), as do requests without the header.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cardcore_service::idempotency::{Idempotency, IdempotencyTicket, IdempotentRequest};

use crate::error::problem_of;
use crate::extract::MAX_BODY;
use crate::middleware::RequestId;
use crate::problem::Problem;
use crate::AppState;

/// The request header.
pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The header on a replayed answer.
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Longest key.
pub const MAX_KEY_LEN: usize = 255;

/// Largest answer kept for replay; a larger one is answered but not kept.
const MAX_KEPT_RESPONSE: usize = 1024 * 1024;

/// A valid key: 1 to 255 printable ASCII characters.
pub fn valid_key(key: &[u8]) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len()) && key.iter().all(|b| (0x20..=0x7e).contains(b))
}

fn key_problem() -> Problem {
    Problem::invalid_field(
        "Idempotency-Key",
        format!("must be 1 to {MAX_KEY_LEN} printable ASCII characters (a UUID is a good choice)"),
    )
}

/// The middleware (a `route_layer` on the native routes).
pub async fn layer(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if !matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return next.run(req).await;
    }
    let Some(raw) = req.headers().get(&IDEMPOTENCY_KEY) else {
        return next.run(req).await;
    };
    let key_ok = valid_key(raw.as_bytes());
    let key = String::from_utf8_lossy(raw.as_bytes()).into_owned();
    let (parts, body) = req.into_parts();
    let principal = match crate::auth::api_key_of(&parts) {
        Some(api_key) => crate::auth::authenticate(&parts, &s.service, api_key).await.ok(),
        None => None,
    };
    let Some(principal) = principal else {
        // No valid credentials: nothing to scope the key to; the handler
        // answers 401 (or 503 if the database is down).
        return next.run(Request::from_parts(parts, body)).await;
    };
    if !key_ok {
        return key_problem().into_response();
    }
    let bytes = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {MAX_BODY} bytes"),
            )
            .into_response()
        }
    };
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let request = IdempotentRequest {
        method: parts.method.as_str(),
        target,
        body: &bytes,
    };
    let ticket = match s.service.begin_idempotent(&principal, &key, &request).await {
        Err(e) => return problem_of(e).into_response(),
        Ok(Idempotency::Reused) => {
            return Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used for another request (another method, path or body) \
                 in the last 24 hours; use a new key for a new request",
            )
            .into_response()
        }
        Ok(Idempotency::InFlight) => {
            return Problem::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_progress",
                "a request with this Idempotency-Key is still running; retry shortly with the same key",
            )
            .retry_after(1)
            .into_response()
        }
        Ok(Idempotency::Replay(r)) => {
            let mut res = (StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK), r.body).into_response();
            if let Some(ct) = r.content_type.and_then(|ct| HeaderValue::from_str(&ct).ok()) {
                res.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            res.headers_mut()
                .insert(IDEMPOTENT_REPLAYED.clone(), HeaderValue::from_static("true"));
            return res;
        }
        Ok(Idempotency::Proceed(ticket)) => ticket,
    };
    let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone());
    let res = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    keep(&s, &ticket, request_id, res).await
}

/// Keeps the answer for replay (or forgets the key), and answers it.
async fn keep(s: &AppState, ticket: &IdempotencyTicket, request_id: Option<String>, res: Response) -> Response {
    let status = res.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        if let Err(e) = s.service.abandon_idempotent(ticket).await {
            // The row stays in flight; a retry after 60 s takes it over.
            tracing::warn!(cause = %e, "could not release an idempotency key after a failed request");
        }
        return res;
    }
    let (parts, body) = res.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // A problem is rendered again with the request id on its way out (see
    // `middleware::request_id`): keep that final body, not this draft.
    let problem = parts.extensions.get::<Problem>().cloned();
    let body = match to_bytes(body, MAX_KEPT_RESPONSE).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(cause = %e, "could not read an answer to keep it for idempotent replay");
            let _ = s.service.abandon_idempotent(ticket).await;
            return Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "an internal error occurred; it has been logged with this request_id",
            )
            .into_response();
        }
    };
    let kept = match problem {
        Some(mut p) => {
            p.request_id = request_id;
            serde_json::to_vec(&p).unwrap_or_default()
        }
        None => body.to_vec(),
    };
    if let Err(e) = s
        .service
        .complete_idempotent(ticket, status.as_u16(), content_type, &kept)
        .await
    {
        // Answered but not kept: the key stays in flight, so a retry gets
        // 409 and, after 60 s, runs again (see docs/native-api.md).
        tracing::warn!(cause = %e, "could not keep an answer for idempotent replay");
    }
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_printable_ascii_characters() {
        assert!(valid_key(b"a"));
        assert!(valid_key(b"0d9f8c3e-1b2a-4c5d-8e7f-123456789abc"));
        assert!(valid_key(b"order 42: retry #1 ~!"));
        assert!(valid_key("k".repeat(255).as_bytes()));
        assert!(!valid_key(b""));
        assert!(!valid_key("k".repeat(256).as_bytes()));
        assert!(!valid_key(b"tab\there"));
        assert!(!valid_key("caf\u{e9}".as_bytes()));
        assert!(!valid_key(b"nul\0"));
    }
}
