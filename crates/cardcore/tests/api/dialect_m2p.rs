//! The M2P dialect: the seed page (update card PIN with its two error
//! bodies), tokens, OTPs, set/validate PIN, card status, cards and
//! preferences, every error code, and the response shapes.

use cardcore_service::keyring::Purpose;
use reqwest::Method;
use serde_json::{json, Value};

use crate::dialect_cross::{
    corrupt_key_versions, hold_writer, m2p, m2p_login, owned_card, redact, send, Body, M2p, Owned,
};
use crate::helpers::{spawn_app, spawn_app_with, Resp, TestApp};

const LOCK_TITLE: &str = "Change/Pin is Locked for 10 minutes, due to invalid OTPs being entered in attempts 3";

/// An M2P business error: status and `businessCode`.
#[track_caller]
fn business(r: &Resp, status: u16, code: &str) -> Value {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    assert_eq!(r.body["businessCode"], code, "{}", r.text);
    assert_eq!(r.body["message"], "error.business", "{}", r.text);
    assert_eq!(
        r.body["type"],
        "https://www.m2pfintech.com/problem/problem-with-message"
    );
    assert_eq!(r.headers["content-type"], "application/problem+json");
    r.body.clone()
}

/// An M2P validation error: the `(field, message)` pairs, in order.
#[track_caller]
fn field_errors(r: &Resp, object: &str) -> Vec<(String, String)> {
    assert_eq!(r.status.as_u16(), 400, "{}", r.text);
    assert_eq!(r.body["message"], "error.validation", "{}", r.text);
    assert_eq!(r.body["title"], "Method argument not valid");
    r.body["fieldErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["objectName"], object, "{}", r.text);
            (
                e["field"].as_str().unwrap().to_owned(),
                e["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A plain HTTP error of M2P's (no business code): status and `message`.
#[track_caller]
fn http_error(r: &Resp, status: u16) -> Value {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    assert_eq!(r.body["message"], format!("error.http.{status}"), "{}", r.text);
    assert!(r.body.get("businessCode").is_none());
    r.body.clone()
}

async fn login(app: &TestApp) -> M2p {
    m2p_login(app, &app.tenant_id, &app.key.clone()).await
}

/// Generates an OTP through M2P and reads the code from the tenant's events.
async fn otp(app: &TestApp, auth: &M2p, c: &Owned) -> (String, String) {
    let r = m2p(
        app,
        auth,
        "otp/generate",
        json!({"mobileNumber": "9600389470", "entityId": c.external_id, "kitNo": c.kit(), "otpType": "S"}),
    )
    .await
    .ok();
    let trace = r["result"]["traceNumber"].as_str().unwrap().to_owned();
    let event = app
        .card_events(c.id())
        .await
        .into_iter()
        .rev()
        .find(|e| e["type"] == "otp.created" && e["data"]["trace_number"] == trace.as_str())
        .expect("otp.created event");
    (trace, event["data"]["otp"].as_str().unwrap().to_owned())
}

/// The seed's request body for card `c`, with its OTP and PINs.
fn update_body(c: &Owned, trace: &str, otp: &str, old: &str, new: &str) -> Value {
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
}

/// The seed's cardholder: entityId 621643170420004195030925, phone 91 9600389470.
async fn seed_card(app: &TestApp) -> Owned {
    let external_id = "621643170420004195030925".to_owned();
    let holder = app.create_cardholder(&external_id).await;
    let card = app
        .create_card_as(&app.key.clone(), holder["id"].as_str().unwrap(), "virtual")
        .await;
    Owned { external_id, card }
}

#[tokio::test]
async fn seed_004_update_card_pin() {
    let app = spawn_app().await;
    let auth = login(&app).await;
    let c = seed_card(&app).await;
    // The page's old PIN, 1212, is one of the most common PINs, which the
    // PIN policy never lets a card have; the card's current PIN is 4821.
    app.set_pin(c.id(), "4821").await;
    let (trace, code) = otp(&app, &auth, &c).await;

    // The page's example request: kit, expiry, OTP and trace number
    // replaced by real ones; newPin 4545 as on the page.
    let r = m2p(
        &app,
        &auth,
        "cards/update/pin",
        update_body(&c, &trace, &code, "4821", "4545"),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(
        r.body,
        json!({"result": {"message": "Card pin change Successfully"}, "pagination": null})
    );
    insta::assert_json_snapshot!("m2p_pin_changed", r.body);
    assert_eq!(app.verify(c.id(), "4545").await.ok()["valid"], true);
    let audit = app.audit(c.id()).await;
    assert_eq!(audit[0]["type"], "card.pin_changed");
    assert_eq!(audit[0]["actor"]["channel"], "m2p");
}

#[tokio::test]
async fn seed_004_invalid_contact() {
    let app = spawn_app().await;
    let auth = login(&app).await;
    let c = seed_card(&app).await;
    app.set_pin(c.id(), "4821").await;
    let (trace, code) = otp(&app, &auth, &c).await;
    let mut body = update_body(&c, &trace, &code, "4821", "4545");
    body["mobile"]["value"] = json!("9600389471");
    let r = m2p(&app, &auth, "cards/update/pin", body).await;
    assert_eq!(
        r.body,
        json!({
            "type": "https://www.m2pfintech.com/problem/constraint-violation",
            "title": "Method argument not valid",
            "status": 400,
            "message": "error.validation",
            "fieldErrors": [{"field": "mobile", "message": "Invalid contact", "objectName": "changeCardPin"}]
        })
    );
    assert_eq!(r.status.as_u16(), 400);
    insta::assert_json_snapshot!("m2p_invalid_contact", r.body);
    // The country code is part of the contact too.
    let mut body = update_body(&c, &trace, &code, "4821", "4545");
    body["mobile"]["countryCode"] = json!(351);
    assert_eq!(
        field_errors(&m2p(&app, &auth, "cards/update/pin", body).await, "changeCardPin"),
        [("mobile".to_owned(), "Invalid contact".to_owned())]
    );
    // Refused before the OTP was looked at: it still works.
    let r = m2p(
        &app,
        &auth,
        "cards/update/pin",
        update_body(&c, &trace, &code, "4821", "4545"),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
}

#[tokio::test]
async fn seed_004_three_wrong_otps_lock_pin_change_for_ten_minutes() {
    let app = spawn_app().await;
    let auth = login(&app).await;
    let c = seed_card(&app).await;
    app.set_pin(c.id(), "4821").await;
    let (trace, code) = otp(&app, &auth, &c).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };

    for remaining in [2, 1] {
        let r = m2p(
            &app,
            &auth,
            "cards/update/pin",
            update_body(&c, &trace, wrong, "4821", "4545"),
        )
        .await;
        let b = business(&r, 409, "invalid.otp");
        assert_eq!(
            b["detail"],
            format!("the OTP is not correct ({remaining} attempts left)")
        );
        assert!(!r.text.contains(wrong) && !r.text.contains(&code));
    }
    let r = m2p(
        &app,
        &auth,
        "cards/update/pin",
        update_body(&c, &trace, wrong, "4821", "4545"),
    )
    .await;
    let locked = json!({
        "type": "https://www.m2pfintech.com/problem/problem-with-message",
        "title": LOCK_TITLE,
        "status": 409,
        "detail": LOCK_TITLE,
        "message": "error.business",
        "businessCode": "PPCUST_042"
    });
    assert_eq!(r.status.as_u16(), 409, "{}", r.text);
    assert_eq!(r.body, locked);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((590..=600).contains(&retry), "{retry}");
    insta::assert_json_snapshot!("m2p_pin_change_locked", r.body);

    // Every call in those ten minutes gets the same 409, a right OTP too,
    // a new OTP cannot be had, and set-pin with an OTP is locked as well.
    let r = m2p(
        &app,
        &auth,
        "cards/update/pin",
        update_body(&c, &trace, &code, "4821", "4545"),
    )
    .await;
    assert_eq!(r.body, locked);
    let r = m2p(
        &app,
        &auth,
        "otp/generate",
        json!({"mobileNumber": "9600389470", "entityId": c.external_id, "kitNo": c.kit()}),
    )
    .await;
    assert_eq!(r.body, locked);
    let mut set = update_body(&c, &trace, &code, "4821", "4545");
    set.as_object_mut().unwrap().remove("oldPin");
    assert_eq!(m2p(&app, &auth, "cards/v2/set-pin", set).await.body, locked);
    assert_eq!(app.verify(c.id(), "4821").await.ok()["valid"], true);
}

/// base64url without padding, as JWTs use (the test signs its own tokens).
fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn b64url_decode(s: &str) -> Vec<u8> {
    const A: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let vals: Vec<u32> = s.chars().map(|c| A.find(c).unwrap() as u32).collect();
    let mut out = Vec::new();
    for chunk in vals.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, v)| n | (v << (18 - 6 * i)));
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// A token signed with the server's own JWT key, with chosen claims.
async fn signed(app: &TestApp, claims: Value) -> String {
    let (version, key) = app.service().keys().mac_key(Purpose::Jwt, None).await.unwrap();
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": format!("jwt-v{version}")});
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    format!("{input}.{}", b64url(&key.hmac(input.as_bytes())))
}

#[tokio::test]
async fn tokens_expire_in_an_hour_and_every_call_needs_one() {
    let app = spawn_app().await;
    let key = app.key.clone();
    let r = send(
        &app,
        Method::POST,
        "/m2p/auth/token",
        &[],
        Some(Body::Json(
            json!({"clientId": app.tenant_id, "clientSecret": key, "grantType": "client_credentials"}),
        )),
    )
    .await
    .ok();
    assert_eq!(r["token_type"], "Bearer");
    assert_eq!(r["expires_in"], 3600);
    insta::assert_json_snapshot!("m2p_token", redact(&r));
    let token = r["access_token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&b64url_decode(parts[0])).unwrap();
    assert_eq!(header["alg"], "HS256");
    let claims: Value = serde_json::from_slice(&b64url_decode(parts[1])).unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
    assert_eq!(claims["tid"], app.tenant_id.as_str());
    assert_eq!(claims["rev"], true);
    assert!(!token.contains(&key[3..]), "the API key is not in the token");

    // The tenant's name works as clientId and as X-TENANT-ID.
    let by_name = m2p_login(&app, "tenant-a", &key).await;
    let c = owned_card(&app, "virtual").await;
    let fetch = json!({"entityId": c.external_id});
    let ok = m2p(&app, &by_name, "customers/fetch-all-cards", fetch.clone()).await;
    assert_eq!(ok.status.as_u16(), 200, "{}", ok.text);

    let path = "/m2p/prepaid/customer/v1/customers/fetch-all-cards";
    let bearer = format!("Bearer {token}");
    let now = chrono::Utc::now().timestamp();
    // A token names a live key of its tenant (it is refused once that key is revoked).
    let sub = claims["sub"].clone();
    let claims_for = |iat: i64, exp: i64| {
        json!({"iss": "cardcore", "aud": "m2p", "sub": sub, "tid": app.tenant_id,
               "rev": true, "iat": iat, "exp": exp})
    };
    let expired = format!("Bearer {}", signed(&app, claims_for(now - 7200, now - 1)).await);
    let valid_own = format!("Bearer {}", signed(&app, claims_for(now, now + 60)).await);
    let mut no_such_key = claims_for(now, now + 60);
    no_such_key["sub"] = json!(uuid::Uuid::now_v7());
    let no_such_key = format!("Bearer {}", signed(&app, no_such_key).await);
    let mut forged: Vec<&str> = token.split('.').collect();
    let other_claims = b64url(claims_for(now, now + 86_400).to_string().as_bytes());
    forged[1] = &other_claims;
    let forged = format!("Bearer {}", forged.join("."));
    let none_alg = format!(
        "Bearer {}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT","kid":"jwt-v1"}"#),
        other_claims
    );
    let tenant = app.tenant_id.as_str();
    let nil = uuid::Uuid::nil().to_string();
    let key_as_token = format!("Bearer {key}");
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("X-TENANT-ID", tenant)],
        vec![("Authorization", &bearer)],
        vec![("Authorization", &bearer), ("X-TENANT-ID", "tenant-b")],
        vec![("Authorization", &bearer), ("X-TENANT-ID", &nil)],
        vec![("Authorization", "Bearer not.a.token"), ("X-TENANT-ID", tenant)],
        vec![("Authorization", &forged), ("X-TENANT-ID", tenant)],
        vec![("Authorization", &none_alg), ("X-TENANT-ID", tenant)],
        vec![("Authorization", &expired), ("X-TENANT-ID", tenant)],
        // Signed right, but for a key that does not exist (or was revoked).
        vec![("Authorization", &no_such_key), ("X-TENANT-ID", tenant)],
        // An API key is not a token.
        vec![("Authorization", &key_as_token), ("X-TENANT-ID", tenant)],
    ];
    for headers in cases {
        let r = send(&app, Method::POST, path, &headers, Some(Body::Json(fetch.clone()))).await;
        let b = http_error(&r, 401);
        assert_eq!(b["title"], "Unauthorized");
    }
    let r = send(
        &app,
        Method::POST,
        path,
        &[("Authorization", &expired), ("X-TENANT-ID", tenant)],
        Some(Body::Json(fetch.clone())),
    )
    .await;
    insta::assert_json_snapshot!("m2p_unauthorized", r.body);
    // The same claims, unexpired, pass: it was the expiry that failed.
    let r = send(
        &app,
        Method::POST,
        path,
        &[("Authorization", &valid_own), ("X-TENANT-ID", tenant)],
        Some(Body::Json(fetch)),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);

    // Bad client credentials and a wrong grant type.
    for body in [
        json!({"clientId": app.tenant_id, "clientSecret": "cc_wrong", "grantType": "client_credentials"}),
        json!({"clientId": uuid::Uuid::nil(), "clientSecret": key, "grantType": "client_credentials"}),
    ] {
        let r = send(&app, Method::POST, "/m2p/auth/token", &[], Some(Body::Json(body))).await;
        http_error(&r, 401);
    }
    let r = send(
        &app,
        Method::POST,
        "/m2p/auth/token",
        &[],
        Some(Body::Json(
            json!({"clientId": app.tenant_id, "clientSecret": key, "grantType": "password"}),
        )),
    )
    .await;
    assert_eq!(
        field_errors(&r, "authToken"),
        [("grantType".to_owned(), "must be client_credentials".to_owned())]
    );
}

#[tokio::test]
async fn otp_generate_and_its_errors() {
    let app = spawn_app().await;
    let auth = login(&app).await;
    let c = owned_card(&app, "virtual").await;
    let body = |mobile: &str| json!({"mobileNumber": mobile, "entityId": c.external_id, "kitNo": c.kit()});
    let r = m2p(&app, &auth, "otp/generate", body("9600389470")).await.ok();
    assert_eq!(r["result"]["status"], true);
    assert!(r["pagination"].is_null());
    insta::assert_json_snapshot!("m2p_otp_generated", redact(&r));
    let event = app
        .card_events(c.id())
        .await
        .into_iter()
        .rev()
        .find(|e| e["type"] == "otp.created")
        .unwrap();
    assert_eq!(event["data"]["trace_number"], r["result"]["traceNumber"]);
    assert!(!serde_json::to_string(&r)
        .unwrap()
        .contains(event["data"]["otp"].as_str().unwrap()));

    let r = m2p(&app, &auth, "otp/generate", body("9600389471")).await;
    assert_eq!(
        field_errors(&r, "generateOtp"),
        [("mobileNumber".to_owned(), "Invalid contact".to_owned())]
    );
    let mut b = body("9600389470");
    b["otpType"] = json!("X");
    b["countryCode"] = json!(91);
    let r = m2p(&app, &auth, "otp/generate", b).await;
    assert_eq!(field_errors(&r, "generateOtp")[0].0, "otpType");
    let mut b = body("9600389470");
    b["kitNo"] = json!("0000000000");
    business(&m2p(&app, &auth, "otp/generate", b).await, 409, "card.not.found");
    let mut b = body("9600389470");
    b["entityId"] = json!("nobody");
    let r = m2p(&app, &auth, "otp/generate", b).await;
    insta::assert_json_snapshot!("m2p_card_not_found", business(&r, 409, "card.not.found"));

    // Five OTPs per 15 minutes: the sixth is refused with Retry-After.
    for _ in 0..4 {
        m2p(&app, &auth, "otp/generate", body("9600389470")).await.ok();
    }
    let r = m2p(&app, &auth, "otp/generate", body("9600389470")).await;
    // M2P: "Exceeding limits returns a 409 error".
    let mut b = business(&r, 409, "otp.rate.limited");
    assert!(r.headers.contains_key("retry-after"));
    assert!(b["detail"]
        .as_str()
        .unwrap()
        .starts_with("too many OTPs requested for this card"));
    b["detail"] = json!("[detail]");
    insta::assert_json_snapshot!("m2p_otp_rate_limited", b);
}

#[tokio::test]
async fn update_pin_checks_every_field() {
    let app = spawn_app().await;
    let auth = login(&app).await;
    let c = owned_card(&app, "virtual").await;
    let update = |b: Value| m2p(&app, &auth, "cards/update/pin", b);

    // No PIN yet.
    let (trace, code) = otp(&app, &auth, &c).await;
    business(
        &update(update_body(&c, &trace, &code, "4821", "4545")).await,
        409,
        "pin.not.set",
    );
    app.set_pin(c.id(), "4821").await;

    // Fields that do not agree with the card, the cardholder or each other.
    let mut b = update_body(&c, &trace, &code, "4821", "4545");
    b["expiryDate"] = json!("01/20");
    b["rule"]["expiryDate"] = json!("1/2");
    b["otpDetails"]["mobileNumber"] = json!("9999999999");
    b["rule"]["traceNumber"] = json!("another");
    b["otp"] = json!("999999");
    let errors = field_errors(&update(b).await, "changeCardPin");
    let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["otp", "rule.traceNumber"], "agreement inside the body first");
    let mut b = update_body(&c, &trace, &code, "4821", "4545");
    b["expiryDate"] = json!("01/20");
    b["rule"]["expiryDate"] = json!("1/2");
    b["otpDetails"]["mobileNumber"] = json!("9999999999");
    assert_eq!(
        field_errors(&update(b).await, "changeCardPin"),
        [
            ("otpDetails.mobileNumber".to_owned(), "Invalid contact".to_owned()),
            ("expiryDate".to_owned(), "Invalid expiry date".to_owned()),
            ("rule.expiryDate".to_owned(), "must be MM/YY".to_owned()),
        ]
    );
    let mut b = update_body(&c, &trace, &code, "4821", "4545");
    for f in ["oldPin", "mobile", "otpDetails"] {
        b.as_object_mut().unwrap().remove(f);
    }
    let errors = field_errors(&update(b).await, "changeCardPin");
    let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["mobile", "otpDetails", "oldPin"]);
    let r = update(json!({"entityId": c.external_id, "kit": c.kit(), "pin": "1"})).await;
    assert_eq!(field_errors(&r, "changeCardPin")[0].0, "pin");

    // A weak new PIN: a field error on newPin; the OTP is not spent.
    let r = update(update_body(&c, &trace, &code, "4821", "1111")).await;
    assert_eq!(
        field_errors(&r, "changeCardPin"),
        [(
            "newPin".to_owned(),
            "the PIN is too weak: the same digit repeated".to_owned()
        )]
    );
    insta::assert_json_snapshot!("m2p_weak_pin", r.body);
    // A wrong current PIN spends the OTP and counts against the PIN.
    let (trace, code) = otp(&app, &auth, &c).await;
    let r = update(update_body(&c, &trace, &code, "4822", "4545")).await;
    let b = business(&r, 409, "invalid.pin");
    assert_eq!(b["detail"], "the current PIN is not correct (2 attempts left)");
    insta::assert_json_snapshot!("m2p_invalid_pin", b);
    assert_eq!(app.verify(c.id(), "4821").await.ok()["remaining_attempts"], 3);

    // Not JSON at all.
    let bearer = format!("Bearer {}", auth.token);
    let r = send(
        &app,
        Method::POST,
        "/m2p/prepaid/customer/v1/cards/update/pin",
        &[("Authorization", &bearer), ("X-TENANT-ID", &auth.tenant)],
        Some(Body::Raw("{\"entityId\": ")),
    )
    .await;
    let b = http_error(&r, 400);
    assert_eq!(b["detail"], "Unable to convert http message");
    insta::assert_json_snapshot!("m2p_unreadable", b);

    // A closed card has no PIN to change.
    app.post(&format!("/v1/cards/{}/close", c.id()), json!({})).await.ok();
    let r = update(update_body(&c, &trace, &code, "4821", "4545")).await;
    let b = business(&r, 409, "invalid.card.status");
    insta::assert_json_snapshot!("m2p_invalid_card_status", b);
}

