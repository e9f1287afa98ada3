//! Prometheus metrics: `GET /metrics`. Recording goes through the `metrics`
//! facade (the service records its own counters); the binary installs the
//! Prometheus recorder and hands its handle here.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// Request latency buckets, in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Records one finished request.
pub fn record_request(method: &str, route: &str, status: u16, seconds: f64) {
    let labels = [
        ("method", method_label(method).to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    metrics::counter!("cardcore_http_requests_total", &labels).increment(1);
    metrics::histogram!("cardcore_http_request_duration_seconds", &labels[..2]).record(seconds);
}

/// A bounded label for a request method: a client can send any token as its
/// method, and each distinct label value is a series kept for the life of
/// the process.
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("OTHER")
}

/// `GET /metrics`: the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "System",
    operation_id = "metrics",
    summary = "Prometheus metrics",
    description = "Requests by method, route pattern and status, latency histograms, database pool, webhook \
                   attempts, and the service's own counters, in the Prometheus text format.",
    responses(
        (status = 200, description = "The metrics.", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 404, description = "Metrics are not enabled on this server.", content_type = "text/plain", body = String),
    )
)]
pub async fn render(State(s): State<AppState>) -> Response {
    let Some(handle) = &s.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are not enabled").into_response();
    };
    if let Some(pool) = s.service.store().pool_status() {
        metrics::gauge!("cardcore_db_pool_connections", "state" => "in_use").set(f64::from(pool.in_use));
        metrics::gauge!("cardcore_db_pool_connections", "state" => "idle").set(f64::from(pool.idle));
        metrics::gauge!("cardcore_db_pool_max_connections").set(f64::from(pool.max));
    }
    let mut res = handle.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::method_label;

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("PATCH"), "PATCH");
        assert_eq!(method_label("XYZZY"), "OTHER");
        assert_eq!(method_label("get"), "OTHER");
    }
}
