//! Authorizations decided with the tenant's decision service, end to end
//! through `POST /v1/authorizations`: asked only after cardcore's own checks
//! passed, its answer or the stand-in recorded as `decided_by`, the card not
//! held while it thinks and its limits checked again when the answer comes;
//! and dynamic CVV2 accepted for the current and previous window.

use std::time::Duration;

use cardcore_crypto::Pan;
use cardcore_domain::cvv_window::CvvWindow;
use cardcore_domain::Timestamp;
use serde_json::{json, Value};

use crate::authorization_endpoint::{set_endpoint, Decider, Mode};
use crate::helpers::{spawn_app, TestApp};

fn body(card_id: &str, amount: u64) -> Value {
    json!({
        "card_id": card_id,
        "amount": amount,
        "currency": "EUR",
        "merchant": {"mcc": "5411", "name": "Mercado", "city": "Lisboa", "country": "PT", "id": "M123"},
        "channel": "pos",
        "network_reference": format!("ref-{}", uuid::Uuid::new_v4().simple()),
    })
}

async fn authorize(app: &TestApp, b: Value) -> Value {
    let r = app.post("/v1/authorizations", b).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    r.body
}

#[track_caller]
fn decided(a: &Value, status: &str, reason: Option<&str>, code: &str, by: &str) {
    assert_eq!(a["status"], status, "{a}");
    assert_eq!(a["decline_reason"].as_str(), reason, "{a}");
    assert_eq!(a["response_code"], code, "{a}");
    assert_eq!(a["decided_by"], by, "{a}");
}

async fn card(app: &TestApp) -> String {
    app.active_card("virtual").await["id"].as_str().unwrap().to_owned()
}

/// An app whose tenant's endpoint is `path` on a new decider.
async fn with_decider(path: &str, mode: Mode, timeout_ms: u32, on_timeout: &str) -> (TestApp, Decider) {
    let app = spawn_app().await;
    let decider = Decider::start().await;
    decider.set(path, mode);
    let made = set_endpoint(&app, &decider.url(path), timeout_ms, on_timeout).await;
    decider.secret(made["secret"].as_str().unwrap());
    (app, decider)
}

#[tokio::test]
async fn the_tenants_answer_decides_and_is_recorded() {
    let (app, decider) = with_decider("approve", Mode::Approve, 800, "decline").await;
    let id = card(&app).await;
    let a = authorize(&app, body(&id, 1250)).await;
    decided(&a, "APPROVED", None, "00", "tenant");
    assert_eq!(a["pending_amount"], 1250);
    let hits = decider.hits("approve");
    assert_eq!(hits.len(), 1);
    assert!(hits[0].verified, "signed per Standard Webhooks");
    let data = &hits[0].body["data"];
    assert_eq!(hits[0].body["type"], "authorization.request");
    assert_eq!(data["status"], "PENDING");
    assert_eq!(data["id"], a["id"], "the request names the authorization written");
    assert_eq!(data["card_id"], id.as_str());
    assert_eq!(
        (data["amount"].as_u64(), data["billing_amount"].as_u64()),
        (Some(1250), Some(1250))
    );
    assert_eq!(data["merchant"]["mcc"], "5411");
    assert_eq!(data["network_reference"], a["network_reference"]);
    // As stored, with decided_by.
    let again = app
        .get(&format!("/v1/authorizations/{}", a["id"].as_str().unwrap()))
        .await
        .ok();
    assert_eq!(again["decided_by"], "tenant");
    // A retry gets the first answer; the tenant is not asked again.
    let mut retry = body(&id, 1250);
    retry["network_reference"] = a["network_reference"].clone();
    let r = app.post("/v1/authorizations", retry).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(r.body["id"], a["id"]);
    assert_eq!(decider.hits("approve").len(), 1, "asked once");

    // It declines: 05, nothing held.
    decider.set("approve", Mode::Decline);
    let d = authorize(&app, body(&id, 1250)).await;
    decided(&d, "DECLINED", Some("DECLINED_BY_TENANT"), "05", "tenant");
    assert_eq!(
        (d["approved_amount"].as_u64(), d["pending_amount"].as_u64()),
        (Some(0), Some(0))
    );
    let spend = app.get(&format!("/v1/cards/{id}/spend")).await.ok();
    assert_eq!(spend["channels"]["pos"]["daily"]["used"], 1250, "{spend}");
    assert_eq!(spend["channels"]["pos"]["daily"]["count"], 1, "{spend}");
}

#[tokio::test]
async fn no_usable_answer_stands_in_per_on_timeout() {
    for (mode, on_timeout) in [
        (Mode::Hang, "decline"),
        (Mode::Late(700, true), "decline"),
        (Mode::Garbage, "decline"),
        (Mode::ServerError, "decline"),
        (Mode::Hang, "approve"),
        (Mode::Late(700, false), "approve"),
        (Mode::WrongShape, "approve"),
    ] {
        let (app, decider) = with_decider("d", mode, 200, on_timeout).await;
        let id = card(&app).await;
        let a = authorize(&app, body(&id, 500)).await;
        if on_timeout == "approve" {
            decided(&a, "APPROVED", None, "00", "stand_in");
            assert_eq!(a["pending_amount"], 500);
        } else {
            decided(&a, "DECLINED", Some("TENANT_UNAVAILABLE"), "91", "stand_in");
            assert_eq!(a["pending_amount"], 0);
        }
        assert_eq!(decider.hits("d").len(), 1, "asked once");
    }
}