#[tokio::test]
async fn a_right_otp_that_came_too_late() {
    let app = spawn_app_with(&["--otp-ttl-seconds", "1"]).await;
    let auth = login(&app).await;
    let c = owned_card(&app, "virtual").await;
    app.set_pin(c.id(), "4821").await;
    let (trace, code) = otp(&app, &auth, &c).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = m2p(
        &app,
        &auth,
        "cards/update/pin",
        update_body(&c, &trace, &code, "4821", "4545"),
    )
    .await;
    insta::assert_json_snapshot!("m2p_otp_expired", business(&r, 409, "otp.expired"));
    assert_eq!(app.verify(c.id(), "4821").await.ok()["valid"], true);
}

#[tokio::test]
async fn set_pin_with_an_rsa_encrypted_pin() {
    let app = spawn_app().await;
    let auth = login(&app).await;
    let c = owned_card(&app, "virtual").await;
    let pem = app.get("/v1/pin-encryption-key").await.ok()["public_key_pem"]
        .as_str()
        .unwrap()
        .to_owned();
    let (trace, code) = otp(&app, &auth, &c).await;
    let encrypted = cardcore_crypto::transport::encrypt_with_public_pem(&pem, b"4821").unwrap();
    let mut body = update_body(&c, &trace, &code, "", "");
    body.as_object_mut().unwrap().remove("oldPin");
    body["newPin"] = json!(encrypted);
    let r = m2p(&app, &auth, "cards/v2/set-pin", body.clone()).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(
        r.body,
        json!({"result": {"message": "Card pin set Successfully"}, "pagination": null})
    );
    insta::assert_json_snapshot!("m2p_pin_set", r.body);
    assert_eq!(app.verify(c.id(), "4821").await.ok()["valid"], true);
    assert_eq!(app.audit(c.id()).await[0]["actor"]["channel"], "m2p");

    // The OTP was single use; a ciphertext that does not decrypt is a field error.
    business(
        &m2p(&app, &auth, "cards/v2/set-pin", body.clone()).await,
        409,
        "invalid.otp",
    );
    let (trace, code) = otp(&app, &auth, &c).await;
    let mut bad = update_body(&c, &trace, &code, "", "");
    bad.as_object_mut().unwrap().remove("oldPin");
    bad["newPin"] = json!("bm90IGEgY2lwaGVydGV4dA==");
    let r = m2p(&app, &auth, "cards/v2/set-pin", bad).await;
    let errors = field_errors(&r, "setCardPin");
    assert_eq!(errors[0].0, "newPin");
    assert!(errors[0].1.starts_with("could not be decrypted"), "{errors:?}");
}

