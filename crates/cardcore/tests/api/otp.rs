//! OTPs and the PIN change: single use, expiry, the 3-wrong lock that holds
//! across restarts, the issue rate limit.

use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

async fn card_with_pin(app: &TestApp) -> String {
    let id = app.active_card("virtual").await["id"].as_str().unwrap().to_owned();
    app.set_pin(&id, "4821").await;
    id
}

#[tokio::test]
async fn change_pin_with_an_otp() {
    let app = spawn_app().await;
    let id = card_with_pin(&app).await;
    let (trace, code) = app.otp(&id).await;
    assert_eq!(code.len(), 6);
    let ev = app
        .card_events(&id)
        .await
        .into_iter()
        .rev()
        .find(|e| e["type"] == "otp.created")
        .unwrap();
    assert_eq!(ev["data"]["purpose"], "pin_change");
    assert_eq!(
        ev["data"]["phone"],
        json!({"country_code": "91", "number": "9600389470"})
    );
    assert!(ev["data"]["expires_at"].is_string());

    let c = app
        .post(
            &format!("/v1/cards/{id}/pin/change"),
            json!({"old_pin": "4821", "new_pin": "7391", "otp": code, "trace_number": trace}),
        )
        .await
        .ok();
    assert_eq!(c["pin_status"], "SET");
    assert_eq!(app.verify(&id, "7391").await.ok()["valid"], true);
    assert_eq!(app.verify(&id, "4821").await.ok()["valid"], false);
    assert_eq!(app.card_events(&id).await.last().unwrap()["type"], "card.pin_changed");
    assert_eq!(
        app.audit(&id)
            .await
            .iter()
            .find(|a| a["type"] == "card.pin_changed")
            .unwrap()["actor"]["channel"],
        "native"
    );

    // Single use.
    let p = app
        .post(
            &format!("/v1/cards/{id}/pin/change"),
            json!({"old_pin": "7391", "new_pin": "5083", "otp": code, "trace_number": trace}),
        )
        .await
        .expect(422, "otp_invalid");
    assert_eq!(p["remaining_attempts"], 2);

    // The OTP is only in the otp.created event: not in audit rows, not elsewhere.
    let audit = serde_json::to_string(&app.audit(&id).await).unwrap();
    assert!(!audit.contains(&format!("\"{code}\"")));
    let others: Vec<_> = app
        .all_events()
        .await
        .into_iter()
        .filter(|e| e["type"] != "otp.created")
        .collect();
    assert!(!serde_json::to_string(&others).unwrap().contains(&format!("\"{code}\"")));
}

#[tokio::test]
async fn change_pin_checks_in_order_and_counts() {
    let app = spawn_app().await;
    let id = card_with_pin(&app).await;
    let (trace, code) = app.otp(&id).await;
    let path = format!("/v1/cards/{id}/pin/change");
    let change = |old: &str, new: &str, otp: &str, trace: &str| {
        app.post(
            &path,
            json!({"old_pin": old, "new_pin": new, "otp": otp, "trace_number": trace}),
        )
    };
    // A weak new PIN (a rule that depends on no secret) is refused before
    // the OTP is spent.
    change("4821", "1111", &code, &trace).await.expect(422, "pin_too_weak");
    // Right OTP, wrong current PIN: the OTP is spent and the PIN counter counts.
    let p = change("4822", "7391", &code, &trace).await.expect(422, "pin_incorrect");
    assert_eq!(p["remaining_attempts"], 2);
    change("4821", "7391", &code, &trace).await.expect(422, "otp_invalid");
    // "Same as current" is answered only once both proofs passed (the OTP
    // is spent by then; tests/api/pin_order.rs holds the answers before).
    let (trace, code) = app.otp(&id).await;
    let p = change("4821", "4821", &code, &trace).await.expect(422, "pin_too_weak");
    assert_eq!(p["rule"], "same_as_current");
    change("4821", "7391", &code, &trace).await.expect(422, "otp_invalid");
    let (trace, code) = app.otp(&id).await;
    change("4821", "7391", &code, &trace).await.ok();
    // Bad shapes.
    let p = app
        .post(
            &format!("/v1/cards/{id}/pin/change"),
            json!({"old_pin": "7391", "new_pin": "5083", "otp": "1"}),
        )
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "trace_number");
    let p = app
        .post(
            &format!("/v1/cards/{id}/pin/change"),
            json!({"old_pin": "7391", "new_pin": {"pin_block": "00"}, "otp": "1", "trace_number": "t"}),
        )
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "new_pin.format");
}

