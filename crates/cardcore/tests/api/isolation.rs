//! A tenant never reaches another's objects: a foreign id answers exactly
//! like an unknown id, and changes nothing.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::spawn_app;

/// The problem without its request id (which differs per request).
fn shape(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("request_id");
    }
    v
}

#[tokio::test]
async fn foreign_ids_answer_like_unknown_ids_on_every_route() {
    let app = spawn_app().await;
    let b = app.new_tenant("tenant-b").await;
    let card = app.active_card("physical").await;
    let card_id = card["id"].as_str().unwrap();
    let holder_id = card["cardholder_id"].as_str().unwrap();
    let unknown = uuid::Uuid::new_v4().to_string();
    let audit_before = app.audit(card_id).await;
    let events_before = app.all_events().await;

    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/v1/cards/{card}".into(), None),
        (Method::GET, "/v1/cards/{card}/sensitive".into(), None),
        (
            Method::POST,
            "/v1/cards/{card}/activate".into(),
            Some(json!({"activation_code": "123456"})),
        ),
        (Method::POST, "/v1/cards/{card}/lock".into(), Some(json!({}))),
        (Method::POST, "/v1/cards/{card}/unlock".into(), Some(json!({}))),
        (
            Method::POST,
            "/v1/cards/{card}/block".into(),
            Some(json!({"reason_code": "LOST_CARD"})),
        ),
        (Method::POST, "/v1/cards/{card}/close".into(), Some(json!({}))),
        (Method::DELETE, "/v1/cards/{card}".into(), None),
        (
            Method::POST,
            "/v1/cards/{card}/replace".into(),
            Some(json!({"reason": "LOST"})),
        ),
        (Method::GET, "/v1/cards/{card}/limits".into(), None),
        (
            Method::PUT,
            "/v1/cards/{card}/limits".into(),
            Some(json!({"currency": "EUR", "channels": {
                "pos": {"enabled": false, "per_transaction": null, "daily": null, "monthly": null},
                "ecommerce": {"enabled": false, "per_transaction": null, "daily": null, "monthly": null},
                "atm": {"enabled": false, "per_transaction": null, "daily": null, "monthly": null},
                "contactless": {"enabled": false, "per_transaction": null, "daily": null, "monthly": null}}})),
        ),
        (Method::GET, "/v1/cards/{card}/events".into(), None),
        (Method::GET, "/v1/cardholders/{holder}".into(), None),
        (
            Method::POST,
            "/v1/cards".into(),
            Some(json!({"cardholder_id": "{holder}", "type": "virtual"})),
        ),
    ];
    for (method, path, body) in routes {
        let fill = |s: &str, card: &str, holder: &str| s.replace("{card}", card).replace("{holder}", holder);
        let body_for = |card: &str, holder: &str| {
            body.as_ref()
                .map(|b| serde_json::from_str(&fill(&b.to_string(), card, holder)).unwrap())
        };
        let foreign = app
            .call_as(
                &b,
                method.clone(),
                &fill(&path, card_id, holder_id),
                body_for(card_id, holder_id),
            )
            .await;
        let missing = app
            .call_as(
                &b,
                method.clone(),
                &fill(&path, &unknown, &unknown),
                body_for(&unknown, &unknown),
            )
            .await;
        assert_eq!(foreign.status, 404, "{method} {path}: {}", foreign.text);
        assert_eq!(shape(foreign.body), shape(missing.body), "{method} {path}");
    }

    // Lists show nothing of tenant A.
    let cards = app.call_as(&b, Method::GET, "/v1/cards", None).await.ok();
    assert_eq!(cards["data"], json!([]));
    let by_holder = app
        .call_as(&b, Method::GET, &format!("/v1/cards?cardholder_id={holder_id}"), None)
        .await
        .ok();
    assert_eq!(by_holder["data"], json!([]));
    let found = app
        .call_as(&b, Method::GET, "/v1/cardholders?external_id=anything", None)
        .await
        .ok();
    assert_eq!(found["data"], json!([]));
    assert_eq!(app.all_events_as(&b).await, Vec::<Value>::new());
    let cursor = events_before[0]["id"].as_str().unwrap();
    app.call_as(&b, Method::GET, &format!("/v1/events?after={cursor}"), None)
        .await
        .expect(422, "validation_error");

    // Nothing of tenant A changed.
    let now = app.get(&format!("/v1/cards/{card_id}")).await.ok();
    assert_eq!(now["status"], "ACTIVE");
    assert_eq!(app.audit(card_id).await, audit_before);
    assert_eq!(app.all_events().await, events_before);
    assert_eq!(
        app.get(&format!("/v1/cards/{card_id}/limits")).await.ok()["channels"]["pos"]["enabled"],
        true
    );
}

#[tokio::test]
async fn keys_are_checked_and_both_headers_work() {
    let app = spawn_app().await;
    let none = app.raw(Method::GET, "/v1/cards", None, None, None).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.body["code"], "unauthorized");
    assert!(none.headers.contains_key("www-authenticate"));
    let wrong = app.call_as("cc_not-a-real-key", Method::GET, "/v1/cards", None).await;
    assert_eq!(wrong.status, 401);
    let res = app
        .client
        .get(format!("{}/v1/cards", app.base))
        .header("x-api-key", &app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .get(format!("{}/v1/cards", app.base))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