#[tokio::test]
async fn validate_pin_counts_failures() {
    let app = spawn_app().await;
    let auth = login(&app).await;
    let c = owned_card(&app, "virtual").await;
    let check = |pin: &str| json!({"entityId": c.external_id, "kit": c.kit(), "oldPin": pin});
    business(
        &m2p(&app, &auth, "cards/v2/validate-pin", check("4821")).await,
        409,
        "pin.not.set",
    );
    app.set_pin(c.id(), "4821").await;

    let r = m2p(&app, &auth, "cards/v2/validate-pin", check("4821")).await.ok();
    assert_eq!(r, json!({"result": {"valid": true}, "pagination": null}));
    insta::assert_json_snapshot!("m2p_pin_valid", r);
    for _ in 0..3 {
        let r = m2p(&app, &auth, "cards/v2/validate-pin", check("4822")).await.ok();
        assert_eq!(r, json!({"result": {"valid": false}, "pagination": null}));
    }
    // Blocked after three: even the right PIN is refused, natively too.
    let r = m2p(&app, &auth, "cards/v2/validate-pin", check("4821")).await;
    insta::assert_json_snapshot!("m2p_pin_locked", business(&r, 409, "pin.locked"));
    app.verify(c.id(), "4821").await.expect(409, "pin_blocked");
    let r = m2p(
        &app,
        &auth,
        "cards/v2/validate-pin",
        json!({"entityId": c.external_id, "kit": c.kit()}),
    )
    .await;
    assert_eq!(
        field_errors(&r, "validateCardPin"),
        [("oldPin".to_owned(), "must not be null".to_owned())]
    );
}

