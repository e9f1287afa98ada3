//! P100 users without KYC (create, update, get, suspend, unsuspend,
//! delete) and P100's card webhooks (Card Activation Code, Card 3DS Code)
//! at a local receiver.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use reqwest::Method;
use serde_json::{json, Value};

use crate::dialect_cross::{send, Body};
use crate::helpers::{spawn_app_with, Resp, TestApp};

async fn p100(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Resp {
    send(
        app,
        method,
        &format!("/p100/v1/{path}"),
        &[("x-api-key", &app.key)],
        body.map(Body::Json),
    )
    .await
}

async fn card_of(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/cards/{id}")).await.ok()
}

#[track_caller]
fn p403(r: &Resp) -> String {
    assert_eq!(r.status.as_u16(), 400, "{}", r.text);
    assert_eq!(r.body["errorCode"], "P403", "{}", r.text);
    r.body["errorMessage"].as_str().unwrap().to_owned()
}

/// P100's example body for a user without KYC, plus the phone cardcore needs.
fn new_user(external: &str) -> Value {
    json!({
        "externalUserId": external,
        "email": "johndoe@gmail.com",
        "phone": "486012334567",
        "firstName": "John",
        "lastName": "Doe",
        "address": "Adama Matuszczaka 51/4",
        "city": "Rzeszów",
        "country": "PL",
        "documentType": "PASSPORT",
        "documentNumber": "CEV124630",
        "pesel": "12345678901",
        "birthCountry": "PL",
        "birthDate": "2000-01-01"
    })
}

/// One webhook the receiver got.
#[derive(Debug, Clone)]
struct Hook {
    authorization: Option<String>,
    body: Value,
    status: u16,
}

#[derive(Default)]
struct Inner {
    answers: VecDeque<u16>,
    got: Vec<Hook>,
}

async fn receive(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut g = inner.lock().unwrap();
    let status = g.answers.pop_front().unwrap_or(200);
    g.got.push(Hook {
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        status,
    });
    StatusCode::from_u16(status).unwrap()
}

async fn receiver(answers: &[u16]) -> (String, Arc<Mutex<Inner>>) {
    let inner = Arc::new(Mutex::new(Inner {
        answers: answers.iter().copied().collect(),
        got: Vec::new(),
    }));
    let app = axum::Router::new()
        .route("/p100-hooks", axum::routing::post(receive))
        .with_state(inner.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/p100-hooks"), inner)
}

async fn wait(inner: &Arc<Mutex<Inner>>, what: &str, done: impl Fn(&[Hook]) -> bool) -> Vec<Hook> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = inner.lock().unwrap().got.clone();
        if done(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}; got {got:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const FAST: [&str; 6] = [
    "--p100-webhook-retry-schedule",
    "50ms,50ms,50ms,50ms",
    "--webhook-poll-interval-ms",
    "20",
    "--webhook-allow-networks",
    "127.0.0.1/32",
];

/// The issue's story: a P100 app creates its user, a physical card is
/// made for it, and the activation code arrives at the app's P100 webhook
/// URL in P100's shape with the tenant's secret token; a receiver's 500 is
/// retried. A 3-D Secure code goes the same way; a PIN-change OTP does not
/// (P100 has no webhook for it).
#[tokio::test]
async fn a_p100_app_creates_its_user_and_receives_its_activation_code_webhook() {
    let (url, inner) = receiver(&[500]).await;
    let app = spawn_app_with(&FAST).await;
    let endpoint = app
        .post("/v1/webhook-endpoints", json!({"url": url, "format": "p100"}))
        .await
        .expect(201, "");
    assert_eq!(endpoint["format"], "p100");
    assert_eq!(
        endpoint["events"],
        json!([
            "card.activation_code",
            "otp.created",
            "authorization.approved",
            "authorization.declined",
            "authorization.reversed",
            "authorization.expired",
            "transaction.captured",
            "transaction.refunded"
        ])
    );
    let token = endpoint["secret"].as_str().unwrap().to_owned();

    let r = p100(
        &app,
        Method::POST,
        "user/balances/crypto",
        Some(new_user("bca65c48-df49")),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(r.body["balances"], json!([]));
    let user_id = r.body["userId"].as_str().unwrap().to_owned();
    let holder = app.get(&format!("/v1/cardholders/{user_id}")).await.ok();
    assert_eq!(holder["external_id"], "bca65c48-df49");
    assert_eq!(holder["phone"], json!({"country_code": "48", "number": "6012334567"}));

    let card = app.create_card_as(&app.key.clone(), &user_id, "physical").await;
    let card_id = card["id"].as_str().unwrap();
    let got = wait(&inner, "the activation code after a 500", |g| {
        g.iter().any(|h| h.status == 200)
    })
    .await;
    assert_eq!(got.iter().map(|h| h.status).collect::<Vec<_>>(), [500, 200]);
    let hook = &got[1];
    assert_eq!(hook.authorization.as_deref(), Some(token.as_str()));
    assert_eq!(hook.body, got[0].body, "the retry sends the same body");
    assert_eq!(hook.body["event_type"], "CARD_ACTIVATION_CODE");
    let data = &hook.body["data"];
    assert_eq!(data["cardId"], card_id);
    assert_eq!(data["externalUserId"], "bca65c48-df49");
    assert_eq!(data["last4"], card["last_four"]);
    let code = data["activationCode"].as_str().unwrap();
    assert_eq!(code, app.activation_code(card_id).await);
    let active = app
        .post(
            &format!("/v1/cards/{card_id}/activate"),
            json!({"activation_code": code}),
        )
        .await
        .ok();
    assert_eq!(active["status"], "ACTIVE");

    // A 3-D Secure code: P100's Card 3DS Code.
    let otp = app
        .post(&format!("/v1/cards/{card_id}/otp"), json!({"purpose": "three_ds"}))
        .await
        .expect(201, "");
    let got = wait(&inner, "the 3DS code", |g| {
        g.iter().any(|h| h.body["event_type"] == "CARD_3DS_CODE")
    })
    .await;
    let hook = got.iter().find(|h| h.body["event_type"] == "CARD_3DS_CODE").unwrap();
    let event = app
        .card_events(card_id)
        .await
        .into_iter()
        .find(|e| e["type"] == "otp.created" && e["data"]["purpose"] == "three_ds")
        .unwrap();
    assert_eq!(event["data"]["trace_number"], otp["trace_number"]);
    assert_eq!(hook.body["data"]["code"], event["data"]["otp"]);
    assert_eq!(hook.body["data"]["cardId"], card_id);
    assert_eq!(hook.body["data"]["expiresAt"], event["data"]["expires_at"]);

    // A PIN-change OTP has no P100 webhook: its delivery ends without a request.
    app.post(&format!("/v1/cards/{card_id}/otp"), json!({"purpose": "pin_change"}))
        .await
        .expect(201, "");
    let event = app
        .card_events(card_id)
        .await
        .into_iter()
        .find(|e| e["type"] == "otp.created" && e["data"]["purpose"] == "pin_change")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let detail = loop {
        let d = app
            .get(&format!("/v1/events/{}", event["id"].as_str().unwrap()))
            .await
            .ok();
        if d["deliveries"][0]["state"] == "succeeded" {
            break d;
        }
        assert!(Instant::now() < deadline, "{d}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        detail["deliveries"][0]["last_error"],
        "nothing to send: P100 has no webhook for this event"
    );
    assert_eq!(inner.lock().unwrap().got.len(), 3, "nothing was sent for it");

    // A p100 endpoint takes only the event types P100 has webhooks for.
    let r = app
        .post(
            "/v1/webhook-endpoints",
            json!({"url": url, "format": "p100", "events": ["card.created"]}),
        )
        .await;
    let body = r.expect(422, "validation_error");
    assert_eq!(body["errors"][0]["field"], "events[0]");
    let r = app
        .post("/v1/webhook-endpoints", json!({"url": url, "format": "sms"}))
        .await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.text);
}

/// P100's Card Transaction webhook (shape assumed, docs/authorizations.md):
/// an approval, a capture, a reversal and a refund each reach a P100
/// endpoint as `CARD_TRANSACTION`, in order, with the secret token.
#[tokio::test]
async fn a_p100_endpoint_receives_card_transactions() {
    let (url, inner) = receiver(&[]).await;
    let app = spawn_app_with(&FAST).await;
    let endpoint = app
        .post(
            "/v1/webhook-endpoints",
            json!({"url": url, "format": "p100", "events": ["authorization.approved", "transaction.captured", "authorization.reversed", "transaction.refunded"]}),
        )
        .await
        .expect(201, "");
    let token = endpoint["secret"].as_str().unwrap().to_owned();
    let card = app.active_card("virtual").await;
    let card_id = card["id"].as_str().unwrap();
    let merchant = json!({"mcc": "5411", "name": "Mercado", "city": "Lisboa", "country": "PT"});
    let a = app
        .post(
            "/v1/authorizations",
            json!({"card_id": card_id, "amount": 1_250, "currency": "EUR", "channel": "contactless",
                   "merchant": merchant, "network_reference": "p100-a"}),
        )
        .await
        .expect(201, "");
    let auth = a["id"].as_str().unwrap();
    app.post(
        &format!("/v1/authorizations/{auth}/capture"),
        json!({"amount": 1_000, "network_reference": "p100-c"}),
    )
    .await
    .ok();
    app.post(&format!("/v1/authorizations/{auth}/reverse"), json!({}))
        .await
        .ok();
    app.post(
        &format!("/v1/cards/{card_id}/refunds"),
        json!({"amount": 300, "currency": "EUR", "network_reference": "p100-r"}),
    )
    .await
    .expect(201, "");
    let got = wait(&inner, "four card transactions", |g| g.len() >= 4).await;
    let kinds: Vec<(String, String, u64)> = got
        .iter()
        .map(|h| {
            assert_eq!(h.body["event_type"], "CARD_TRANSACTION");
            assert_eq!(h.authorization.as_deref(), Some(token.as_str()));
            let d = &h.body["data"];
            assert_eq!(d["cardId"], card_id);
            assert_eq!(d["last4"], card["last_four"]);
            assert_eq!(d["currency"], "EUR");
            if d["transactionType"] != "REFUND" {
                assert_eq!(d["merchantCategoryCode"], "5411");
            }
            (
                d["transactionType"].as_str().unwrap().to_owned(),
                d["status"].as_str().unwrap().to_owned(),
                d["amount"].as_u64().unwrap(),
            )
        })
        .collect();
    let want = [
        ("AUTHORIZATION", "APPROVED", 1_250),
        ("CAPTURE", "SETTLED", 1_000),
        ("REVERSAL", "REVERSED", 250),
        ("REFUND", "REFUNDED", 300),
    ]
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c));
    assert_eq!(kinds, want);
    assert!(got.iter().take(3).all(|h| h.body["data"]["authorizationId"] == auth));
}

/// Suspend locks the user's active cards with a reason, unsuspend unlocks
/// only those, delete closes them all; update and get speak P100's fields.
#[tokio::test]
async fn suspend_unsuspend_update_and_delete_a_user() {
    let app = spawn_app_with(&[]).await;
    let r = p100(&app, Method::POST, "user/balances/crypto", Some(new_user("u-77"))).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    let user_id = r.body["userId"].as_str().unwrap().to_owned();
    let mut cards = Vec::new();
    for _ in 0..3 {
        let r = p100(
            &app,
            Method::POST,
            "card/create",
            Some(json!({"externalUserId": "u-77"})),
        )
        .await;
        cards.push(r.body["cardId"].as_str().unwrap().to_owned());
    }
    // The app blocked card 1 itself; card 2 is closed.
    p100(
        &app,
        Method::PATCH,
        "card/block",
        Some(json!({"externalUserId": "u-77", "cardId": cards[1]})),
    )
    .await
    .ok();
    p100(&app, Method::DELETE, &format!("card/u-77/{}", cards[2]), None)
        .await
        .ok();

    let r = p100(
        &app,
        Method::PATCH,
        "user/suspend",
        Some(json!({"externalUserId": "u-77", "reason": "chargeback review"})),
    )
    .await;
    assert_eq!(r.body, json!({"message": "User suspended successfully"}), "{}", r.text);
    let c0 = card_of(&app, &cards[0]).await;
    assert_eq!(c0["status"], "LOCKED");
    assert_eq!(
        c0["status_reason"],
        json!({"code": "USER_SUSPENDED", "message": "chargeback review"})
    );
    assert_eq!(card_of(&app, &cards[1]).await["status_reason"], Value::Null);
    assert_eq!(card_of(&app, &cards[2]).await["status"], "CLOSED");
    let user = p100(&app, Method::GET, "user/u-77", None).await.ok();
    assert_eq!(user["status"], "SUSPENDED");
    assert_eq!(user["userId"], user_id.as_str());
    // Suspending again changes nothing.
    p100(
        &app,
        Method::PATCH,
        "user/suspend",
        Some(json!({"externalUserId": "u-77"})),
    )
    .await
    .ok();
    assert_eq!(
        card_of(&app, &cards[0]).await["status_reason"]["message"],
        "chargeback review"
    );

    let r = p100(
        &app,
        Method::PATCH,
        "user/unsuspend",
        Some(json!({"externalUserId": "u-77"})),
    )
    .await;
    assert_eq!(
        r.body,
        json!({"message": "User unsuspended successfully"}),
        "{}",
        r.text
    );
    assert_eq!(card_of(&app, &cards[0]).await["status"], "ACTIVE");
    assert_eq!(
        card_of(&app, &cards[1]).await["status"],
        "LOCKED",
        "locked by the app: stays"
    );
    assert_eq!(
        p100(&app, Method::GET, "user/u-77", None).await.ok()["status"],
        "ACTIVE"
    );
    let audit = app.audit(&cards[0]).await;
    assert_eq!(audit[0]["type"], "card.unlock");
    assert_eq!(audit[0]["actor"]["channel"], "p100");
    assert_eq!(audit[1]["type"], "card.lock");

    let r = p100(
        &app,
        Method::PATCH,
        "user",
        Some(json!({"externalUserId": "u-77", "lastName": "Kowalski", "email": "jk@example.pl", "phone": "+351912345678"})),
    )
    .await;
    assert_eq!(r.body, json!({"message": "User updated successfully"}), "{}", r.text);
    let user = p100(&app, Method::GET, "user/u-77", None).await.ok();
    assert_eq!(user["firstName"], "John");
    assert_eq!(user["lastName"], "Kowalski");
    assert_eq!(user["email"], "jk@example.pl");
    assert_eq!(user["phone"], "351912345678");
    assert_eq!(user["birthDate"], "2000-01-01");

    let r = p100(&app, Method::DELETE, "user/u-77", None).await;
    assert_eq!(r.body, json!({"message": "User deleted successfully"}), "{}", r.text);
    for id in &cards {
        assert_eq!(card_of(&app, id).await["status"], "CLOSED");
    }
}

/// Bad input is a P403 naming the field (nothing made); an unknown user is P459.
#[tokio::test]
async fn bad_user_input_names_the_field_and_unknown_users_are_p459() {
    let app = spawn_app_with(&[]).await;
    let mut body = new_user("u-1");
    body.as_object_mut().unwrap().remove("phone");
    assert!(p403(&p100(&app, Method::POST, "user/balances/crypto", Some(body)).await).contains("phone"));
    let mut body = new_user("u-1");
    body["phone"] = json!("12ab");
    assert!(p403(&p100(&app, Method::POST, "user/balances/crypto", Some(body)).await).contains("phone"));
    let mut body = new_user("u-1");
    body["nickname"] = json!("jd");
    assert!(p403(&p100(&app, Method::POST, "user/balances/crypto", Some(body)).await).contains("nickname"));
    // Nothing was made.
    let r = p100(&app, Method::GET, "user/u-1", None).await;
    assert_eq!(r.body["errorCode"], "P459", "{}", r.text);
    // A second user with the same id is refused.
    p100(&app, Method::POST, "user/balances/crypto", Some(new_user("u-1")))
        .await
        .ok();
    assert!(p403(&p100(&app, Method::POST, "user/balances/crypto", Some(new_user("u-1"))).await).contains("u-1"));
    for (method, path, body) in [
        (Method::PATCH, "user/suspend", Some(json!({"externalUserId": "nobody"}))),
        (
            Method::PATCH,
            "user/unsuspend",
            Some(json!({"externalUserId": "nobody"})),
        ),
        (
            Method::PATCH,
            "user",
            Some(json!({"externalUserId": "nobody", "email": "a@b.c"})),
        ),
        (Method::DELETE, "user/nobody", None),
    ] {
        let r = p100(&app, method, path, body).await;
        assert_eq!(r.body["errorCode"], "P459", "{path}: {}", r.text);
    }
    let r = p100(
        &app,
        Method::PATCH,
        "user",
        Some(json!({"externalUserId": "u-1", "email": "not-an-email"})),
    )
    .await;
    assert!(p403(&r).contains("email"));
}
