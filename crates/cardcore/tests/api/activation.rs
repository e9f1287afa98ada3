//! Activation codes counted like OTPs: 3 consecutive wrong codes lock the
//! card's activation, the right code included, through restarts and in
//! bursts; the lock ends; QI Tech answers in its own shape.

use serde_json::{json, Value};

use crate::dialect_cross::qi;
use crate::helpers::{spawn_app_with, Resp, TestApp};

/// A 6-digit code that is not `right`.
fn wrong_code(right: &str, n: u32) -> String {
    let mut n = n;
    loop {
        let code = format!("{:06}", (right.parse::<u32>().unwrap() + 1 + n) % 1_000_000);
        if code != right {
            return code;
        }
        n += 1;
    }
}

async fn activate(app: &TestApp, id: &str, code: &str) -> Resp {
    app.post(&format!("/v1/cards/{id}/activate"), json!({ "activation_code": code }))
        .await
}

/// A locked answer: 409 `activation_locked`, with `retry_after_seconds` in
/// the body equal to the `Retry-After` header, within the lock's length.
#[track_caller]
fn assert_locked(r: Resp, lock_seconds: u64) -> u64 {
    let retry_header: u64 = r
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After header");
    let body = r.expect(409, "activation_locked");
    assert_eq!(body["retry_after_seconds"].as_u64(), Some(retry_header));
    assert!((1..=lock_seconds).contains(&retry_header), "{retry_header}");
    retry_header
}

fn count(audit: &[Value], entry_type: &str) -> usize {
    audit.iter().filter(|e| e["type"] == entry_type).count()
}

#[tokio::test]
async fn three_wrong_codes_lock_activation_through_a_restart_and_the_lock_ends() {
    let lock = ["--activation-lock-seconds", "2"];
    let mut app = spawn_app_with(&lock).await;
    let card = app.card("physical").await;
    let id = card["id"].as_str().unwrap().to_owned();
    let right = app.activation_code(&id).await;

    let first = activate(&app, &id, &wrong_code(&right, 0))
        .await
        .expect(422, "activation_code_invalid");
    assert_eq!(first["remaining_attempts"], 2);
    let second = activate(&app, &id, &wrong_code(&right, 1))
        .await
        .expect(422, "activation_code_invalid");
    assert_eq!(second["remaining_attempts"], 1);
    assert_locked(activate(&app, &id, &wrong_code(&right, 2)).await, 2);

    // The right code is refused during the lock, and nothing moved.
    assert_locked(activate(&app, &id, &right).await, 2);
    assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok()["status"], "INACTIVE");
    let audit = app.audit(&id).await;
    assert_eq!(count(&audit, "card.activation_failed"), 3);
    assert_eq!(count(&audit, "card.activation_locked"), 1);
    assert_eq!(count(&audit, "card.activate"), 0);
    let text = serde_json::to_string(&audit).unwrap();
    assert!(!text.contains(&right), "no audit row holds the code");

    // The lock is in the database: a restarted server still refuses.
    app.restart(&lock).await;
    let wait = assert_locked(activate(&app, &id, &right).await, 2);

    // Once the lock has run out (waiting what the server said, not timing
    // anything), the right code activates the card.
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    let done = activate(&app, &id, &right).await.ok();
    assert_eq!(done["status"], "ACTIVE");
    assert_eq!(count(&app.audit(&id).await, "card.activate"), 1);
}

#[tokio::test]
async fn after_the_lock_the_card_has_three_attempts_again() {
    let lock = ["--activation-lock-seconds", "1"];
    let app = spawn_app_with(&lock).await;
    let id = app.card("physical").await["id"].as_str().unwrap().to_owned();
    let right = app.activation_code(&id).await;
    for n in 0..2 {
        activate(&app, &id, &wrong_code(&right, n))
            .await
            .expect(422, "activation_code_invalid");
    }
    let wait = assert_locked(activate(&app, &id, &wrong_code(&right, 2)).await, 1);
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    let again = activate(&app, &id, &wrong_code(&right, 3))
        .await
        .expect(422, "activation_code_invalid");
    assert_eq!(again["remaining_attempts"], 2);
}

#[tokio::test]
async fn a_burst_of_wrong_codes_counts_exactly_three_before_the_lock() {
    let app = spawn_app_with(&[]).await;
    let id = app.card("physical").await["id"].as_str().unwrap().to_owned();
    let right = app.activation_code(&id).await;
    let burst = 24;
    let answers = futures_join_all((0..burst).map(|n| {
        let app = &app;
        let id = id.clone();
        let code = wrong_code(&right, n);
        async move { activate(app, &id, &code).await }
    }))
    .await;
    let mut invalid = Vec::new();
    let mut locked = 0;
    for r in answers {
        match (r.status.as_u16(), r.code()) {
            (422, "activation_code_invalid") => invalid.push(r.body["remaining_attempts"].as_u64().unwrap()),
            (409, "activation_locked") => locked += 1,
            _ => panic!("unexpected answer {}: {}", r.status, r.text),
        }
    }
    invalid.sort_unstable();
    assert_eq!(invalid, [1, 2], "two wrong codes answered as such, one after the other");
    assert_eq!(locked, burst as usize - 2);
    let audit = app.audit(&id).await;
    assert_eq!(count(&audit, "card.activation_failed"), 3, "exactly three counted");
    assert_eq!(count(&audit, "card.activation_locked"), 1);
    assert_locked(activate(&app, &id, &right).await, 600);
}

#[tokio::test]
async fn the_per_card_throttle_applies_to_activation() {
    let app = spawn_app_with(&["--card-pin-calls-per-minute", "2"]).await;
    let id = app.card("physical").await["id"].as_str().unwrap().to_owned();
    // Malformed codes change nothing but still count against the throttle.
    for _ in 0..2 {
        activate(&app, &id, "12").await.expect(422, "validation_error");
    }
    let r = activate(&app, &id, "123456").await;
    assert!(r.headers.contains_key("retry-after"));
    r.expect(429, "rate_limited");
    assert_eq!(count(&app.audit(&id).await, "card.activation_failed"), 0);
}

#[tokio::test]
async fn qitech_answers_the_lock_in_its_own_shape() {
    let app = spawn_app_with(&[]).await;
    let card = app.card("physical").await;
    let id = card["id"].as_str().unwrap().to_owned();
    let right = app.activation_code(&id).await;
    let path = format!("/wallet/{}/card/{id}/activate", card["account_id"].as_str().unwrap());
    for n in 0..2 {
        let r = qi(
            &app,
            &app.key,
            &path,
            json!({ "activation_code": wrong_code(&right, n) }),
        )
        .await;
        assert_eq!(
            (r.status.as_u16(), r.body["code"].as_str()),
            (406, Some("CARD000020")),
            "{}",
            r.text
        );
    }
    for code in [wrong_code(&right, 2), right.clone()] {
        let r = qi(&app, &app.key, &path, json!({ "activation_code": code })).await;
        assert_eq!(r.status.as_u16(), 409, "{}", r.text);
        assert_eq!(r.body["code"], "QIT000409");
        let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=600).contains(&retry));
        let mut keys: Vec<&str> = r.body.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "description", "title", "translation"]);
    }
    // The lock is the card's, whichever API asks.
    assert_locked(activate(&app, &id, &right).await, 600);
}

/// Runs futures concurrently on this task (no extra dependency).
async fn futures_join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out = Vec::with_capacity(handles.len());
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.extend(results.into_iter().map(|r| r.expect("every future finished")));
    out
}