async fn native_card(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/cards/{id}")).await.ok()
}

#[tokio::test]
async fn card_status_lock_unlock_block() {
    let app = spawn_app().await;
    let auth = login(&app).await;
    let c = owned_card(&app, "virtual").await;
    let set = |status: &str, reason: Option<&str>| {
        let mut b = json!({"entityId": c.external_id, "kitNo": c.kit(), "status": status, "reasonMsg": "app"});
        if let Some(r) = reason {
            b["reasonCode"] = json!(r);
        }
        b
    };

    let r = m2p(&app, &auth, "cards/status", set("LOCKED", Some("02"))).await.ok();
    assert_eq!(
        r,
        json!({"result": {"message": "Card LOCKED Successfully"}, "pagination": null})
    );
    insta::assert_json_snapshot!("m2p_status_changed", r);
    let native = native_card(&app, c.id()).await;
    assert_eq!(native["status"], "LOCKED");
    assert_eq!(
        native["status_reason"],
        json!({"code": "FRAUD_SUSPECTED", "message": "app"})
    );
    let r = m2p(&app, &auth, "cards/status", set("LOCKED", None)).await.ok();
    assert_eq!(r["result"]["message"], "Card was already LOCKED");
    insta::assert_json_snapshot!("m2p_status_already", r);
    let r = m2p(&app, &auth, "cards/status", set("UNLOCKED", None)).await.ok();
    assert_eq!(r["result"]["message"], "Card UNLOCKED Successfully");
    assert_eq!(native_card(&app, c.id()).await["status_reason"], Value::Null);

    // Reason codes: unknown ones are refused with the catalog.
    let r = m2p(&app, &auth, "cards/status", set("BLOCKED", Some("99"))).await;
    let errors = field_errors(&r, "updateCardStatus");
    assert_eq!(errors[0].0, "reasonCode");
    assert!(errors[0].1.contains("CUST_REQ"), "{errors:?}");
    // 03 is lost.
    m2p(&app, &auth, "cards/status", set("BLOCKED", Some("03"))).await.ok();
    assert_eq!(native_card(&app, c.id()).await["status_reason"]["code"], "LOST_CARD");
    // BLOCKED is permanent.
    let r = m2p(&app, &auth, "cards/status", set("UNLOCKED", None)).await;
    let b = business(&r, 409, "PPCUST_032");
    assert_eq!(b["detail"], "A BLOCKED card cannot be moved to UNLOCKED");
    insta::assert_json_snapshot!("m2p_status_refused", b);

    // A block without a reason is the customer's request; "Card Closure" is terminal.
    let d = owned_card(&app, "virtual").await;
    let r = m2p(
        &app,
        &auth,
        "cards/status",
        json!({"entityId": d.external_id, "kit": d.kit(), "status": "BLOCKED"}),
    )
    .await
    .ok();
    assert_eq!(r["result"]["message"], "Card BLOCKED Successfully");
    let native = app.get(&format!("/v1/cards/{}", d.id())).await.ok();
    assert_eq!(native["status_reason"]["code"], "CUST_REQ");
    let e = owned_card(&app, "virtual").await;
    m2p(
        &app,
        &auth,
        "cards/status",
        json!({"entityId": e.external_id, "kit": e.kit(), "status": "BLOCKED", "reasonCode": "Card Closure"}),
    )
    .await
    .ok();
    app.post(&format!("/v1/cards/{}/replace", e.id()), json!({"reason": "STOLEN"}))
        .await
        .expect(409, "card_not_replaceable");
    // A card not yet active cannot be locked.
    let holder = app.create_cardholder("m2p-inactive").await;
    let f = app
        .create_card_as(&app.key.clone(), holder["id"].as_str().unwrap(), "physical")
        .await;
    let r = m2p(
        &app,
        &auth,
        "cards/status",
        json!({"entityId": "m2p-inactive", "kitNo": f["kit_number"], "status": "LOCKED"}),
    )
    .await;
    business(&r, 409, "PPCUST_032");
    let r = m2p(
        &app,
        &auth,
        "cards/status",
        json!({"entityId": "m2p-inactive", "kitNo": f["kit_number"], "status": "FROZEN"}),
    )
    .await;
    assert_eq!(field_errors(&r, "updateCardStatus")[0].0, "status");
}

