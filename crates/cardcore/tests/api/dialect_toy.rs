//! A fourth dialect built inside this test crate from the descriptor alone
//! (`cardcore_http::dialects::Dialect`): its own prefix, one route that
//! calls one service operation, its own credential header and its own error
//! shape. Registered beside the built-in ones, it is routed, rate limited,
//! answered for unknown routes and documented like them, with no change to
//! cardcore's crates.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cardcore::Server;
use cardcore_domain::{CardId, LifecycleAction};
use cardcore_http::dialects::{self, Dialect};
use cardcore_http::openapi as oa;
use cardcore_http::AppState;
use cardcore_service::cards::ReasonInput;
use cardcore_service::{Ctx, ServiceError};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::helpers::{client, serve_args, TestApp};

/// The toy vendor: `/toy`, a cardcore API key in `toy-key`, errors
/// `{"oops": code, "why": text}`.
const TOY: Dialect = Dialect {
    name: "toy",
    prefix: "/toy",
    routes: toy_routes,
    render_error: toy_error,
    tag: (
        "Toy",
        "A toy vendor (`/toy`): a cardcore API key in `toy-key`. Errors `{oops, why}`.",
    ),
    security_schemes: toy_schemes,
    credential_headers: &["toy-key"],
};

const SCHEME: &str = "toyKey";

fn toy_schemes() -> Vec<(&'static str, utoipa::openapi::security::SecurityScheme)> {
    vec![(
        SCHEME,
        oa::api_key_header("toy-key", "Toy: a cardcore API key in `toy-key`."),
    )]
}

fn toy_routes() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new().routes(routes!(freeze));
    oa::for_each_operation(router.get_openapi_mut(), |_, _, op| {
        oa::secure(op, &[&[SCHEME]]);
        for (status, r) in oa::responses_mut(op) {
            if status >= 400 {
                oa::body(r, "application/json", oa::schema_ref::<Oops>());
            }
        }
        oa::key_rate_limited_as(op, "application/json", oa::schema_ref::<Oops>());
    });
    oa::register::<Oops>(router.get_openapi_mut());
    router
}

/// The toy's error body.
#[derive(Serialize, utoipa::ToSchema)]
struct Oops {
    oops: &'static str,
    why: String,
}

/// THE mapping of service errors to the toy's shape.
fn toy_error(e: ServiceError) -> Response {
    let (status, oops) = match &e {
        ServiceError::NotFound(dialects::ROUTE) => (StatusCode::NOT_FOUND, "no_such_route"),
        ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "no_such_card"),
        ServiceError::Unauthorized => (StatusCode::UNAUTHORIZED, "who_are_you"),
        ServiceError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "slow_down"),
        ServiceError::Internal(_) | ServiceError::Unavailable(_) | ServiceError::Startup(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "broken")
        }
        _ => (StatusCode::BAD_REQUEST, "refused"),
    };
    let mut res = (
        status,
        Json(Oops {
            oops,
            why: e.to_string(),
        }),
    )
        .into_response();
    if let ServiceError::RateLimited {
        retry_after_seconds, ..
    } = e
    {
        res.headers_mut()
            .insert("retry-after", HeaderValue::from(retry_after_seconds));
    }
    res
}

struct ToyError(ServiceError);

impl From<ServiceError> for ToyError {
    fn from(e: ServiceError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ToyError {
    fn into_response(self) -> Response {
        toy_error(self.0)
    }
}

/// A request authenticated by `toy-key`.
struct ToyAuth(Ctx);

impl FromRequestParts<AppState> for ToyAuth {
    type Rejection = ToyError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get("toy-key")
            .and_then(|v| v.to_str().ok())
            .ok_or(ServiceError::Unauthorized)?
            .to_owned();
        let principal = cardcore_http::auth::authenticate(parts, &state.service, &key).await?;
        Ok(Self(Ctx::new(
            principal,
            TOY.channel(),
            cardcore_http::auth::request_id_of(parts),
        )))
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct Frozen {
    frozen: bool,
}

/// `POST /toy/cards/{card}/freeze`: locks the card (one service call).
#[utoipa::path(
    post,
    path = "/cards/{card}/freeze",
    operation_id = "toyFreeze",
    summary = "Freeze a card",
    params(("card" = String, Path, description = "The card id.")),
    responses(
        (status = 200, description = "Frozen.", body = Frozen),
        (status = 400, description = "`refused`."),
        (status = 401, description = "`who_are_you`."),
        (status = 404, description = "`no_such_card`."),
    )
)]
async fn freeze(
    State(s): State<AppState>,
    ToyAuth(ctx): ToyAuth,
    Path(card): Path<String>,
) -> Result<Json<Frozen>, ToyError> {
    let id: CardId = card
        .parse()
        .map_err(|_| ServiceError::invalid("card", "must be a UUID"))?;
    let change = s
        .service
        .change_status(&ctx, id, LifecycleAction::Lock, ReasonInput::default())
        .await?;
    Ok(Json(Frozen { frozen: change.changed }))
}

/// A server with the built-in dialects and the toy.
async fn spawn_with_toy(extra: &[&str]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = serve_args(dir.path(), extra);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut all = dialects::all();
    all.push(TOY);
    let server = Server::start_with(&args, Some(listener), all)
        .await
        .expect("server starts");
    let (tenant, key) = server.service.create_tenant("tenant-a").await.expect("tenant");
    TestApp {
        base: format!("http://{}", server.addr),
        client: client(),
        key: key.secret.to_string(),
        tenant_id: tenant.id.to_string(),
        dir,
        server: Some(server),
    }
}

async fn send(app: &TestApp, path: &str, key: Option<&str>) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = app.client.post(format!("{}{path}", app.base));
    if let Some(key) = key {
        req = req.header("toy-key", key);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, res.json().await.unwrap_or(Value::Null), headers)
}

