use serde_json::{json, Value};

use crate::helpers::spawn_app;

fn luhn_ok(pan: &str) -> bool {
    let mut sum = 0;
    for (i, c) in pan.chars().rev().enumerate() {
        let mut d = c.to_digit(10).unwrap();
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

#[tokio::test]
async fn virtual_cards_start_active_and_physical_ones_inactive_with_a_code() {
    let app = spawn_app().await;
    let holder = app.create_cardholder("u-1").await;
    let hid = holder["id"].as_str().unwrap();
    let v = app
        .post(
            "/v1/cards",
            json!({"cardholder_id": hid, "type": "virtual", "card_name": "ecommerce"}),
        )
        .await
        .expect(201, "");
    assert_eq!(v["status"], "ACTIVE");
    assert_eq!(v["pin_status"], "NOT_SET");
    assert_eq!(v["type"], "virtual");
    assert_eq!(v["brand"], "visa");
    assert_eq!(v["card_name"], "ecommerce");
    assert_eq!(v["printed_name"], "ANA SILVA");
    assert_eq!(v["account_id"], holder["default_account_id"]);
    assert_eq!(v["replacement_for"], Value::Null);
    assert_eq!(v["status_reason"], Value::Null);
    assert!(v["last_four"].as_str().unwrap().len() == 4);
    let kit = v["kit_number"].as_str().unwrap();
    assert!(kit.len() == 10 && kit.chars().all(|c| c.is_ascii_digit()));
    let expiry = v["expiry"].as_str().unwrap();
    assert!(expiry.len() == 5 && &expiry[2..3] == "/");
    for secret_field in ["pan", "cvv", "pan_hash", "pin"] {
        assert!(v.get(secret_field).is_none(), "{secret_field} must not be in the card");
    }

    let account = uuid::Uuid::new_v4().to_string();
    let p = app
        .post(
            "/v1/cards",
            json!({"cardholder_id": hid, "type": "physical", "account_id": account, "printed_name": "A SILVA"}),
        )
        .await
        .expect(201, "");
    assert_eq!(p["status"], "INACTIVE");
    assert_eq!(p["account_id"], account);
    assert_eq!(p["printed_name"], "A SILVA");
    let events = app.card_events(p["id"].as_str().unwrap()).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["card.created", "card.activation_code"]);
    let code = events[1]["data"]["activation_code"].as_str().unwrap();
    assert!(code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()));
    assert_eq!(events[0]["data"]["card"]["id"], p["id"]);
    // The virtual card got no activation code.
    let vt: Vec<Value> = app.card_events(v["id"].as_str().unwrap()).await;
    assert_eq!(vt.len(), 1);
}

#[tokio::test]
async fn card_for_unknown_cardholder_is_404() {
    let app = spawn_app().await;
    let id = uuid::Uuid::new_v4();
    app.post("/v1/cards", json!({"cardholder_id": id, "type": "virtual"}))
        .await
        .expect(404, "cardholder_not_found");
}

#[tokio::test]
async fn sensitive_data_is_a_luhn_valid_pan_from_the_bin_and_is_audited() {
    let app = spawn_app().await;
    let card = app.card("virtual").await;
    let id = card["id"].as_str().unwrap();
    let res = app.get(&format!("/v1/cards/{id}/sensitive")).await;
    assert_eq!(res.headers.get("cache-control").unwrap(), "no-store");
    let s = res.ok();
    let pan = s["pan"].as_str().unwrap();
    assert_eq!(pan.len(), 16);
    assert!(pan.starts_with("424242"));
    assert!(pan.ends_with(card["last_four"].as_str().unwrap()));
    assert!(luhn_ok(pan), "PAN must carry a valid Luhn check digit");
    let cvv = s["cvv"].as_str().unwrap();
    assert!(cvv.len() == 3 && cvv.chars().all(|c| c.is_ascii_digit()));
    assert_eq!(s["expiry"], card["expiry"]);

    let audit = app.audit(id).await;
    assert_eq!(audit[0]["type"], "card.sensitive_revealed");
    // Neither PAN nor CVV is in any audit row or event.
    let everything = format!(
        "{} {}",
        serde_json::to_string(&audit).unwrap(),
        serde_json::to_string(&app.all_events().await).unwrap()
    );
    assert!(!everything.contains(pan));
    assert!(!everything.contains(&format!("\"{cvv}\"")));
    // Nor in the database file in clear.
    let db = std::fs::read(app.db_path()).unwrap();
    let wal = std::fs::read(app.db_path().with_extension("db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes.windows(pan.len()).any(|w| w == pan.as_bytes()),
            "PAN stored in clear"
        );
    }
}

