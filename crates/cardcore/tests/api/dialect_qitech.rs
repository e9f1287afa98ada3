//! The QI Tech dialect: the seed page (change physical card password),
//! status changes and activation, every documented error, and the shapes.

use reqwest::Method;
use serde_json::{json, Value};

use crate::dialect_cross::{corrupt_key_versions, hold_writer, owned_card, qi, redact, send, Body, Owned};
use crate::helpers::{spawn_app, spawn_app_with, Resp, TestApp};

/// A QI error: HTTP status, `code`, and the four documented members only.
#[track_caller]
fn qi_error(r: &Resp, status: u16, code: &str) -> Value {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    assert_eq!(r.body["code"], code, "{}", r.text);
    let mut keys: Vec<&str> = r.body.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "description", "title", "translation"], "{}", r.text);
    r.body.clone()
}

fn password_path(c: &Owned) -> String {
    format!("/wallet/{}/card/{}/password", c.account(), c.id())
}

fn card_path(c: &Owned) -> String {
    format!("/wallet/{}/card/{}", c.account(), c.id())
}

async fn password(app: &TestApp, c: &Owned, pin: &str) -> Resp {
    qi(app, &app.key, &password_path(c), json!({ "pin": pin })).await
}

#[tokio::test]
async fn seed_001_change_physical_card_password() {
    let app = spawn_app().await;
    let c = owned_card(&app, "physical").await;

    // The page's example request, WALLET_KEY and CARD_KEY replaced by real ones.
    let r = password(&app, &c, "2143").await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    let native = app.get(&format!("/v1/cards/{}", c.id())).await.ok();
    let b = &r.body;
    assert_eq!(b["card_key"], c.id());
    assert_eq!(b["status"], "active");
    assert_eq!(b["account_key"], native["account_id"]);
    assert_eq!(b["program_key"], native["program_id"]);
    // The page's example shows "virtual", but its title and table allow
    // only plastic cards: cardcore answers the card's real type.
    assert_eq!(b["type"], "plastic");
    assert_eq!(b["printed_name"], "ANA SILVA");
    assert_eq!(b["brand"], "visa");
    assert_eq!(b["last_four_digits"], native["last_four"]);
    // QI's timestamp format: seconds, `Z`.
    let created = b["created_at"].as_str().unwrap();
    assert_eq!(created.len(), "2023-02-20T19:28:16Z".len(), "{created}");
    assert!(created.ends_with('Z'));
    // The page's keys, all of them and nothing else.
    let mut keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "account_key",
            "brand",
            "card_key",
            "card_name",
            "created_at",
            "cvv_rotation_interval_hours",
            "last_four_digits",
            "printed_name",
            "program_key",
            "status",
            "type",
            "updated_at"
        ]
    );
    insta::assert_json_snapshot!("qitech_card_object", redact(b));
    assert_eq!(app.verify(c.id(), "2143").await.ok()["valid"], true);
    assert_eq!(app.audit(c.id()).await[0]["actor"]["channel"], "qitech");

    // A temporarily blocked card may change its password too.
    qi(&app, &app.key, &card_path(&c), json!({"status": "blocked"}))
        .await
        .ok();
    let r = password(&app, &c, "7391").await.ok();
    assert_eq!(r["status"], "blocked");
    assert_eq!(app.verify(c.id(), "7391").await.ok()["valid"], true);
}

#[tokio::test]
async fn auth_gdf000003_and_gdf000018() {
    let app = spawn_app().await;
    let c = owned_card(&app, "physical").await;
    let path = format!("/qitech{}", password_path(&c));
    let r = send(
        &app,
        Method::PATCH,
        &path,
        &[],
        Some(Body::Json(json!({"pin": "2143"}))),
    )
    .await;
    let b = qi_error(&r, 400, "GDF000003");
    assert_eq!(b["description"], "No API Client Key received");
    insta::assert_json_snapshot!("qitech_missing_key", b);
    let r = qi(&app, "cc_wrong", &password_path(&c), json!({"pin": "2143"})).await;
    let b = qi_error(&r, 404, "GDF000018");
    assert!(!r.text.contains("cc_wrong"), "the key is not echoed: {}", r.text);
    insta::assert_json_snapshot!("qitech_unknown_key", b);
    assert_eq!(app.verify(c.id(), "2143").await.code(), "pin_not_set");
}

