//! Authorizations through the API: the contract's table of checks, the PIN
//! try counter shared with verification, unknown and foreign cards, retries,
//! the money after the decision, spending controls and bad input.

use cardcore_crypto::{pinblock, Pan, Pin};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

fn merchant() -> Value {
    json!({"mcc": "5411", "name": "Mercado", "city": "Lisboa", "country": "PT", "id": "M123"})
}

fn reference() -> String {
    format!("ref-{}", uuid::Uuid::new_v4().simple())
}

fn body(card_id: &str, amount: u64) -> Value {
    json!({
        "card_id": card_id,
        "amount": amount,
        "currency": "EUR",
        "merchant": merchant(),
        "channel": "pos",
        "network_reference": reference(),
    })
}

async fn authorize(app: &TestApp, b: Value) -> Value {
    let r = app.post("/v1/authorizations", b).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    r.body
}

async fn set_limits(app: &TestApp, id: &str, pos: Value) {
    let open = json!({"enabled": true, "per_transaction": null, "daily": null, "monthly": null});
    app.put(
        &format!("/v1/cards/{id}/limits"),
        json!({"currency": "EUR", "channels": {"pos": pos, "ecommerce": open, "atm": {"enabled": false, "per_transaction": null, "daily": null, "monthly": null}, "contactless": open}}),
    )
    .await
    .ok();
}

async fn card_with(app: &TestApp, card_type: &str) -> String {
    app.active_card(card_type).await["id"].as_str().unwrap().to_owned()
}

