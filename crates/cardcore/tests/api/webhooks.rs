//! Webhooks, end to end: a real receiver on 127.0.0.1 that checks every
//! delivery with code written from the Standard Webhooks specification
//! alone (HMAC-SHA256 here, not cardcore's signer), and fails, redirects or
//! stalls on purpose.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use cardcore_domain::{Channel, LifecycleAction};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{serve_args, spawn_app_with, TestApp};

/// Fast retries and polling, so a test sees a whole schedule in a second;
/// the receiver is on loopback, which webhooks reach only when admitted.
const FAST: &[&str] = &[
    "--webhook-allow-networks",
    "127.0.0.0/8,::1/128",
    "--webhook-retry-schedule",
    "100ms,200ms,300ms",
    "--webhook-poll-interval-ms",
    "20",
    "--webhook-timeout-ms",
    "700",
    "--webhook-lease-seconds",
    "5",
];

/// What a path of the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    Ok,
    /// 500 to the first attempt of each webhook-id, 200 afterwards.
    FailFirst,
    /// 503, always.
    AlwaysFail,
    /// 302 to `<path>-target` (which would answer 200).
    Redirect,
    /// 200 after this many milliseconds.
    Slow(u64),
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    id: String,
    verified: bool,
    body: Value,
    status: u16,
}

#[derive(Default)]
struct Inner {
    secrets: HashMap<String, String>,
    answers: HashMap<String, Answer>,
    hits: Vec<Hit>,
    /// Paths whose request arrived and is being answered.
    started: Vec<String>,
}

#[derive(Clone)]
struct Receiver {
    base: String,
    inner: Arc<Mutex<Inner>>,
}

/// Verifies a delivery as the Standard Webhooks spec says, and nothing
/// else: the secret is `whsec_` + base64 of the key; the signed content is
/// `{webhook-id}.{webhook-timestamp}.{raw body}`; the signature header is a
/// space-separated list of `v1,<base64 HMAC-SHA256>`; the timestamp must be
/// within 5 minutes of now.
fn verify_per_spec(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
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

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (secret, answer, earlier) = {
        let mut g = inner.lock().unwrap();
        g.started.push(path.clone());
        let id = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let earlier = g.hits.iter().filter(|h| h.path == path && h.id == id).count();
        (
            g.secrets.get(&path).cloned(),
            g.answers.get(&path).copied().unwrap_or(Answer::Ok),
            earlier,
        )
    };
    let verified = secret.is_some_and(|s| verify_per_spec(&s, &headers, &body));
    let status = match answer {
        _ if !verified => StatusCode::BAD_REQUEST,
        Answer::Ok => StatusCode::OK,
        Answer::FailFirst if earlier == 0 => StatusCode::INTERNAL_SERVER_ERROR,
        Answer::FailFirst => StatusCode::NO_CONTENT,
        Answer::AlwaysFail => StatusCode::SERVICE_UNAVAILABLE,
        Answer::Redirect => StatusCode::FOUND,
        Answer::Slow(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            StatusCode::OK
        }
    };
    let hit = Hit {
        path: path.clone(),
        id: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        verified,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        status: status.as_u16(),
    };
    inner.lock().unwrap().hits.push(hit);
    if status == StatusCode::FOUND {
        return (status, [("location", format!("/{path}-target"))]).into_response();
    }
    status.into_response()
}

impl Receiver {
    async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .route("/{path}", axum::routing::post(receive))
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

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    fn set(&self, path: &str, answer: Answer) {
        self.inner.lock().unwrap().answers.insert(path.to_owned(), answer);
    }

    fn hits(&self, path: &str) -> Vec<Hit> {
        self.inner
            .lock()
            .unwrap()
            .hits
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }

    fn started(&self, path: &str) -> usize {
        self.inner.lock().unwrap().started.iter().filter(|p| *p == path).count()
    }