#[tokio::test]
async fn qit000001_invalid_json_schema() {
    let app = spawn_app().await;
    let c = owned_card(&app, "physical").await;
    let path = format!("/qitech{}", password_path(&c));
    let key = [("API-CLIENT-KEY", app.key.as_str())];
    let bodies = [
        Some(Body::Raw("{\"pin\": ")),
        None,
        Some(Body::Json(json!({}))),
        Some(Body::Json(json!({"pin": 2143}))),
        Some(Body::Json(json!({"pin": "214"}))),
        Some(Body::Json(json!({"pin": "21434"}))),
        Some(Body::Json(json!({"pin": "21a3"}))),
        Some(Body::Json(json!({"pin": "2143", "password": "2143"}))),
    ];
    for body in bodies {
        let r = send(&app, Method::PATCH, &path, &key, body).await;
        qi_error(&r, 400, "QIT000001");
        assert!(!r.text.contains("2143"), "no PIN echoed: {}", r.text);
    }
    // Keys that are not UUIDs, and an unknown status word.
    let r = qi(
        &app,
        &app.key,
        &format!("/wallet/nope/card/{}/password", c.id()),
        json!({"pin": "2143"}),
    )
    .await;
    let b = qi_error(&r, 400, "QIT000001");
    assert!(b["description"].as_str().unwrap().contains("WALLET_KEY"), "{}", r.text);
    let r = qi(&app, &app.key, &card_path(&c), json!({"status": "created"})).await;
    let b = qi_error(&r, 400, "QIT000001");
    insta::assert_json_snapshot!("qitech_invalid_schema", b);
    let r = qi(
        &app,
        &app.key,
        &format!("{}/activate", card_path(&c)),
        json!({"activation_code": "12"}),
    )
    .await;
    qi_error(&r, 400, "QIT000001");
    assert_eq!(app.verify(c.id(), "2143").await.code(), "pin_not_set");
}

#[tokio::test]
async fn card000011_card_not_found_in_that_wallet() {
    let app = spawn_app().await;
    let c = owned_card(&app, "physical").await;
    let other = owned_card(&app, "physical").await;
    let unknown = uuid::Uuid::now_v7();
    for path in [
        format!("/wallet/{}/card/{unknown}/password", c.account()),
        // The card exists, but in another wallet.
        format!("/wallet/{}/card/{}/password", other.account(), c.id()),
    ] {
        let r = qi(&app, &app.key, &path, json!({"pin": "2143"})).await;
        qi_error(&r, 404, "CARD000011");
    }
    let r = qi(
        &app,
        &app.key,
        &format!("/wallet/{}/card/{unknown}", c.account()),
        json!({"status": "blocked"}),
    )
    .await;
    let b = qi_error(&r, 404, "CARD000011");
    assert_eq!(
        b["description"],
        format!("It was not possible to fetch the Card for the card_key {unknown}.")
    );
    insta::assert_json_snapshot!("qitech_card_not_found", redact(&b));
}

#[tokio::test]
async fn card000023_only_plastic_cards_have_a_password() {
    let app = spawn_app().await;
    let v = owned_card(&app, "virtual").await;
    let r = password(&app, &v, "2143").await;
    let b = qi_error(&r, 406, "CARD000023");
    assert_eq!(
        b["description"],
        "The card type is invalid for this operation. Only plastic cards are allowed."
    );
    insta::assert_json_snapshot!("qitech_not_plastic", b);
    assert_eq!(app.verify(v.id(), "2143").await.code(), "pin_not_set");
}

