//! One core, three dialects: a card made through any API is the same card
//! everywhere, a PIN set through one verifies through all the others, the
//! try counter, the OTP lock and the status are shared, and tenants stay
//! apart through every dialect. Also the helpers the dialect tests share.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Resp, TestApp};

/// A request body: JSON, or raw bytes for malformed-input tests.
pub(crate) enum Body {
    Json(Value),
    Raw(&'static str),
}

/// Sends a request with the given headers (no native auth).
pub(crate) async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Body>,
) -> Resp {
    let mut req = app.client.request(method, format!("{}{}", app.base, path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    match body {
        Some(Body::Json(v)) => req = req.header("content-type", "application/json").body(v.to_string()),
        Some(Body::Raw(s)) => req = req.header("content-type", "application/json").body(s),
        None => {}
    }
    let res = req.send().await.expect("request sent");
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert!(
        headers.contains_key("x-request-id"),
        "every response carries x-request-id"
    );
    Resp {
        status,
        headers,
        body,
        text,
    }
}

/// A P100 call with `x-api-key`.
pub(crate) async fn p100(app: &TestApp, key: &str, method: Method, path: &str, body: Option<Value>) -> Resp {
    send(
        app,
        method,
        &format!("/p100{path}"),
        &[("x-api-key", key)],
        body.map(Body::Json),
    )
    .await
}

/// A QI Tech `PATCH` with `API-CLIENT-KEY`.
pub(crate) async fn qi(app: &TestApp, key: &str, path: &str, body: Value) -> Resp {
    send(
        app,
        Method::PATCH,
        &format!("/qitech{path}"),
        &[("API-CLIENT-KEY", key)],
        Some(Body::Json(body)),
    )
    .await
}

/// M2P credentials: a token and the `X-TENANT-ID` to send with it.
pub(crate) struct M2p {
    pub token: String,
    pub tenant: String,
}

/// A token for the tenant `tenant_id` and its API key `key`.
pub(crate) async fn m2p_login(app: &TestApp, tenant_id: &str, key: &str) -> M2p {
    let r = send(
        app,
        Method::POST,
        "/m2p/auth/token",
        &[],
        Some(Body::Json(
            json!({"clientId": tenant_id, "clientSecret": key, "grantType": "client_credentials"}),
        )),
    )
    .await
    .ok();
    M2p {
        token: r["access_token"].as_str().unwrap().to_owned(),
        tenant: tenant_id.to_owned(),
    }
}

/// An M2P call: `POST /m2p/prepaid/customer/v1/{path}` with the token.
pub(crate) async fn m2p(app: &TestApp, auth: &M2p, path: &str, body: Value) -> Resp {
    let bearer = format!("Bearer {}", auth.token);
    send(
        app,
        Method::POST,
        &format!("/m2p/prepaid/customer/v1/{path}"),
        &[("Authorization", &bearer), ("X-TENANT-ID", &auth.tenant)],
        Some(Body::Json(body)),
    )
    .await
}

/// A cardholder (phone 91 9600389470, as in M2P's page) with one card.
pub(crate) struct Owned {
    pub external_id: String,
    pub card: Value,
}

impl Owned {
    pub fn id(&self) -> &str {
        self.card["id"].as_str().unwrap()
    }
    pub fn kit(&self) -> &str {
        self.card["kit_number"].as_str().unwrap()
    }
    pub fn account(&self) -> &str {
        self.card["account_id"].as_str().unwrap()
    }
    pub fn expiry(&self) -> &str {
        self.card["expiry"].as_str().unwrap()
    }
}

/// A new cardholder of the tenant of `key` with a card of `card_type`;
/// physical cards are activated.
pub(crate) async fn owned_card_as(app: &TestApp, key: &str, card_type: &str) -> Owned {
    let external_id = format!("u-{}", uuid::Uuid::new_v4().simple());
    let holder = app.create_cardholder_as(key, &external_id).await;
    let mut card = app.create_card_as(key, holder["id"].as_str().unwrap(), card_type).await;
    if card_type == "physical" && key == app.key {
        let id = card["id"].as_str().unwrap().to_owned();
        let code = app.activation_code(&id).await;
        card = app
            .post(&format!("/v1/cards/{id}/activate"), json!({"activation_code": code}))
            .await
            .ok();
    }
    Owned { external_id, card }
}

/// [`owned_card_as`] for tenant A.
pub(crate) async fn owned_card(app: &TestApp, card_type: &str) -> Owned {
    owned_card_as(app, &app.key.clone(), card_type).await
}

/// Dynamic values replaced by placeholders, so snapshots hold the shape.
pub(crate) fn redact(v: &Value) -> Value {
    const SECRET_OR_RANDOM: &[&str] = &[
        "cardNumber",
        "cvv",
        "last4",
        "last_four_digits",
        "expiryDate",
        "kitNo",
        "maskedCardNumber",
        "access_token",
        "refNumber",
        "messageHash",
        "issuedDate",
        "traceNumber",
        "externalUserId",
    ];
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let v = if SECRET_OR_RANDOM.contains(&k.as_str()) && v.is_string() {
                        Value::String(format!("[{k}]"))
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        Value::String(s) if uuid::Uuid::parse_str(s).is_ok() => Value::String("[uuid]".into()),
        Value::String(s) if s.len() > 36 => Value::String(redact_uuids(s)),
        Value::String(s) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => Value::String("[timestamp]".into()),
        other => other.clone(),
    }
}

/// Every UUID inside a text (e.g. a description naming a card key) replaced.
fn redact_uuids(s: &str) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < s.len() {
        let window = s
            .get(i..i + 36)
            .filter(|w| w.len() == 36 && uuid::Uuid::parse_str(w).is_ok());
        if window.is_some() {
            out.push_str("[uuid]");
            i += 36;
        } else {
            let c = s[i..].chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8().max(1);
        }
    }
    out
}

/// Makes the card's stored key versions point at keys that do not exist:
/// the next read of its PAN, PIN or activation code is an internal error
/// (a corrupt row), which every API must answer without detail.
pub(crate) async fn corrupt_key_versions(app: &TestApp, card_id: &str) {
    let store = app.service().store().clone();
    let mut tx = store.begin().await.unwrap();
    let mut rec = tx
        .lock_card(app.tenant_id.parse().unwrap(), card_id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    rec.secrets.data_key_version = 999;
    if let Some(v) = rec.secrets.pin.as_mut() {
        v.key_version = 999;
    }
    if let Some(v) = rec.secrets.activation_code.as_mut() {
        v.key_version = 999;
    }
    tx.update_card(&rec).await.unwrap();
    tx.commit().await.unwrap();
}

/// Holds the database's one write connection: writes wait for it until the
/// server's database timeout, then the database counts as unavailable.
pub(crate) async fn hold_writer(app: &TestApp) -> Box<dyn cardcore_store::Tx> {
    app.service().store().begin().await.unwrap()
}

#[tokio::test]
async fn a_card_made_anywhere_is_the_same_card_everywhere() {
    let app = spawn_app().await;
    let key = app.key.clone();
    let holder = app.create_cardholder("ana-1").await;
    let auth = m2p_login(&app, &app.tenant_id, &key).await;

    // Made through P100, seen natively, through M2P and through QI.
    let made = p100(
        &app,
        &key,
        Method::POST,
        "/v1/card/create",
        Some(json!({"externalUserId": "ana-1", "cardName": "travel"})),
    )
    .await
    .ok();
    let id = made["cardId"].as_str().unwrap();
    let native = app.get(&format!("/v1/cards/{id}")).await.ok();
    assert_eq!(native["cardholder_id"], holder["id"]);
    assert_eq!(native["card_name"], "travel");
    assert_eq!(native["type"], "virtual");
    let all = m2p(&app, &auth, "customers/fetch-all-cards", json!({"entityId": "ana-1"}))
        .await
        .ok();
    assert_eq!(all["result"][0]["kitNo"], native["kit_number"]);
    let (mm, yy) = native["expiry"].as_str().unwrap().split_once('/').unwrap();
    assert_eq!(all["result"][0]["expiryDate"], format!("{mm}/20{yy}"));
    let qi_card = qi(
        &app,
        &key,
        &format!("/wallet/{}/card/{id}", native["account_id"].as_str().unwrap()),
        json!({"status": "blocked"}),
    )
    .await
    .ok();
    assert_eq!(qi_card["card_key"], id);
    assert_eq!(qi_card["last_four_digits"], native["last_four"]);

    // Made natively (physical), activated through QI, listed by P100.
    let physical = app
        .create_card_as(&key, holder["id"].as_str().unwrap(), "physical")
        .await;
    let pid = physical["id"].as_str().unwrap();
    let code = app.activation_code(pid).await;
    let activated = qi(
        &app,
        &key,
        &format!(
            "/wallet/{}/card/{pid}/activate",
            physical["account_id"].as_str().unwrap()
        ),
        json!({"activation_code": code}),
    )
    .await
    .ok();
    assert_eq!(activated["status"], "active");
    let listed = p100(&app, &key, Method::GET, "/v1/card/all/ana-1", None).await.ok();
    let statuses: Vec<(&str, &str)> = listed["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["cardType"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [("VIRTUAL", "BLOCKED"), ("PHYSICAL", "ACTIVE")]);
    assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok()["status"], "LOCKED");

    // Each change is audited with the API it came through.
    let channels: Vec<String> = app
        .audit(id)
        .await
        .iter()
        .map(|a| a["actor"]["channel"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(channels, ["qitech", "p100"]);
    let channels: Vec<String> = app
        .audit(pid)
        .await
        .iter()
        .map(|a| a["actor"]["channel"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(channels, ["qitech", "native"]);
}

#[tokio::test]
async fn a_pin_set_through_one_api_verifies_through_all() {
    let app = spawn_app().await;
    let key = app.key.clone();
    let auth = m2p_login(&app, &app.tenant_id, &key).await;
    let validate = |o: &Owned, pin: &str| json!({"entityId": o.external_id, "kit": o.kit(), "oldPin": pin});

    // P100 sets; M2P and native verify.
    let v = owned_card(&app, "virtual").await;
    p100(
        &app,
        &key,
        Method::PATCH,
        "/v1/card/pin",
        Some(json!({"externalUserId": v.external_id, "cardId": v.id(), "pin": "4821"})),
    )
    .await
    .ok();
    let ok = m2p(&app, &auth, "cards/v2/validate-pin", validate(&v, "4821"))
        .await
        .ok();
    assert_eq!(ok, json!({"result": {"valid": true}, "pagination": null}));
    assert_eq!(app.verify(v.id(), "4821").await.ok()["valid"], true);

    // QI sets (plastic card); M2P verifies.
    let p = owned_card(&app, "physical").await;
    qi(
        &app,
        &key,
        &format!("/wallet/{}/card/{}/password", p.account(), p.id()),
        json!({"pin": "2143"}),
    )
    .await
    .ok();
    let ok = m2p(&app, &auth, "cards/v2/validate-pin", validate(&p, "2143"))
        .await
        .ok();
    assert_eq!(ok["result"]["valid"], true);

    // M2P changes it (OTP from the native API); native and M2P agree.
    let (trace, otp) = app.otp(p.id()).await;
    m2p(
        &app,
        &auth,
        "cards/update/pin",
        json!({
            "mobile": {"value": "9600389470", "countryCode": 91},
            "entityId": p.external_id, "kit": p.kit(), "expiryDate": p.expiry(),
            "oldPin": "2143", "newPin": "7391",
            "otpDetails": {"traceNumber": trace, "otp": otp}
        }),
    )
    .await
    .ok();
    assert_eq!(app.verify(p.id(), "7391").await.ok()["valid"], true);
    assert_eq!(app.verify(p.id(), "2143").await.ok()["valid"], false);
    // Native sets again; M2P sees the new one.
    app.set_pin(p.id(), "5083").await;
    let ok = m2p(&app, &auth, "cards/v2/validate-pin", validate(&p, "5083"))
        .await
        .ok();
    assert_eq!(ok["result"]["valid"], true);
}

#[tokio::test]
async fn the_try_counter_and_the_otp_lock_are_shared() {
    let app = spawn_app().await;
    let key = app.key.clone();
    let auth = m2p_login(&app, &app.tenant_id, &key).await;
    let c = owned_card(&app, "virtual").await;
    app.set_pin(c.id(), "4821").await;
    let validate = |pin: &str| json!({"entityId": c.external_id, "kit": c.kit(), "oldPin": pin});

    // Two wrong PINs through M2P and one natively block the PIN.
    for _ in 0..2 {
        let r = m2p(&app, &auth, "cards/v2/validate-pin", validate("1357")).await.ok();
        assert_eq!(r["result"]["valid"], false);
    }
    assert_eq!(
        app.verify(c.id(), "1358").await.ok(),
        json!({"valid": false, "remaining_attempts": 0})
    );
    let r = m2p(&app, &auth, "cards/v2/validate-pin", validate("4821")).await;
    assert_eq!(r.status.as_u16(), 409, "{}", r.text);
    assert_eq!(r.body["businessCode"], "pin.locked");
    // A P100 set (partner-authorised) clears it, for everyone.
    p100(
        &app,
        &key,
        Method::PATCH,
        "/v1/card/pin",
        Some(json!({"externalUserId": c.external_id, "cardId": c.id(), "pin": "7391"})),
    )
    .await
    .ok();
    assert_eq!(
        m2p(&app, &auth, "cards/v2/validate-pin", validate("7391")).await.ok()["result"]["valid"],
        true
    );

    // Three wrong OTPs natively lock M2P's PIN change too.
    let (trace, _) = app.otp(c.id()).await;
    for _ in 0..3 {
        app.post(
            &format!("/v1/cards/{}/pin/change", c.id()),
            json!({"old_pin": "7391", "new_pin": "5083", "otp": "000000", "trace_number": trace}),
        )
        .await;
    }
    let r = m2p(
        &app,
        &auth,
        "cards/update/pin",
        json!({
            "mobile": {"value": "9600389470", "countryCode": 91},
            "entityId": c.external_id, "kit": c.kit(), "expiryDate": c.expiry(),
            "oldPin": "7391", "newPin": "5083",
            "otpDetails": {"traceNumber": trace, "otp": "123456"}
        }),
    )
    .await;
    assert_eq!(r.status.as_u16(), 409, "{}", r.text);
    assert_eq!(r.body["businessCode"], "PPCUST_042");
}

#[tokio::test]
async fn status_moves_are_the_same_machine_in_every_api() {
    let app = spawn_app().await;
    let key = app.key.clone();
    let auth = m2p_login(&app, &app.tenant_id, &key).await;
    let c = owned_card(&app, "virtual").await;
    let status_body = |s: &str, reason: Option<&str>| {
        let mut b = json!({"entityId": c.external_id, "kitNo": c.kit(), "status": s});
        if let Some(r) = reason {
            b["reasonCode"] = json!(r);
        }
        b
    };
    let qi_path = format!("/wallet/{}/card/{}", c.account(), c.id());

    // P100 block = M2P LOCKED = QI blocked = native LOCKED.
    p100(
        &app,
        &key,
        Method::PATCH,
        "/v1/card/block",
        Some(json!({"externalUserId": c.external_id, "cardId": c.id()})),
    )
    .await
    .ok();
    let r = m2p(&app, &auth, "cards/status", status_body("LOCKED", None)).await.ok();
    assert_eq!(r["result"]["message"], "Card was already LOCKED");
    let q = qi(&app, &key, &qi_path, json!({"status": "blocked"})).await.ok();
    assert_eq!(q["status"], "blocked");

    // M2P blocks ACTIVE cards only (its rule, not the native API's): the
    // locked card is unlocked first. Blocked for "Card Closure": terminal
    // everywhere.
    let r = m2p(
        &app,
        &auth,
        "cards/status",
        status_body("BLOCKED", Some("Card Closure")),
    )
    .await;
    assert_eq!(r.status.as_u16(), 409, "{}", r.text);
    assert_eq!(r.body["businessCode"], "PPCUST_032");
    assert_eq!(app.get(&format!("/v1/cards/{}", c.id())).await.ok()["status"], "LOCKED");
    m2p(&app, &auth, "cards/status", status_body("UNLOCKED", None))
        .await
        .ok();
    m2p(
        &app,
        &auth,
        "cards/status",
        status_body("BLOCKED", Some("Card Closure")),
    )
    .await
    .ok();
    let native = app.get(&format!("/v1/cards/{}", c.id())).await.ok();
    assert_eq!(native["status"], "BLOCKED");
    assert_eq!(native["status_reason"]["code"], "CARD_CLOSURE");
    app.post(&format!("/v1/cards/{}/replace", c.id()), json!({"reason": "LOST"}))
        .await
        .expect(409, "card_not_replaceable");
    let q = qi(&app, &key, &qi_path, json!({"status": "active"})).await;
    assert_eq!(q.body["code"], "CARD000014", "{}", q.text);
    assert_eq!(
        q.body["description"],
        "The operation is not valid for the current status of the card [canceled]."
    );
    let p = p100(
        &app,
        &key,
        Method::PATCH,
        "/v1/card/unblock",
        Some(json!({"externalUserId": c.external_id, "cardId": c.id()})),
    )
    .await;
    assert_eq!(p.body["errorCode"], "P403", "{}", p.text);
    assert_eq!(
        p.body["errorMessage"],
        "cannot unblock a card whose status is TERMINATED"
    );

    // P100 delete = QI canceled = native CLOSED.
    p100(
        &app,
        &key,
        Method::DELETE,
        &format!("/v1/card/{}/{}", c.external_id, c.id()),
        None,
    )
    .await
    .ok();
    assert_eq!(app.get(&format!("/v1/cards/{}", c.id())).await.ok()["status"], "CLOSED");
    let all = m2p(
        &app,
        &auth,
        "customers/fetch-all-cards",
        json!({"entityId": c.external_id}),
    )
    .await
    .ok();
    assert_eq!(all["result"][0]["cardStatus"], "CLOSED");
}

#[tokio::test]
async fn limits_set_in_one_dialect_read_in_the_others() {
    let app = spawn_app().await;
    let key = app.key.clone();
    let auth = m2p_login(&app, &app.tenant_id, &key).await;
    let c = owned_card(&app, "virtual").await;
    m2p(
        &app,
        &auth,
        "cards/support/update/preferences",
        json!({"entityId": c.external_id, "kit": c.kit(),
               "userOverridden": {"ATM": {"enabled": false}, "E-com": {"perTransactionLimit": 5000, "maxTransactionAmountPerDay": 20000}}}),
    )
    .await
    .ok();
    let l = p100(
        &app,
        &key,
        Method::GET,
        &format!("/v1/card/limits/{}/{}", c.external_id, c.id()),
        None,
    )
    .await
    .ok();
    assert_eq!(l["atm"]["enabled"], false);
    assert_eq!(l["ecommerce"]["perTransaction"], 5000);
    assert_eq!(l["ecommerce"]["daily"], 20000);
    let native = app.get(&format!("/v1/cards/{}/limits", c.id())).await.ok();
    assert_eq!(native["channels"]["ecommerce"]["daily"], 20000);
}

#[tokio::test]
async fn tenants_stay_apart_through_every_dialect() {
    let app = spawn_app().await;
    let b_key = app.new_tenant("tenant-b").await;
    let b_id = app.service().authenticate(&b_key).await.unwrap().tenant.id.to_string();
    let a = owned_card(&app, "physical").await;
    let events_before = app.all_events().await.len();

    // Tenant B names tenant A's user and card: not found, in each vendor's words.
    let r = p100(
        &app,
        &b_key,
        Method::GET,
        &format!("/v1/card/details/{}/{}", a.external_id, a.id()),
        None,
    )
    .await;
    assert_eq!(r.body["errorCode"], "P434", "{}", r.text);
    let r = p100(
        &app,
        &b_key,
        Method::PATCH,
        "/v1/card/pin",
        Some(json!({"externalUserId": a.external_id, "cardId": a.id(), "pin": "4821"})),
    )
    .await;
    assert_eq!(r.body["errorCode"], "P434", "{}", r.text);
    let r = p100(
        &app,
        &b_key,
        Method::GET,
        &format!("/v1/card/all/{}", a.external_id),
        None,
    )
    .await;
    assert_eq!(r.body["errorCode"], "P459", "{}", r.text);
    let r = qi(
        &app,
        &b_key,
        &format!("/wallet/{}/card/{}/password", a.account(), a.id()),
        json!({"pin": "2143"}),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (404, Some("CARD000011")));
    let r = qi(
        &app,
        &b_key,
        &format!("/wallet/{}/card/{}", a.account(), a.id()),
        json!({"status": "canceled"}),
    )
    .await;
    assert_eq!(r.body["code"], "CARD000011");
    let b = m2p_login(&app, &b_id, &b_key).await;
    let r = m2p(
        &app,
        &b,
        "cards/status",
        json!({"entityId": a.external_id, "kitNo": a.kit(), "status": "BLOCKED"}),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.body["businessCode"].as_str()),
        (409, Some("card.not.found"))
    );
    let r = m2p(
        &app,
        &b,
        "customers/fetch-all-cards",
        json!({"entityId": a.external_id}),
    )
    .await;
    assert_eq!(r.body["businessCode"], "entity.not.found");
    let r = m2p(
        &app,
        &b,
        "cards/v2/validate-pin",
        json!({"entityId": a.external_id, "kit": a.kit(), "oldPin": "4821"}),
    )
    .await;
    assert_eq!(r.body["businessCode"], "card.not.found");

    // A's token does not open B's tenant, nor B's A's.
    let a_auth = m2p_login(&app, &app.tenant_id, &app.key.clone()).await;
    let crossed = M2p {
        token: a_auth.token.clone(),
        tenant: b_id.clone(),
    };
    let r = m2p(
        &app,
        &crossed,
        "customers/fetch-all-cards",
        json!({"entityId": a.external_id}),
    )
    .await;
    assert_eq!(r.status.as_u16(), 401, "{}", r.text);
    // B's key is no client secret for A's tenant id.
    let r = send(
        &app,
        Method::POST,
        "/m2p/auth/token",
        &[],
        Some(Body::Json(
            json!({"clientId": app.tenant_id, "clientSecret": b_key, "grantType": "client_credentials"}),
        )),
    )
    .await;
    assert_eq!(r.status.as_u16(), 401, "{}", r.text);

    // Nothing of A's changed.
    let card = app.get(&format!("/v1/cards/{}", a.id())).await.ok();
    assert_eq!(
        (card["status"].as_str(), card["pin_status"].as_str()),
        (Some("ACTIVE"), Some("NOT_SET"))
    );
    assert_eq!(app.all_events().await.len(), events_before);
}

/// docs/dialects.md's example, run verbatim against a real server.
#[test]
fn dialects_doc_walkthrough() {
    let doc = include_str!("../../../../docs/dialects.md");
    let script = crate::readme::sh_block(doc, "<!-- dialects:start -->", "<!-- dialects:end -->");
    let Some(stdout) = crate::readme::run_doc_script("dialects_doc_walkthrough", &script) else {
        return;
    };
    // The page shows what the block prints; it must be what it prints.
    let shown = doc
        .split("<!-- dialects:end -->")
        .nth(1)
        .and_then(|rest| rest.split("```\n").nth(1))
        .expect("the printed lines after the example");
    assert_eq!(stdout.trim_end(), shown.trim_end());
}

/// Each dialect names a card by the vendor's identifiers and the core
/// resolves them inside the operation's one call: user A naming user B's
/// card gets exactly the answer of a card that does not exist (status and
/// body, card keys aside), in every operation of every dialect, and nothing
/// of B's changes. M2P's claims about the holder (a wrong `mobile` and
/// `expiryDate`) are not even looked at for a card that is not the
/// holder's: the answer must not tell B's card from no card.
#[tokio::test]
async fn a_foreign_card_answers_as_an_unknown_card_in_every_dialect() {
    let app = spawn_app().await;
    let key = app.key.clone();
    let a = owned_card(&app, "physical").await;
    let b = owned_card(&app, "physical").await;
    assert_ne!(a.account(), b.account(), "each card has its own account (QI wallet)");
    let unknown = uuid::Uuid::new_v4().to_string();
    let events_before = app.all_events().await.len();
    let same = |what: &str, foreign: Resp, none: Resp| {
        assert!(foreign.status.is_client_error(), "{what}: {}", foreign.text);
        assert_eq!(
            (foreign.status, redact(&foreign.body)),
            (none.status, redact(&none.body)),
            "{what}: B's card must answer as no card"
        );
    };

    // P100: user A, B's card id / an unknown id.
    let (user, b_id) = (a.external_id.clone(), b.id().to_owned());
    let get = |path: String| {
        let app = &app;
        let key = key.clone();
        async move { p100(app, &key, Method::GET, &path, None).await }
    };
    same(
        "p100 details",
        get(format!("/v1/card/details/{user}/{b_id}")).await,
        get(format!("/v1/card/details/{user}/{unknown}")).await,
    );
    same(
        "p100 limits",
        get(format!("/v1/card/limits/{user}/{b_id}")).await,
        get(format!("/v1/card/limits/{user}/{unknown}")).await,
    );
    for (method, path, extra) in [
        (Method::PATCH, "/v1/card/pin", json!({"pin": "4821"})),
        (Method::PATCH, "/v1/card/block", json!({})),
        (Method::PATCH, "/v1/card/unblock", json!({})),
        (Method::PATCH, "/v1/card/limits", json!({"atm": {"enabled": false}})),
    ] {
        let body = |card: &str| {
            let mut v = extra.clone();
            v["externalUserId"] = json!(user);
            v["cardId"] = json!(card);
            Some(v)
        };
        same(
            path,
            p100(&app, &key, method.clone(), path, body(&b_id)).await,
            p100(&app, &key, method.clone(), path, body(&unknown)).await,
        );
    }
    same(
        "p100 delete",
        p100(&app, &key, Method::DELETE, &format!("/v1/card/{user}/{b_id}"), None).await,
        p100(&app, &key, Method::DELETE, &format!("/v1/card/{user}/{unknown}"), None).await,
    );

    // QI: A's wallet, B's card / an unknown card.
    let wallet = a.account();
    for (suffix, body) in [
        ("/password", json!({"pin": "2143"})),
        ("", json!({"status": "canceled"})),
        ("/activate", json!({"code": "123456"})),
    ] {
        same(
            &format!("qitech{suffix}"),
            qi(
                &app,
                &key,
                &format!("/wallet/{wallet}/card/{}{suffix}", b.id()),
                body.clone(),
            )
            .await,
            qi(&app, &key, &format!("/wallet/{wallet}/card/{unknown}{suffix}"), body).await,
        );
    }

    // M2P: entity A, B's kit / an unknown kit, with claims that are wrong
    // for both holders.
    let auth = m2p_login(&app, &app.tenant_id, &key).await;
    let pin_body = |kit: &str| {
        json!({
            "mobile": {"value": "1111111111", "countryCode": 91},
            "entityId": a.external_id,
            "kit": kit,
            "expiryDate": "01/20",
            "oldPin": "1234",
            "newPin": "4821",
            "otpDetails": {"traceNumber": "1", "mobileNumber": "1111111111", "otp": "123456"},
        })
    };
    let unknown_kit = "000000000001";
    for path in ["cards/update/pin", "cards/v2/set-pin", "cards/v2/validate-pin"] {
        same(
            path,
            m2p(&app, &auth, path, pin_body(b.kit())).await,
            m2p(&app, &auth, path, pin_body(unknown_kit)).await,
        );
    }
    let status = |kit: &str| json!({"entityId": a.external_id, "kitNo": kit, "status": "BLOCKED"});
    same(
        "m2p status",
        m2p(&app, &auth, "cards/status", status(b.kit())).await,
        m2p(&app, &auth, "cards/status", status(unknown_kit)).await,
    );
    let prefs = |kit: &str| {
        json!({"entityId": a.external_id, "kit": kit,
               "mobile": {"value": "1111111111", "countryCode": 91},
               "rule": {"expiryDate": "01/20"},
               "userOverridden": {"ATM": {"enabled": false}}})
    };
    let path = "cards/support/update/preferences";
    let foreign = m2p(&app, &auth, path, prefs(b.kit())).await;
    assert_eq!(
        (foreign.status.as_u16(), foreign.body["businessCode"].as_str()),
        (409, Some("card.not.found")),
        "{}",
        foreign.text
    );
    same(
        "m2p preferences",
        foreign,
        m2p(&app, &auth, path, prefs(unknown_kit)).await,
    );

    // The same wrong claims about A's own card are field errors, all of
    // them at once, checked by the core before anything is spent.
    let r = m2p(&app, &auth, "cards/v2/set-pin", pin_body(a.kit())).await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text);
    for field in ["mobile", "otpDetails.mobileNumber", "expiryDate"] {
        assert!(r.text.contains(field), "{field} named: {}", r.text);
    }

    // Nothing of B's (nor A's) changed.
    for c in [&a, &b] {
        let card = app.get(&format!("/v1/cards/{}", c.id())).await.ok();
        assert_eq!(
            (card["status"].as_str(), card["pin_status"].as_str()),
            (Some("ACTIVE"), Some("NOT_SET"))
        );
        assert_eq!(card["limits"], c.card["limits"]);
    }
    assert_eq!(app.all_events().await.len(), events_before);
}
