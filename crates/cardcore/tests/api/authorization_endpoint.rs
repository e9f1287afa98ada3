//! The tenant's authorization endpoint: `PUT/GET/DELETE
//! /v1/authorization-endpoint`, and asking it (`Service::ask_tenant`): a
//! signed request to a local decision service that approves, declines,
//! hangs, answers garbage, answers late or fails; the webhook network rules
//! on its URL, before any packet leaves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use cardcore_service::authorization_endpoint::TenantDecision;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{serve_args, spawn_app, spawn_app_with, TestApp};

/// How the decision service answers on a path.
#[derive(Clone, Copy)]
pub enum Mode {
    Approve,
    Decline,
    /// Never answers (within the test).
    Hang,
    /// Answers `{"approved": <approve>}` after this many ms.
    Late(u64, bool),
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with JSON of the wrong shape.
    WrongShape,
    /// 500 with an approving body.
    ServerError,
    /// The first request waits until [`Decider::release`], then approves;
    /// later ones approve at once.
    GateFirst,
}

#[derive(Clone, Debug)]
pub struct Hit {
    pub path: String,
    pub verified: bool,
    pub body: Value,
}

#[derive(Default)]
pub struct Inner {
    gate: Arc<tokio::sync::Notify>,
    gated: bool,
    secret: Option<String>,
    modes: HashMap<String, Mode>,
    hits: Vec<Hit>,
}

/// A tenant's decision service on 127.0.0.1: verifies each request's
/// Standard Webhooks signature with the secret it was given, records it,
/// answers per the path's mode.
#[derive(Clone)]
pub struct Decider {
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

/// The Standard Webhooks check, from the spec alone: `whsec_` + base64 key,
/// HMAC-SHA256 over `{id}.{timestamp}.{body}`, `v1,<base64>` signatures,
/// a timestamp within 5 minutes.
pub fn verify_per_spec(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (Some(id), Some(ts), Some(sigs)) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    ) else {
        return false;
    };
    let Ok(ts_num) = ts.parse::<i64>() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - ts_num).abs() > 300 {
        return false;
    }
    let Some(key) = secret.strip_prefix("whsec_").and_then(|b| BASE64.decode(b).ok()) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = BASE64.encode(mac.finalize().into_bytes());
    sigs.split(' ')
        .any(|s| s.split_once(',') == Some(("v1", expected.as_str())))
}

async fn decide(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (mode, verified, gate, first) = {
        let mut g = inner.lock().unwrap();
        let first = !g.gated;
        let verified = g.secret.as_deref().is_some_and(|s| verify_per_spec(s, &headers, &body));
        g.hits.push(Hit {
            path: path.clone(),
            verified,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        let mode = g.modes.get(&path).copied().unwrap_or(Mode::Approve);
        if matches!(mode, Mode::GateFirst) {
            g.gated = true;
        }
        (mode, verified, g.gate.clone(), first)
    };
    if !verified {
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let json = |v: Value| (StatusCode::OK, [("content-type", "application/json")], v.to_string()).into_response();
    match mode {
        Mode::Approve => json(json!({"approved": true})),
        Mode::Decline => json(json!({"approved": false, "reason": "velocity rule 7"})),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            json(json!({"approved": true}))
        }
        Mode::Late(ms, approved) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            json(json!({"approved": approved}))
        }
        Mode::GateFirst => {
            if first {
                gate.notified().await;
            }
            json(json!({"approved": true}))
        }
        Mode::Garbage => (StatusCode::OK, "<html>approved</html>").into_response(),
        Mode::WrongShape => json(json!({"decision": "APPROVE"})),
        Mode::ServerError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "application/json")],
            json!({"approved": true}).to_string(),
        )
            .into_response(),
    }
}

impl Decider {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .route("/{path}", axum::routing::post(decide))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base: format!("http://{addr}"),
            inner,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    pub fn set(&self, path: &str, mode: Mode) {
        self.inner.lock().unwrap().modes.insert(path.to_owned(), mode);
    }

    /// Lets the gated first request answer.
    pub fn release(&self) {
        self.inner.lock().unwrap().gate.notify_one();
    }

    pub fn secret(&self, secret: &str) {
        self.inner.lock().unwrap().secret = Some(secret.to_owned());
    }

    pub fn hits(&self, path: &str) -> Vec<Hit> {
        self.inner
            .lock()
            .unwrap()
            .hits
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }

    /// Every path this decider serves, one mode each.
    pub fn all_modes(&self) {
        for (path, mode) in [
            ("approve", Mode::Approve),
            ("decline", Mode::Decline),
            ("hang", Mode::Hang),
            ("garbage", Mode::Garbage),
            ("wrong-shape", Mode::WrongShape),
            ("server-error", Mode::ServerError),
        ] {
            self.set(path, mode);
        }
    }
}

/// Points the tenant's endpoint at `url`; answers the `PUT` body.
pub async fn set_endpoint(app: &TestApp, url: &str, timeout_ms: u32, on_timeout: &str) -> Value {
    app.put(
        "/v1/authorization-endpoint",
        json!({"url": url, "timeout_ms": timeout_ms, "on_timeout": on_timeout}),
    )
    .await
    .ok()
}