    /// Waits (20 s at most) until `done` holds for the path's hits.
    async fn wait(&self, path: &str, what: &str, done: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let hits = self.hits(path);
            if done(&hits) {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "{path}: gave up waiting for {what}; got {hits:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every id was answered 2xx at least once.
    async fn wait_delivered(&self, path: &str, ids: &[String]) -> Vec<Hit> {
        self.wait(path, "deliveries", |hits| {
            ids.iter()
                .all(|id| hits.iter().any(|h| &h.id == id && (200..300).contains(&h.status)))
        })
        .await
    }
}

/// Creates an endpoint at the receiver's `path` (the secret goes to the
/// receiver); returns the endpoint.
async fn endpoint_as(app: &TestApp, key: &str, rx: &Receiver, path: &str, events: Option<Value>) -> Value {
    let mut body = json!({ "url": rx.url(path) });
    if let Some(e) = events {
        body["events"] = e;
    }
    let created = app
        .call_as(key, Method::POST, "/v1/webhook-endpoints", Some(body))
        .await
        .expect(201, "");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    rx.inner.lock().unwrap().secrets.insert(path.to_owned(), secret);
    created
}

async fn endpoint(app: &TestApp, rx: &Receiver, path: &str, events: Option<Value>) -> Value {
    endpoint_as(app, &app.key.clone(), rx, path, events).await
}

fn ids(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
}

/// Polls `GET /v1/events/{id}` until `done` holds for it.
async fn event_until(app: &TestApp, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = app.get(&format!("/v1/events/{id}")).await.ok();
        if done(&e) {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "event {id}: gave up waiting for {what}: {e:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_delivery_verifies_and_a_failed_one_comes_again_with_the_same_webhook_id() {
    let rx = Receiver::start().await;
    rx.set("main", Answer::FailFirst);
    let app = spawn_app_with(FAST).await;
    let created = endpoint(&app, &rx, "main", None).await;
    assert_eq!(created["events"], json!(["*"]));
    assert_eq!(created["url"], rx.url("main"));
    assert!(created["id"].is_string() && created["created_at"].is_string());

    let card = app.card("physical").await;
    let id = card["id"].as_str().unwrap();
    let code = app.activation_code(id).await;
    app.post(&format!("/v1/cards/{id}/activate"), json!({"activation_code": code}))
        .await
        .ok();
    let events = app.all_events().await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["card.created", "card.activation_code", "card.activated"]);
    let hits = rx.wait_delivered("main", &ids(&events)).await;

    assert!(hits.iter().all(|h| h.verified), "every delivery verifies: {hits:#?}");
    for e in &events {
        let id = e["id"].as_str().unwrap();
        let for_event: Vec<&Hit> = hits.iter().filter(|h| h.id == id).collect();
        // The first attempt was refused on purpose; the retry carried the
        // same webhook-id, so the receiver can tell it is the same message.
        assert_eq!(
            for_event.iter().map(|h| h.status).collect::<Vec<_>>(),
            [500, 204],
            "{id}"
        );
        // The body is the event as the log shows it: {type, timestamp, data}.
        let body = &for_event[1].body;
        assert_eq!(
            body,
            &json!({"type": e["type"], "timestamp": e["created_at"], "data": e["data"]})
        );
        assert_eq!(for_event[0].body, for_event[1].body);
    }
    // The code goes to the tenant's own endpoint (the tenant sends it on).
    let code_hit = hits.iter().find(|h| h.body["type"] == "card.activation_code").unwrap();
    assert_eq!(code_hit.body["data"]["activation_code"], code.as_str());

    // The attempts are on the event.
    let first = &events[0];
    let e = event_until(&app, first["id"].as_str().unwrap(), "success", |e| {
        e["deliveries"][0]["state"] == "succeeded"
    })
    .await;
    assert_eq!(e["id"], first["id"]);
    assert_eq!(e["type"], "card.created");
    assert_eq!(e["data"], first["data"]);
    let d = &e["deliveries"][0];
    assert_eq!(d["endpoint_id"], created["id"]);
    assert_eq!(d["attempts"], 2);
    assert_eq!(d["last_status"], 204);
    assert_eq!(d["last_error"], Value::Null);
    assert_eq!(d["next_attempt_at"], Value::Null);
    let log = d["attempts_log"].as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0]["status"].clone(), log[1]["status"].clone()),
        (json!(500), json!(204))
    );
    assert!(log.iter().all(|a| a["at"].is_string() && a["duration_ms"].is_u64()));
}

