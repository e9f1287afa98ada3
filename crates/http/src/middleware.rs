//! Request ids and the final touch on problem bodies.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use crate::problem::Problem;

/// The request id header.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// This request's id, in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Honours a caller's `x-request-id` (if it is short and plain, so it cannot
/// forge log lines) or makes one; puts it on the request, every log line of
/// the request's span, the response header, and any problem body.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    // The route pattern (`/v1/cards/{id}/lock`), never the concrete path:
    // bounded label values for metrics, and no ids in the route field.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!("request", request_id = %id, %method, %route);
    let started = std::time::Instant::now();
    let mut res = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    if let Some(problem) = res.extensions_mut().remove::<Problem>() {
        let mut p = problem;
        p.request_id = Some(id.clone());
        let status = res.status();
        let headers = res.headers().clone();
        res = p.render();
        *res.status_mut() = status;
        for (k, v) in headers.iter() {
            if k != axum::http::header::CONTENT_LENGTH {
                res.headers_mut().insert(k, v.clone());
            }
        }
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    let elapsed = started.elapsed().as_secs_f64();
    crate::metrics::record_request(method.as_str(), &route, res.status().as_u16(), elapsed);
    span.in_scope(|| {
        tracing::info!(
            status = res.status().as_u16(),
            latency_ms = elapsed * 1000.0,
            "request done"
        );
    });
    res
}