fn authorization(id: &str) -> Value {
    json!({
        "id": id, "card_id": null, "status": "APPROVED", "amount": 1250, "currency": "EUR",
        "merchant": {"mcc": "5411", "name": "Mercado", "country": "PT"}, "channel": "pos"
    })
}

async fn ask(app: &TestApp, id: &str) -> Option<TenantDecision> {
    app.service()
        .ask_tenant(app.tenant_id.parse().unwrap(), &authorization(id))
        .await
        .unwrap()
}

#[tokio::test]
async fn put_get_delete_and_the_secret_is_shown_once() {
    let app = spawn_app().await;
    let r = app.get("/v1/authorization-endpoint").await;
    r.expect(404, "authorization_endpoint_not_found");

    let first = app
        .put(
            "/v1/authorization-endpoint",
            json!({"url": "http://127.0.0.1:9/decide"}),
        )
        .await
        .ok();
    assert_eq!(first["timeout_ms"], 800, "the default");
    assert_eq!(first["on_timeout"], "decline", "the default");
    let secret = first["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{first}");
    let got = app.get("/v1/authorization-endpoint").await.ok();
    assert_eq!(got["url"], "http://127.0.0.1:9/decide");
    assert!(got.get("secret").is_none(), "never shown again: {got}");

    // A later PUT replaces the settings and keeps the secret (and the creation time).
    let second = set_endpoint(&app, "http://127.0.0.1:9/other", 300, "approve").await;
    assert_eq!(second["secret"], Value::Null, "{second}");
    assert_eq!(second["created_at"], first["created_at"]);
    assert_eq!(
        (second["timeout_ms"].as_u64(), second["on_timeout"].as_str()),
        (Some(300), Some("approve"))
    );
    // rotate_secret makes a new one.
    let rotated = app
        .put(
            "/v1/authorization-endpoint",
            json!({"url": "http://127.0.0.1:9/other", "rotate_secret": true}),
        )
        .await
        .ok();
    let new_secret = rotated["secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);

    // Another tenant sees none of it.
    let other = app.new_tenant("tenant-b").await;
    app.call_as(&other, reqwest::Method::GET, "/v1/authorization-endpoint", None)
        .await
        .expect(404, "authorization_endpoint_not_found");

    let gone = app.delete("/v1/authorization-endpoint").await.ok();
    assert_eq!(gone["deleted"], true);
    app.get("/v1/authorization-endpoint")
        .await
        .expect(404, "authorization_endpoint_not_found");
    app.delete("/v1/authorization-endpoint")
        .await
        .expect(404, "authorization_endpoint_not_found");
    assert_eq!(ask(&app, "auth_1").await, None, "no endpoint: cardcore decides alone");

    // Each change is audited, without the secret.
    let conn = rusqlite::Connection::open(app.db_path()).unwrap();
    let mut stmt = conn
        .prepare("SELECT type, COALESCE(after, '') FROM audit_log WHERE type LIKE 'authorization_endpoint.%' ORDER BY created_at")
        .unwrap();
    let rows: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let types: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "authorization_endpoint.set",
            "authorization_endpoint.set",
            "authorization_endpoint.set",
            "authorization_endpoint.deleted"
        ]
    );
    for (_, after) in &rows {
        assert!(!after.contains("whsec_"), "{after}");
    }
}

#[tokio::test]
async fn bad_input_names_the_field_and_changes_nothing() {
    let app = spawn_app().await;
    for (body, field) in [
        (json!({"url": "http://127.0.0.1:9/d", "timeout_ms": 99}), "timeout_ms"),
        (json!({"url": "http://127.0.0.1:9/d", "timeout_ms": 1501}), "timeout_ms"),
        (json!({"url": "ftp://127.0.0.1/d"}), "url"),
        (json!({"url": "https://user:pw@127.0.0.1/d"}), "url"),
        (json!({"url": "http://10.1.2.3/d"}), "url"),
        (json!({"url": "https://169.254.169.254/latest/meta-data"}), "url"),
        (
            json!({"url": "http://127.0.0.1:9/d", "on_timeout": "maybe"}),
            "on_timeout",
        ),
        (json!({"timeout_ms": 800}), "url"),
    ] {
        let r = app.put("/v1/authorization-endpoint", body.clone()).await;
        assert_eq!(r.status.as_u16(), 422, "{body}: {}", r.text);
        assert!(r.text.contains(field), "{body}: {}", r.text);
    }
    app.get("/v1/authorization-endpoint")
        .await
        .expect(404, "authorization_endpoint_not_found");
}