/// A format-4 PIN block for the card under a new AES zone key of the tenant.
async fn pin_block(app: &TestApp, id: &str, pin: &str) -> (String, String) {
    let tenant = app.tenant_id.parse().unwrap();
    let pan = Pan::parse(&app.pan(id).await).unwrap();
    let keys = app.service().keys();
    let key = match keys.zone_key(tenant, None, "aes").await.unwrap() {
        Some(k) => k,
        None => keys.create_zone_key(tenant, "aes").await.unwrap(),
    };
    let block = pinblock::encrypt_format4(
        key.key.expose(),
        &Pin::parse(pin).unwrap(),
        &pan,
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    (hex::encode_upper(block), key.id.to_string())
}

/// The contract's table, row by row: each row brings a card to the state
/// it needs and checks the decline reason and response code.
#[tokio::test]
async fn the_contract_table_of_checks() {
    let app = spawn_app().await;
    let other_key = app.new_tenant("tenant-b").await;

    struct Row {
        name: &'static str,
        reason: Option<&'static str>,
        code: &'static str,
    }
    let rows = [
        Row {
            name: "unknown card",
            reason: Some("CARD_NOT_FOUND"),
            code: "14",
        },
        Row {
            name: "wrong expiry",
            reason: Some("CARD_EXPIRED"),
            code: "54",
        },
        Row {
            name: "inactive",
            reason: Some("CARD_INACTIVE"),
            code: "78",
        },
        Row {
            name: "locked",
            reason: Some("CARD_LOCKED"),
            code: "62",
        },
        Row {
            name: "lost",
            reason: Some("CARD_LOST"),
            code: "41",
        },
        Row {
            name: "stolen",
            reason: Some("CARD_STOLEN"),
            code: "43",
        },
        Row {
            name: "fraud",
            reason: Some("CARD_FRAUD"),
            code: "59",
        },
        Row {
            name: "blocked",
            reason: Some("CARD_BLOCKED"),
            code: "62",
        },
        Row {
            name: "closed",
            reason: Some("CARD_CLOSED"),
            code: "62",
        },
        Row {
            name: "cvv2",
            reason: Some("CVV2_MISMATCH"),
            code: "N7",
        },
        Row {
            name: "pin blocked",
            reason: Some("PIN_TRIES_EXCEEDED"),
            code: "75",
        },
        Row {
            name: "pin wrong",
            reason: Some("PIN_INCORRECT"),
            code: "55",
        },
        Row {
            name: "pin not set",
            reason: Some("PIN_NOT_SET"),
            code: "55",
        },
        Row {
            name: "channel disabled",
            reason: Some("CHANNEL_DISABLED"),
            code: "57",
        },
        Row {
            name: "mcc",
            reason: Some("MCC_NOT_ALLOWED"),
            code: "57",
        },
        Row {
            name: "country",
            reason: Some("COUNTRY_NOT_ALLOWED"),
            code: "57",
        },
        Row {
            name: "per transaction",
            reason: Some("LIMIT_PER_TRANSACTION"),
            code: "61",
        },
        Row {
            name: "daily",
            reason: Some("LIMIT_DAILY"),
            code: "61",
        },
        Row {
            name: "monthly",
            reason: Some("LIMIT_MONTHLY"),
            code: "61",
        },
        Row {
            name: "daily count",
            reason: Some("LIMIT_DAILY_COUNT"),
            code: "65",
        },
        Row {
            name: "approved",
            reason: None,
            code: "00",
        },
    ];
    for row in rows {
        let id = match row.name {
            "inactive" => app.card("physical").await["id"].as_str().unwrap().to_owned(),
            _ => card_with(&app, "virtual").await,
        };
        let mut b = body(&id, 1_000);
        let act = |a: &'static str, r: Value| {
            let path = format!("/v1/cards/{id}/{a}");
            let app = &app;
            async move { app.post(&path, r).await.ok() }
        };
        match row.name {
            "unknown card" => b["card_id"] = json!(uuid::Uuid::now_v7()),
            "wrong expiry" => b["expiry"] = json!("01/20"),
            "locked" => {
                act("lock", json!({})).await;
            }
            "lost" | "stolen" | "fraud" | "blocked" => {
                let code = match row.name {
                    "lost" => "LOST_CARD",
                    "stolen" => "STOLEN_CARD",
                    "fraud" => "FRAUD_CONFIRMED",
                    _ => "DAMAGED_CARD",
                };
                act("block", json!({"reason_code": code})).await;
            }
            "closed" => {
                act("close", json!({"reason_code": "CUST_REQ"})).await;
            }
            "cvv2" => {
                // Neither this window's CVV2 nor the previous one's (a
                // virtual card's CVV2 rotates; both of those pay).
                let service = app.service();
                let rec = service
                    .store()
                    .card(app.tenant_id.parse().unwrap(), id.parse().unwrap())
                    .await
                    .unwrap()
                    .unwrap();
                let now = service.now();
                let mut wrong = None;
                for n in 0..1000 {
                    let c = format!("{n:03}");
                    if !service
                        .cvv2_matches(&rec, &cardcore_crypto::Cvv::parse(&c).unwrap(), now)
                        .await
                        .unwrap()
                    {
                        wrong = Some(c);
                        break;
                    }
                }
                b["cvv2"] = json!(wrong.unwrap());
            }
            "pin blocked" | "pin wrong" => {
                app.set_pin(&id, "4821").await;
                if row.name == "pin blocked" {
                    for _ in 0..3 {
                        app.verify(&id, "1357").await;
                    }
                }
                let (block, key) = pin_block(&app, &id, "1357").await;
                b["pin_block"] = json!(block);
                b["format"] = json!(4);
                b["key_id"] = json!(key);
            }
            "pin not set" => {
                let (block, key) = pin_block(&app, &id, "1357").await;
                b["pin_block"] = json!(block);
                b["format"] = json!("ISO-4");
                b["key_id"] = json!(key);
            }
            "channel disabled" => {
                // set_limits leaves atm disabled.
                set_limits(
                    &app,
                    &id,
                    json!({"enabled": true, "per_transaction": null, "daily": null, "monthly": null}),
                )
                .await;
                b["channel"] = json!("atm");
            }
            "mcc" => {
                app.put(&format!("/v1/cards/{id}/controls"), json!({"blocked_mccs": ["5411"]}))
                    .await
                    .ok();
            }
            "country" => {
                app.put(
                    &format!("/v1/cards/{id}/controls"),
                    json!({"allowed_countries": ["ES", "FR"], "allowed_mccs": null}),
                )
                .await
                .ok();
            }
            "per transaction" => {
                set_limits(
                    &app,
                    &id,
                    json!({"enabled": true, "per_transaction": 999, "daily": null, "monthly": null}),
                )
                .await;
            }
            "daily" => {
                set_limits(
                    &app,
                    &id,
                    json!({"enabled": true, "per_transaction": null, "daily": 1_500, "monthly": null}),
                )
                .await;
                authorize(&app, body(&id, 600)).await;
            }
            "monthly" => {
                set_limits(
                    &app,
                    &id,
                    json!({"enabled": true, "per_transaction": null, "daily": null, "monthly": 1_500}),
                )
                .await;
                authorize(&app, body(&id, 600)).await;
            }
            "daily count" => {
                set_limits(
                    &app,
                    &id,
                    json!({"enabled": true, "per_transaction": null, "daily": null, "monthly": null, "daily_count": 2}),
                )
                .await;
                authorize(&app, body(&id, 1)).await;
                authorize(&app, body(&id, 1)).await;
            }
            _ => {}
        }
        let a = authorize(&app, b.clone()).await;
        assert_eq!(a["decline_reason"], json!(row.reason), "{}: {a}", row.name);
        assert_eq!(a["response_code"], row.code, "{}: {a}", row.name);
        assert_eq!(
            a["status"],
            if row.reason.is_some() { "DECLINED" } else { "APPROVED" },
            "{}",
            row.name
        );
        assert_eq!(a["decided_by"], "cardcore");
        let held = if row.reason.is_some() { 0 } else { 1_000 };
        assert_eq!(a["approved_amount"], held, "{}", row.name);
        assert_eq!(a["pending_amount"], held, "{}", row.name);
        if row.name == "unknown card" {
            // Another tenant's card answers exactly the same, by id and by PAN.
            let theirs = app.create_cardholder_as(&other_key, "their-holder").await;
            let card = app
                .create_card_as(&other_key, theirs["id"].as_str().unwrap(), "virtual")
                .await;
            let mut foreign = body(card["id"].as_str().unwrap(), 1_000);
            let f = authorize(&app, foreign.clone()).await;
            let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(&f), keys(&a));
            assert_eq!(
                (f["card_id"].clone(), f["response_code"].clone()),
                (Value::Null, json!("14"))
            );
            let their_pan = app
                .call_as(
                    &other_key,
                    reqwest::Method::GET,
                    &format!("/v1/cards/{}/sensitive", card["id"].as_str().unwrap()),
                    None,
                )
                .await
                .ok()["pan"]
                .clone();
            foreign.as_object_mut().unwrap().remove("card_id");
            foreign["pan"] = their_pan;
            foreign["network_reference"] = json!(reference());
            let f = authorize(&app, foreign).await;
            assert_eq!(
                (f["card_id"].clone(), f["decline_reason"].clone()),
                (Value::Null, json!("CARD_NOT_FOUND"))
            );
        }
    }
}

