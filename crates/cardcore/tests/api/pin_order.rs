//! Attacks on the PIN's order, through the public API: a burst of guesses
//! sent at once, and PIN change used as an oracle for the current PIN.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::dialect_cross::{m2p, m2p_login, owned_card, Owned};
use crate::helpers::{spawn_app, Resp, TestApp};

const PIN: &str = "4821";
const BURST: usize = 19;
const ROUNDS: usize = 30;

/// One burst's answers: right PIN accepted (or refused as blocked), the
/// `remaining_attempts` of each wrong one, and how many were refused as
/// blocked (the right one included).
#[derive(Debug, Default)]
struct Burst {
    accepted: bool,
    right_blocked: bool,
    remaining: BTreeMap<u64, usize>,
    blocked: usize,
}

/// Whether `b` is what some serial order of 1 right and 18 wrong guesses
/// (max 3 wrong) answers: k < 3 wrong, then the right one (accepted, the
/// count reset), then 3 wrong (the 3rd blocks), then only "blocked"; or 3
/// wrong, then only "blocked", the right one included. Returns k when the
/// right one was accepted.
fn serial_order(b: &Burst) -> Result<Option<usize>, String> {
    let count = |r: u64| b.remaining.get(&r).copied().unwrap_or(0);
    let (c2, c1, c0) = (count(2), count(1), count(0));
    if b.remaining.keys().any(|r| *r > 2) {
        return Err(format!("remaining_attempts above 2: {b:?}"));
    }
    let wrong = c2 + c1 + c0;
    if b.blocked + wrong + usize::from(b.accepted) != BURST {
        return Err(format!("answers missing: {b:?}"));
    }
    if c0 != 1 {
        return Err(format!("not exactly one blocking answer: {b:?}"));
    }
    match (b.accepted, b.right_blocked, (c2, c1)) {
        (false, true, (1, 1)) => Ok(None),
        (true, false, (1, 1)) => Ok(Some(0)),
        (true, false, (2, 1)) => Ok(Some(1)),
        (true, false, (2, 2)) => Ok(Some(2)),
        _ => Err(format!("no serial order answers this: {b:?}")),
    }
}

/// Sends one burst: the right PIN `right_at` among 18 wrong ones, each on a
/// task of its own, released together.
async fn burst(app: &TestApp, bases: &[String], card: &str, right_at: usize) -> Burst {
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(BURST));
    let tasks: Vec<_> = (0..BURST)
        .map(|i| {
            let guess = if i == right_at {
                PIN.to_owned()
            } else {
                format!("{:04}", 5000 + i)
            };
            let url = format!("{}/v1/cards/{card}/pin/verify", bases[i % bases.len()]);
            let req = app
                .client
                .post(url)
                .bearer_auth(&app.key)
                .json(&json!({ "pin": guess }));
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let r = req.send().await.expect("send");
                let status = r.status().as_u16();
                (guess == PIN, status, r.json::<Value>().await.expect("json"))
            })
        })
        .collect();
    let mut b = Burst::default();
    for task in tasks {
        let (right, status, body) = task.await.expect("task");
        match (status, body["valid"].as_bool(), body["code"].as_str()) {
            (200, Some(true), _) => {
                assert!(right, "a wrong PIN accepted: {body}");
                b.accepted = true;
            }
            (200, Some(false), _) => {
                assert!(!right, "the right PIN refused as wrong: {body}");
                *b.remaining
                    .entry(body["remaining_attempts"].as_u64().expect("remaining"))
                    .or_default() += 1;
            }
            (409, _, Some("pin_blocked")) => {
                if right {
                    b.right_blocked = true;
                } else {
                    b.blocked += 1;
                }
            }
            _ => panic!("unexpected answer {status}: {body}"),
        }
    }
    if b.right_blocked {
        b.blocked += 1;
    }
    b
}

/// The card after a burst: BLOCKED, and its audit trail holds exactly the
/// wrong tries its answers counted (one `card.pin_blocked`).
async fn check_card_after(app: &TestApp, card: &str, b: &Burst) {
    let now = app.get(&format!("/v1/cards/{card}")).await.ok();
    assert_eq!(now["pin_status"], "BLOCKED", "{b:?}");
    let audit = app.audit(card).await;
    let count = |t: &str| audit.iter().filter(|e| e["type"] == t).count();
    let failed: usize = b.remaining.iter().filter(|(r, _)| **r > 0).map(|(_, n)| n).sum();
    assert_eq!(count("card.pin_verification_failed"), failed, "{b:?}");
    assert_eq!(count("card.pin_blocked"), 1, "{b:?}");
}