#[tokio::test]
async fn card000024_weak_password_with_the_reason() {
    let app = spawn_app().await;
    let c = owned_card(&app, "physical").await;
    // The page's own advice: no repeated numbers (3333), no birth dates.
    let r = password(&app, &c, "3333").await;
    let b = qi_error(&r, 400, "CARD000024");
    assert_eq!(
        b["description"],
        "We're sorry, but the card could not be update password: the PIN is too weak: the same digit repeated."
    );
    // `title` and `translation` as seed 001's error example shows them.
    assert_eq!(b["title"], "Bad Request");
    assert_eq!(b["translation"], "Unexpected error update password card");
    insta::assert_json_snapshot!("qitech_password_not_updated", b);
    // The cardholder was born 1990-05-17.
    let r = password(&app, &c, "1705").await;
    let b = qi_error(&r, 400, "CARD000024");
    assert!(
        b["description"].as_str().unwrap().contains("date of birth"),
        "{}",
        r.text
    );
    assert!(!r.text.contains("1705"));
}

#[tokio::test]
async fn card000025_status_invalid_for_a_password() {
    let app = spawn_app().await;
    // Not yet activated (QI "created"): the core would allow a PIN, QI does not.
    let holder = app.create_cardholder("qi-created").await;
    let card = app
        .create_card_as(&app.key.clone(), holder["id"].as_str().unwrap(), "physical")
        .await;
    let path = format!(
        "/wallet/{}/card/{}/password",
        card["account_id"].as_str().unwrap(),
        card["id"].as_str().unwrap()
    );
    let r = qi(&app, &app.key, &path, json!({"pin": "2143"})).await;
    let b = qi_error(&r, 406, "CARD000025");
    assert_eq!(b["description"], "The status created is invalid for the operation.");
    insta::assert_json_snapshot!("qitech_status_invalid", b);
    // Lost, robbed, canceled: no password either.
    let c = owned_card(&app, "physical").await;
    qi(&app, &app.key, &card_path(&c), json!({"status": "lost"})).await.ok();
    let b = qi_error(&password(&app, &c, "2143").await, 406, "CARD000025");
    assert_eq!(b["description"], "The status lost is invalid for the operation.");
    assert_eq!(
        app.get(&format!("/v1/cards/{}", card["id"].as_str().unwrap()))
            .await
            .ok()["pin_status"],
        "NOT_SET"
    );
}

#[tokio::test]
async fn status_changes_in_qi_words_and_card000013() {
    let app = spawn_app().await;
    let key = app.key.clone();
    let c = owned_card(&app, "physical").await;
    let set = |s: &'static str| json!({ "status": s });
    let path = card_path(&c);

    let r = qi(&app, &key, &path, set("blocked")).await.ok();
    assert_eq!(r["status"], "blocked");
    assert_eq!(app.get(&format!("/v1/cards/{}", c.id())).await.ok()["status"], "LOCKED");
    let r = qi(&app, &key, &path, set("active")).await.ok();
    assert_eq!(r["status"], "active");
    insta::assert_json_snapshot!("qitech_status_changed", redact(&r));
    // Same status: success, nothing written.
    let before = app.audit(c.id()).await.len();
    qi(&app, &key, &path, set("active")).await.ok();
    assert_eq!(app.audit(c.id()).await.len(), before);

    // Each terminal word lands on BLOCKED with its reason, and reads back.
    for (word, reason) in [
        ("lost", "LOST_CARD"),
        ("robbed", "STOLEN_CARD"),
        ("theft", "STOLEN_CARD"),
        ("fraud", "FRAUD_CONFIRMED"),
    ] {
        let card = owned_card(&app, "virtual").await;
        let r = qi(&app, &key, &card_path(&card), set(word)).await.ok();
        assert_eq!(r["status"], word);
        let native = app.get(&format!("/v1/cards/{}", card.id())).await.ok();
        assert_eq!(native["status"], "BLOCKED");
        assert_eq!(native["status_reason"]["code"], reason);
    }

    // Out of a terminated status: CARD000014, naming it (QI's page).
    qi(&app, &key, &path, set("robbed")).await.ok();
    let r = qi(&app, &key, &path, set("blocked")).await;
    let b = qi_error(&r, 406, "CARD000014");
    assert_eq!(
        b["description"],
        "The operation is not valid for the current status of the card [robbed]."
    );
    insta::assert_json_snapshot!("qitech_status_change_refused", b);
    let r = qi(&app, &key, &path, set("canceled")).await.ok();
    assert_eq!(r["status"], "canceled");
    assert_eq!(app.get(&format!("/v1/cards/{}", c.id())).await.ok()["status"], "CLOSED");
    let r = qi(&app, &key, &path, set("active")).await;
    qi_error(&r, 406, "CARD000014");
    // `active` never activates: that is the activation call's job.
    let holder = app.create_cardholder("qi-new").await;
    let fresh = app
        .create_card_as(&key, holder["id"].as_str().unwrap(), "physical")
        .await;
    let r = qi(
        &app,
        &key,
        &format!(
            "/wallet/{}/card/{}",
            fresh["account_id"].as_str().unwrap(),
            fresh["id"].as_str().unwrap()
        ),
        set("active"),
    )
    .await;
    let b = qi_error(&r, 406, "CARD000013");
    assert_eq!(b["description"], "Unable to transition from created to active.");
}

