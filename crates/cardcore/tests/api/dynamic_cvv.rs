//! Dynamic CVV2: a program's virtual cards show a CVV2 that changes every
//! `cvv_rotation_interval_hours`; `/sensitive` says when; the current and
//! the previous window's CVV2 are accepted (`cvv2_matches`); physical cards
//! and programs without rotation keep the static CVV2.

use cardcore_crypto::{Cvv, Pan};
use cardcore_domain::cvv_window::CvvWindow;
use cardcore_domain::{ProgramSettings, Timestamp};
use serde_json::{json, Value};

use crate::dialect_cross::qi;
use crate::helpers::*;

async fn sensitive(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/cards/{id}/sensitive")).await.ok()
}

fn ts(v: &Value) -> Timestamp {
    v.as_str().unwrap().parse().unwrap()
}

/// The dynamic CVV2 the documented formula gives for this window.
async fn expected(app: &TestApp, pan: &str, window: u64) -> String {
    let cvk = app.service().keys().cvk().await.unwrap();
    let pan = Pan::parse(pan).unwrap();
    cardcore_crypto::cvv::generate_dynamic_cvv2(&cvk, &pan, window)
        .expose()
        .to_owned()
}

async fn matches(app: &TestApp, card_id: &str, cvv: &str, at: Timestamp) -> bool {
    let ctx = cardcore_service::Ctx::new(
        cardcore_service::cli_principal(app.service().tenant(app.tenant_id.parse().unwrap()).await.unwrap()),
        cardcore_domain::Channel::CLI,
        None,
    );
    let rec = app
        .service()
        .store()
        .card(ctx.tenant_id(), card_id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    app.service()
        .cvv2_matches(&rec, &Cvv::parse(cvv).unwrap(), at)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_virtual_cards_cvv2_changes_at_the_end_of_its_window() {
    let app = spawn_app().await;
    let card = app.active_card("virtual").await;
    let id = card["id"].as_str().unwrap();

    // Start inside a known 72-hour window.
    let start: Timestamp = "2027-03-10T12:00:00Z".parse().unwrap();
    app.service().clock().set(start);
    let s = sensitive(&app, id).await;
    let pan = s["pan"].as_str().unwrap().to_owned();
    let window = CvvWindow::at(72, start);
    assert_eq!(ts(&s["cvv_expires_at"]), window.ends_at, "{s}");
    assert_eq!(s["cvv"], expected(&app, &pan, window.number).await);
    assert_ne!(
        window.ends_at - window.starts_at,
        chrono::Duration::zero(),
        "a window has a length"
    );

    // Walk to the first boundary where the formula gives a new value (one
    // card's neighbouring windows share a value about once in 1,000).
    let mut w = window;
    while expected(&app, &pan, w.number).await == expected(&app, &pan, w.number + 1).await {
        w = CvvWindow::at(72, w.ends_at);
    }
    app.service().clock().set(w.ends_at - chrono::Duration::seconds(2));
    let before = sensitive(&app, id).await;
    assert_eq!(ts(&before["cvv_expires_at"]), w.ends_at);
    app.service().clock().set(w.ends_at);
    let after = sensitive(&app, id).await;
    assert_ne!(before["cvv"], after["cvv"], "the CVV2 changed at {}", w.ends_at);
    assert_eq!(after["cvv"], expected(&app, &pan, w.number + 1).await);
    assert_eq!(ts(&after["cvv_expires_at"]), w.ends_at + chrono::Duration::hours(72));
    // The PAN and expiry do not move.
    assert_eq!(before["pan"], after["pan"]);
    assert_eq!(before["expiry"], after["expiry"]);
}

#[tokio::test]
async fn cvv2_matches_accepts_the_current_and_the_previous_window_only() {
    let app = spawn_app().await;
    let card = app.active_card("virtual").await;
    let id = card["id"].as_str().unwrap();
    let pan = sensitive(&app, id).await["pan"].as_str().unwrap().to_owned();

    // A window whose value differs from both windows before it and from the
    // one two back, so each answer below is about that window alone.
    let mut w = CvvWindow::at(72, "2027-03-10T12:00:00Z".parse().unwrap());
    let (mut cur, mut prev, mut old);
    loop {
        cur = expected(&app, &pan, w.number).await;
        prev = expected(&app, &pan, w.number - 1).await;
        old = expected(&app, &pan, w.number - 2).await;
        if cur != prev && cur != old && prev != old {
            break;
        }
        w = CvvWindow::at(72, w.ends_at);
    }
    let now = w.starts_at + chrono::Duration::hours(1);
    assert!(matches(&app, id, &cur, now).await, "the current window's");
    assert!(matches(&app, id, &prev, now).await, "the previous window's");
    assert!(!matches(&app, id, &old, now).await, "two windows back");
    let wrong = (0..1000)
        .map(|n| format!("{n:03}"))
        .find(|c| *c != cur && *c != prev)
        .unwrap();
    assert!(!matches(&app, id, &wrong, now).await, "another value");
    // One window on, the old current is the previous: still good; the old
    // previous is not.
    let next = w.ends_at + chrono::Duration::minutes(1);
    assert!(matches(&app, id, &cur, next).await);
    if prev != expected(&app, &pan, w.number + 1).await {
        assert!(!matches(&app, id, &prev, next).await);
    }
}

#[tokio::test]
async fn physical_cards_and_programs_without_rotation_keep_the_static_cvv2() {
    let app = spawn_app().await;
    let physical = app.active_card("physical").await;
    let id = physical["id"].as_str().unwrap();
    let start: Timestamp = "2027-03-10T12:00:00Z".parse().unwrap();
    app.service().clock().set(start);
    let s1 = sensitive(&app, id).await;
    assert_eq!(s1["cvv_expires_at"], Value::Null, "{s1}");
    app.service().clock().set(start + chrono::Duration::days(30));
    let s2 = sensitive(&app, id).await;
    assert_eq!(s1["cvv"], s2["cvv"], "a printed CVV2 does not change");
    // The static CVV2: Visa CVV, service code 000, the card's expiry.
    let cvk = app.service().keys().cvk().await.unwrap();
    let expiry = s1["expiry"].as_str().unwrap();
    let yymm = format!("{}{}", &expiry[3..5], &expiry[0..2]);
    let want =
        cardcore_crypto::cvv::generate_cvv(&cvk, &Pan::parse(s1["pan"].as_str().unwrap()).unwrap(), &yymm, "000")
            .unwrap();
    assert_eq!(s1["cvv"], want.expose());
    assert!(matches(&app, id, want.expose(), start + chrono::Duration::days(400)).await);

    // A server whose default is no rotation: virtual cards are static too.
    let app = spawn_app_with(&["--cvv-rotation-interval-hours", "0"]).await;
    let virt = app.active_card("virtual").await;
    let id = virt["id"].as_str().unwrap();
    let s1 = sensitive(&app, id).await;
    assert_eq!(s1["cvv_expires_at"], Value::Null);
    app.service().clock().advance(chrono::Duration::days(30));
    assert_eq!(sensitive(&app, id).await["cvv"], s1["cvv"]);
}

#[tokio::test]
async fn the_programs_interval_overrides_the_server_default_and_qi_reports_it() {
    let app = spawn_app().await;
    let card = app.active_card("virtual").await;
    let id = card["id"].as_str().unwrap();
    let program = card["program_id"].as_str().unwrap().parse().unwrap();
    let qi_path = format!("/wallet/{}/card/{id}", card["account_id"].as_str().unwrap());
    let qi_interval = |r: Resp| r.ok()["cvv_rotation_interval_hours"].clone();
    let key = app.key.clone();
    let active = || qi(&app, &key, &qi_path, json!({"status": "active"}));
    assert_eq!(qi_interval(active().await), 72);

    let set = |hours: Option<u32>| {
        app.service()
            .update_tenant_settings(app.tenant_id.parse().unwrap(), move |s| {
                s.programs.insert(
                    program,
                    ProgramSettings {
                        cvv_rotation_interval_hours: hours,
                    },
                );
            })
    };
    set(Some(24)).await.unwrap();
    assert_eq!(qi_interval(active().await), 24);
    let start: Timestamp = "2027-03-10T12:00:00Z".parse().unwrap();
    app.service().clock().set(start);
    let s = sensitive(&app, id).await;
    assert_eq!(ts(&s["cvv_expires_at"]), CvvWindow::at(24, start).ends_at);

    // 0: the program's CVV2 does not rotate (QI shows null).
    set(Some(0)).await.unwrap();
    assert_eq!(qi_interval(active().await), Value::Null);
    assert_eq!(sensitive(&app, id).await["cvv_expires_at"], Value::Null);

    // A card of another program of the tenant keeps the server's default.
    let holder = app.create_cardholder("other-program").await;
    let other = app
        .post(
            "/v1/cards",
            json!({"cardholder_id": holder["id"], "type": "virtual", "program_id": uuid::Uuid::new_v4()}),
        )
        .await
        .ok();
    assert_ne!(other["program_id"], card["program_id"]);
    let other_path = format!(
        "/wallet/{}/card/{}",
        other["account_id"].as_str().unwrap(),
        other["id"].as_str().unwrap()
    );
    assert_eq!(
        qi_interval(qi(&app, &key, &other_path, json!({"status": "active"})).await),
        72
    );
    // Back to the default for the first program too.
    set(None).await.unwrap();
    assert_eq!(qi_interval(active().await), 72);
}