/// 19 guesses at once, the right one among them, 30 times on fresh cards
/// (the per-card throttle would allow 20). Every burst's answers are those of
/// some serial order: the right PIN accepted only when fewer than 3 wrong
/// ones were decided before it, never more than 3 wrong ones decided, the
/// card BLOCKED with an audit trail that matches. And the right PIN is
/// accepted in at most half the bursts: decided in order it is accepted only
/// when it comes among the first 3 (about 3 in 19 when the order is random);
/// before card order it was accepted in 17 of 20 (checked against a count
/// read before the wrong ones committed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_guesses_is_decided_in_card_order() {
    let app = spawn_app().await;
    let mut accepted = 0;
    for round in 0..ROUNDS {
        let card = app.active_card("virtual").await["id"].as_str().unwrap().to_owned();
        app.set_pin(&card, PIN).await;
        let b = burst(&app, std::slice::from_ref(&app.base), &card, (round * 7 + 3) % BURST).await;
        if serial_order(&b).unwrap_or_else(|e| panic!("{e}")).is_some() {
            accepted += 1;
        }
        check_card_after(&app, &card, &b).await;
    }
    eprintln!("right PIN accepted in {accepted} of {ROUNDS} bursts");
    assert!(accepted <= ROUNDS / 2, "accepted in {accepted} of {ROUNDS} bursts");
}

/// A problem answer without what differs per request anyway.
fn comparable(r: &Resp) -> (u16, Value) {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "request_id" | "requestId" | "timestamp" | "instance"))
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    (r.status.as_u16(), strip(&r.body))
}

/// Two cards with the same PIN in the same state: on one the new PIN is the
/// current one, on the other it is not. Until both the OTP and the current
/// PIN are proven, the two answers are the same (status, code, text), so the
/// answer tells nothing about the PIN; the wrong tries are counted all the
/// same. Only after both proofs does `same_as_current` show.
#[tokio::test]
async fn pin_change_tells_nothing_about_the_current_pin_before_both_proofs() {
    let app = spawn_app().await;
    let other_new = "5930";
    let wrong_old = "6407";
    let fresh = || async {
        let id = app.active_card("virtual").await["id"].as_str().unwrap().to_owned();
        app.set_pin(&id, PIN).await;
        id
    };
    let change = |id: String, trace: String, otp: String, old: &'static str, new: &'static str| {
        let app = &app;
        async move {
            app.post(
                &format!("/v1/cards/{id}/pin/change"),
                json!({"old_pin": old, "new_pin": new, "otp": otp, "trace_number": trace}),
            )
            .await
        }
    };
    let (same, other) = (fresh().await, fresh().await);

    // A wrong OTP (twice: the third would lock), with a wrong old PIN.
    let (ts, cs) = app.otp(&same).await;
    let (to, co) = app.otp(&other).await;
    let wrong = |code: &str| {
        if code == "000000" {
            "111111".to_owned()
        } else {
            "000000".to_owned()
        }
    };
    for _ in 0..2 {
        let a = change(same.clone(), ts.clone(), wrong(&cs), wrong_old, PIN).await;
        let b = change(other.clone(), to.clone(), wrong(&co), wrong_old, other_new).await;
        assert_eq!(a.code(), "otp_invalid", "{}", a.text);
        assert_eq!(comparable(&a), comparable(&b));
    }
    // The right OTP with a wrong old PIN: spent, and a PIN try counted.
    let a = change(same.clone(), ts.clone(), cs.clone(), wrong_old, PIN).await;
    let b = change(other.clone(), to.clone(), co.clone(), wrong_old, other_new).await;
    assert_eq!(a.code(), "pin_incorrect", "{}", a.text);
    assert_eq!(a.body["remaining_attempts"], 2);
    assert_eq!(comparable(&a), comparable(&b));
    for id in [&same, &other] {
        let audit = app.audit(id).await;
        assert_eq!(
            audit[0]["type"], "card.pin_verification_failed",
            "counted like a verification"
        );
    }
    // A right OTP with a right old PIN: now "same as current" may show.
    let (ts, cs) = app.otp(&same).await;
    let (to, co) = app.otp(&other).await;
    let a = change(same.clone(), ts, cs, PIN, PIN).await;
    let p = a.expect(422, "pin_too_weak");
    assert_eq!(p["rule"], "same_as_current");
    change(other.clone(), to, co, PIN, other_new).await.ok();
    assert_eq!(app.verify(&other, other_new).await.ok()["valid"], true);
    // The count the wrong old PIN left was reset by the right one.
    assert_eq!(app.get(&format!("/v1/cards/{same}")).await.ok()["pin_status"], "SET");
    for remaining in [2, 1] {
        assert_eq!(app.verify(&same, "0001").await.ok()["remaining_attempts"], remaining);
    }
}

