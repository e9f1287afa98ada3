//! The P100 dialect: the seed page (`PATCH /v1/card/pin`), the rest of the
//! Virtual Cards section, every documented error, and the response shapes.

use reqwest::Method;
use serde_json::{json, Value};

use crate::dialect_cross::{corrupt_key_versions, hold_writer, owned_card, p100, redact, send, Body};
use crate::helpers::{spawn_app, spawn_app_with, Resp, TestApp};

/// The coded error of a P100 answer: HTTP 400 and `errorCode`.
#[track_caller]
fn coded(r: &Resp, code: &str) -> Value {
    assert_eq!(r.status.as_u16(), 400, "{}", r.text);
    assert_eq!(r.body["errorCode"], code, "{}", r.text);
    r.body.clone()
}

async fn pin(app: &TestApp, body: Value) -> Resp {
    p100(app, &app.key, Method::PATCH, "/v1/card/pin", Some(body)).await
}

#[tokio::test]
async fn seed_000_update_card_pin() {
    let app = spawn_app().await;
    let c = owned_card(&app, "virtual").await;

    // The page's example request, ids replaced by real ones. Its PIN 1234 is
    // a run of consecutive digits, which cardcore's PIN policy refuses: P403
    // with the reason (the documented answer to a weak PIN).
    let seed = json!({"externalUserId": c.external_id, "cardId": c.id(), "pin": "1234"});
    let r = pin(&app, seed).await;
    let body = coded(&r, "P403");
    assert_eq!(
        body,
        json!({"errorCode": "P403", "errorMessage": "the PIN is too weak: a run of consecutive digits, up or down"})
    );

    // The same request with a PIN the policy accepts: the documented 200.
    let r = pin(
        &app,
        json!({"externalUserId": c.external_id, "cardId": c.id(), "pin": "4821"}),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(r.body, json!({"message": "Card pin updated successfully"}));
    insta::assert_json_snapshot!("p100_pin_updated", r.body);
    // "The card can be used with the new PIN immediately."
    assert_eq!(app.verify(c.id(), "4821").await.ok()["valid"], true);
    let audit = app.audit(c.id()).await;
    assert_eq!(audit[0]["type"], "card.pin_set");
    assert_eq!(audit[0]["actor"]["channel"], "p100");
}

#[tokio::test]
async fn access_denied_xo1_and_xo2() {
    let app = spawn_app().await;
    let c = owned_card(&app, "virtual").await;
    let body = json!({"externalUserId": c.external_id, "cardId": c.id(), "pin": "4821"});
    // No header, and the seed's own `x-api-key;` (an empty value).
    for headers in [vec![], vec![("x-api-key", "")]] {
        let r = send(
            &app,
            Method::PATCH,
            "/p100/v1/card/pin",
            &headers,
            Some(Body::Json(body.clone())),
        )
        .await;
        assert_eq!(r.status.as_u16(), 401, "{}", r.text);
        assert_eq!(r.body, json!({"message": "Access Denied. xo1"}));
    }
    let r = p100(&app, "cc_not-a-key", Method::PATCH, "/v1/card/pin", Some(body.clone())).await;
    assert_eq!(r.status.as_u16(), 401, "{}", r.text);
    assert_eq!(r.body, json!({"message": "Access Denied. xo2"}));
    insta::assert_json_snapshot!("p100_access_denied", r.body);
    // A native bearer key is not P100's header.
    let r = app.call_as(&app.key, Method::GET, "/p100/v1/card/all/x", None).await;
    assert_eq!(r.body, json!({"message": "Access Denied. xo1"}));
    assert_eq!(app.verify(c.id(), "4821").await.code(), "pin_not_set");
}

#[tokio::test]
async fn p403_validation_errors_name_the_field() {
    let app = spawn_app().await;
    let c = owned_card(&app, "virtual").await;
    let (u, id) = (c.external_id.as_str(), c.id());
    let cases: Vec<(Option<Body>, &str)> = vec![
        (Some(Body::Raw("{")), "body: the body is not valid JSON"),
        (None, "body: a JSON body is required"),
        (
            Some(Body::Json(json!({"externalUserId": u, "cardId": id}))),
            "pin: is required",
        ),
        (
            Some(Body::Json(json!({"externalUserId": u, "cardId": id, "pin": 4821}))),
            "pin: invalid type",
        ),
        (
            Some(Body::Json(json!({"externalUserId": u, "cardId": id, "pin": "48x1"}))),
            "pin: must be a string of digits",
        ),
        (
            Some(Body::Json(
                json!({"externalUserId": u, "cardId": "nope", "pin": "4821"}),
            )),
            "cardId: must be a UUID",
        ),
        (
            Some(Body::Json(
                json!({"externalUserId": u, "cardId": id, "pin": "4821", "extra": 1}),
            )),
            "extra: is not a known field",
        ),
        (
            Some(Body::Json(json!({"externalUserId": u, "cardId": id, "pin": "1111"}))),
            "the PIN is too weak: the same digit repeated",
        ),
        (
            Some(Body::Json(json!({"externalUserId": u, "cardId": id, "pin": "482193"}))),
            "the PIN must be 4 to 4 digits for this program",
        ),
    ];
    for (body, message) in cases {
        let r = send(
            &app,
            Method::PATCH,
            "/p100/v1/card/pin",
            &[("x-api-key", &app.key)],
            body,
        )
        .await;
        let b = coded(&r, "P403");
        assert!(b.get("errorName").is_none(), "P403 has no errorName: {}", r.text);
        assert!(
            b["errorMessage"].as_str().unwrap().starts_with(message),
            "{message:?} in {}",
            r.text
        );
        assert!(
            !r.text.contains("4821") && !r.text.contains("1111"),
            "no PIN echoed: {}",
            r.text
        );
    }
    insta::assert_json_snapshot!(
        "p100_validation_error",
        coded(
            &pin(&app, json!({"externalUserId": u, "cardId": id, "pin": "1111"})).await,
            "P403"
        )
    );
    assert_eq!(app.verify(id, "4821").await.code(), "pin_not_set");
}

#[tokio::test]
async fn p434_card_not_exist_for_unknown_or_foreign_cards() {
    let app = spawn_app().await;
    let c = owned_card(&app, "virtual").await;
    let other = owned_card(&app, "virtual").await;
    let unknown = uuid::Uuid::now_v7().to_string();
    for (user, card) in [
        (c.external_id.as_str(), unknown.as_str()),
        (c.external_id.as_str(), other.id()),
        ("nobody", c.id()),
    ] {
        let r = pin(&app, json!({"externalUserId": user, "cardId": card, "pin": "4821"})).await;
        let b = coded(&r, "P434");
        assert_eq!(
            b,
            json!({"errorCode": "P434", "errorName": "CARD_NOT_EXIST", "errorMessage": "Card not exist"})
        );
    }
    let r = p100(
        &app,
        &app.key,
        Method::GET,
        &format!("/v1/card/details/{}/{}", c.external_id, other.id()),
        None,
    )
    .await;
    insta::assert_json_snapshot!("p100_card_not_exist", coded(&r, "P434"));
    assert_eq!(
        app.get(&format!("/v1/cards/{}", other.id())).await.ok()["pin_status"],
        "NOT_SET"
    );
}

#[tokio::test]
async fn p459_user_not_verified_for_an_unknown_user() {
    let app = spawn_app().await;
    let r = p100(
        &app,
        &app.key,
        Method::POST,
        "/v1/card/create",
        Some(json!({"externalUserId": "ghost"})),
    )
    .await;
    let b = coded(&r, "P459");
    assert_eq!(
        b,
        json!({"errorCode": "P459", "errorName": "USER_NOT_VERIFIED", "errorMessage": "User not verified"})
    );
    let r = p100(&app, &app.key, Method::GET, "/v1/card/all/ghost", None).await;
    coded(&r, "P459");
}

#[tokio::test]
async fn p500_unknown_exception_hides_the_cause() {
    let app = spawn_app().await;
    let c = owned_card(&app, "virtual").await;
    corrupt_key_versions(&app, c.id()).await;
    let r = p100(
        &app,
        &app.key,
        Method::GET,
        &format!("/v1/card/details/{}/{}", c.external_id, c.id()),
        None,
    )
    .await;
    let b = coded(&r, "P500");
    assert_eq!(
        b,
        json!({"errorCode": "P500", "errorName": "UNKNOWN_EXCEPTION", "errorMessage": "Unknown exception"})
    );
    insta::assert_json_snapshot!("p100_unknown_exception", b);
}

#[tokio::test]
async fn p501_service_temporarily_unavailable_when_the_database_is_down() {
    let app = spawn_app_with(&["--db-timeout-seconds", "1"]).await;
    let c = owned_card(&app, "virtual").await;
    let held = hold_writer(&app).await;
    let r = pin(
        &app,
        json!({"externalUserId": c.external_id, "cardId": c.id(), "pin": "4821"}),
    )
    .await;
    drop(held);
    let b = coded(&r, "P501");
    assert_eq!(
        b,
        json!({"errorCode": "P501", "errorName": "SERVICE_TEMPORARILY_UNAVAILABLE", "errorMessage": "Service temporarily unavailable"})
    );
    insta::assert_json_snapshot!("p100_service_unavailable", b);
    // Nothing was written; once the database is back the same call works.
    assert_eq!(app.verify(c.id(), "4821").await.code(), "pin_not_set");
    let r = pin(
        &app,
        json!({"externalUserId": c.external_id, "cardId": c.id(), "pin": "4821"}),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
}

#[tokio::test]
async fn card_details_carry_pan_cvv_and_expiry() {
    let app = spawn_app().await;
    let c = owned_card(&app, "virtual").await;
    let r = p100(
        &app,
        &app.key,
        Method::GET,
        &format!("/v1/card/details/{}/{}", c.external_id, c.id()),
        None,
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store");
    let native = app.get(&format!("/v1/cards/{}/sensitive", c.id())).await.ok();
    assert_eq!(r.body["cardNumber"], native["pan"]);
    assert_eq!(r.body["cvv"], native["cvv"]);
    assert_eq!(r.body["expiryDate"], native["expiry"]);
    assert_eq!(r.body["status"], "ACTIVE");
    assert_eq!(r.body["cardId"], c.id());
    assert_eq!(r.body["externalUserId"], c.external_id.as_str());
    insta::assert_json_snapshot!("p100_card_details", redact(&r.body));
    let audit = app.audit(c.id()).await;
    assert_eq!(audit[1]["type"], "card.sensitive_revealed");
    assert_eq!(audit[1]["actor"]["channel"], "p100");

    // A key that may not read card data gets a P403, not the data.
    let tenant = app.tenant_id.parse().unwrap();
    let limited = app.service().create_api_key(tenant, None, false).await.unwrap();
    let r = p100(
        &app,
        &limited.secret,
        Method::GET,
        &format!("/v1/card/details/{}/{}", c.external_id, c.id()),
        None,
    )
    .await;
    let b = coded(&r, "P403");
    assert_eq!(b["errorMessage"], "this API key may not reveal card data");
}

#[tokio::test]
async fn create_list_block_unblock_limits_delete() {
    let app = spawn_app().await;
    let key = app.key.clone();
    app.create_cardholder("p100-user").await;

    let made = p100(
        &app,
        &key,
        Method::POST,
        "/v1/card/create",
        Some(json!({"externalUserId": "p100-user", "cardName": "online"})),
    )
    .await;
    assert_eq!(made.status.as_u16(), 200, "{}", made.text);
    insta::assert_json_snapshot!("p100_card_created", redact(&made.body));
    assert_eq!(made.body["status"], "ACTIVE");
    assert_eq!(made.body["cardType"], "VIRTUAL");
    assert!(made.body.get("cardNumber").is_none() && made.body.get("cvv").is_none());
    let id = made.body["cardId"].as_str().unwrap().to_owned();
    let second = p100(
        &app,
        &key,
        Method::POST,
        "/v1/card/create",
        Some(json!({"externalUserId": "p100-user"})),
    )
    .await
    .ok();

    let all = p100(&app, &key, Method::GET, "/v1/card/all/p100-user", None).await.ok();
    let ids: Vec<&str> = all["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cardId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str(), second["cardId"].as_str().unwrap()]);
    insta::assert_json_snapshot!("p100_all_cards", redact(&all));

    let card = json!({"externalUserId": "p100-user", "cardId": id});
    let r = p100(&app, &key, Method::PATCH, "/v1/card/block", Some(card.clone()))
        .await
        .ok();
    assert_eq!(r, json!({"message": "Card blocked successfully"}));
    assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok()["status"], "LOCKED");
    // Blocking twice is a success that changes nothing.
    p100(&app, &key, Method::PATCH, "/v1/card/block", Some(card.clone()))
        .await
        .ok();
    assert_eq!(
        app.audit(&id).await.iter().filter(|a| a["type"] == "card.lock").count(),
        1
    );
    let r = p100(&app, &key, Method::PATCH, "/v1/card/unblock", Some(card.clone()))
        .await
        .ok();
    assert_eq!(r, json!({"message": "Card unblocked successfully"}));
    insta::assert_json_snapshot!("p100_unblocked", r);
    assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok()["status"], "ACTIVE");

    let limits = p100(
        &app,
        &key,
        Method::GET,
        &format!("/v1/card/limits/p100-user/{id}"),
        None,
    )
    .await
    .ok();
    assert_eq!(limits["currency"], "EUR");
    assert_eq!(
        limits["atm"],
        json!({"enabled": true, "perTransaction": null, "daily": null, "monthly": null})
    );
    let patched = p100(
        &app,
        &key,
        Method::PATCH,
        "/v1/card/limits",
        Some(json!({"externalUserId": "p100-user", "cardId": id,
                    "atm": {"enabled": false}, "ecommerce": {"perTransaction": 5000, "daily": 20000}})),
    )
    .await
    .ok();
    assert_eq!(patched["atm"]["enabled"], false);
    assert_eq!(patched["ecommerce"]["daily"], 20000);
    assert_eq!(patched["pos"]["enabled"], true, "channels not given are kept");
    insta::assert_json_snapshot!("p100_limits", redact(&patched));
    // `null` removes one limit and keeps the others.
    let patched = p100(
        &app,
        &key,
        Method::PATCH,
        "/v1/card/limits",
        Some(json!({"externalUserId": "p100-user", "cardId": id, "ecommerce": {"daily": null}})),
    )
    .await
    .ok();
    assert_eq!(
        patched["ecommerce"],
        json!({"enabled": true, "perTransaction": 5000, "daily": null, "monthly": null})
    );
    let native = app.get(&format!("/v1/cards/{id}/limits")).await.ok();
    assert_eq!(native["channels"]["ecommerce"]["per_transaction"], 5000);
    // The core's limit rules answer in P100's shape and names.
    let r = p100(
        &app,
        &key,
        Method::PATCH,
        "/v1/card/limits",
        Some(json!({"externalUserId": "p100-user", "cardId": id, "pos": {"perTransaction": 900, "daily": 100}})),
    )
    .await;
    assert_eq!(
        coded(&r, "P403")["errorMessage"],
        "pos.perTransaction: must not exceed daily"
    );

    let r = p100(&app, &key, Method::DELETE, &format!("/v1/card/p100-user/{id}"), None)
        .await
        .ok();
    assert_eq!(r, json!({"message": "Card deleted successfully"}));
    assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok()["status"], "CLOSED");
    let r = p100(&app, &key, Method::PATCH, "/v1/card/block", Some(card)).await;
    assert_eq!(
        coded(&r, "P403")["errorMessage"],
        "cannot block a card whose status is DELETED"
    );
    // A deleted card has no PIN to set.
    let r = pin(
        &app,
        json!({"externalUserId": "p100-user", "cardId": id, "pin": "4821"}),
    )
    .await;
    assert_eq!(
        coded(&r, "P403")["errorMessage"],
        "setting or changing a PIN is not allowed on a card whose status is DELETED"
    );
}