#[tokio::test]
async fn a_fourth_dialect_from_its_descriptor_alone_is_routed_refused_and_documented() {
    let app = spawn_with_toy(&[]).await;
    let card = app.active_card("virtual").await;
    let id = card["id"].as_str().unwrap();

    // Its route works: one service call, audited under the toy's name.
    let (status, body, _) = send(&app, &format!("/toy/cards/{id}/freeze"), Some(&app.key)).await;
    assert_eq!((status, &body), (200, &json!({"frozen": true})));
    assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok()["status"], "LOCKED");
    assert_eq!(app.audit(id).await[0]["actor"]["channel"], "toy");
    // Its errors are in its shape.
    let (status, body, _) = send(&app, &format!("/toy/cards/{id}/freeze"), Some("cc_nope")).await;
    assert_eq!((status, body["oops"].as_str()), (401, Some("who_are_you")), "{body}");
    let other = uuid::Uuid::new_v4();
    let (status, body, _) = send(&app, &format!("/toy/cards/{other}/freeze"), Some(&app.key)).await;
    assert_eq!((status, body["oops"].as_str()), (404, Some("no_such_card")), "{body}");

    // An unknown route under its prefix answers in its shape; elsewhere the
    // others keep theirs.
    let (status, body, _) = send(&app, "/toy/no/such/route", Some(&app.key)).await;
    assert_eq!((status, body["oops"].as_str()), (404, Some("no_such_route")), "{body}");
    let (status, body, _) = send(&app, "/toyish", Some(&app.key)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("route_not_found")),
        "{body}"
    );

    // The document has its tag, its security scheme and its error shape.
    let doc: Value = app.get("/openapi.json").await.ok();
    assert!(
        doc["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "Toy" && t["description"].as_str().unwrap().contains("toy-key")),
        "{}",
        doc["tags"]
    );
    assert_eq!(doc["components"]["securitySchemes"][SCHEME]["name"], "toy-key");
    let op = &doc["paths"]["/toy/cards/{card}/freeze"]["post"];
    assert_eq!(op["tags"], json!(["Toy"]));
    assert_eq!(op["security"], json!([{SCHEME: []}]));
    for status in ["400", "401", "404", "429"] {
        assert_eq!(
            op["responses"][status]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Oops",
            "{status}"
        );
    }
    assert!(doc["components"]["schemas"]["Oops"].is_object());
}

#[tokio::test]
async fn rate_limit_refusals_of_a_fourth_dialect_are_in_its_shape() {
    let app = spawn_with_toy(&["--auth-failures-per-minute", "1", "--auth-failures-burst", "2"]).await;
    let card = app.active_card("virtual").await;
    let id = card["id"].as_str().unwrap();
    let path = format!("/toy/cards/{id}/freeze");
    // Failed authentications through the toy's header spend the address's
    // budget, then the edge refuses before any handler, in the toy's shape.
    let mut refused = None;
    for _ in 0..5 {
        let (status, body, headers) = send(&app, &path, Some("cc_guess")).await;
        if status == 429 {
            refused = Some((body, headers));
            break;
        }
        assert_eq!(body["oops"], "who_are_you", "{body}");
    }
    let (body, headers) = refused.expect("the address is refused after its burst of failures");
    assert_eq!(body["oops"], "slow_down", "{body}");
    assert!(headers.contains_key("retry-after"));
    // The per-key limit, counted when its handler authenticates, also
    // answers in its shape.
    let app = spawn_with_toy(&["--rate-limit-per-second", "1", "--rate-limit-burst", "1"]).await;
    let path = format!("/toy/cards/{}/freeze", uuid::Uuid::new_v4());
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, body, headers) = send(&app, &path, Some(&app.key)).await;
        match status {
            429 => {
                assert_eq!(body["oops"], "slow_down", "{body}");
                assert!(headers.contains_key("retry-after"));
            }
            _ => assert_eq!((status, body["oops"].as_str()), (404, Some("no_such_card")), "{body}"),
        }
        statuses.push(status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn unknown_routes_under_each_built_in_dialect_answer_in_its_shape() {
    let app = crate::helpers::spawn_app().await;
    let r = app.get("/p100/v1/no-such-route").await;
    assert_eq!(
        (r.status.as_u16(), r.body["errorCode"].as_str()),
        (404, Some("P404")),
        "{}",
        r.text
    );
    let r = app.get("/qitech/no-such-route").await;
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_str()),
        (404, Some("QIT000404")),
        "{}",
        r.text
    );
    let r = app.get("/m2p/no-such-route").await;
    assert_eq!(
        (r.status.as_u16(), r.body["message"].as_str()),
        (404, Some("error.http.404")),
        "{}",
        r.text
    );
    // The native API keeps its problem.
    app.get("/v1/no-such-route").await.expect(404, "route_not_found");
}