#[tokio::test]
async fn the_tenant_is_asked_signed_and_its_answer_decides() {
    let app = spawn_app().await;
    let decider = Decider::start().await;
    decider.all_modes();
    let made = set_endpoint(&app, &decider.url("approve"), 800, "decline").await;
    decider.secret(made["secret"].as_str().unwrap());

    assert_eq!(ask(&app, "auth_1").await, Some(TenantDecision::Approved));
    let hits = decider.hits("approve");
    assert_eq!(hits.len(), 1);
    assert!(
        hits[0].verified,
        "the signature verifies per the Standard Webhooks spec"
    );
    assert_eq!(hits[0].body["type"], "authorization.request");
    assert_eq!(hits[0].body["data"]["status"], "PENDING", "{:?}", hits[0].body);
    assert_eq!(hits[0].body["data"]["id"], "auth_1");
    assert_eq!(hits[0].body["data"]["amount"], 1250);

    // The same secret signs for the new URL.
    set_endpoint(&app, &decider.url("decline"), 800, "approve").await;
    assert_eq!(
        ask(&app, "auth_2").await,
        Some(TenantDecision::Declined {
            reason: Some("velocity rule 7".into())
        })
    );
    assert!(decider.hits("decline")[0].verified);
}

#[tokio::test]
async fn no_usable_answer_in_time_stands_in_per_on_timeout() {
    let app = spawn_app().await;
    let decider = Decider::start().await;
    decider.all_modes();
    // Answers after the endpoint's 200 ms: too late, so its answer is not
    // taken (without the cut, the client would wait for it and approve).
    decider.set("late-approve", Mode::Late(700, true));
    decider.set("late-decline", Mode::Late(700, false));
    let made = set_endpoint(&app, &decider.url("approve"), 200, "decline").await;
    decider.secret(made["secret"].as_str().unwrap());

    for path in ["hang", "late-approve", "garbage", "wrong-shape", "server-error"] {
        set_endpoint(&app, &decider.url(path), 200, "decline").await;
        assert_eq!(
            ask(&app, path).await,
            Some(TenantDecision::StandIn { approved: false }),
            "{path}"
        );
        assert_eq!(decider.hits(path).len(), 1, "{path}: asked once");
        assert!(decider.hits(path)[0].verified, "{path}");
    }
    for path in ["late-decline", "hang", "garbage"] {
        set_endpoint(&app, &decider.url(path), 200, "approve").await;
        assert_eq!(
            ask(&app, path).await,
            Some(TenantDecision::StandIn { approved: true }),
            "{path}"
        );
    }
    // Nobody listening: stand-in too.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    set_endpoint(&app, &format!("http://127.0.0.1:{closed}/gone"), 200, "approve").await;
    assert_eq!(ask(&app, "x").await, Some(TenantDecision::StandIn { approved: true }));
}

/// Counts the connections a listener on 127.0.0.1 accepts.
async fn counter() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, accepted)
}

#[tokio::test]
async fn the_webhook_network_rules_refuse_a_target_before_any_packet() {
    let (port, accepted) = counter().await;
    // Loopback admitted: the endpoint is set (by address and by name).
    let mut app = spawn_app().await;
    set_endpoint(&app, &format!("http://localhost:{port}/decide"), 300, "decline").await;

    // A node under rules that do not admit loopback refuses it at PUT...
    let strict = ["--webhook-allow-networks", ""];
    let args = serve_args(app.dir.path(), &strict);
    app.server.take().unwrap().stop().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = cardcore::Server::start(&args, Some(listener)).await.unwrap();
    app.base = format!("http://{}", server.addr);
    app.server = Some(server);
    for url in [format!("http://127.0.0.1:{port}/d"), format!("https://[::1]:{port}/d")] {
        let r = app
            .put("/v1/authorization-endpoint", json!({"url": url}))
            .await
            .expect(422, "validation_error");
        assert_eq!(r["errors"][0]["field"], "url");
    }
    // ...and the one stored before is refused when asked (by name, through
    // the resolver): on_timeout stands in and nothing connects.
    assert_eq!(ask(&app, "a").await, Some(TenantDecision::StandIn { approved: false }));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "not one connection to a refused target"
    );

    // A server admitting loopback does connect (the counter works).
    let open = spawn_app_with(&[]).await;
    set_endpoint(&open, &format!("http://127.0.0.1:{port}/d"), 100, "approve").await;
    assert_eq!(ask(&open, "b").await, Some(TenantDecision::StandIn { approved: true }));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// Concurrent PUTs: the endpoint is made once, so exactly one answer shows
/// a secret (the stored one); the others keep it, as a later PUT does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_puts_make_one_secret() {
    let app = Arc::new(spawn_app().await);
    let mut puts = tokio::task::JoinSet::new();
    for n in 0..12 {
        let app = app.clone();
        puts.spawn(async move {
            app.put(
                "/v1/authorization-endpoint",
                json!({"url": format!("http://127.0.0.1:9/decide-{n}")}),
            )
            .await
            .ok()
        });
    }
    let mut secrets = Vec::new();
    while let Some(answer) = puts.join_next().await {
        let answer = answer.unwrap();
        if let Some(s) = answer["secret"].as_str() {
            secrets.push(s.to_owned());
        }
    }
    assert_eq!(secrets.len(), 1, "{secrets:?}");
    let conn = rusqlite::Connection::open(app.db_path()).unwrap();
    let rotated: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM audit_log WHERE type = 'authorization_endpoint.set' \
             AND json_extract(after, '$.secret_rotated') = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rotated, 1, "one secret made, one audited");
}