#[tokio::test]
async fn a_cards_events_arrive_in_order_even_while_one_is_retried() {
    let rx = Receiver::start().await;
    rx.set("ordered", Answer::FailFirst);
    let app = spawn_app_with(FAST).await;
    endpoint(&app, &rx, "ordered", None).await;
    let card = app.card("virtual").await;
    let id = card["id"].as_str().unwrap();
    for action in ["lock", "unlock", "lock"] {
        app.post(&format!("/v1/cards/{id}/{action}"), json!({})).await.ok();
    }
    let events = app.card_events(id).await;
    let expected = ids(&events);
    assert_eq!(expected.len(), 4);
    let hits = rx.wait_delivered("ordered", &expected).await;
    // Every event's first attempt failed; the next event of the card was
    // not sent before the retry of the previous one succeeded.
    let arrival: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    let want: Vec<&str> = expected.iter().flat_map(|id| [id.as_str(), id.as_str()]).collect();
    assert_eq!(arrival, want);
    let statuses: Vec<&str> = hits
        .iter()
        .map(|h| h.body["data"]["card"]["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        statuses,
        ["ACTIVE", "ACTIVE", "LOCKED", "LOCKED", "ACTIVE", "ACTIVE", "LOCKED", "LOCKED"]
    );
}

#[tokio::test]
async fn a_delivery_is_dead_after_the_last_attempt_and_redirects_and_timeouts_fail() {
    let rx = Receiver::start().await;
    rx.set("down", Answer::AlwaysFail);
    rx.set("moved", Answer::Redirect);
    rx.set("stuck", Answer::Slow(1_500));
    let app = spawn_app_with(FAST).await;
    let down = endpoint(&app, &rx, "down", None).await;
    let moved = endpoint(&app, &rx, "moved", None).await;
    let stuck = endpoint(&app, &rx, "stuck", None).await;
    let card = app.card("virtual").await;
    let id = card["id"].as_str().unwrap();
    app.post(&format!("/v1/cards/{id}/lock"), json!({})).await.ok();
    let events = app.card_events(id).await;
    let (created, locked) = (events[0]["id"].as_str().unwrap(), events[1]["id"].as_str().unwrap());

    let all_dead = |e: &Value| {
        let d = e["deliveries"].as_array().unwrap();
        d.len() == 3 && d.iter().all(|d| d["state"] == "dead")
    };
    let e = event_until(&app, created, "three dead deliveries", all_dead).await;
    let of = |ep: &Value| {
        e["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["endpoint_id"] == ep["id"])
            .unwrap()
            .clone()
    };
    // The schedule has three waits: four attempts, then dead.
    let d = of(&down);
    assert_eq!(
        (d["attempts"].clone(), d["last_status"].clone()),
        (json!(4), json!(503))
    );
    assert_eq!(d["next_attempt_at"], Value::Null);
    let statuses: Vec<Value> = d["attempts_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!(503); 4]);
    // A redirect is a failure, and it is not followed.
    let d = of(&moved);
    assert_eq!(
        (d["attempts"].clone(), d["last_status"].clone()),
        (json!(4), json!(302))
    );
    assert_eq!(d["last_error"], "redirects are not followed");
    assert!(rx.hits("moved-target").is_empty(), "the redirect was followed");
    // An answer later than the timeout is a failure.
    let d = of(&stuck);
    assert_eq!(d["attempts"], 4);
    assert_eq!(d["last_status"], Value::Null);
    assert_eq!(d["last_error"], "timed out after 700 ms");
    assert_eq!(rx.hits("down").iter().filter(|h| h.id == created).count(), 4);

    // Once the first event is dead, the card's next one goes out.
    event_until(&app, locked, "the next event tried too", |e| {
        e["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["attempts"].as_u64() >= Some(1))
    })
    .await;
    assert!(rx.hits("down").iter().any(|h| h.id == locked));
}

#[tokio::test]
async fn redeliver_sends_the_event_again_with_the_same_webhook_id() {
    let rx = Receiver::start().await;
    let app = spawn_app_with(FAST).await;
    endpoint(&app, &rx, "again", None).await;
    let card = app.card("virtual").await;
    let event = app.card_events(card["id"].as_str().unwrap()).await.remove(0);
    let id = event["id"].as_str().unwrap().to_owned();
    rx.wait_delivered("again", std::slice::from_ref(&id)).await;
    event_until(&app, &id, "success", |e| e["deliveries"][0]["state"] == "succeeded").await;

    let queued = app
        .post(&format!("/v1/events/{id}/redeliver"), json!({}))
        .await
        .expect(202, "");
    assert_eq!(queued["id"], id.as_str());
    assert_eq!(queued["deliveries"].as_array().unwrap().len(), 2);
    let hits = rx.wait("again", "the redelivery", |h| h.len() == 2).await;
    assert!(hits.iter().all(|h| h.id == id && h.verified && h.status == 200));
    assert_eq!(hits[0].body, hits[1].body);
    event_until(&app, &id, "two successes", |e| {
        e["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["state"] == "succeeded")
    })
    .await;

    // Another tenant's event, or none at all, is not found.
    let other = app.new_tenant("tenant-b").await;
    app.call_as(&other, Method::POST, &format!("/v1/events/{id}/redeliver"), None)
        .await
        .expect(404, "event_not_found");
    app.call_as(&other, Method::GET, &format!("/v1/events/{id}"), None)
        .await
        .expect(404, "event_not_found");
    let unknown = uuid::Uuid::now_v7();
    app.post(&format!("/v1/events/{unknown}/redeliver"), json!({}))
        .await
        .expect(404, "event_not_found");
    let p = app.get("/v1/events/not-a-uuid").await.expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "id");
}

#[tokio::test]
async fn filters_and_tenants_decide_which_endpoint_gets_what() {
    let rx = Receiver::start().await;
    let app = spawn_app_with(FAST).await;
    let other = app.new_tenant("tenant-b").await;
    let filtered = endpoint(&app, &rx, "status", Some(json!(["card.status_changed", "otp.created"]))).await;
    assert_eq!(filtered["events"], json!(["card.status_changed", "otp.created"]));
    endpoint(&app, &rx, "everything", Some(json!(["*"]))).await;
    let theirs = endpoint_as(&app, &other, &rx, "theirs", None).await;
    let gone = endpoint(&app, &rx, "gone", None).await;
    app.delete(&format!("/v1/webhook-endpoints/{}", gone["id"].as_str().unwrap()))
        .await
        .ok();

    let card = app.active_card("virtual").await;
    let id = card["id"].as_str().unwrap();
    app.post(&format!("/v1/cards/{id}/lock"), json!({})).await.ok();
    app.post(&format!("/v1/cards/{id}/unlock"), json!({})).await.ok();
    let (_, otp) = app.otp(id).await;
    let holder = app.create_cardholder_as(&other, "their-holder").await;
    app.create_card_as(&other, holder["id"].as_str().unwrap(), "virtual")
        .await;

    let mine = app.all_events().await;
    let hits = rx.wait_delivered("everything", &ids(&mine)).await;
    assert_eq!(hits.len(), 4, "card.created, 2 status changes, otp.created");
    let wanted: Vec<String> = mine
        .iter()
        .filter(|e| e["type"] == "card.status_changed" || e["type"] == "otp.created")
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let hits = rx.wait_delivered("status", &wanted).await;
    assert_eq!(hits.iter().map(|h| h.id.clone()).collect::<Vec<_>>(), wanted);
    let otp_hit = hits.iter().find(|h| h.body["type"] == "otp.created").unwrap();
    assert_eq!(
        otp_hit.body["data"]["otp"],
        otp.as_str(),
        "the tenant's endpoint gets the code"
    );
    let their_events = app.all_events_as(&other).await;
    let hits = rx.wait_delivered("theirs", &ids(&their_events)).await;
    assert_eq!(hits.len(), 1);
    assert!(hits.iter().all(|h| h.body["type"] == "card.created"));
    assert!(rx.hits("gone").is_empty(), "a deleted endpoint gets nothing");
    assert!(rx
        .inner
        .lock()
        .unwrap()
        .hits
        .iter()
        .all(|h| h.verified && (200..300).contains(&h.status)));

    // Listing: the tenant's live endpoints, no secrets.
    let list = app.get("/v1/webhook-endpoints").await;
    assert!(
        !list.text.contains("whsec_") && !list.text.contains("secret"),
        "{}",
        list.text
    );
    let list = list.ok();
    let urls: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls, [rx.url("status"), rx.url("everything")]);
    let theirs_list = app
        .call_as(&other, Method::GET, "/v1/webhook-endpoints", None)
        .await
        .ok();
    assert_eq!(theirs_list["data"].as_array().unwrap().len(), 1);

    // Another tenant's endpoint answers like an unknown one.
    let their_id = theirs["id"].as_str().unwrap();
    app.delete(&format!("/v1/webhook-endpoints/{their_id}"))
        .await
        .expect(404, "webhook_endpoint_not_found");
    app.delete(&format!("/v1/webhook-endpoints/{}", gone["id"].as_str().unwrap()))
        .await
        .expect(404, "webhook_endpoint_not_found");
    let deleted = app
        .call_as(
            &other,
            Method::DELETE,
            &format!("/v1/webhook-endpoints/{their_id}"),
            None,
        )
        .await
        .ok();
    assert_eq!(deleted, json!({"id": their_id, "deleted": true}));
}

#[tokio::test]
async fn endpoints_refuse_bad_urls_and_unknown_event_types() {
    let app = spawn_app_with(FAST).await;
    let bad = |body: Value| {
        let app = &app;
        async move {
            app.post("/v1/webhook-endpoints", body)
                .await
                .expect(422, "validation_error")["errors"][0]["field"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(bad(json!({"url": "ftp://example.com/hook"})).await, "url");
    assert_eq!(bad(json!({"url": "file:///etc/passwd"})).await, "url");
    assert_eq!(bad(json!({"url": "not a url"})).await, "url");
    assert_eq!(bad(json!({"url": "https://user:pw@example.com/"})).await, "url");
    assert_eq!(
        bad(json!({"url": "https://example.com/", "events": ["card.created", "card.exploded"]})).await,
        "events[1]"
    );
    assert_eq!(
        bad(json!({"url": "https://example.com/", "events": []})).await,
        "events"
    );
    assert_eq!(
        bad(json!({"url": "https://example.com/", "secret": "mine"})).await,
        "secret"
    );
    assert_eq!(bad(json!({"events": ["*"]})).await, "url");
    let ok = app
        .post(
            "/v1/webhook-endpoints",
            json!({"url": "https://127.0.0.1:9/hook", "events": null}),
        )
        .await
        .expect(201, "");
    assert_eq!(ok["events"], json!(["*"]));
    app.raw(Method::GET, "/v1/webhook-endpoints", None, None, None)
        .await
        .expect(401, "unauthorized");
    app.delete(&format!("/v1/webhook-endpoints/{}", ok["id"].as_str().unwrap()))
        .await
        .ok();
}

/// One SQLite file has one server (a second is refused); two nodes:
/// `on_postgres_two_nodes_retry_and_deliver_each_event_once_in_order`.
#[tokio::test]
async fn concurrent_connections_deliver_each_event_once_and_in_order() {
    let rx = Receiver::start().await;
    let app = spawn_app_with(FAST).await;
    let base2 = app.base.clone();
    endpoint(&app, &rx, "both", None).await;
    let card = app.card("virtual").await;
    let id = card["id"].as_str().unwrap();
    for (i, action) in ["lock", "unlock", "lock", "unlock", "lock", "unlock"]
        .iter()
        .enumerate()
    {
        let base = if i % 2 == 0 { &app.base } else { &base2 };
        let res = app
            .client
            .post(format!("{base}/v1/cards/{id}/{action}"))
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
    }
    let expected = ids(&app.card_events(id).await);
    assert_eq!(expected.len(), 7);
    rx.wait_delivered("both", &expected).await;
    // Let any duplicate show up before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let arrival: Vec<String> = rx.hits("both").into_iter().map(|h| h.id).collect();
    assert_eq!(arrival, expected, "each event once, in the card's order");
}

#[tokio::test]
async fn events_accepted_while_the_receiver_or_every_node_is_down_arrive_after_a_restart() {
    let rx = Receiver::start().await;
    rx.set("late", Answer::AlwaysFail);
    // Slow enough retries that the server stops while they are pending.
    let slow = [
        "--webhook-retry-schedule",
        "300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms",
        "--webhook-poll-interval-ms",
        "20",
    ];
    let mut app = spawn_app_with(&slow).await;
    endpoint(&app, &rx, "late", None).await;
    let card = app.card("virtual").await;
    let id = card["id"].as_str().unwrap().to_owned();
    let created = app.card_events(&id).await.remove(0);
    let created_id = created["id"].as_str().unwrap().to_owned();
    rx.wait("late", "a failed attempt", |h| h.iter().any(|h| h.id == created_id))
        .await;

    // Every node goes away; while none runs, the card moves through a
    // service opened straight on the database (as the CLI does).
    let args = serve_args(app.dir.path(), &slow);
    app.server.take().unwrap().stop().await.unwrap();
    {
        let service = cardcore::open_service(&args.db, cardcore_service::ServiceConfig::default())
            .await
            .unwrap();
        let tenant = service.tenant(app.tenant_id.parse().unwrap()).await.unwrap();
        let ctx = cardcore_service::Ctx::new(cardcore_service::cli_principal(tenant), Channel::CLI, None);
        service
            .change_status(
                &ctx,
                id.parse::<cardcore_domain::CardId>().unwrap(),
                LifecycleAction::Lock,
                cardcore_service::cards::ReasonInput::default(),
            )
            .await
            .unwrap();
    }
    // The receiver comes back; a node starts again.
    rx.set("late", Answer::Ok);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = cardcore::Server::start(&args, Some(listener)).await.unwrap();
    app.base = format!("http://{}", server.addr);
    app.server = Some(server);

    let events = app.card_events(&id).await;
    assert_eq!(events.len(), 2);
    let hits = rx.wait_delivered("late", &ids(&events)).await;
    assert!(hits.iter().all(|h| h.verified));
    let created_hits: Vec<&Hit> = hits.iter().filter(|h| h.id == created_id).collect();
    assert!(created_hits.len() >= 2, "failed before the restart, delivered after");
    assert_eq!(created_hits.last().unwrap().status, 200);
    // In order: the lock made while no node ran comes after card.created.
    let first_ok = |id: &str| hits.iter().position(|h| h.id == id && h.status == 200).unwrap();
    assert!(first_ok(&created_id) < first_ok(events[1]["id"].as_str().unwrap()));
}

#[tokio::test]
async fn stop_finishes_the_attempt_in_flight() {
    let rx = Receiver::start().await;
    rx.set("slow", Answer::Slow(400));
    let mut app = spawn_app_with(FAST).await;
    endpoint(&app, &rx, "slow", None).await;
    let card = app.card("virtual").await;
    let event = app.card_events(card["id"].as_str().unwrap()).await.remove(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while rx.started("slow") == 0 {
        assert!(Instant::now() < deadline, "no attempt started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let server = app.server.take().unwrap();
    let service = server.service.clone();
    let started = Instant::now();
    server.stop().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "stop waited for the attempt"
    );
    // The attempt finished and was recorded before stop returned.
    let d = service
        .store()
        .event_deliveries(
            app.tenant_id.parse().unwrap(),
            event["id"].as_str().unwrap().parse().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].state, cardcore_store::DeliveryState::Succeeded);
    assert_eq!(d[0].last_status, Some(200));
}

/// The real binary: SIGTERM while an attempt is in flight finishes it and
/// exits 0; nothing secret (webhook secret, signatures, the OTP the event
/// carries) appears in the debug logs or in the database in clear.
#[cfg(unix)]
#[tokio::test]
async fn sigterm_finishes_the_attempt_in_flight_exits_zero_and_logs_no_secret() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cardcore.db").display());
    let bin = env!("CARGO_BIN_EXE_cardcore");
    let tenant = Command::new(bin)
        .args(["tenant", "create", "--name", "hooks", "--json", "--database", &db])
        .output()
        .unwrap();
    assert!(tenant.status.success());
    let tenant: Value = serde_json::from_slice(&tenant.stdout).unwrap();
    let key = tenant["api_key"].as_str().unwrap().to_owned();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(bin)
        .env("RUST_LOG", "debug")
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &db,
            "--rate-limit-per-second",
            "0",
            "--card-pin-calls-per-minute",
            "0",
        ])
        .args(FAST)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut first = [0u8; 256];
    let n = child.stdout.as_mut().unwrap().read(&mut first).unwrap();
    let line = String::from_utf8_lossy(&first[..n]).to_string();
    let addr = line
        .split("http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let base = format!("http://{addr}");
    let client = crate::helpers::client();
    let call = |method: Method, path: &str, body: Option<Value>| {
        let mut req = client.request(method, format!("{base}{path}")).bearer_auth(&key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.text().await.unwrap())
        }
    };

    let (status, created) = call(
        Method::POST,
        "/v1/webhook-endpoints",
        Some(json!({"url": rx.url("bin"), "events": ["otp.created"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let created: Value = serde_json::from_str(&created).unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    rx.inner.lock().unwrap().secrets.insert("bin".into(), secret.clone());
    let (_, holder) = call(
        Method::POST,
        "/v1/cardholders",
        Some(
            json!({"external_id": "u-1", "name": "Ana Silva", "phone": {"country_code": "351", "number": "912345678"}}),
        ),
    )
    .await;
    let holder: Value = serde_json::from_str(&holder).unwrap();
    let (_, card) = call(
        Method::POST,
        "/v1/cards",
        Some(json!({"cardholder_id": holder["id"], "type": "virtual"})),
    )
    .await;
    let card: Value = serde_json::from_str(&card).unwrap();
    let card_id = card["id"].as_str().unwrap();

    // A quick delivery first: the one whose signature is checked below.
    let (status, _) = call(Method::POST, &format!("/v1/cards/{card_id}/otp"), Some(json!({}))).await;
    assert_eq!(status, 201);
    let hits = rx.wait("bin", "the OTP event", |h| !h.is_empty()).await;
    assert!(hits[0].verified && hits[0].status == 200);
    let otp = hits[0].body["data"]["otp"].as_str().unwrap().to_owned();
    assert_eq!(otp.len(), 6);

    // A slow one, and SIGTERM while it is in flight.
    rx.set("bin", Answer::Slow(600));
    let (status, _) = call(Method::POST, &format!("/v1/cards/{card_id}/otp"), Some(json!({}))).await;
    assert_eq!(status, 201);
    let deadline = Instant::now() + Duration::from_secs(20);
    while rx.started("bin") < 2 {
        assert!(Instant::now() < deadline, "the second attempt never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
    let hits = rx.hits("bin");
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[1].status, 200, "the attempt in flight was answered");

    // It was recorded before the exit.
    let args = serve_args(dir.path(), &[]);
    let service = cardcore::open_service(&args.db, cardcore_service::ServiceConfig::default())
        .await
        .unwrap();
    let tenant_id: cardcore_domain::TenantId = tenant["tenant_id"].as_str().unwrap().parse().unwrap();
    let second: cardcore_domain::EventId = hits[1].id.parse().unwrap();
    let d = service.store().event_deliveries(tenant_id, second).await.unwrap();
    assert_eq!(d[0].state, cardcore_store::DeliveryState::Succeeded);

    // Nothing secret in the logs: not the secret (nor its key part), not
    // the OTP the event carried.
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.contains("webhook delivered"), "the logs cover deliveries");
    let key_part = secret.strip_prefix("whsec_").unwrap();
    for needle in [secret.as_str(), key_part, otp.as_str()] {
        assert!(
            !crate::helpers::contains_token(&logs, needle),
            "a secret is in the logs"
        );
    }
    // Nor in the database files in clear (the endpoint's secret is sealed,
    // and so is the event's data).
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("cardcore.db") {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(key_part), "the secret is in {} in clear", path.display());
        }
    }
}

/// The PostgreSQL server the tests use (as the store tests do).
pub(crate) fn pg_url() -> String {
    std::env::var("CARDCORE_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Serve arguments for a node on a fresh schema of the test server, or
/// `None` (a skip, a failure under CI) when no server answers.
pub(crate) fn pg_node_args(dir: &std::path::Path, schema: &str) -> Option<cardcore::cli::ServeArgs> {
    let url = pg_url();
    let hostport = url
        .split('@')
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("127.0.0.1:5432");
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if !reachable {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL is not reachable at {hostport}; start it with scripts/ensure-postgres.sh"
        );
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "SKIP: PostgreSQL is not reachable at {hostport}");
        return None;
    }
    let key_file = dir.join("master.key");
    if !key_file.exists() {
        let key = cardcore_crypto::keys::MasterKey::generate_hex(&mut rand::rngs::OsRng);
        std::fs::write(&key_file, key.as_bytes()).unwrap();
    }
    let key_file = key_file.display().to_string();
    let mut argv = vec![
        "cardcore",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database",
        &url,
        "--db-schema",
        schema,
        "--master-key-file",
        &key_file,
        "--rate-limit-per-second",
        "0",
        "--card-pin-calls-per-minute",
        "0",
    ];
    argv.extend_from_slice(FAST);
    match <cardcore::cli::Cli as clap::Parser>::parse_from(argv).command {
        cardcore::cli::Command::Serve(args) => Some(args),
        _ => unreachable!(),
    }
}

/// Two nodes on one PostgreSQL database, each event's first attempt refused:
/// every event is retried and delivered once, in the card's order, whichever
/// node claims it.
#[tokio::test]
async fn on_postgres_two_nodes_retry_and_deliver_each_event_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // The store tests' prefix: their sweeper drops schemas a killed run left.
    let schema = format!("cc_test_{}", uuid::Uuid::now_v7().simple());
    let Some(args) = pg_node_args(dir.path(), &schema) else {
        return;
    };
    let rx = Receiver::start().await;
    rx.set("pg", Answer::FailFirst);
    let bind = || async { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap() };
    let node1 = cardcore::Server::start(&args, Some(bind().await)).await.unwrap();
    let node2 = cardcore::Server::start(&args, Some(bind().await)).await.unwrap();
    let (_, key) = node1.service.create_tenant("pg-hooks").await.unwrap();
    let app = TestApp {
        base: format!("http://{}", node1.addr),
        client: crate::helpers::client(),
        key: key.secret.to_string(),
        tenant_id: String::new(),
        dir,
        server: None,
    };
    let base2 = format!("http://{}", node2.addr);
    endpoint(&app, &rx, "pg", None).await;
    let card = app.card("virtual").await;
    let id = card["id"].as_str().unwrap();
    for (i, action) in ["lock", "unlock", "lock", "unlock"].iter().enumerate() {
        let base = if i % 2 == 0 { &app.base } else { &base2 };
        let res = app
            .client
            .post(format!("{base}/v1/cards/{id}/{action}"))
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
    }
    // On PostgreSQL an event is listed once every older write transaction in
    // the cluster has ended (other tests write concurrently): wait for it.
    let mut expected = ids(&app.card_events(id).await);
    for _ in 0..100 {
        if expected.len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        expected = ids(&app.card_events(id).await);
    }
    assert_eq!(expected.len(), 5);
    rx.wait_delivered("pg", &expected).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hits = rx.hits("pg");
    assert!(hits.iter().all(|h| h.verified));
    let arrival: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    let want: Vec<&str> = expected.iter().flat_map(|id| [id.as_str(), id.as_str()]).collect();
    assert_eq!(arrival, want, "each event refused once, then delivered once, in order");
    node1.stop().await.unwrap();
    node2.stop().await.unwrap();
    // Best effort: the store tests' sweeper drops what is left after an hour.
    let _ = Command::new("psql")
        .args([&pg_url(), "-qc", &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
