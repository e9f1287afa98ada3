//! Each class of bad input gets a 4xx naming the field and the reason, and
//! changes nothing.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{spawn_app, TestApp};

async fn state(app: &TestApp) -> (usize, usize) {
    let cards = app.get("/v1/cards?limit=100").await.ok()["data"]
        .as_array()
        .unwrap()
        .len();
    (cards, app.all_events().await.len())
}

#[tokio::test]
async fn every_bad_input_class() {
    let app = spawn_app().await;
    let holder = app.create_cardholder("u-1").await;
    let hid = holder["id"].as_str().unwrap().to_owned();
    let before = state(&app).await;
    let key = app.key.clone();
    let body = |s: &str| Some(s.as_bytes().to_vec());

    // Malformed JSON.
    let r = app
        .raw(
            Method::POST,
            "/v1/cards",
            Some(&key),
            body("{\"cardholder_id\": "),
            Some("application/json"),
        )
        .await;
    let p = r.expect(400, "malformed_json");
    assert!(p["detail"].as_str().unwrap().contains("not valid JSON"));
    // Wrong type.
    let p = app
        .post("/v1/cards", json!({"cardholder_id": hid, "type": 7}))
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "type");
    // Unknown field.
    let p = app
        .post(
            "/v1/cards",
            json!({"cardholder_id": hid, "type": "virtual", "colour": "red"}),
        )
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "colour");
    assert!(p["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("not a known field"));
    // Unknown enum value.
    let p = app
        .post("/v1/cards", json!({"cardholder_id": hid, "type": "plastic"}))
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "type");
    assert!(p["errors"][0]["message"].as_str().unwrap().contains("plastic"));
    // Missing field.
    let p = app
        .post("/v1/cards", json!({"type": "virtual"}))
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "cardholder_id");
    // Bad UUID in a body field.
    let p = app
        .post("/v1/cards", json!({"cardholder_id": "123", "type": "virtual"}))
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "cardholder_id");
    // Body over 64 KiB.
    let big = format!(
        "{{\"cardholder_id\": \"{hid}\", \"type\": \"virtual\", \"card_name\": \"{}\"}}",
        "x".repeat(70 * 1024)
    );
    app.raw(
        Method::POST,
        "/v1/cards",
        Some(&key),
        body(&big),
        Some("application/json"),
    )
    .await
    .expect(413, "payload_too_large");
    // Bad UUID in the path.
    let p = app
        .post("/v1/cards/not-a-uuid/lock", json!({}))
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "id");
    assert_eq!(p["errors"][0]["message"], "must be a UUID");
    // Not JSON at all.
    app.raw(
        Method::POST,
        "/v1/cards",
        Some(&key),
        body("type=virtual"),
        Some("application/x-www-form-urlencoded"),
    )
    .await
    .expect(415, "unsupported_media_type");
    // No body where one is needed.
    app.raw(Method::POST, "/v1/cards", Some(&key), None, None)
        .await
        .expect(400, "malformed_json");
    // Bad query parameter.
    let p = app.get("/v1/cards?limt=5").await.expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "limt");
    let p = app
        .get("/v1/cards?cardholder_id=zzz")
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "cardholder_id");
    // Too long a text field.
    let p = app
        .post(
            "/v1/cards",
            json!({"cardholder_id": hid, "type": "virtual", "printed_name": "X".repeat(27)}),
        )
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "printed_name");
    // Unknown route and method.
    app.get("/v1/nothing-here").await.expect(404, "route_not_found");
    app.call_as(&key, Method::PATCH, "/v1/cards", None)
        .await
        .expect(405, "method_not_allowed");

    assert_eq!(state(&app).await, before, "refused requests change nothing");
}