#[tokio::test]
async fn the_tenant_is_asked_only_after_cardcores_checks_pass() {
    let (app, decider) = with_decider("approve", Mode::Approve, 800, "approve").await;
    let id = card(&app).await;
    app.post(&format!("/v1/cards/{id}/lock"), json!({})).await.ok();
    let a = authorize(&app, body(&id, 100)).await;
    decided(&a, "DECLINED", Some("CARD_LOCKED"), "62", "cardcore");
    // An unknown card: 14, not asked.
    let a = authorize(&app, body(&uuid::Uuid::new_v4().to_string(), 100)).await;
    decided(&a, "DECLINED", Some("CARD_NOT_FOUND"), "14", "cardcore");
    assert!(decider.hits("approve").is_empty(), "never asked");

    // Without an endpoint, cardcore decides alone.
    app.delete("/v1/authorization-endpoint").await.ok();
    let other = card(&app).await;
    let a = authorize(&app, body(&other, 100)).await;
    decided(&a, "APPROVED", None, "00", "cardcore");
    assert!(decider.hits("approve").is_empty());
}

async fn set_daily(app: &TestApp, id: &str, daily: u64) {
    let open = json!({"enabled": true, "per_transaction": null, "daily": null, "monthly": null});
    app.put(
        &format!("/v1/cards/{id}/limits"),
        json!({"currency": "EUR", "channels": {
            "pos": {"enabled": true, "per_transaction": null, "daily": daily, "monthly": null},
            "ecommerce": open, "atm": open, "contactless": open}}),
    )
    .await
    .ok();
}

/// While the tenant thinks about A, the card is not held: B on the same
/// card is decided (the tenant approves it at once). When A's approval
/// comes, cardcore's checks run again on the committed totals: A would pass
/// the daily limit, so cardcore declines it.
#[tokio::test]
async fn the_card_is_not_held_while_waiting_and_limits_are_checked_again() {
    let (app, decider) = with_decider("gate", Mode::GateFirst, 1500, "decline").await;
    let id = card(&app).await;
    set_daily(&app, &id, 10_000).await;

    let first = {
        let (base, key, b) = (app.base.clone(), app.key.clone(), body(&id, 6_000));
        tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(format!("{base}/v1/authorizations"))
                .bearer_auth(key)
                .json(&b)
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()
        })
    };
    // A's request has reached the tenant and waits there.
    while decider.hits("gate").is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let b = authorize(&app, body(&id, 6_000)).await;
    decided(&b, "APPROVED", None, "00", "tenant");
    assert!(!first.is_finished(), "B was decided while A still waited on the tenant");

    decider.release();
    let a = first.await.unwrap();
    decided(&a, "DECLINED", Some("LIMIT_DAILY"), "61", "cardcore");
    let spend = app.get(&format!("/v1/cards/{id}/spend")).await.ok();
    assert_eq!(spend["channels"]["pos"]["daily"]["used"], 6_000, "{spend}");
}

/// The dynamic CVV2 formula, for the test to pick windows with.
async fn dynamic(app: &TestApp, pan: &str, window: u64) -> String {
    let cvk = app.service().keys().cvk().await.unwrap();
    cardcore_crypto::cvv::generate_dynamic_cvv2(&cvk, &Pan::parse(pan).unwrap(), window)
        .expose()
        .to_owned()
}

#[tokio::test]
async fn a_dynamic_cvv2_pays_in_its_window_and_the_next_only() {
    let app = spawn_app().await;
    let id = card(&app).await;
    let pan = app.pan(&id).await;
    // A window whose CVV2 differs from the next two windows' values.
    let mut w = CvvWindow::at(72, "2027-05-01T00:00:00Z".parse::<Timestamp>().unwrap());
    loop {
        let (v0, v1, v2) = (
            dynamic(&app, &pan, w.number).await,
            dynamic(&app, &pan, w.number + 1).await,
            dynamic(&app, &pan, w.number + 2).await,
        );
        if v0 != v1 && v0 != v2 {
            break;
        }
        w = CvvWindow::at(72, w.ends_at);
    }
    app.service().clock().set(w.starts_at + chrono::Duration::hours(1));
    let shown = app.get(&format!("/v1/cards/{id}/sensitive")).await.ok();
    let cvv = shown["cvv"].as_str().unwrap().to_owned();
    let with_cvv = |cvv: &str| {
        let mut b = body(&id, 100);
        b["cvv2"] = json!(cvv);
        b
    };
    decided(
        &authorize(&app, with_cvv(&cvv)).await,
        "APPROVED",
        None,
        "00",
        "cardcore",
    );
    // The next window: the CVV2 read in the previous one still pays.
    app.service().clock().set(w.ends_at + chrono::Duration::hours(1));
    decided(
        &authorize(&app, with_cvv(&cvv)).await,
        "APPROVED",
        None,
        "00",
        "cardcore",
    );
    // Two windows on: refused.
    app.service().clock().set(w.ends_at + chrono::Duration::hours(73));
    decided(
        &authorize(&app, with_cvv(&cvv)).await,
        "DECLINED",
        Some("CVV2_MISMATCH"),
        "N7",
        "cardcore",
    );
}