/// A terminal's PIN counts on the same try counter as PIN verification:
/// two wrong ones by authorization and one by the API block the PIN.
#[tokio::test]
async fn terminal_pins_share_the_try_counter() {
    let app = spawn_app().await;
    let id = card_with(&app, "virtual").await;
    app.set_pin(&id, "4821").await;
    let with_pin = |block: String, key: String| {
        let mut b = body(&id, 500);
        b["pin_block"] = json!(block);
        b["format"] = json!("ISO-4");
        b["key_id"] = json!(key);
        b
    };
    let (right, key) = pin_block(&app, &id, "4821").await;
    let a = authorize(&app, with_pin(right.clone(), key.clone())).await;
    assert_eq!(a["status"], "APPROVED");
    let (wrong, _) = pin_block(&app, &id, "1111").await;
    for _ in 0..2 {
        let a = authorize(&app, with_pin(wrong.clone(), key.clone())).await;
        assert_eq!(a["decline_reason"], "PIN_INCORRECT");
    }
    let v = app.verify(&id, "2222").await.ok();
    assert_eq!(v["remaining_attempts"], 0, "the API's wrong PIN is the third: {v}");
    assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok()["pin_status"], "BLOCKED");
    let a = authorize(&app, with_pin(right, key.clone())).await;
    assert_eq!(
        (a["decline_reason"].clone(), a["response_code"].clone()),
        (json!("PIN_TRIES_EXCEEDED"), json!("75"))
    );
    // A block that does not decode for this card counts as a wrong PIN, whatever is wrong with it.
    let id2 = card_with(&app, "virtual").await;
    app.set_pin(&id2, "4821").await;
    let mut b = body(&id2, 500);
    b["pin_block"] = json!("00".repeat(16));
    b["format"] = json!("ISO-4");
    b["key_id"] = json!(key);
    assert_eq!(authorize(&app, b).await["decline_reason"], "PIN_INCORRECT");
    assert_eq!(app.get(&format!("/v1/cards/{id2}")).await.ok()["pin_status"], "SET");
    let audit = app.audit(&id2).await;
    assert!(audit.iter().any(|e| e["type"] == "card.pin_verification_failed"));
}