#[tokio::test]
async fn activation_card000017_and_card000020() {
    let app = spawn_app().await;
    let key = app.key.clone();
    let holder = app.create_cardholder("qi-act").await;
    let card = app
        .create_card_as(&key, holder["id"].as_str().unwrap(), "physical")
        .await;
    let id = card["id"].as_str().unwrap();
    let path = format!("/wallet/{}/card/{id}/activate", card["account_id"].as_str().unwrap());

    let r = qi(&app, &key, &path, json!({"activation_code": "000000"})).await;
    let b = qi_error(&r, 406, "CARD000020");
    insta::assert_json_snapshot!("qitech_invalid_activation_code", b);
    let code = app.activation_code(id).await;
    let r = qi(&app, &key, &path, json!({"activation_code": code})).await.ok();
    assert_eq!(r["status"], "active");
    assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok()["status"], "ACTIVE");

    // A canceled card cannot be activated.
    let holder = app.create_cardholder("qi-act-2").await;
    let card = app
        .create_card_as(&key, holder["id"].as_str().unwrap(), "physical")
        .await;
    let id = card["id"].as_str().unwrap();
    let account = card["account_id"].as_str().unwrap();
    qi(
        &app,
        &key,
        &format!("/wallet/{account}/card/{id}"),
        json!({"status": "canceled"}),
    )
    .await
    .ok();
    let code = app.activation_code(id).await;
    let r = qi(
        &app,
        &key,
        &format!("/wallet/{account}/card/{id}/activate"),
        json!({"activation_code": code}),
    )
    .await;
    let b = qi_error(&r, 406, "CARD000017");
    assert_eq!(
        b["description"],
        "The activation operation is not valid for the current card status [canceled]."
    );
    insta::assert_json_snapshot!("qitech_activation_not_valid", b);
}

#[tokio::test]
async fn qit000500_and_qit000503_hide_their_cause() {
    let app = spawn_app_with(&["--db-timeout-seconds", "1"]).await;
    let c = owned_card(&app, "physical").await;
    let held = hold_writer(&app).await;
    let r = password(&app, &c, "2143").await;
    drop(held);
    let b = qi_error(&r, 503, "QIT000503");
    insta::assert_json_snapshot!("qitech_unavailable", b);
    assert_eq!(r.headers["retry-after"], "1");

    let holder = app.create_cardholder("qi-corrupt").await;
    let card = app
        .create_card_as(&app.key.clone(), holder["id"].as_str().unwrap(), "physical")
        .await;
    let id = card["id"].as_str().unwrap();
    let code = app.activation_code(id).await;
    corrupt_key_versions(&app, id).await;
    let r = qi(
        &app,
        &app.key,
        &format!("/wallet/{}/card/{id}/activate", card["account_id"].as_str().unwrap()),
        json!({"activation_code": code}),
    )
    .await;
    let b = qi_error(&r, 500, "QIT000500");
    assert!(!r.text.contains("version"), "no internals: {}", r.text);
    insta::assert_json_snapshot!("qitech_internal_error", b);
}

