//! HTTP: translation only. The native API in [`native`]; each vendor
//! dialect in its own folder. Handlers parse, call one service operation,
//! and render; no business rule lives here (Architecture Invariant).

// Problems travel on the error path only; boxing them buys nothing measurable.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod dialects;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod metrics;
pub mod middleware;
pub mod native;
pub mod problem;
pub mod ratelimit;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use cardcore_service::Service;

use crate::problem::Problem;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    /// The Prometheus recorder's handle, when metrics are on.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// HTTP settings.
#[derive(Clone)]
pub struct HttpOptions {
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub rate_limits: Arc<ratelimit::RateLimits>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            metrics: None,
            rate_limits: ratelimit::RateLimits::off(),
        }
    }
}

/// The whole HTTP application.
pub fn app(service: Arc<Service>, options: HttpOptions) -> Router {
    let state = AppState {
        service,
        metrics: options.metrics,
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .merge(native::routes().route_layer(axum::middleware::from_fn_with_state(state.clone(), idempotency::layer)))
        .merge(dialects::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            options.rate_limits,
            ratelimit::limit,
        ))
        .layer(axum::middleware::from_fn(middleware::request_id))
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(s): State<AppState>) -> axum::response::Response {
    match s.service.store().ping().await {
        Ok(()) => {
            Json(serde_json::json!({ "status": "ready", "database": s.service.store().backend() })).into_response()
        }
        Err(e) => {
            tracing::warn!(cause = %e, "readiness check failed");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "the database is not reachable",
            )
            .into_response()
        }
    }
}

async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        "no route matches this method and path; see /openapi.json",
    )
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not accept this method",
    )
}
