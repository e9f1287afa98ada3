//! The seeds' examples as written (`shared/seeds/`, copied into
//! `fixtures/seeds/`): each request body is sent verbatim, with only ids,
//! keys (OTP and trace number) and the base URL substituted, and each answer
//! is compared with the seed's response field by field.

use cardcore_domain::pin_policy::PinRules;
use cardcore_domain::Expiry;
use cardcore_http::dialects::m2p::settings::M2pRequired;
use reqwest::Method;
use serde_json::{json, Value};

use crate::dialect_cross::{m2p, m2p_login, p100, qi, M2p};
use crate::helpers::{spawn_app, spawn_app_with, Resp, TestApp};

/// A fixture copied from a seed page.
fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/api/fixtures/seeds/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Replaces every string equal to `from` by `to`, anywhere in `v`.
fn substitute(v: &mut Value, from: &str, to: &str) {
    match v {
        Value::String(s) if s == from => *s = to.to_owned(),
        Value::Array(items) => items.iter_mut().for_each(|i| substitute(i, from, to)),
        Value::Object(map) => map.values_mut().for_each(|i| substitute(i, from, to)),
        _ => {}
    }
}

/// The answer has exactly the seed's fields; each named in `same` has the
/// seed's value, every other the seed's JSON type (or null where `nullable`).
#[track_caller]
fn same_shape(got: &Value, seed: &Value, same: &[&str], nullable: &[&str]) {
    let (Some(got), Some(seed)) = (got.as_object(), seed.as_object()) else {
        panic!("not objects: {got} / {seed}");
    };
    let mut got_keys: Vec<&String> = got.keys().collect();
    let mut seed_keys: Vec<&String> = seed.keys().collect();
    got_keys.sort();
    seed_keys.sort();
    assert_eq!(got_keys, seed_keys, "the seed's fields, no more, no fewer");
    for (k, want) in seed {
        let have = &got[k];
        if same.contains(&k.as_str()) {
            assert_eq!(have, want, "{k}");
        } else if !(have.is_null() && nullable.contains(&k.as_str())) {
            assert_eq!(json_type(have), json_type(want), "{k}: {have} vs the seed's {want}");
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Sets the tenant's weak-PIN rules, as `cardcore tenant update --pin-rules` does.
async fn pin_rules(app: &TestApp, rules: &str) {
    let rules = PinRules::parse(rules).unwrap();
    app.service()
        .update_tenant_settings(app.tenant_id.parse().unwrap(), |s| s.pin_rules = rules)
        .await
        .unwrap();
}

#[tokio::test]
async fn p100_update_card_pin_with_the_seeds_1234() {
    let app = spawn_app().await;
    let seed = fixture("p100_update_card_pin.request.json");
    // The seed's user, as the tenant created it.
    let holder = app.create_cardholder(seed["externalUserId"].as_str().unwrap()).await;
    let card = app
        .create_card_as(&app.key.clone(), holder["id"].as_str().unwrap(), "virtual")
        .await;
    let card_id = card["id"].as_str().unwrap();
    let mut body = seed.clone();
    substitute(&mut body, seed["cardId"].as_str().unwrap(), card_id);
    let key = app.key.clone();

    // The default rules refuse 1234 (a run), and say so.
    let r = p100(&app, &key, Method::PATCH, "/v1/card/pin", Some(body.clone())).await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text);
    assert_eq!(r.body["errorCode"], "P403");
    assert!(
        r.body["errorMessage"].as_str().unwrap().contains("consecutive digits"),
        "{}",
        r.text
    );
    assert_eq!(
        app.get(&format!("/v1/cards/{card_id}")).await.ok()["pin_status"],
        "NOT_SET"
    );

    // A tenant whose rules allow runs: the seed's example as written.
    pin_rules(&app, "repeated,birth_date,common,same_as_current").await;
    let r = p100(&app, &key, Method::PATCH, "/v1/card/pin", Some(body)).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(r.body, fixture("p100_update_card_pin.200.json"));
    assert_eq!(app.verify(card_id, "1234").await.ok()["valid"], true);
}

#[tokio::test]
async fn qitech_change_password_as_the_seed() {
    let app = spawn_app().await;
    let seed_answer = fixture("qitech_change_password.200.json");
    let holder = app.create_cardholder("qi-seed").await;
    // The seed's card name and printed name; only plastic cards have a password.
    let card = app
        .post(
            "/v1/cards",
            json!({
                "cardholder_id": holder["id"],
                "type": "physical",
                "card_name": seed_answer["card_name"],
                "printed_name": seed_answer["printed_name"],
            }),
        )
        .await
        .expect(201, "");
    let id = card["id"].as_str().unwrap();
    let code = app.activation_code(id).await;
    app.post(&format!("/v1/cards/{id}/activate"), json!({"activation_code": code}))
        .await
        .ok();
    let wallet = card["account_id"].as_str().unwrap();

    let r = qi(
        &app,
        &app.key.clone(),
        &format!("/wallet/{wallet}/card/{id}/password"),
        fixture("qitech_change_password.request.json"),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    // The seed's example answers a virtual card with 72 hours; a plastic
    // card's CVV2 is printed, so its interval is null.
    same_shape(
        &r.body,
        &seed_answer,
        &["status", "card_name", "printed_name", "brand"],
        &["cvv_rotation_interval_hours"],
    );
    assert_eq!(r.body["type"], "plastic");
    assert_eq!(r.body["cvv_rotation_interval_hours"], Value::Null);
    assert_eq!(r.body["card_key"], id);
    assert_eq!(r.body["account_key"], wallet);
    assert_eq!(app.verify(id, "2143").await.ok()["valid"], true);

    // A virtual card shows the program's interval and, unnamed, its type's name.
    let virtual_card = app.active_card("virtual").await;
    let vid = virtual_card["id"].as_str().unwrap();
    assert_eq!(virtual_card["card_name"], "virtual");
    let r = qi(
        &app,
        &app.key.clone(),
        &format!("/wallet/{}/card/{vid}", virtual_card["account_id"].as_str().unwrap()),
        json!({"status": "active"}),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    same_shape(
        &r.body,
        &seed_answer,
        &["status", "type", "brand", "cvv_rotation_interval_hours"],
        &[],
    );
    assert_eq!(r.body["card_name"], "virtual");

    // The seed's error shape: a refused password lands as CARD000024.
    let r = qi(
        &app,
        &app.key.clone(),
        &format!("/wallet/{wallet}/card/{id}/password"),
        json!({"pin": "1111"}),
    )
    .await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text);
    same_shape(&r.body, &fixture("qitech_change_password.4xx.json"), &["code"], &[]);
}

#[tokio::test]
async fn qitech_cvv_rotation_interval_is_the_programs_setting() {
    let app = spawn_app_with(&["--cvv-rotation-interval-hours", "24"]).await;
    let card = app.active_card("virtual").await;
    let path = format!(
        "/wallet/{}/card/{}",
        card["account_id"].as_str().unwrap(),
        card["id"].as_str().unwrap()
    );
    let r = qi(&app, &app.key.clone(), &path, json!({"status": "active"})).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(r.body["cvv_rotation_interval_hours"], 24);

    // 0: the program's CVV does not rotate.
    let app = spawn_app_with(&["--cvv-rotation-interval-hours", "0"]).await;
    let card = app.active_card("virtual").await;
    let path = format!(
        "/wallet/{}/card/{}",
        card["account_id"].as_str().unwrap(),
        card["id"].as_str().unwrap()
    );
    let r = qi(&app, &app.key.clone(), &path, json!({"status": "active"})).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(r.body["cvv_rotation_interval_hours"], Value::Null);
}

/// The seed's M2P cardholder and card: entityId 621643170420004195030925,
/// phone 91 9600389470 (or `phone`), kit 20004195, expiry 10/27.
async fn m2p_seed_card(app: &TestApp, phone: &str) -> String {
    let seed = fixture("m2p_update_card_pin.request.json");
    let holder = app
        .post(
            "/v1/cardholders",
            json!({
                "external_id": seed["entityId"],
                "name": "Seed Holder",
                "phone": {"country_code": "91", "number": phone},
            }),
        )
        .await
        .expect(201, "");
    let card = app
        .post(
            "/v1/cards",
            json!({"cardholder_id": holder["id"], "type": "virtual", "kit_number": seed["kit"]}),
        )
        .await
        .expect(201, "");
    assert_eq!(card["kit_number"], "20004195");
    let id = card["id"].as_str().unwrap().to_owned();
    // No API sets a card's expiry (it is drawn at issue): give the card the
    // seed's in the database, as an imported card would have it.
    let expiry = Expiry::parse_mm_yy(seed["expiryDate"].as_str().unwrap()).unwrap();
    let db = rusqlite::Connection::open(app.db_path()).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    let n = db
        .execute(
            "UPDATE cards SET expiry_month = ?1, expiry_year = ?2 WHERE id = ?3",
            rusqlite::params![expiry.month(), expiry.year(), id],
        )
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok()["expiry"], "10/27");
    id
}

/// An OTP through M2P's `otp/generate` for the seed's card: (trace, code).
async fn m2p_otp(app: &TestApp, auth: &M2p, card_id: &str) -> (String, String) {
    let seed = fixture("m2p_update_card_pin.request.json");
    let r = m2p(
        app,
        auth,
        "otp/generate",
        json!({"mobileNumber": seed["mobile"]["value"], "entityId": seed["entityId"], "kitNo": seed["kit"]}),
    )
    .await
    .ok();
    let trace = r["result"]["traceNumber"].as_str().unwrap().to_owned();
    let event = app
        .card_events(card_id)
        .await
        .into_iter()
        .rev()
        .find(|e| e["type"] == "otp.created" && e["data"]["trace_number"] == trace.as_str())
        .expect("otp.created event");
    (trace, event["data"]["otp"].as_str().unwrap().to_owned())
}

/// The seed's update-PIN body with a real trace number and, when given, code.
fn m2p_body(trace: &str, code: Option<&str>) -> Value {
    let mut body = fixture("m2p_update_card_pin.request.json");
    substitute(&mut body, "09176cdf-b704-4ab1-94bd-b1b8fd5ac2d1", trace);
    if let Some(code) = code {
        substitute(&mut body, "123456", code);
    }
    body
}

#[tokio::test]
async fn m2p_update_card_pin_as_the_seed_then_validate_pin() {
    let app = spawn_app().await;
    let auth = m2p_login(&app, &app.tenant_id, &app.key.clone()).await;
    let id = m2p_seed_card(&app, "9600389470").await;
    // The seed's old PIN, 1212, is one of the most common PINs: the default
    // rules refuse it, so this tenant turns the common list off.
    app.put(&format!("/v1/cards/{id}/pin"), json!({"pin": "1212"}))
        .await
        .expect(422, "pin_too_weak");
    pin_rules(&app, "repeated,sequential,birth_date,same_as_current").await;
    app.set_pin(&id, "1212").await;

    // Validate PIN takes the same body and reads only oldPin (1212).
    let validate = m2p_body("unused", None);
    let r = m2p(&app, &auth, "cards/v2/validate-pin", validate.clone()).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(r.body, json!({"result": {"valid": true}, "pagination": null}));

    let (trace, code) = m2p_otp(&app, &auth, &id).await;
    let r = m2p(&app, &auth, "cards/update/pin", m2p_body(&trace, Some(&code))).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(r.body, fixture("m2p_update_card_pin.200.json"));
    assert_eq!(app.verify(&id, "4545").await.ok()["valid"], true);

    // The old PIN no longer validates (a wrong PIN counts, as everywhere).
    let r = m2p(&app, &auth, "cards/v2/validate-pin", validate).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(r.body, json!({"result": {"valid": false}, "pagination": null}));
    let card = app.get(&format!("/v1/cards/{id}")).await.ok();
    assert_eq!(card["pin_status"], "SET");
}

#[tokio::test]
async fn m2p_update_card_pin_invalid_contact_as_the_seed() {
    let app = spawn_app().await;
    let auth = m2p_login(&app, &app.tenant_id, &app.key.clone()).await;
    // The cardholder's phone is not the seed's 9600389470.
    let id = m2p_seed_card(&app, "9600389471").await;
    pin_rules(&app, "none").await;
    app.set_pin(&id, "1212").await;
    let before = app.audit(&id).await.len();
    let r = m2p(&app, &auth, "cards/update/pin", m2p_body("any-trace", None)).await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text);
    let seed = fixture("m2p_update_card_pin.400.json");
    let mut got = r.body.clone();
    // The seed's fieldErrors hold the mobile; ours name otpDetails'
    // mobileNumber as well (the same wrong contact, sent twice).
    let errors = got["fieldErrors"].as_array().unwrap().clone();
    assert_eq!(errors[0], seed["fieldErrors"][0], "{}", r.text);
    got["fieldErrors"] = json!([errors[0]]);
    same_shape(&got, &seed, &["type", "title", "status", "message", "fieldErrors"], &[]);
    assert_eq!(app.audit(&id).await.len(), before, "a refused request changes nothing");
    assert_eq!(app.verify(&id, "1212").await.ok()["valid"], true);
}

#[tokio::test]
async fn m2p_update_card_pin_locked_after_three_wrong_otps_as_the_seed() {
    let app = spawn_app().await;
    let auth = m2p_login(&app, &app.tenant_id, &app.key.clone()).await;
    let id = m2p_seed_card(&app, "9600389470").await;
    pin_rules(&app, "none").await;
    app.set_pin(&id, "1212").await;
    // The seed's OTP, 123456, as written: wrong for the code really sent
    // (drawn again in the one-in-a-million case it is right).
    let trace = loop {
        let (trace, code) = m2p_otp(&app, &auth, &id).await;
        if code != "123456" {
            break trace;
        }
    };
    let send = || m2p(&app, &auth, "cards/update/pin", m2p_body(&trace, None));
    for _ in 0..2 {
        let r: Resp = send().await;
        assert_eq!(r.status.as_u16(), 409, "{}", r.text);
        assert_eq!(r.body["businessCode"], "invalid.otp", "{}", r.text);
    }
    let seed = fixture("m2p_update_card_pin.409.json");
    for _ in 0..2 {
        // The third wrong OTP locks, and so does every call in the window.
        let r = send().await;
        assert_eq!(r.status.as_u16(), 409, "{}", r.text);
        same_shape(
            &r.body,
            &seed,
            &["type", "title", "status", "detail", "message", "businessCode"],
            &[],
        );
    }
    assert_eq!(app.verify(&id, "1212").await.ok()["valid"], true);
}

#[tokio::test]
async fn m2p_status_moves_as_the_seed_says() {
    let app = spawn_app().await;
    let auth = m2p_login(&app, &app.tenant_id, &app.key.clone()).await;
    let id = m2p_seed_card(&app, "9600389470").await;
    let seed = fixture("m2p_update_card_pin.request.json");
    let set = |status: &str| json!({"entityId": seed["entityId"], "kitNo": seed["kit"], "status": status});
    let message = |r: Resp| {
        assert_eq!(r.status.as_u16(), 200, "{}", r.text);
        assert_eq!(r.body["pagination"], Value::Null, "{}", r.text);
        r.body["result"]["message"].as_str().unwrap().to_owned()
    };
    let refused = |r: Resp| {
        assert_eq!(r.status.as_u16(), 409, "{}", r.text);
        assert_eq!(r.body["businessCode"], "PPCUST_032", "{}", r.text);
    };
    let status = || async { app.get(&format!("/v1/cards/{id}")).await.ok()["status"].clone() };

    // "A card must be LOCKED to be unlocked": an ACTIVE card is already unlocked.
    assert_eq!(
        message(m2p(&app, &auth, "cards/status", set("UNLOCKED")).await),
        "Card was already UNLOCKED"
    );
    assert_eq!(
        message(m2p(&app, &auth, "cards/status", set("LOCKED")).await),
        "Card LOCKED Successfully"
    );
    assert_eq!(
        message(m2p(&app, &auth, "cards/status", set("LOCKED")).await),
        "Card was already LOCKED"
    );
    // "A card must be ACTIVE to be locked or blocked."
    refused(m2p(&app, &auth, "cards/status", set("BLOCKED")).await);
    assert_eq!(status().await, "LOCKED");
    assert_eq!(
        message(m2p(&app, &auth, "cards/status", set("UNLOCKED")).await),
        "Card UNLOCKED Successfully"
    );
    assert_eq!(
        message(m2p(&app, &auth, "cards/status", set("BLOCKED")).await),
        "Card BLOCKED Successfully"
    );
    assert_eq!(
        message(m2p(&app, &auth, "cards/status", set("BLOCKED")).await),
        "Card was already BLOCKED"
    );
    // "BLOCKED cards cannot be recovered."
    refused(m2p(&app, &auth, "cards/status", set("UNLOCKED")).await);
    refused(m2p(&app, &auth, "cards/status", set("LOCKED")).await);
    assert_eq!(status().await, "BLOCKED");
    // The native API still blocks a LOCKED card: the rule is M2P's.
    let other = app.active_card("virtual").await;
    let oid = other["id"].as_str().unwrap();
    app.post(&format!("/v1/cards/{oid}/lock"), json!({})).await.ok();
    app.post(&format!("/v1/cards/{oid}/block"), json!({"reason_code": "LOST_CARD"}))
        .await
        .ok();
}

#[tokio::test]
async fn m2p_rule_takes_any_fields_and_required_fields_are_the_tenants() {
    let app = spawn_app().await;
    let auth = m2p_login(&app, &app.tenant_id, &app.key.clone()).await;
    let id = m2p_seed_card(&app, "9600389470").await;
    pin_rules(&app, "none").await;
    app.set_pin(&id, "1212").await;

    // A product's own rule fields are accepted; the known ones still checked.
    let (trace, code) = m2p_otp(&app, &auth, &id).await;
    let mut body = m2p_body(&trace, Some(&code));
    body["rule"]["dob"] = json!("1990-05-17");
    body["rule"]["pan"] = json!({"lastFour": "1234"});
    body["rule"]["expiryDate"] = json!("11/27");
    let r = m2p(&app, &auth, "cards/update/pin", body.clone()).await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text);
    assert_eq!(r.body["fieldErrors"][0]["field"], "rule.expiryDate", "{}", r.text);
    body["rule"]["expiryDate"] = json!("10/27");
    let r = m2p(&app, &auth, "cards/update/pin", body).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);

    // By default the seed's three fields are required.
    let (trace, code) = m2p_otp(&app, &auth, &id).await;
    let mut bare = m2p_body(&trace, Some(&code));
    for field in ["mobile", "expiryDate", "otpDetails"] {
        bare.as_object_mut().unwrap().remove(field);
    }
    bare["oldPin"] = json!("4545");
    bare["newPin"] = json!("7391");
    let r = m2p(&app, &auth, "cards/update/pin", bare.clone()).await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text);
    let fields: Vec<&str> = r.body["fieldErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["mobile", "expiryDate", "otpDetails"]);
    assert_eq!(r.body["fieldErrors"][0]["message"], "must not be null");

    // A tenant whose product requires none: the OTP comes from otp and rule.traceNumber.
    app.service()
        .update_tenant_settings(app.tenant_id.parse().unwrap(), |s| M2pRequired::NONE.store(s))
        .await
        .unwrap();
    let r = m2p(&app, &auth, "cards/update/pin", bare.clone()).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(app.verify(&id, "7391").await.ok()["valid"], true);
    // Without any OTP proof the change is still refused, naming otpDetails.
    let mut no_otp = bare;
    no_otp.as_object_mut().unwrap().remove("otp");
    no_otp.as_object_mut().unwrap().remove("rule");
    let r = m2p(&app, &auth, "cards/update/pin", no_otp).await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text);
    assert_eq!(r.body["fieldErrors"][0]["field"], "otpDetails", "{}", r.text);
}
