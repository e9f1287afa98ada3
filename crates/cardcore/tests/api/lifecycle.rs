//! The status machine through the API: every allowed move, a sample of
//! refused ones, same-status no-ops, activation and replacement.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

async fn act(app: &TestApp, id: &str, action: &str, body: Value) -> crate::helpers::Resp {
    app.post(&format!("/v1/cards/{id}/{action}"), body).await
}

/// Brings a new card to `status` through allowed moves.
async fn card_in(app: &TestApp, status: &str) -> String {
    let card = if status == "INACTIVE" {
        app.card("physical").await
    } else {
        app.card("virtual").await
    };
    let id = card["id"].as_str().unwrap().to_owned();
    match status {
        "INACTIVE" | "ACTIVE" => {}
        "LOCKED" => {
            act(app, &id, "lock", json!({})).await.ok();
        }
        "BLOCKED" => {
            act(app, &id, "block", json!({"reason_code": "FRAUD_SUSPECTED"}))
                .await
                .ok();
        }
        "CLOSED" => {
            act(app, &id, "close", json!({})).await.ok();
        }
        _ => unreachable!(),
    }
    id
}

#[tokio::test]
async fn every_allowed_move_writes_one_audit_row_and_one_event() {
    let app = spawn_app().await;
    let moves = [
        ("ACTIVE", "lock", "LOCKED"),
        ("LOCKED", "unlock", "ACTIVE"),
        ("ACTIVE", "block", "BLOCKED"),
        ("LOCKED", "block", "BLOCKED"),
        ("INACTIVE", "close", "CLOSED"),
        ("ACTIVE", "close", "CLOSED"),
        ("LOCKED", "close", "CLOSED"),
        ("BLOCKED", "close", "CLOSED"),
    ];
    for (from, action, to) in moves {
        let id = card_in(&app, from).await;
        let audit_before = app.audit(&id).await.len();
        let events_before = app.card_events(&id).await.len();
        let card = act(
            &app,
            &id,
            action,
            json!({"reason_code": "CUST_REQ", "reason_message": "asked by phone"}),
        )
        .await
        .ok();
        assert_eq!(card["status"], to, "{from} --{action}--> {to}");
        assert_eq!(card["changed"], true);
        assert_eq!(
            card["status_reason"],
            json!({"code": "CUST_REQ", "message": "asked by phone"})
        );
        let audit = app.audit(&id).await;
        assert_eq!(audit.len(), audit_before + 1, "{from} {action}");
        assert_eq!(audit[0]["type"], format!("card.{action}"));
        assert_eq!(audit[0]["before"]["status"], from);
        assert_eq!(audit[0]["after"]["status"], to);
        assert_eq!(audit[0]["reason"]["code"], "CUST_REQ");
        assert_eq!(audit[0]["actor"]["type"], "api_key");
        assert_eq!(audit[0]["actor"]["channel"], "native");
        assert!(audit[0]["request_id"].is_string());
        let events = app.card_events(&id).await;
        assert_eq!(events.len(), events_before + 1);
        let last = events.last().unwrap();
        assert_eq!(last["type"], "card.status_changed");
        assert_eq!(last["data"]["previous_status"], from);
        assert_eq!(last["data"]["card"]["status"], to);
    }
    // INACTIVE -> ACTIVE is activation, covered below.
}

#[tokio::test]
async fn same_status_succeeds_unchanged_and_records_nothing() {
    let app = spawn_app().await;
    for (status, action) in [
        ("LOCKED", "lock"),
        ("ACTIVE", "unlock"),
        ("ACTIVE", "activate"),
        ("BLOCKED", "block"),
        ("CLOSED", "close"),
    ] {
        let id = card_in(&app, status).await;
        let audit = app.audit(&id).await.len();
        let events = app.card_events(&id).await.len();
        let body = match action {
            "activate" => json!({"activation_code": "000000"}),
            "block" => json!({"reason_code": "LOST_CARD"}),
            _ => json!({}),
        };
        let card = act(&app, &id, action, body).await.ok();
        assert_eq!(card["status"], status);
        assert_eq!(card["changed"], false, "{action} on {status}");
        assert_eq!(app.audit(&id).await.len(), audit);
        assert_eq!(app.card_events(&id).await.len(), events);
    }
}

#[tokio::test]
async fn refused_moves_are_409_and_change_nothing() {
    let app = spawn_app().await;
    let refused = [
        ("INACTIVE", "unlock"),
        ("INACTIVE", "lock"),
        ("INACTIVE", "block"),
        ("BLOCKED", "lock"),
        ("BLOCKED", "unlock"),
        ("CLOSED", "unlock"),
        ("CLOSED", "lock"),
        ("CLOSED", "block"),
        ("LOCKED", "activate"),
        ("BLOCKED", "activate"),
    ];
    for (status, action) in refused {
        let id = card_in(&app, status).await;
        let audit = app.audit(&id).await.len();
        let body = match action {
            "activate" => json!({"activation_code": "123456"}),
            _ => json!({"reason_code": "CUST_REQ"}),
        };
        let p = act(&app, &id, action, body)
            .await
            .expect(409, "invalid_status_transition");
        assert_eq!(p["current_status"], status);
        assert!(p["detail"].as_str().unwrap().contains(status), "{}", p["detail"]);
        assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok()["status"], status);
        assert_eq!(app.audit(&id).await.len(), audit);
    }
}

