//! HTTP: translation only. The native API in [`native`]; each vendor
//! dialect in its own folder. Handlers parse, call one service operation,
//! and render; no business rule lives here (Architecture Invariant).

// Problems travel on the error path only; boxing them buys nothing measurable.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod console;
pub mod dialects;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod metrics;
pub mod middleware;
pub mod native;
pub mod openapi;
pub mod problem;
pub mod ratelimit;
pub mod widget;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::{Extension, Json, Router};
use cardcore_service::Service;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    /// The vendor dialects served beside the native API (default:
    /// [`dialects::all`]); their prefixes must differ from each other and
    /// from `/v1`.
    pub dialects: Vec<dialects::Dialect>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            metrics: None,
            rate_limits: ratelimit::RateLimits::off(),
            dialects: dialects::all(),
        }
    }
}

/// The whole HTTP application.
pub fn app(service: Arc<Service>, options: HttpOptions) -> Router {
    let state = AppState {
        service,
        metrics: options.metrics,
    };
    let dialects: Arc<[dialects::Dialect]> = options.dialects.into();
    let (router, api) = routes(&state, &dialects).split_for_parts();
    let document = openapi::Document::new(&openapi::finish(api));
    let unknown = dialects.clone();
    router
        .fallback(move |uri: Uri| not_found(unknown, uri))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(document))
        .layer(DefaultBodyLimit::max(extract::MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            ratelimit::Edge {
                limits: options.rate_limits,
                dialects,
            },
            ratelimit::limit,
        ))
        .layer(axum::middleware::from_fn(middleware::request_id))
        .with_state(state)
}

/// `/metrics` alone, for its own listener (`--metrics-listen`); the main
/// application is then built without the handle and answers 404 there.
pub fn metrics_app(service: Arc<Service>, metrics: metrics_exporter_prometheus::PrometheusHandle) -> Router {
    let state = AppState {
        service,
        metrics: Some(metrics),
    };
    let (router, _) = OpenApiRouter::<AppState>::new()
        .routes(routes!(metrics::render))
        .split_for_parts();
    router.fallback(|| async { route_not_found() }).with_state(state)
}

/// Every route, each with its documentation: routes come only through
/// `utoipa_axum::routes!` (the `openapi` test scans this crate for any other
/// way to add one). Each front door's part of the document is decorated where
/// its middleware is applied.
fn routes(state: &AppState, vendors: &[dialects::Dialect]) -> OpenApiRouter<AppState> {
    let mut native = native::routes();
    openapi::native(native.get_openapi_mut());
    let mut base = openapi::base();
    openapi::dialects(&mut base, vendors);
    OpenApiRouter::with_openapi(base)
        .routes(routes!(root))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics::render))
        .routes(routes!(openapi::document))
        .routes(routes!(openapi::docs))
        .routes(routes!(openapi::docs_asset))
        .merge(native.route_layer(axum::middleware::from_fn_with_state(state.clone(), idempotency::layer)))
        .merge(dialects::routes(vendors))
        .merge(console::routes())
        .merge(widget::routes())
}

/// `GET /`: a browser goes to the console; anything else gets the 404 problem.
#[utoipa::path(
    get,
    path = "/",
    tag = "System",
    operation_id = "root",
    summary = "Where to go",
    description = "A browser (`Accept: text/html`) is sent to `/console`; anything else gets the `404` \
                   problem pointing to `/openapi.json`.",
    responses(
        (status = 303, description = "A browser: to `/console`."),
        (status = 404, description = "`route_not_found`: see `/openapi.json`.", content_type = "application/problem+json", body = Problem),
    )
)]
async fn root(headers: axum::http::HeaderMap) -> axum::response::Response {
    let browser = headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',').any(|m| {
                m.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/html"))
            })
        });
    if browser {
        let mut res = StatusCode::SEE_OTHER.into_response();
        res.headers_mut().insert(
            axum::http::header::LOCATION,
            axum::http::HeaderValue::from_static("/console"),
        );
        res
    } else {
        route_not_found().into_response()
    }
}

/// `{"status": "ok"}`.
#[derive(Serialize, ToSchema)]
struct Health {
    #[schema(schema_with = health_ok)]
    status: &'static str,
}

fn health_ok() -> utoipa::openapi::Object {
    openapi::string_enum(["ok"])
}

/// `{"status": "ready", "database": ...}`.
#[derive(Serialize, ToSchema)]
struct Ready {
    #[schema(schema_with = ready)]
    status: &'static str,
    /// The storage backend.
    #[schema(schema_with = backends)]
    database: &'static str,
}

fn ready() -> utoipa::openapi::Object {
    openapi::string_enum(["ready"])
}

fn backends() -> utoipa::openapi::Object {
    openapi::string_enum(["sqlite", "postgres"])
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "System",
    operation_id = "healthz",
    summary = "Liveness",
    responses((status = 200, description = "The process answers.", body = Health))
)]
async fn healthz() -> impl IntoResponse {
    Json(Health { status: "ok" })
}

/// Readiness: the node is not stopping and the database answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "System",
    operation_id = "readyz",
    summary = "Readiness",
    responses(
        (status = 200, description = "The database answers.", body = Ready),
        (status = 503, description = "`service_unavailable`: the node is stopping (SIGTERM), or the database is not reachable.",
            content_type = "application/problem+json", body = Problem),
    )
)]
async fn readyz(State(s): State<AppState>) -> axum::response::Response {
    if s.service.draining() {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "the node is stopping: it finishes the requests it has and takes no new ones",
        )
        .into_response();
    }
    match s.service.store().ping().await {
        Ok(()) => Json(Ready {
            status: "ready",
            database: s.service.store().backend(),
        })
        .into_response(),
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

/// No route matches: under a dialect's prefix the vendor's 404, else the
/// native problem.
async fn not_found(dialects: Arc<[dialects::Dialect]>, uri: Uri) -> axum::response::Response {
    let unknown = cardcore_service::ServiceError::NotFound(dialects::ROUTE);
    if let Some(res) = dialects::render_for_path(&dialects, uri.path(), unknown) {
        return res;
    }
    route_not_found().into_response()
}

fn route_not_found() -> Problem {
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