#[tokio::test]
async fn revealing_needs_a_key_allowed_to() {
    let app = spawn_app().await;
    let card = app.card("virtual").await;
    let tenant = app.tenant_id.parse().unwrap();
    let weak = app.service().create_api_key(tenant, None, false).await.unwrap();
    let id = card["id"].as_str().unwrap();
    app.call_as(
        &weak.secret,
        reqwest::Method::GET,
        &format!("/v1/cards/{id}/sensitive"),
        None,
    )
    .await
    .expect(403, "forbidden");
    // The same key reads the card itself.
    app.call_as(&weak.secret, reqwest::Method::GET, &format!("/v1/cards/{id}"), None)
        .await
        .ok();
    assert!(app
        .audit(id)
        .await
        .iter()
        .all(|a| a["type"] != "card.sensitive_revealed"));
}

#[tokio::test]
async fn cards_list_with_filters_and_pages() {
    let app = spawn_app().await;
    let a = app.create_cardholder("a").await;
    let b = app.create_cardholder("b").await;
    let aid = a["id"].as_str().unwrap();
    let mut ids = Vec::new();
    for t in ["virtual", "physical", "virtual"] {
        ids.push(
            app.create_card_as(&app.key.clone(), aid, t).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    app.create_card_as(&app.key.clone(), b["id"].as_str().unwrap(), "virtual")
        .await;

    let all = app.get("/v1/cards").await.ok();
    assert_eq!(all["data"].as_array().unwrap().len(), 4);
    let mine = app.get(&format!("/v1/cards?cardholder_id={aid}")).await.ok();
    let got: Vec<&str> = mine["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids);
    let inactive = app.get("/v1/cards?status=INACTIVE").await.ok();
    assert_eq!(inactive["data"].as_array().unwrap().len(), 1);

    let p1 = app.get(&format!("/v1/cards?cardholder_id={aid}&limit=2")).await.ok();
    assert_eq!(p1["data"].as_array().unwrap().len(), 2);
    let cursor = p1["next_cursor"].as_str().unwrap();
    let p2 = app
        .get(&format!("/v1/cards?cardholder_id={aid}&limit=2&cursor={cursor}"))
        .await
        .ok();
    assert_eq!(p2["data"][0]["id"], ids[2].as_str());
    assert_eq!(p2["next_cursor"], Value::Null);

    app.get("/v1/cards?limit=0").await.expect(422, "validation_error");
    app.get("/v1/cards?status=FROZEN").await.expect(422, "validation_error");
}

#[tokio::test]
async fn limits_read_replace_validate_and_emit() {
    let app = spawn_app().await;
    let card = app.card("virtual").await;
    let id = card["id"].as_str().unwrap();
    let l = app.get(&format!("/v1/cards/{id}/limits")).await.ok();
    assert_eq!(l["currency"], "EUR");
    for ch in ["pos", "ecommerce", "atm", "contactless"] {
        assert_eq!(
            l["channels"][ch],
            json!({"enabled": true, "per_transaction": null, "daily": null, "monthly": null})
        );
    }
    let new = json!({"currency": "EUR", "channels": {
        "pos": {"enabled": true, "per_transaction": 50000, "daily": 100000, "monthly": 300000},
        "ecommerce": {"enabled": true, "per_transaction": 20000, "daily": 50000, "monthly": null},
        "atm": {"enabled": false, "per_transaction": null, "daily": null, "monthly": null},
        "contactless": {"enabled": true, "per_transaction": 5000, "daily": null, "monthly": null}}});
    assert_eq!(app.put(&format!("/v1/cards/{id}/limits"), new.clone()).await.ok(), new);
    assert_eq!(app.get(&format!("/v1/cards/{id}/limits")).await.ok(), new);
    let ev = app.card_events(id).await;
    assert_eq!(ev.last().unwrap()["type"], "card.limits_updated");
    assert_eq!(ev.last().unwrap()["data"]["limits"], new);
    let audit = app.audit(id).await;
    assert_eq!(audit[0]["type"], "card.limits_updated");
    assert_eq!(audit[0]["after"], new);

    // Same limits again: nothing new recorded.
    app.put(&format!("/v1/cards/{id}/limits"), new.clone()).await.ok();
    assert_eq!(app.card_events(id).await.len(), ev.len());

    let mut bad = new.clone();
    bad["channels"]["pos"]["per_transaction"] = json!(200000);
    let p = app
        .put(&format!("/v1/cards/{id}/limits"), bad)
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "channels.pos.per_transaction");
    let mut bad = new.clone();
    bad["channels"]["pos"]["daily"] = json!(-1);
    let p = app
        .put(&format!("/v1/cards/{id}/limits"), bad)
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "channels.pos.daily");
    let mut bad = new.clone();
    bad["channels"]["atm"]["weekly"] = json!(1);
    let p = app
        .put(&format!("/v1/cards/{id}/limits"), bad)
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "channels.atm.weekly");
    let p = app
        .put(
            &format!("/v1/cards/{id}/limits"),
            json!({"currency": "euro", "channels": new["channels"]}),
        )
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "currency");
    assert_eq!(
        app.get(&format!("/v1/cards/{id}/limits")).await.ok(),
        new,
        "refused updates change nothing"
    );
}