#[tokio::test]
async fn block_needs_a_catalog_reason() {
    let app = spawn_app().await;
    let id = card_in(&app, "ACTIVE").await;
    let p = act(&app, &id, "block", json!({})).await.expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "reason_code");
    let p = act(&app, &id, "block", json!({"reason_code": "because"}))
        .await
        .expect(422, "validation_error");
    assert!(p["errors"][0]["message"].as_str().unwrap().contains("LOST_CARD"));
    assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok()["status"], "ACTIVE");
}

#[tokio::test]
async fn delete_closes() {
    let app = spawn_app().await;
    let id = card_in(&app, "LOCKED").await;
    let c = app.delete(&format!("/v1/cards/{id}")).await.ok();
    assert_eq!(c["status"], "CLOSED");
    assert_eq!(c["changed"], true);
    let again = app.delete(&format!("/v1/cards/{id}")).await.ok();
    assert_eq!(again["changed"], false);
}

#[tokio::test]
async fn activation_with_the_code_from_the_event() {
    let app = spawn_app().await;
    let id = card_in(&app, "INACTIVE").await;
    act(&app, &id, "activate", json!({"activation_code": "12345"}))
        .await
        .expect(422, "validation_error");
    let code = app.activation_code(&id).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    act(&app, &id, "activate", json!({"activation_code": wrong}))
        .await
        .expect(422, "activation_code_invalid");
    assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok()["status"], "INACTIVE");
    let card = act(&app, &id, "activate", json!({"activation_code": code})).await.ok();
    assert_eq!(card["status"], "ACTIVE");
    assert_eq!(card["changed"], true);
    let events = app.card_events(&id).await;
    assert_eq!(events.last().unwrap()["type"], "card.activated");
    assert_eq!(app.audit(&id).await[0]["type"], "card.activate");
    // The code was single use: a later lock/unlock cannot reactivate with it, and
    // the audit trail never holds it.
    assert!(!serde_json::to_string(&app.audit(&id).await)
        .unwrap()
        .contains(&format!("\"{code}\"")));
}

#[tokio::test]
async fn replacement_of_a_lost_card() {
    let app = spawn_app().await;
    let old = app.active_card("physical").await;
    let old_id = old["id"].as_str().unwrap();
    let old_pan = app.get(&format!("/v1/cards/{old_id}/sensitive")).await.ok()["pan"].clone();
    let new = app
        .post(&format!("/v1/cards/{old_id}/replace"), json!({"reason": "LOST"}))
        .await
        .expect(201, "");
    let new_id = new["id"].as_str().unwrap();
    assert_ne!(new_id, old_id);
    assert_eq!(new["replacement_for"], old_id);
    assert_eq!(new["status"], "INACTIVE", "a physical replacement needs activation");
    assert_eq!(new["cardholder_id"], old["cardholder_id"]);
    assert_eq!(new["account_id"], old["account_id"]);
    assert_eq!(new["program_id"], old["program_id"]);
    let new_pan = app.get(&format!("/v1/cards/{new_id}/sensitive")).await.ok()["pan"].clone();
    assert_ne!(new_pan, old_pan);
    app.activation_code(new_id).await;

    let old_now = app.get(&format!("/v1/cards/{old_id}")).await.ok();
    assert_eq!(old_now["status"], "BLOCKED");
    assert_eq!(old_now["status_reason"]["code"], "LOST_CARD");
    let types: Vec<String> = app
        .card_events(old_id)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(&types[types.len() - 2..], ["card.status_changed", "card.replaced"]);
    assert_eq!(app.audit(old_id).await[0]["type"], "card.replace");

    app.post(&format!("/v1/cards/{old_id}/replace"), json!({"reason": "LOST"}))
        .await
        .expect(409, "card_already_replaced");
}

#[tokio::test]
async fn replacement_rules() {
    let app = spawn_app().await;
    let damaged = card_in(&app, "LOCKED").await;
    let new = app
        .post(&format!("/v1/cards/{damaged}/replace"), json!({"reason": "DAMAGED"}))
        .await
        .expect(201, "");
    assert_eq!(new["status"], "ACTIVE", "a virtual replacement is active at once");
    assert_eq!(app.get(&format!("/v1/cards/{damaged}")).await.ok()["status"], "CLOSED");

    let inactive = card_in(&app, "INACTIVE").await;
    app.post(&format!("/v1/cards/{inactive}/replace"), json!({"reason": "LOST"}))
        .await
        .expect(409, "invalid_status_transition");

    let closure = card_in(&app, "ACTIVE").await;
    act(&app, &closure, "block", json!({"reason_code": "CARD_CLOSURE"}))
        .await
        .ok();
    app.post(&format!("/v1/cards/{closure}/replace"), json!({"reason": "STOLEN"}))
        .await
        .expect(409, "card_not_replaceable");

    let blocked = card_in(&app, "BLOCKED").await;
    let new = app
        .post(&format!("/v1/cards/{blocked}/replace"), json!({"reason": "STOLEN"}))
        .await
        .expect(201, "");
    assert_eq!(new["replacement_for"], blocked.as_str());
    let b = app.get(&format!("/v1/cards/{blocked}")).await.ok();
    assert_eq!(
        b["status_reason"]["code"], "FRAUD_SUSPECTED",
        "an already blocked card keeps its block"
    );

    app.post(&format!("/v1/cards/{blocked}/replace"), json!({"reason": "MISPLACED"}))
        .await
        .expect(422, "validation_error");
}