/// Retries with the same network reference answer the first decision with
/// 200 and hold nothing more, also when they race.
#[tokio::test]
async fn network_reference_makes_retries_safe() {
    let app = spawn_app().await;
    let id = card_with(&app, "virtual").await;
    set_limits(
        &app,
        &id,
        json!({"enabled": true, "per_transaction": null, "daily": 10_000, "monthly": null}),
    )
    .await;
    let b = body(&id, 3_000);
    let first = app.post("/v1/authorizations", b.clone()).await;
    assert_eq!(first.status, 201);
    let again = app.post("/v1/authorizations", b.clone()).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body);
    let racing: Vec<_> = (0..8)
        .map(|_| {
            let mut b = body(&id, 1_000);
            b["network_reference"] = json!("same-ref");
            app.post("/v1/authorizations", b)
        })
        .collect();
    let answers = join_all(racing).await;
    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|r| r.body["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "one decision for one reference");
    assert_eq!(answers.iter().filter(|r| r.status == 201).count(), 1);
    let spend = app.get(&format!("/v1/cards/{id}/spend")).await.ok();
    assert_eq!(spend["channels"]["pos"]["daily"]["used"], 4_000);
    assert_eq!(spend["channels"]["pos"]["daily"]["count"], 2);
    assert_eq!(spend["channels"]["pos"]["daily"]["remaining"], 6_000);

    // A retried wrong PIN counts once.
    let id = card_with(&app, "virtual").await;
    app.set_pin(&id, "4821").await;
    let (wrong, key) = pin_block(&app, &id, "1111").await;
    let mut b = body(&id, 100);
    b["pin_block"] = json!(wrong);
    b["format"] = json!("ISO-4");
    b["key_id"] = json!(key);
    let first = app.post("/v1/authorizations", b.clone()).await;
    let again = app.post("/v1/authorizations", b).await;
    assert_eq!((first.status.as_u16(), again.status.as_u16()), (201, 200));
    assert_eq!(again.body, first.body);
    assert_eq!(app.verify(&id, "2222").await.ok()["remaining_attempts"], 1);
}

/// Runs the futures together on this task.
async fn join_all<F: std::future::Future>(fs: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = fs.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, f) in pinned.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    results.into_iter().map(|r| r.unwrap()).collect()
}