#[tokio::test]
async fn activate_with_the_pages_code_field() {
    // QI's page (https://docs.qitech.com.br/en/documentation/cards/status/ativar_cartao)
    // sends `{"code": "253615"}` and answers the card object.
    let app = spawn_app().await;
    let key = app.key.clone();
    let holder = app.create_cardholder("qi-code").await;
    let card = app
        .create_card_as(&key, holder["id"].as_str().unwrap(), "physical")
        .await;
    let (id, account) = (card["id"].as_str().unwrap(), card["account_id"].as_str().unwrap());
    let code = app.activation_code(id).await;
    let r = qi(
        &app,
        &key,
        &format!("/wallet/{account}/card/{id}/activate"),
        json!({"code": code}),
    )
    .await
    .ok();
    let mut keys: Vec<_> = r.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "account_key",
            "brand",
            "card_key",
            "card_name",
            "created_at",
            "cvv_rotation_interval_hours",
            "last_four_digits",
            "printed_name",
            "program_key",
            "status",
            "type",
            "updated_at"
        ]
    );
    assert_eq!(r["status"], "active");
    assert_eq!(r["card_key"], id);
    assert_eq!(r["account_key"], account);
    assert_eq!(r["type"], "plastic");
    assert!(!r.to_string().contains(&code));
}

#[tokio::test]
async fn prepaid_paths_as_qis_prepaid_pages_show_them() {
    // https://docs.qitech.com.br/en/documentation/cards/status/update_status_cartao:
    // PATCH /prepaid/card/CARD_KEY {"status": "blocked"}; CARD000014 out of
    // `canceled`. .../ativar_cartao: PATCH /prepaid/card/CARD_KEY/activate {"code"}.
    let app = spawn_app().await;
    let key = app.key.clone();
    let holder = app.create_cardholder("qi-prepaid").await;
    let card = app
        .create_card_as(&key, holder["id"].as_str().unwrap(), "physical")
        .await;
    let id = card["id"].as_str().unwrap();
    let code = app.activation_code(id).await;
    let r = qi(
        &app,
        &key,
        &format!("/prepaid/card/{id}/activate"),
        json!({"code": code}),
    )
    .await
    .ok();
    assert_eq!(
        (r["status"].as_str(), r["card_key"].as_str()),
        (Some("active"), Some(id))
    );
    assert_eq!(r["account_key"], card["account_id"]);

    let r = qi(&app, &key, &format!("/prepaid/card/{id}"), json!({"status": "blocked"}))
        .await
        .ok();
    assert_eq!(r["status"], "blocked");
    assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok()["status"], "LOCKED");
    qi(
        &app,
        &key,
        &format!("/prepaid/card/{id}"),
        json!({"status": "canceled"}),
    )
    .await
    .ok();
    let r = qi(&app, &key, &format!("/prepaid/card/{id}"), json!({"status": "active"})).await;
    let b = qi_error(&r, 406, "CARD000014");
    assert_eq!(
        b["description"],
        "The operation is not valid for the current status of the card [canceled]."
    );
    assert_eq!(b["title"], "Not Acceptable");

    // Unknown, malformed and foreign card keys: CARD000011 / QIT000001.
    let unknown = uuid::Uuid::new_v4();
    let r = qi(
        &app,
        &key,
        &format!("/prepaid/card/{unknown}"),
        json!({"status": "blocked"}),
    )
    .await;
    let b = qi_error(&r, 404, "CARD000011");
    assert_eq!(
        b["description"],
        format!("It was not possible to fetch the Card for the card_key {unknown}.")
    );
    let r = qi(&app, &key, "/prepaid/card/not-a-uuid", json!({"status": "blocked"})).await;
    qi_error(&r, 400, "QIT000001");
    let other = app.new_tenant("qi-prepaid-other").await;
    let r = qi(
        &app,
        &other,
        &format!("/prepaid/card/{id}/activate"),
        json!({"code": "123456"}),
    )
    .await;
    qi_error(&r, 404, "CARD000011");
}