/// The same through M2P's `cards/update/pin`, which calls the same service
/// operation: answers for a guess that is the PIN and one that is not are
/// the same until both proofs pass.
#[tokio::test]
async fn m2p_pin_update_tells_nothing_about_the_current_pin_before_both_proofs() {
    let app = spawn_app().await;
    let auth = m2p_login(&app, &app.tenant_id, &app.key.clone()).await;
    let fresh = || async {
        let c = owned_card(&app, "virtual").await;
        app.set_pin(c.id(), PIN).await;
        c
    };
    let otp = |c: &Owned| {
        let (app, auth, kit, entity) = (&app, &auth, c.kit().to_owned(), c.external_id.clone());
        let id = c.id().to_owned();
        async move {
            let r = m2p(
                app,
                auth,
                "otp/generate",
                json!({"mobileNumber": "9600389470", "entityId": entity, "kitNo": kit, "otpType": "S"}),
            )
            .await
            .ok();
            let trace = r["result"]["traceNumber"].as_str().unwrap().to_owned();
            let event = app
                .card_events(&id)
                .await
                .into_iter()
                .rev()
                .find(|e| e["type"] == "otp.created" && e["data"]["trace_number"] == trace.as_str())
                .unwrap();
            (trace, event["data"]["otp"].as_str().unwrap().to_owned())
        }
    };
    let body = |c: &Owned, trace: &str, otp: &str, old: &str, new: &str| {
        json!({
            "mobile": {"value": "9600389470", "countryCode": 91},
            "entityId": c.external_id,
            "kit": c.kit(),
            "expiryDate": c.expiry(),
            "otp": otp,
            "oldPin": old,
            "newPin": new,
            "otpDetails": {"traceNumber": trace, "mobileNumber": "9600389470", "otp": otp},
            "rule": {"expiryDate": c.expiry(), "otp": otp, "traceNumber": trace}
        })
    };
    let (same, other) = (fresh().await, fresh().await);
    let (ts, cs) = otp(&same).await;
    let (to, co) = otp(&other).await;
    let wrong = |code: &str| {
        if code == "000000" {
            "111111".to_owned()
        } else {
            "000000".to_owned()
        }
    };
    for _ in 0..2 {
        let a = m2p(
            &app,
            &auth,
            "cards/update/pin",
            body(&same, &ts, &wrong(&cs), "6407", PIN),
        )
        .await;
        let b = m2p(
            &app,
            &auth,
            "cards/update/pin",
            body(&other, &to, &wrong(&co), "6407", "5930"),
        )
        .await;
        assert_eq!(a.status.as_u16(), 409, "{}", a.text);
        assert_eq!(comparable(&a), comparable(&b), "{} / {}", a.text, b.text);
    }
    let a = m2p(&app, &auth, "cards/update/pin", body(&same, &ts, &cs, "6407", PIN)).await;
    let b = m2p(&app, &auth, "cards/update/pin", body(&other, &to, &co, "6407", "5930")).await;
    assert!(a.text.contains("invalid.pin"), "{}", a.text);
    assert_eq!(comparable(&a), comparable(&b), "{} / {}", a.text, b.text);
    // Both proofs: "same as current" is refused, a new PIN is set.
    let (ts, cs) = otp(&same).await;
    let (to, co) = otp(&other).await;
    let a = m2p(&app, &auth, "cards/update/pin", body(&same, &ts, &cs, PIN, PIN)).await;
    assert_eq!(a.status.as_u16(), 400, "{}", a.text);
    let b = m2p(&app, &auth, "cards/update/pin", body(&other, &to, &co, PIN, "5930")).await;
    assert_eq!(b.status.as_u16(), 200, "{}", b.text);
}