/// Concurrent authorizations on one server never overspend.
#[tokio::test]
async fn concurrent_authorizations_never_overspend() {
    let app = spawn_app().await;
    let id = card_with(&app, "virtual").await;
    set_limits(
        &app,
        &id,
        json!({"enabled": true, "per_transaction": null, "daily": 10_000, "monthly": null}),
    )
    .await;
    let answers = join_all(
        (0..30)
            .map(|_| app.post("/v1/authorizations", body(&id, 3_000)))
            .collect(),
    )
    .await;
    let approved = answers.iter().filter(|r| r.body["status"] == "APPROVED").count();
    assert_eq!(approved, 3);
    assert!(answers
        .iter()
        .filter(|r| r.body["status"] == "DECLINED")
        .all(|r| r.body["decline_reason"] == "LIMIT_DAILY"));
}

/// Approve, capture part, reverse the rest, refund: amounts, spend, events
/// and audit entries add up.
#[tokio::test]
async fn a_full_story_adds_up() {
    let app = spawn_app().await;
    let id = card_with(&app, "virtual").await;
    set_limits(
        &app,
        &id,
        json!({"enabled": true, "per_transaction": null, "daily": 10_000, "monthly": 50_000}),
    )
    .await;
    let a = authorize(&app, body(&id, 5_000)).await;
    let auth = a["id"].as_str().unwrap().to_owned();
    assert_eq!(a["status"], "APPROVED");
    assert!(a["expires_at"].is_string());

    let c = app
        .post(
            &format!("/v1/authorizations/{auth}/capture"),
            json!({"amount": 2_000, "network_reference": "cap-1"}),
        )
        .await
        .ok();
    assert_eq!(
        (c["pending_amount"].clone(), c["captured_amount"].clone()),
        (json!(3_000), json!(2_000))
    );
    // A retried capture answers without capturing again.
    let again = app
        .post(
            &format!("/v1/authorizations/{auth}/capture"),
            json!({"amount": 2_000, "network_reference": "cap-1"}),
        )
        .await
        .ok();
    assert_eq!(again["captured_amount"], 2_000);
    app.post(
        &format!("/v1/authorizations/{auth}/capture"),
        json!({"amount": 500, "network_reference": "cap-2"}),
    )
    .await
    .ok();
    // More than is held: 409, nothing changed.
    app.post(
        &format!("/v1/authorizations/{auth}/capture"),
        json!({"amount": 2_501, "network_reference": "cap-3"}),
    )
    .await
    .expect(409, "amount_exceeds_pending");
    let r = app
        .post(&format!("/v1/authorizations/{auth}/reverse"), json!({}))
        .await
        .ok();
    assert_eq!(r["status"], "CLOSED");
    assert_eq!(
        (
            r["approved_amount"].clone(),
            r["pending_amount"].clone(),
            r["captured_amount"].clone(),
            r["reversed_amount"].clone()
        ),
        (json!(5_000), json!(0), json!(2_500), json!(2_500))
    );
    app.post(&format!("/v1/authorizations/{auth}/reverse"), json!({}))
        .await
        .expect(409, "authorization_closed");
    let refund = app
        .post(
            &format!("/v1/cards/{id}/refunds"),
            json!({"amount": 1_000, "currency": "EUR", "merchant": merchant(), "network_reference": "refund-1"}),
        )
        .await;
    assert_eq!(refund.status, 201, "{}", refund.text);

    // Totals: what was captured still counts; the reversal gave room back; the refund gives none.
    let spend = app.get(&format!("/v1/cards/{id}/spend")).await.ok();
    let day = &spend["channels"]["pos"]["daily"];
    assert_eq!(
        (day["used"].clone(), day["count"].clone(), day["remaining"].clone()),
        (json!(2_500), json!(1), json!(7_500))
    );
    assert_eq!(spend["channels"]["pos"]["monthly"]["used"], 2_500);

    let txns = app.get(&format!("/v1/cards/{id}/transactions")).await.ok();
    let kinds: Vec<(String, u64)> = txns["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["type"].as_str().unwrap().to_owned(), t["amount"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("refund".to_owned(), 1_000),
            ("capture".into(), 500),
            ("capture".into(), 2_000)
        ]
    );
    let got = app.get(&format!("/v1/authorizations/{auth}")).await.ok();
    assert_eq!(got, r);
    let list = app
        .get(&format!("/v1/cards/{id}/authorizations?status=CLOSED"))
        .await
        .ok();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.get(&format!("/v1/cards/{id}/authorizations?status=APPROVED"))
            .await
            .ok()["data"],
        json!([])
    );

    // One event and one audit entry per movement.
    let events: Vec<String> = app
        .card_events(&id)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .filter(|t| t.starts_with("authorization.") || t.starts_with("transaction."))
        .collect();
    assert_eq!(
        events,
        [
            "authorization.approved",
            "transaction.captured",
            "transaction.captured",
            "authorization.reversed",
            "transaction.refunded"
        ]
    );
    let audit: Vec<String> = app
        .audit(&id)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .filter(|t| t.starts_with("authorization.") || t.starts_with("transaction."))
        .collect();
    assert_eq!(
        audit,
        [
            "transaction.refunded",
            "authorization.reversed",
            "transaction.captured",
            "transaction.captured",
            "authorization.approved"
        ]
    );
    // The reversed event carries what it released, and the captures add up to what was captured.
    let all = app.card_events(&id).await;
    let captured: u64 = all
        .iter()
        .filter(|e| e["type"] == "transaction.captured")
        .map(|e| e["data"]["transaction"]["amount"].as_u64().unwrap())
        .sum();
    let released: u64 = all
        .iter()
        .filter(|e| e["type"] == "authorization.reversed")
        .map(|e| e["data"]["amount"].as_u64().unwrap())
        .sum();
    assert_eq!(captured + released, 5_000);
}