#[tokio::test]
async fn fetch_all_cards_and_preferences() {
    let app = spawn_app().await;
    let auth = login(&app).await;
    let c = owned_card(&app, "virtual").await;
    let holder_id = app.get(&format!("/v1/cards/{}", c.id())).await.ok()["cardholder_id"].clone();
    app.create_card_as(&app.key.clone(), holder_id.as_str().unwrap(), "physical")
        .await;

    let r = m2p(
        &app,
        &auth,
        "customers/fetch-all-cards",
        json!({"entityId": c.external_id}),
    )
    .await
    .ok();
    let cards = r["result"].as_array().unwrap();
    assert_eq!(cards.len(), 2);
    assert_eq!(cards[0]["kitNo"], c.kit());
    assert_eq!(cards[0]["cardStatus"], "ACTIVE");
    assert_eq!(cards[1]["cardStatus"], "INACTIVE");
    // MM/YYYY, as M2P's page shows it ("11/2029").
    let (mm, yy) = c.expiry().split_once('/').unwrap();
    assert_eq!(cards[0]["expiryDate"], format!("{mm}/20{yy}"));
    assert_eq!(cards[0]["cardNetwork"], "VISA");
    assert_eq!(cards[0]["productName"], "virtual");
    assert_eq!(cards[1]["productName"], "physical");
    assert_eq!(cards[0]["issuedDate"].as_str().unwrap().len(), 10);
    let masked = cards[0]["maskedCardNumber"].as_str().unwrap();
    assert_eq!(masked.len(), 16);
    assert!(masked.ends_with(c.card["last_four"].as_str().unwrap()));
    assert!(masked.starts_with("XXXXXXXXXXXX"));
    insta::assert_json_snapshot!("m2p_all_cards", redact(&r));
    let r = m2p(&app, &auth, "customers/fetch-all-cards", json!({"entityId": "nobody"})).await;
    insta::assert_json_snapshot!("m2p_entity_not_found", business(&r, 409, "entity.not.found"));

    let prefs = |o: Value| json!({"entityId": c.external_id, "kit": c.kit(), "userOverridden": o});
    let r = m2p(
        &app,
        &auth,
        "cards/support/update/preferences",
        prefs(json!({"ATM": {"enabled": false},
                     "POS": {"perTransactionLimit": 10000, "maxTransactionAmountPerDay": 50000}})),
    )
    .await
    .ok();
    assert_eq!(r["result"]["ATM"]["enabled"], false);
    assert_eq!(
        r["result"]["POS"],
        json!({"enabled": true, "perTransactionLimit": 10000, "maxTransactionAmountPerDay": 50000})
    );
    assert_eq!(r["result"]["E-com"]["enabled"], true, "channels not given are kept");
    insta::assert_json_snapshot!("m2p_preferences", r);
    let native = app.get(&format!("/v1/cards/{}/limits", c.id())).await.ok();
    assert_eq!(native["channels"]["pos"]["per_transaction"], 10000);
    assert_eq!(native["channels"]["atm"]["enabled"], false);

    let r = m2p(
        &app,
        &auth,
        "cards/support/update/preferences",
        prefs(json!({"POS": {"perTransactionLimit": 60000}})),
    )
    .await;
    assert_eq!(
        field_errors(&r, "updatePreferences"),
        [(
            "userOverridden.POS.perTransactionLimit".to_owned(),
            "must not exceed daily".to_owned()
        )]
    );
    let r = m2p(
        &app,
        &auth,
        "cards/support/update/preferences",
        prefs(json!({"Tokenization": {"enabled": false}})),
    )
    .await;
    assert_eq!(
        field_errors(&r, "updatePreferences")[0].0,
        "userOverridden.Tokenization"
    );
    let r = m2p(&app, &auth, "cards/support/update/preferences", prefs(json!({}))).await;
    assert_eq!(field_errors(&r, "updatePreferences")[0].0, "userOverridden");
    let mut b = prefs(json!({"ATM": {"enabled": true}}));
    b["mobile"] = json!({"value": "1234567", "countryCode": "+91"});
    assert_eq!(
        field_errors(
            &m2p(&app, &auth, "cards/support/update/preferences", b).await,
            "updatePreferences"
        ),
        [("mobile".to_owned(), "Invalid contact".to_owned())]
    );
}