/// A right PIN with nothing to reset is decided without a write: the
/// database file's write-ahead log is byte for byte the same after 20 right
/// verifications (a commit would add frames). A wrong PIN does write, and so
/// does the right PIN that resets its count; the next right one does not.
/// The webhook dispatcher is told to poll once a day, so nothing else
/// writes meanwhile.
#[tokio::test]
async fn a_right_pin_with_nothing_to_reset_commits_nothing() {
    let app = crate::helpers::spawn_app_with(&["--webhook-poll-interval-ms", "86400000"]).await;
    let id = app.active_card("virtual").await["id"].as_str().unwrap().to_owned();
    app.set_pin(&id, PIN).await;
    let wal = app.dir.path().join("cardcore.db-wal");
    let log = || std::fs::read(&wal).unwrap_or_default();
    let card = app.get(&format!("/v1/cards/{id}")).await.ok();
    let audit = app.audit(&id).await.len();

    let before = log();
    for _ in 0..20 {
        assert_eq!(app.verify(&id, PIN).await.ok()["valid"], true);
    }
    assert!(log() == before, "a right PIN with nothing to reset committed something");
    assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok(), card);
    assert_eq!(app.audit(&id).await.len(), audit);

    assert_eq!(app.verify(&id, "0001").await.ok()["remaining_attempts"], 2);
    let after_wrong = log();
    assert!(after_wrong != before, "a wrong PIN is committed");
    assert_eq!(app.verify(&id, PIN).await.ok()["valid"], true);
    let after_reset = log();
    assert!(after_reset != after_wrong, "the reset of the count is committed");
    assert_eq!(app.verify(&id, PIN).await.ok()["valid"], true);
    assert!(log() == after_reset, "nothing left to reset: nothing committed");
}

/// A burst split between the native API and M2P's `cards/v2/validate-pin`,
/// which calls the same service operation: one card order for both. The
/// wrong answers of both APIs together are those of a serial order (3 wrong,
/// or k < 3 wrong, the right one, then 3 more), the audit trail holds exactly
/// them, the card ends BLOCKED, and the right PIN is accepted in at most
/// half the bursts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_through_two_apis_is_decided_in_one_card_order() {
    let app = spawn_app().await;
    let auth = m2p_login(&app, &app.tenant_id, &app.key.clone()).await;
    let mut accepted = 0;
    for round in 0..ROUNDS {
        let c = owned_card(&app, "virtual").await;
        app.set_pin(c.id(), PIN).await;
        let right_at = (round * 7 + 3) % BURST;
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(BURST));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..BURST {
            let guess = if i == right_at {
                PIN.to_owned()
            } else {
                format!("{:04}", 5000 + i)
            };
            let (url, body, bearer) = if i % 2 == 0 {
                (
                    format!("{}/v1/cards/{}/pin/verify", app.base, c.id()),
                    json!({ "pin": guess }),
                    app.key.clone(),
                )
            } else {
                (
                    format!("{}/m2p/prepaid/customer/v1/cards/v2/validate-pin", app.base),
                    json!({"entityId": c.external_id, "kit": c.kit(), "oldPin": guess}),
                    auth.token.clone(),
                )
            };
            let req = app
                .client
                .post(url)
                .bearer_auth(bearer)
                .header("X-TENANT-ID", &auth.tenant)
                .json(&body);
            let start = start.clone();
            set.spawn(async move {
                start.wait().await;
                let r = req.send().await.expect("send");
                let status = r.status().as_u16();
                (guess == PIN, status, r.text().await.expect("text"))
            });
        }
        let (mut right_ok, mut wrong, mut blocked) = (false, 0, 0);
        while let Some(r) = set.join_next().await {
            let (right, status, text) = r.expect("task");
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            // Native answers `{"valid"}`, M2P `{"result": {"valid"}, "pagination": null}`.
            let valid = body["valid"].as_bool().or(body["result"]["valid"].as_bool());
            match (status, valid) {
                (200, Some(true)) => {
                    assert!(right, "a wrong PIN accepted: {text}");
                    right_ok = true;
                }
                (200, Some(false)) => {
                    assert!(!right, "the right PIN refused as wrong: {text}");
                    wrong += 1;
                }
                (409, _) if text.contains("pin_blocked") || text.contains("pin.locked") => blocked += 1,
                _ => panic!("unexpected answer {status}: {text}"),
            }
        }
        assert_eq!(wrong + blocked + usize::from(right_ok), BURST);
        if right_ok {
            accepted += 1;
            assert!(
                (3..=5).contains(&wrong),
                "{wrong} wrong decided around an accepted right PIN"
            );
        } else {
            assert_eq!(wrong, 3, "3 wrong decided, then blocked");
        }
        assert_eq!(
            app.get(&format!("/v1/cards/{}", c.id())).await.ok()["pin_status"],
            "BLOCKED"
        );
        let audit = app.audit(c.id()).await;
        let count = |t: &str| audit.iter().filter(|e| e["type"] == t).count();
        assert_eq!(count("card.pin_verification_failed"), wrong - 1);
        assert_eq!(count("card.pin_blocked"), 1);
    }
    eprintln!("right PIN accepted in {accepted} of {ROUNDS} mixed bursts");
    assert!(accepted <= ROUNDS / 2, "accepted in {accepted} of {ROUNDS} bursts");
}