/// The expiry task releases what is held once, however often it runs.
#[tokio::test]
async fn expiry_releases_holds_exactly_once() {
    let app = spawn_app().await;
    let id = card_with(&app, "virtual").await;
    set_limits(
        &app,
        &id,
        json!({"enabled": true, "per_transaction": null, "daily": 10_000, "monthly": null}),
    )
    .await;
    let a = authorize(&app, body(&id, 4_000)).await;
    let auth = a["id"].as_str().unwrap().to_owned();
    app.post(
        &format!("/v1/authorizations/{auth}/capture"),
        json!({"amount": 1_000, "network_reference": "c-1"}),
    )
    .await
    .ok();
    let svc = app.service();
    let later = svc.now() + chrono::Duration::days(8);
    let (x, y) = tokio::join!(
        svc.expire_authorizations(later, 100),
        svc.expire_authorizations(later, 100)
    );
    assert_eq!(x.unwrap() + y.unwrap(), 1, "exactly once");
    assert_eq!(svc.expire_authorizations(later, 100).await.unwrap(), 0);
    let got = app.get(&format!("/v1/authorizations/{auth}")).await.ok();
    assert_eq!(
        (
            got["status"].clone(),
            got["pending_amount"].clone(),
            got["reversed_amount"].clone()
        ),
        (json!("CLOSED"), json!(0), json!(3_000))
    );
    let spend = app.get(&format!("/v1/cards/{id}/spend")).await.ok();
    assert_eq!(spend["channels"]["pos"]["daily"]["used"], 1_000);
    let expired: Vec<Value> = app
        .card_events(&id)
        .await
        .into_iter()
        .filter(|e| e["type"] == "authorization.expired")
        .collect();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["data"]["amount"], 3_000);
    // Nothing held any more: a reversal is refused, nothing changes.
    let b = authorize(&app, body(&id, 100)).await;
    let bid = b["id"].as_str().unwrap().to_owned();
    svc.expire_authorizations(later, 100).await.unwrap();
    app.post(&format!("/v1/authorizations/{bid}/reverse"), json!({}))
        .await
        .expect(409, "authorization_expired");
    app.post(
        &format!("/v1/authorizations/{bid}/capture"),
        json!({"amount": 1, "network_reference": "c-2"}),
    )
    .await
    .expect(409, "authorization_expired");
}

