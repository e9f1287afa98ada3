use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn event_log_pages_oldest_first_and_filters_by_type() {
    let app = spawn_app().await;
    let a = app.card("virtual").await;
    let id = a["id"].as_str().unwrap();
    app.post(&format!("/v1/cards/{id}/lock"), json!({})).await.ok();
    app.post(&format!("/v1/cards/{id}/unlock"), json!({})).await.ok();
    app.card("physical").await;

    let all = app.all_events().await;
    let types: Vec<&str> = all.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "card.created",
            "card.status_changed",
            "card.status_changed",
            "card.created",
            "card.activation_code"
        ]
    );
    for e in &all {
        assert!(e["id"].is_string() && e["created_at"].is_string());
    }

    let first = app.get("/v1/events?limit=2").await.ok();
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    assert_eq!(cursor, all[1]["id"].as_str().unwrap());
    let rest = app.get(&format!("/v1/events?after={cursor}")).await.ok();
    assert_eq!(rest["data"].as_array().unwrap().len(), 3);
    assert_eq!(rest["data"][0]["id"], all[2]["id"]);
    assert_eq!(rest["next_cursor"], serde_json::Value::Null);

    let created = app.get("/v1/events?type=card.created").await.ok();
    assert_eq!(created["data"].as_array().unwrap().len(), 2);
    let one_card = app.get(&format!("/v1/events?card_id={id}")).await.ok();
    assert_eq!(one_card["data"].as_array().unwrap().len(), 3);

    let p = app
        .get("/v1/events?type=card.exploded")
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "type");
    let p = app
        .get(&format!("/v1/events?after={}", uuid::Uuid::new_v4()))
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "after");
    let p = app.get("/v1/events?after=nope").await.expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "after");
}

#[tokio::test]
async fn card_audit_trail_pages_newest_first() {
    let app = spawn_app().await;
    let card = app.card("virtual").await;
    let id = card["id"].as_str().unwrap();
    for action in ["lock", "unlock", "lock"] {
        app.post(&format!("/v1/cards/{id}/{action}"), json!({})).await.ok();
    }
    let page = app.get(&format!("/v1/cards/{id}/events?limit=2")).await.ok();
    let types: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["card.lock", "card.unlock"]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let page2 = app
        .get(&format!("/v1/cards/{id}/events?limit=2&cursor={cursor}"))
        .await
        .ok();
    let types: Vec<&str> = page2["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["card.lock", "card.created"]);
    assert_eq!(page2["next_cursor"], serde_json::Value::Null);
    let entry = &page["data"][0];
    for key in [
        "id",
        "type",
        "actor",
        "request_id",
        "reason",
        "before",
        "after",
        "created_at",
    ] {
        assert!(entry.get(key).is_some(), "audit entry has {key}");
    }
}

#[tokio::test]
async fn request_ids_are_honoured_or_made() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}/v1/cards", app.base))
        .bearer_auth(&app.key)
        .header("x-request-id", "req-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "req-abc.123");
    // A request id that could forge a log line is replaced.
    let res = app
        .client
        .get(format!("{}/v1/cards", app.base))
        .bearer_auth(&app.key)
        .header("x-request-id", "evil id\" status=200")
        .send()
        .await
        .unwrap();
    assert_ne!(res.headers()["x-request-id"], "evil id\" status=200");
    let card = app.card("virtual").await;
    let id = card["id"].as_str().unwrap();
    app.client
        .post(format!("{}/v1/cards/{id}/lock", app.base))
        .bearer_auth(&app.key)
        .header("x-request-id", "lock-42")
        .send()
        .await
        .unwrap();
    assert_eq!(app.audit(id).await[0]["request_id"], "lock-42");
}
