//! `Idempotency-Key`: a retry replays the first answer, another request
//! with the key is refused, a running one answers 409, keys hold across
//! nodes, a 5xx is not kept, and keys expire.

use std::time::{Duration, Instant};

use cardcore_service::idempotency::{Idempotency, IdempotentRequest};
use reqwest::header::HeaderValue;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Resp, TestApp};

/// Sends `body` (exact bytes) with an `Idempotency-Key`.
async fn send_to(
    app: &TestApp,
    base: &str,
    api_key: Option<&str>,
    method: Method,
    path: &str,
    key: HeaderValue,
    body: Option<&Value>,
) -> Resp {
    let mut req = app
        .client
        .request(method, format!("{base}{path}"))
        .header("idempotency-key", key);
    if let Some(k) = api_key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(serde_json::to_vec(b).unwrap());
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    Resp {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
        text,
    }
}

/// An `Idempotency-Key` of the app's API key as the store keeps it.
async fn stored_key(app: &TestApp, key: &str) -> String {
    let principal = app.service().authenticate(&app.key).await.unwrap();
    let request = IdempotentRequest {
        method: "",
        target: "",
        body: b"",
    };
    app.service()
        .idempotency_fingerprint(&principal, key, &request)
        .await
        .unwrap()
        .0
}

async fn send(app: &TestApp, method: Method, path: &str, key: &str, body: Option<&Value>) -> Resp {
    let base = app.base.clone();
    send_to(
        app,
        &base,
        Some(&app.key),
        method,
        path,
        HeaderValue::from_str(key).unwrap(),
        body,
    )
    .await
}

fn replayed(r: &Resp) -> bool {
    r.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()) == Some("true")
}

fn holder_body(external_id: &str) -> Value {
    json!({"external_id": external_id, "name": "Ana Silva", "phone": {"country_code": "351", "number": "912345678"}})
}