/// Controls: the program's defaults apply until the card has its own.
#[tokio::test]
async fn controls_default_to_the_program_and_a_card_overrides_them() {
    let app = spawn_app().await;
    let tenant = app.tenant_id.parse().unwrap();
    app.service()
        .update_tenant_settings(tenant, |s| {
            s.authorizations.default_controls.blocked_countries = vec!["PT".into()];
        })
        .await
        .unwrap();
    let id = card_with(&app, "virtual").await;
    let c = app.get(&format!("/v1/cards/{id}/controls")).await.ok();
    assert_eq!(
        (c["source"].clone(), c["blocked_countries"].clone()),
        (json!("program"), json!(["PT"]))
    );
    assert_eq!(
        authorize(&app, body(&id, 1)).await["decline_reason"],
        "COUNTRY_NOT_ALLOWED"
    );
    let c = app
        .put(&format!("/v1/cards/{id}/controls"), json!({"allowed_mccs": ["5411", "5812"], "blocked_mccs": [], "allowed_countries": null, "blocked_countries": []}))
        .await
        .ok();
    assert_eq!(c["source"], "card");
    let changed: Vec<Value> = app
        .card_events(&id)
        .await
        .into_iter()
        .filter(|e| e["type"] == "card.controls_updated")
        .collect();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["data"]["controls"]["allowed_mccs"], json!(["5411", "5812"]));
    assert!(app
        .audit(&id)
        .await
        .iter()
        .any(|e| e["type"] == "card.controls_updated"));
    assert_eq!(authorize(&app, body(&id, 1)).await["status"], "APPROVED");
    let mut other = body(&id, 1);
    other["merchant"]["mcc"] = json!("7995");
    assert_eq!(authorize(&app, other).await["decline_reason"], "MCC_NOT_ALLOWED");
    app.put(&format!("/v1/cards/{id}/controls"), json!({"blocked_mccs": ["54111"]}))
        .await
        .expect(400, "validation_error");
}

/// Bad input: 400 naming the field, never echoing a secret, changing nothing.
#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let id = card_with(&app, "virtual").await;
    let pan = app.pan(&id).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"amount": 0}), "amount"),
        (json!({"amount": -5}), "amount"),
        (json!({"amount": 1_000_000_000_001_i64}), "amount"),
        (json!({"currency": "eur"}), "currency"),
        (json!({"channel": "telepathy"}), "channel"),
        (json!({"merchant": {"mcc": "54", "country": "PT"}}), "merchant.mcc"),
        (json!({"cvv2": "12a4"}), "cvv2"),
        (json!({"expiry": "13/29"}), "expiry"),
        (json!({"pan": pan.clone()}), "card_id"),
        (json!({"network_reference": ""}), "network_reference"),
        (json!({"pin_block": "ZZZZ9F3A", "format": 4}), "pin_block"),
        (json!({"pin_block": "0011223344556677", "format": 1}), "format"),
    ];
    for (change, field) in cases {
        let mut b = body(&id, 100);
        for (k, v) in change.as_object().unwrap() {
            b[k] = v.clone();
        }
        let r = app.post("/v1/authorizations", b).await;
        assert_eq!(r.status, 400, "{field}: {}", r.text);
        let fields: Vec<&str> = r.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{field}: {}", r.text);
        assert!(
            !r.text.contains(&pan) && !r.text.contains("12a4") && !r.text.contains("ZZZZ9F3A"),
            "{}",
            r.text
        );
    }
    // Neither card_id nor pan; a PAN of the wrong type is not echoed.
    let mut b = body(&id, 100);
    b.as_object_mut().unwrap().remove("card_id");
    app.post("/v1/authorizations", b.clone())
        .await
        .expect(400, "validation_error");
    b["pan"] = json!(4242424242424242_u64);
    let r = app.post("/v1/authorizations", b).await;
    assert_eq!(r.status, 400);
    assert!(!r.text.contains("4242424242424242"), "{}", r.text);
    app.raw(
        reqwest::Method::POST,
        "/v1/authorizations",
        Some(&app.key),
        Some(b"{not json".to_vec()),
        Some("application/json"),
    )
    .await
    .expect(400, "malformed_json");
    // Nothing was written.
    assert_eq!(
        app.get(&format!("/v1/cards/{id}/authorizations")).await.ok()["data"],
        json!([])
    );
    // A declined authorization is not captured.
    let mut locked = body(&id, 100);
    app.post(&format!("/v1/cards/{id}/lock"), json!({})).await.ok();
    locked["network_reference"] = json!(reference());
    let d = authorize(&app, locked).await;
    let did = d["id"].as_str().unwrap();
    app.post(
        &format!("/v1/authorizations/{did}/capture"),
        json!({"amount": 1, "network_reference": "x"}),
    )
    .await
    .expect(409, "authorization_declined");
    app.post(&format!("/v1/authorizations/{did}/reverse"), json!({}))
        .await
        .expect(409, "authorization_declined");
    assert_eq!(
        app.get(&format!("/v1/cards/{id}/transactions")).await.ok()["data"],
        json!([])
    );
}