#[tokio::test]
async fn kit_numbers_as_vendors_issue_them_unique_per_tenant() {
    let app = spawn_app().await;
    let holder = app.create_cardholder("kit-holder").await;
    let new = |kit: Value| json!({"cardholder_id": holder["id"], "type": "physical", "kit_number": kit});

    // Not given: 10 drawn digits. Given: the vendor's 6 to 16 digits.
    let drawn = app.card("virtual").await;
    let drawn_kit = drawn["kit_number"].as_str().unwrap();
    assert!(
        drawn_kit.len() == 10 && drawn_kit.bytes().all(|b| b.is_ascii_digit()),
        "{drawn_kit}"
    );
    for kit in ["20004195", "123456", "1234567890123456"] {
        let card = app.post("/v1/cards", new(json!(kit))).await.expect(201, "");
        assert_eq!(card["kit_number"], kit);
    }
    // Named by the field, with the reason; nothing is created.
    let count = || async {
        app.get(&format!("/v1/cards?cardholder_id={}", holder["id"].as_str().unwrap()))
            .await
            .ok()["data"]
            .as_array()
            .unwrap()
            .len()
    };
    let before = count().await;
    for bad in [
        json!("12345"),
        json!("12345678901234567"),
        json!("2000419a"),
        json!(" 20004195"),
        json!(""),
    ] {
        let p = app
            .post("/v1/cards", new(bad.clone()))
            .await
            .expect(422, "validation_error");
        assert_eq!(p["errors"][0]["field"], "kit_number", "{bad}: {p}");
        assert_eq!(p["errors"][0]["message"], "must be 6 to 16 digits", "{bad}: {p}");
    }
    let p = app.post("/v1/cards", new(json!(20004195))).await;
    assert_eq!(p.status.as_u16(), 422, "{}", p.text);
    assert!(p.text.contains("kit_number"), "{}", p.text);
    // Unique per tenant: taken is a conflict; another tenant may have it.
    let p = app
        .post("/v1/cards", new(json!("20004195")))
        .await
        .expect(409, "kit_number_taken");
    assert!(!p["detail"].as_str().unwrap().contains("20004195"), "{p}");
    let p = app.post("/v1/cards", new(json!(drawn_kit))).await;
    p.expect(409, "kit_number_taken");
    assert_eq!(count().await, before, "a refused card is not made");
    let other = app.new_tenant("tenant-b").await;
    let other_holder = app.create_cardholder_as(&other, "kit-holder").await;
    let card = app
        .call_as(
            &other,
            reqwest::Method::POST,
            "/v1/cards",
            Some(json!({"cardholder_id": other_holder["id"], "type": "virtual", "kit_number": "20004195"})),
        )
        .await
        .expect(201, "");
    assert_eq!(card["kit_number"], "20004195");
    // The name defaults to the card type's; a given one is kept.
    assert_eq!(card["card_name"], "virtual");
    let named = app
        .post(
            "/v1/cards",
            json!({"cardholder_id": holder["id"], "type": "virtual", "card_name": "ecommerce"}),
        )
        .await
        .expect(201, "");
    assert_eq!(named["card_name"], "ecommerce");
}