#[tokio::test]
async fn three_wrong_otps_lock_for_ten_minutes_across_a_restart() {
    let mut app = spawn_app().await;
    let id = card_with_pin(&app).await;
    let (trace, code) = app.otp(&id).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let body = |otp: &str| json!({"old_pin": "4821", "new_pin": "7391", "otp": otp, "trace_number": trace});
    let p = app
        .post(&format!("/v1/cards/{id}/pin/change"), body(wrong))
        .await
        .expect(422, "otp_invalid");
    assert_eq!(p["remaining_attempts"], 2);
    app.post(&format!("/v1/cards/{id}/pin/change"), body(wrong))
        .await
        .expect(422, "otp_invalid");
    let r = app.post(&format!("/v1/cards/{id}/pin/change"), body(wrong)).await;
    assert_eq!(r.headers.get("retry-after").unwrap(), "600");
    let p = r.expect(409, "otp_locked");
    assert_eq!(p["retry_after_seconds"], 600);

    // Every call in the window is locked, the right code too; no new codes either.
    app.post(&format!("/v1/cards/{id}/pin/change"), body(&code))
        .await
        .expect(409, "otp_locked");
    app.post(&format!("/v1/cards/{id}/otp"), json!({}))
        .await
        .expect(409, "otp_locked");

    // The lock is in the database: it survives a restart.
    app.restart(&[]).await;
    let r = app.post(&format!("/v1/cards/{id}/pin/change"), body(&code)).await;
    let secs: u64 = r.headers.get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!(secs > 500 && secs <= 600, "{secs}");
    r.expect(409, "otp_locked");
    assert_eq!(
        app.verify(&id, "4821").await.ok()["valid"],
        true,
        "the PIN did not change"
    );
}

#[tokio::test]
async fn the_lock_ends_and_codes_expire() {
    let app = spawn_app_with(&["--otp-lock-seconds", "1", "--otp-ttl-seconds", "1"]).await;
    let id = card_with_pin(&app).await;
    let (trace, code) = app.otp(&id).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let body =
        |otp: &str, trace: &str| json!({"old_pin": "4821", "new_pin": "7391", "otp": otp, "trace_number": trace});
    app.post(&format!("/v1/cards/{id}/pin/change"), body(&code, &trace))
        .await
        .expect(422, "otp_expired");
    for _ in 0..2 {
        app.post(&format!("/v1/cards/{id}/pin/change"), body("999999", &trace))
            .await
            .expect(422, "otp_invalid");
    }
    app.post(&format!("/v1/cards/{id}/pin/change"), body("999999", &trace))
        .await
        .expect(409, "otp_locked");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (trace, code) = app.otp(&id).await;
    app.post(&format!("/v1/cards/{id}/pin/change"), body(&code, &trace))
        .await
        .ok();
}

#[tokio::test]
async fn at_most_five_codes_per_fifteen_minutes() {
    let app = spawn_app().await;
    let id = card_with_pin(&app).await;
    for _ in 0..5 {
        app.post(&format!("/v1/cards/{id}/otp"), json!({"purpose": "pin_change"}))
            .await
            .expect(201, "");
    }
    let r = app
        .post(&format!("/v1/cards/{id}/otp"), json!({"purpose": "pin_change"}))
        .await;
    assert!(r.headers.contains_key("retry-after"));
    let p = r.expect(429, "rate_limited");
    assert!(p["retry_after_seconds"].as_u64().unwrap() > 800);
    let p = app
        .post(&format!("/v1/cards/{id}/otp"), json!({"purpose": "coffee"}))
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "purpose");
}