/// On PostgreSQL, two nodes (two services, two pools) expiring the same
/// holds at once release each exactly once, and a full story through both
/// nodes adds up.
#[tokio::test]
async fn on_postgres_two_nodes_expire_each_hold_once() {
    let dir = tempfile::tempdir().unwrap();
    let schema = format!("cc_test_{}", uuid::Uuid::now_v7().simple());
    let Some(args) = crate::webhooks::pg_node_args(dir.path(), &schema) else {
        return;
    };
    let bind = || async { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap() };
    let node1 = cardcore::Server::start(&args, Some(bind().await)).await.unwrap();
    let node2 = cardcore::Server::start(&args, Some(bind().await)).await.unwrap();
    let (tenant, key) = node1.service.create_tenant("pg-money").await.unwrap();
    let app = TestApp {
        base: format!("http://{}", node1.addr),
        client: crate::helpers::client(),
        key: key.secret.to_string(),
        tenant_id: tenant.id.to_string(),
        dir,
        server: None,
    };
    let id = app.card("virtual").await["id"].as_str().unwrap().to_owned();
    set_limits(
        &app,
        &id,
        json!({"enabled": true, "per_transaction": null, "daily": 10_000, "monthly": null}),
    )
    .await;
    let mut auths = Vec::new();
    for amount in [1_000, 2_000, 3_000] {
        auths.push(
            authorize(&app, body(&id, amount)).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    app.post(
        &format!("/v1/authorizations/{}/capture", auths[0]),
        json!({"amount": 1_000, "network_reference": "pg-c"}),
    )
    .await
    .ok();
    app.post(
        &format!("/v1/authorizations/{}/reverse", auths[1]),
        json!({"amount": 500}),
    )
    .await
    .ok();
    let later = node1.service.now() + chrono::Duration::days(8);
    let (x, y) = tokio::join!(
        node1.service.expire_authorizations(later, 100),
        node2.service.expire_authorizations(later, 100)
    );
    assert_eq!(x.unwrap() + y.unwrap(), 2, "the two holds still open, each once");
    let spend = app.get(&format!("/v1/cards/{id}/spend")).await.ok();
    assert_eq!(spend["channels"]["pos"]["daily"]["used"], 1_000);
    assert_eq!(spend["channels"]["pos"]["daily"]["count"], 1);
    let a1 = app.get(&format!("/v1/authorizations/{}", auths[1])).await.ok();
    assert_eq!(
        (a1["status"].clone(), a1["reversed_amount"].clone()),
        (json!("EXPIRED"), json!(2_000))
    );
    node1.stop().await.unwrap();
    node2.stop().await.unwrap();
    let _ = std::process::Command::new("psql")
        .args([
            &crate::webhooks::pg_url(),
            "-qc",
            &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}