#[tokio::test]
async fn a_retry_with_the_same_key_replays_the_first_answer() {
    let app = spawn_app().await;
    let body = holder_body("idem-1");
    let first = send(&app, Method::POST, "/v1/cardholders", "holder-1", Some(&body)).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert!(!replayed(&first));
    let again = send(&app, Method::POST, "/v1/cardholders", "holder-1", Some(&body)).await;
    assert_eq!(again.status, 201);
    assert!(replayed(&again));
    assert_eq!(again.text, first.text, "the same body, byte for byte");
    assert_eq!(again.headers.get("content-type"), first.headers.get("content-type"));
    let holder_id = first.body["id"].as_str().unwrap();

    // A card, created once however often the request is retried.
    let card_body = json!({"cardholder_id": holder_id, "type": "virtual"});
    let card = send(&app, Method::POST, "/v1/cards", "card-1", Some(&card_body)).await;
    for _ in 0..3 {
        let r = send(&app, Method::POST, "/v1/cards", "card-1", Some(&card_body)).await;
        assert!(replayed(&r));
        assert_eq!(r.text, card.text);
    }
    let cards = app.get(&format!("/v1/cards?cardholder_id={holder_id}")).await.ok();
    assert_eq!(cards["data"].as_array().unwrap().len(), 1);
    let card_id = card.body["id"].as_str().unwrap();

    // A lifecycle move: the replay says `changed: true` as the first
    // answer did (running it again would say false).
    let lock = send(&app, Method::POST, &format!("/v1/cards/{card_id}/lock"), "lock-1", None).await;
    assert_eq!(lock.body["changed"], true);
    let lock_again = send(&app, Method::POST, &format!("/v1/cards/{card_id}/lock"), "lock-1", None).await;
    assert!(replayed(&lock_again));
    assert_eq!(lock_again.body["changed"], true);
    assert_eq!(
        app.card_events(card_id).await.len(),
        2,
        "card.created and one status change"
    );

    // A refusal is an answer too: replayed with its problem body (and the
    // first request's request_id).
    let no_reason = json!({});
    let refused = send(
        &app,
        Method::POST,
        &format!("/v1/cards/{card_id}/block"),
        "block-1",
        Some(&no_reason),
    )
    .await;
    let refused_body = refused.expect(422, "validation_error");
    let again = send(
        &app,
        Method::POST,
        &format!("/v1/cards/{card_id}/block"),
        "block-1",
        Some(&no_reason),
    )
    .await;
    assert!(replayed(&again));
    assert_eq!(again.headers.get("content-type").unwrap(), "application/problem+json");
    assert_eq!(again.body, refused_body);
    assert_ne!(
        again.headers.get("x-request-id").unwrap().to_str().unwrap(),
        refused_body["request_id"].as_str().unwrap(),
        "the replay has its own request id; the body is the first answer's"
    );

    // PUT and DELETE too.
    let limits = app.get(&format!("/v1/cards/{card_id}/limits")).await.ok();
    let put = send(
        &app,
        Method::PUT,
        &format!("/v1/cards/{card_id}/limits"),
        "limits-1",
        Some(&limits),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text);
    let put_again = send(
        &app,
        Method::PUT,
        &format!("/v1/cards/{card_id}/limits"),
        "limits-1",
        Some(&limits),
    )
    .await;
    assert!(replayed(&put_again));
    let del = send(&app, Method::DELETE, &format!("/v1/cards/{card_id}"), "close-1", None).await;
    assert_eq!((del.status.as_u16(), del.body["changed"].clone()), (200, json!(true)));
    let del_again = send(&app, Method::DELETE, &format!("/v1/cards/{card_id}"), "close-1", None).await;
    assert!(replayed(&del_again));
    assert_eq!(del_again.body["changed"], true);

    // A new webhook endpoint's secret is shown once, and to the retry of
    // the same request: the replay is the first answer.
    let hook = json!({"url": "https://127.0.0.1:9/hook", "events": ["card.pin_set"]});
    let made = send(&app, Method::POST, "/v1/webhook-endpoints", "hook-1", Some(&hook)).await;
    assert_eq!(made.status, 201);
    let made_again = send(&app, Method::POST, "/v1/webhook-endpoints", "hook-1", Some(&hook)).await;
    assert!(replayed(&made_again));
    assert_eq!(made_again.body["secret"], made.body["secret"]);
    let list = app.get("/v1/webhook-endpoints").await.ok();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    // The kept answer is sealed: the secret is nowhere in the database in clear.
    let secret = made.body["secret"].as_str().unwrap();
    for entry in std::fs::read_dir(app.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("cardcore.db") {
            let bytes = std::fs::read(&path).unwrap();
            let key_part = secret.strip_prefix("whsec_").unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(key_part),
                "{}",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn a_used_key_refuses_another_request_and_keys_are_per_tenant() {
    let app = spawn_app().await;
    let a = holder_body("idem-a");
    let b = holder_body("idem-b");
    send(&app, Method::POST, "/v1/cardholders", "k", Some(&a))
        .await
        .expect(201, "");
    let p = send(&app, Method::POST, "/v1/cardholders", "k", Some(&b))
        .await
        .expect(422, "idempotency_key_reused");
    assert!(p["detail"].as_str().unwrap().contains("another request"));
    // Same body, another path: another request.
    send(&app, Method::POST, "/v1/cards", "k", Some(&a))
        .await
        .expect(422, "idempotency_key_reused");
    // Nothing was made by the refused requests.
    let found = app.get("/v1/cardholders?external_id=idem-b").await.ok();
    assert!(found["data"].as_array().unwrap().is_empty());

    // Another tenant's "k" is another key.
    let other = app.new_tenant("tenant-b").await;
    let base = app.base.clone();
    let theirs = send_to(
        &app,
        &base,
        Some(&other),
        Method::POST,
        "/v1/cardholders",
        HeaderValue::from_static("k"),
        Some(&a),
    )
    .await;
    assert_eq!(theirs.status, 201);
    assert!(!replayed(&theirs));

    // Keys are 1 to 255 printable ASCII characters.
    for bad in [
        HeaderValue::from_static(""),
        HeaderValue::from_str(&"k".repeat(256)).unwrap(),
        HeaderValue::from_bytes(b"cl\xe9").unwrap(),
    ] {
        let p = send_to(
            &app,
            &base,
            Some(&app.key),
            Method::POST,
            "/v1/cardholders",
            bad,
            Some(&b),
        )
        .await
        .expect(422, "validation_error");
        assert_eq!(p["errors"][0]["field"], "Idempotency-Key");
    }
    let longest = "k".repeat(255);
    send(&app, Method::POST, "/v1/cardholders", &longest, Some(&b))
        .await
        .expect(201, "");
    // Without valid credentials the key plays no part: 401.
    send_to(
        &app,
        &base,
        None,
        Method::POST,
        "/v1/cardholders",
        HeaderValue::from_static("k"),
        Some(&a),
    )
    .await
    .expect(401, "unauthorized");
    // GETs ignore it.
    let r1 = send(&app, Method::GET, "/v1/webhook-endpoints", "k", None).await;
    let r2 = send(&app, Method::GET, "/v1/webhook-endpoints", "k", None).await;
    assert_eq!((r1.status.as_u16(), r2.status.as_u16()), (200, 200));
    assert!(!replayed(&r2));
}

#[tokio::test]
async fn a_request_still_running_answers_409_until_it_is_presumed_dead() {
    let app = spawn_app().await;
    let tenant: cardcore_domain::TenantId = app.tenant_id.parse().unwrap();
    let body = holder_body("busy-1");
    let bytes = serde_json::to_vec(&body).unwrap();
    let principal = app.service().authenticate(&app.key).await.unwrap();
    let request = IdempotentRequest {
        method: "POST",
        target: "/v1/cardholders",
        body: &bytes,
    };
    // The first request with the key is running (on this or another node).
    let Idempotency::Proceed(ticket) = app
        .service()
        .begin_idempotent(&principal, "busy", &request)
        .await
        .unwrap()
    else {
        panic!("a new key starts");
    };
    let p = send(&app, Method::POST, "/v1/cardholders", "busy", Some(&body))
        .await
        .expect(409, "idempotency_key_in_progress");
    assert_eq!(p["retry_after_seconds"], 1);
    let retry_after = send(&app, Method::POST, "/v1/cardholders", "busy", Some(&body)).await;
    assert_eq!(retry_after.headers.get("retry-after").unwrap(), "1");
    send(
        &app,
        Method::POST,
        "/v1/cardholders",
        "busy",
        Some(&holder_body("other")),
    )
    .await
    .expect(422, "idempotency_key_reused");
    // It finishes: its answer is what a retry gets.
    app.service()
        .complete_idempotent(&ticket, 201, Some("application/json".into()), br#"{"first":true}"#)
        .await
        .unwrap();
    let r = send(&app, Method::POST, "/v1/cardholders", "busy", Some(&body)).await;
    assert!(replayed(&r));
    assert_eq!((r.status.as_u16(), r.text.as_str()), (201, r#"{"first":true}"#));

    // A request that started 61 s ago and never finished (its node died):
    // a retry takes the key over and runs.
    let now = cardcore_service::now();
    let (stale, fingerprint) = app
        .service()
        .idempotency_fingerprint(&principal, "stale", &request)
        .await
        .unwrap();
    let start = cardcore_store::IdempotencyStart {
        tenant_id: tenant,
        key: &stale,
        fingerprint: &fingerprint,
        now: now - chrono::Duration::seconds(61),
        takeover_before: now - chrono::Duration::seconds(121),
        expired_before: now - chrono::Duration::days(1),
    };
    let begun = app.service().store().begin_idempotent(&start).await.unwrap();
    assert!(matches!(begun, cardcore_store::IdempotencyBegin::Started { .. }));
    let taken = send(&app, Method::POST, "/v1/cardholders", "stale", Some(&body)).await;
    assert_eq!(taken.status, 201, "{}", taken.text);
    assert!(!replayed(&taken));
    let again = send(&app, Method::POST, "/v1/cardholders", "stale", Some(&body)).await;
    assert!(replayed(&again));
    assert_eq!(again.text, taken.text);
}

/// One SQLite file has one server (a second is refused), so this speaks to
/// it on a second connection; two nodes on PostgreSQL:
/// tests/nodes.rs `an_idempotency_key_is_one_request_across_nodes`.
#[tokio::test]
async fn keys_hold_across_connections_on_one_database() {
    let app = spawn_app().await;
    let base2 = app.base.clone();
    let body = holder_body("nodes-1");
    let first = send(&app, Method::POST, "/v1/cardholders", "n-1", Some(&body)).await;
    assert_eq!(first.status, 201);
    let on2 = send_to(
        &app,
        &base2,
        Some(&app.key),
        Method::POST,
        "/v1/cardholders",
        HeaderValue::from_static("n-1"),
        Some(&body),
    )
    .await;
    assert!(replayed(&on2));
    assert_eq!(on2.text, first.text);
    send_to(
        &app,
        &base2,
        Some(&app.key),
        Method::POST,
        "/v1/cardholders",
        HeaderValue::from_static("n-1"),
        Some(&holder_body("x")),
    )
    .await
    .expect(422, "idempotency_key_reused");
    // Running on node 1: node 2 says 409.
    let body2 = holder_body("nodes-2");
    let bytes2 = serde_json::to_vec(&body2).unwrap();
    let request = IdempotentRequest {
        method: "POST",
        target: "/v1/cardholders",
        body: &bytes2,
    };
    let principal = app.service().authenticate(&app.key).await.unwrap();
    assert!(matches!(
        app.service()
            .begin_idempotent(&principal, "n-2", &request)
            .await
            .unwrap(),
        Idempotency::Proceed(_)
    ));
    send_to(
        &app,
        &base2,
        Some(&app.key),
        Method::POST,
        "/v1/cardholders",
        HeaderValue::from_static("n-2"),
        Some(&body2),
    )
    .await
    .expect(409, "idempotency_key_in_progress");
}

#[tokio::test]
async fn a_5xx_is_not_kept_and_a_retry_with_the_same_key_runs_again() {
    let app = spawn_app().await;
    let card = app.active_card("virtual").await;
    let id = card["id"].as_str().unwrap();
    app.set_pin(id, "4821").await;
    let tenant: cardcore_domain::TenantId = app.tenant_id.parse().unwrap();
    let card_id: cardcore_domain::CardId = id.parse().unwrap();
    let store = app.service().store().clone();
    // Break the card: its PIN verifier names a key version that does not exist.
    let set_pin_key_version = |version: i32| {
        let store = store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let mut rec = tx.lock_card(tenant, card_id).await.unwrap().unwrap();
            let old = rec.secrets.pin.as_ref().unwrap().key_version;
            rec.secrets.pin.as_mut().unwrap().key_version = version;
            tx.update_card(&rec).await.unwrap();
            tx.commit().await.unwrap();
            old
        }
    };
    let good = set_pin_key_version(999).await;
    let pin = json!({"pin": "4821"});
    let path = format!("/v1/cards/{id}/pin/verify");
    send(&app, Method::POST, &path, "verify-1", Some(&pin))
        .await
        .expect(500, "internal_error");
    assert_eq!(
        store
            .idempotency_record(tenant, &stored_key(&app, "verify-1").await)
            .await
            .unwrap(),
        None,
        "a 5xx is not kept"
    );

    set_pin_key_version(good).await;
    let ok = send(&app, Method::POST, &path, "verify-1", Some(&pin)).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert!(!replayed(&ok), "the retry ran");
    assert_eq!(ok.body["valid"], true);
    let kept = store
        .idempotency_record(tenant, &stored_key(&app, "verify-1").await)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.response.unwrap().status, 200);
}

#[tokio::test]
async fn expired_keys_are_purged_and_can_be_used_again() {
    let app = spawn_app_with(&["--idempotency-ttl-seconds", "2"]).await;
    let tenant: cardcore_domain::TenantId = app.tenant_id.parse().unwrap();
    send(
        &app,
        Method::POST,
        "/v1/cardholders",
        "old",
        Some(&holder_body("exp-1")),
    )
    .await
    .expect(201, "");
    let store = app.service().store().clone();
    let old = stored_key(&app, "old").await;
    assert!(store.idempotency_record(tenant, &old).await.unwrap().is_some());
    // The cleanup task (every second with this TTL) deletes it once expired.
    let deadline = Instant::now() + Duration::from_secs(15);
    while store.idempotency_record(tenant, &old).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the expired key was never purged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reused = send(
        &app,
        Method::POST,
        "/v1/cardholders",
        "old",
        Some(&holder_body("exp-2")),
    )
    .await;
    assert_eq!(reused.status, 201, "{}", reused.text);
    assert!(!replayed(&reused));
}