#[tokio::test]
async fn errors_500_and_503_hide_their_cause() {
    let app = spawn_app_with(&["--db-timeout-seconds", "1"]).await;
    let auth = login(&app).await;
    let c = owned_card(&app, "virtual").await;
    let held = hold_writer(&app).await;
    let r = m2p(
        &app,
        &auth,
        "cards/status",
        json!({"entityId": c.external_id, "kitNo": c.kit(), "status": "LOCKED"}),
    )
    .await;
    drop(held);
    let b = http_error(&r, 503);
    assert_eq!(r.headers["retry-after"], "1");
    insta::assert_json_snapshot!("m2p_unavailable", b);

    app.set_pin(c.id(), "4821").await;
    corrupt_key_versions(&app, c.id()).await;
    let r = m2p(
        &app,
        &auth,
        "cards/v2/validate-pin",
        json!({"entityId": c.external_id, "kit": c.kit(), "oldPin": "4821"}),
    )
    .await;
    let b = http_error(&r, 500);
    assert!(!r.text.contains("version") && !r.text.contains("4821"), "{}", r.text);
    insta::assert_json_snapshot!("m2p_internal_error", b);
}

/// M2P's own example of `otp/generate`
/// (https://dev.m2p.app/docs/prepaidv2/api-library/authentication/generateOtp)
/// names the card by its last four digits, with no `kitNo`.
#[tokio::test]
async fn otp_generate_as_m2ps_own_example_names_the_card_without_a_kit() {
    let app = spawn_app().await;
    let auth = login(&app).await;
    let c = owned_card(&app, "virtual").await;
    let last_four = |card: &serde_json::Value| card["last_four"].as_str().unwrap().to_owned();
    let example = |card: Option<&str>| {
        let mut body = json!({
            "mobileNumber": "9600389470", "otpType": "S", "template": "OTP",
            "entityId": c.external_id, "productId": "HKfXwH9uph", "countryCode": 91,
        });
        if let Some(last4) = card {
            body["card"] = json!(last4);
        }
        body
    };
    let events = |id: &str| {
        let id = id.to_owned();
        let app = &app;
        async move {
            app.card_events(&id)
                .await
                .into_iter()
                .filter(|e| e["type"] == "otp.created")
                .map(|e| e["data"]["trace_number"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };

    // One card: the example as written, `card` and all.
    let r = m2p(&app, &auth, "otp/generate", example(Some(&last_four(&c.card))))
        .await
        .ok();
    assert_eq!(r["result"]["status"], true);
    let trace = r["result"]["traceNumber"].as_str().unwrap().to_owned();
    assert_eq!(events(c.id()).await, [trace]);

    // Two cards: without `card` the kit is asked for, by field; `card`
    // picks one (unless both end alike, which a retry of the draw avoids).
    let holder_id = c.card["cardholder_id"].as_str().unwrap().to_owned();
    let mut second = app.create_card_as(&app.key.clone(), &holder_id, "virtual").await;
    while last_four(&second) == last_four(&c.card) {
        second = app.create_card_as(&app.key.clone(), &holder_id, "virtual").await;
    }
    let r = m2p(&app, &auth, "otp/generate", example(None)).await;
    assert_eq!(
        field_errors(&r, "generateOtp").first().map(|(f, _)| f.as_str()),
        Some("kitNo")
    );
    let r = m2p(&app, &auth, "otp/generate", example(Some(&last_four(&second))))
        .await
        .ok();
    let trace = r["result"]["traceNumber"].as_str().unwrap().to_owned();
    assert_eq!(events(second["id"].as_str().unwrap()).await, [trace]);
    assert_eq!(events(c.id()).await.len(), 1, "the first card got no second OTP");
}

/// M2P's generateOtp page example, with its ids substituted: the card's
/// last four digits for `card`, the cardholder's phone for `mobileNumber`.
fn generate_otp_page_example(c: &Owned) -> Value {
    json!({
        "mobileNumber": "9600389470",
        "otpType": "S",
        "template": "OTP",
        "entityId": c.external_id,
        "productId": "HKfXwH9uph",
        "card": c.card["last_four"],
        "countryCode": 91
    })
}

/// M2P's validateOtp page example
/// (https://dev.m2p.app/docs/prepaidv2/api-library/authentication/validateOtp),
/// with the trace number, reference, code and phone substituted.
fn validate_otp_page_example(trace: &str, reference: &str, code: &str) -> Value {
    json!({
        "traceNumber": trace,
        "refNumber": reference,
        "mobileOtp": code,
        "otpType": "SINGLE_OTP_DUAL",
        "mobile": {"value": "9600389470", "countryCode": 91}
    })
}

/// The code of the OTP `trace`, from the tenant's events.
async fn otp_code(app: &TestApp, c: &Owned, trace: &str) -> String {
    let event = app
        .card_events(c.id())
        .await
        .into_iter()
        .rev()
        .find(|e| e["type"] == "otp.created" && e["data"]["trace_number"] == trace)
        .expect("otp.created event");
    event["data"]["otp"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn validate_otp_as_the_page_shows_then_the_pin_change_with_the_same_code() {
    let app = spawn_app().await;
    let auth = login(&app).await;
    let c = seed_card(&app).await;
    app.set_pin(c.id(), "4821").await;

    // generateOtp's own example: no kitNo, the card by its last four digits.
    let g = m2p(&app, &auth, "otp/generate", generate_otp_page_example(&c))
        .await
        .ok();
    assert_eq!(g["result"]["status"], true);
    assert!(g["pagination"].is_null());
    let trace = g["result"]["traceNumber"].as_str().unwrap().to_owned();
    let reference = g["result"]["refNumber"].as_str().unwrap().to_owned();
    assert_eq!(reference.len(), 32, "{g}");
    let code = otp_code(&app, &c, &trace).await;

    // The page's example request: the answer has the page's shape, field by field.
    let r = m2p(
        &app,
        &auth,
        "otp/validate-otp",
        validate_otp_page_example(&trace, &reference, &code),
    )
    .await
    .ok();
    let result = r["result"].as_object().unwrap();
    let mut keys: Vec<_> = result.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["messageHash", "refNumber", "status"]);
    assert_eq!(result["status"], true);
    assert_eq!(result["refNumber"], reference.as_str());
    let hash = result["messageHash"].as_str().unwrap();
    assert_eq!(hash.len(), 64);
    assert!(hash.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
    assert!(r["pagination"].is_null());
    assert!(!r.to_string().contains(&code));
    insta::assert_json_snapshot!("m2p_validate_otp", redact(&r));

    // A wrong code: refused and counted; the right one still validates.
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let r = m2p(
        &app,
        &auth,
        "otp/validate-otp",
        validate_otp_page_example(&trace, &reference, wrong),
    )
    .await;
    business(&r, 409, "invalid.otp");
    let again = m2p(
        &app,
        &auth,
        "otp/validate-otp",
        validate_otp_page_example(&trace, &reference, &code),
    )
    .await
    .ok();
    assert_eq!(again["result"]["messageHash"], hash);

    // Validated, not spent: the PIN change takes the same code.
    m2p(
        &app,
        &auth,
        "cards/update/pin",
        update_body(&c, &trace, &code, "4821", "4545"),
    )
    .await
    .ok();
    assert_eq!(app.verify(c.id(), "4545").await.ok()["valid"], true);
    // Spent now: validating it again is a wrong code.
    let r = m2p(
        &app,
        &auth,
        "otp/validate-otp",
        validate_otp_page_example(&trace, &reference, &code),
    )
    .await;
    business(&r, 409, "invalid.otp");
}

#[tokio::test]
async fn validate_otp_shares_the_pin_change_lock_and_names_the_card_strictly() {
    let app = spawn_app().await;
    let auth = login(&app).await;
    let c = owned_card(&app, "virtual").await;
    app.set_pin(c.id(), "4821").await;
    let (trace, code) = otp(&app, &auth, &c).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let by_kit =
        |otp: &str| json!({"traceNumber": trace, "mobileOtp": otp, "entityId": c.external_id, "kitNo": c.kit()});

    // One wrong code through validate-otp, one through the PIN change, one
    // more through validate-otp: the lock is the PIN change's, shared.
    business(
        &m2p(&app, &auth, "otp/validate-otp", by_kit(wrong)).await,
        409,
        "invalid.otp",
    );
    let r = m2p(
        &app,
        &auth,
        "cards/update/pin",
        update_body(&c, &trace, wrong, "4821", "4545"),
    )
    .await;
    business(&r, 409, "invalid.otp");
    let r = m2p(&app, &auth, "otp/validate-otp", by_kit(wrong)).await;
    let b = business(&r, 409, "PP_MIDD_034");
    assert_eq!(b["title"], "Otp Validation is not allowed more than 3 times in 24hrs");
    assert_eq!(b["detail"], b["title"]);
    assert!(r.headers.contains_key("retry-after"));
    // Locked for every call, the right code included, and for the PIN change.
    business(
        &m2p(&app, &auth, "otp/validate-otp", by_kit(&code)).await,
        409,
        "PP_MIDD_034",
    );
    let r = m2p(
        &app,
        &auth,
        "cards/update/pin",
        update_body(&c, &trace, &code, "4821", "4545"),
    )
    .await;
    assert_eq!(business(&r, 409, "PPCUST_042")["title"], LOCK_TITLE);
    assert_eq!(app.verify(c.id(), "4821").await.ok()["valid"], true);

    // Naming the card: nothing to name it by, a reference of nothing, a
    // reference of another tenant's card, a wrong phone, `otp` not `mobileOtp`.
    let r = m2p(
        &app,
        &auth,
        "otp/validate-otp",
        json!({"traceNumber": trace, "mobileOtp": code}),
    )
    .await;
    assert_eq!(field_errors(&r, "validateOtp")[0].0, "refNumber");
    let r = m2p(
        &app,
        &auth,
        "otp/validate-otp",
        validate_otp_page_example(&trace, "68bff8eb7eedcd247cf46204", &code),
    )
    .await;
    assert_eq!(field_errors(&r, "validateOtp")[0].0, "refNumber");
    let other_key = app.new_tenant("m2p-validate-other").await;
    let other_id = app
        .service()
        .authenticate(&other_key)
        .await
        .unwrap()
        .tenant
        .id
        .to_string();
    let other = m2p_login(&app, &other_id, &other_key).await;
    let reference = c.id().replace('-', "");
    let r = m2p(
        &app,
        &other,
        "otp/validate-otp",
        validate_otp_page_example(&trace, &reference, &code),
    )
    .await;
    business(&r, 409, "card.not.found");
    let mut b = validate_otp_page_example(&trace, &reference, &code);
    b["mobile"]["value"] = json!("9600389471");
    b["otp"] = json!(wrong);
    let r = m2p(&app, &auth, "otp/validate-otp", b).await;
    assert_eq!(
        field_errors(&r, "validateOtp"),
        [
            ("mobile".to_owned(), "Invalid contact".to_owned()),
            ("otp".to_owned(), "does not match mobileOtp".to_owned())
        ]
    );
    let mut b = by_kit(&code);
    b["otpType"] = json!("SMS");
    assert_eq!(
        field_errors(&m2p(&app, &auth, "otp/validate-otp", b).await, "validateOtp")[0].0,
        "otpType"
    );
}

#[tokio::test]
async fn validate_pin_and_fetch_all_cards_as_their_pages_show_them() {
    let app = spawn_app().await;
    let auth = login(&app).await;
    // validatePin's example PIN is 1234, a run the default rules refuse:
    // this tenant allows runs, as a vendor documenting no PIN policy would.
    app.service()
        .update_tenant_settings(app.tenant_id.parse().unwrap(), |s| {
            s.pin_rules =
                cardcore_domain::pin_policy::PinRules::parse("repeated,birth_date,common,same_as_current").unwrap()
        })
        .await
        .unwrap();
    let c = seed_card(&app).await;
    app.set_pin(c.id(), "1234").await;

    // https://dev.m2p.app/docs/prepaidv2/api-library/card/validatePin, its
    // example with the entity, kit, phone and expiry substituted.
    let r = m2p(
        &app,
        &auth,
        "cards/v2/validate-pin",
        json!({
            "mobile": {"value": "9600389470", "countryCode": 91},
            "entityId": c.external_id,
            "kit": c.kit(),
            "expiryDate": c.expiry(),
            "oldPin": "1234"
        }),
    )
    .await
    .ok();
    assert_eq!(r, json!({"result": {"valid": true}, "pagination": null}));

    // https://dev.m2p.app/docs/prepaidv2/api-library/card/fetchAllCards, its
    // example with the entity substituted: the page's fields, field by field
    // (less `productType` and `wallets`, which cardcore has no data for).
    let r = m2p(
        &app,
        &auth,
        "customers/fetch-all-cards",
        json!({"entityId": c.external_id}),
    )
    .await
    .ok();
    assert!(r["pagination"].is_null());
    let card = &r["result"][0];
    let mut keys: Vec<_> = card.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "cardNetwork",
            "cardStatus",
            "cardType",
            "expiryDate",
            "issuedDate",
            "kitNo",
            "maskedCardNumber",
            "productName"
        ]
    );
    assert_eq!(card["kitNo"], c.kit());
    assert_eq!(card["cardStatus"], "ACTIVE");
    assert_eq!(card["cardNetwork"], "VISA");
    let expiry = card["expiryDate"].as_str().unwrap();
    assert_eq!((expiry.len(), &expiry[2..5]), (7, "/20"), "{expiry}");
    let issued = card["issuedDate"].as_str().unwrap();
    assert!(
        chrono::NaiveDate::parse_from_str(issued, "%Y-%m-%d").is_ok(),
        "{issued}"
    );
    // `mobile` and the page's other optional fields are accepted; a wrong
    // phone is "Invalid contact".
    let r = m2p(
        &app,
        &auth,
        "customers/fetch-all-cards",
        json!({"entityId": c.external_id, "mobile": {"value": "9600389470", "countryCode": 91},
               "issuedBy": "x", "tenant": "y", "type": "z"}),
    )
    .await
    .ok();
    assert_eq!(r["result"][0]["kitNo"], c.kit());
    let r = m2p(
        &app,
        &auth,
        "customers/fetch-all-cards",
        json!({"entityId": c.external_id, "mobile": {"value": "9600389471", "countryCode": 91}}),
    )
    .await;
    assert_eq!(
        field_errors(&r, "fetchAllCards"),
        [("mobile".to_owned(), "Invalid contact".to_owned())]
    );
}
