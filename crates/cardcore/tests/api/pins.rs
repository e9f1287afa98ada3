//! PINs: set in three forms, verify with the try counter, block, unblock,
//! policy, key rotation.

use cardcore_crypto::pinblock::{self, TdesFormat};
use cardcore_crypto::{Pan, Pin};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn set_verify_count_block_unblock() {
    let app = spawn_app().await;
    let card = app.active_card("virtual").await;
    let id = card["id"].as_str().unwrap();
    app.verify(id, "4821").await.expect(409, "pin_not_set");

    let c = app.set_pin(id, "4821").await;
    assert_eq!(c["pin_status"], "SET");
    let v = app.verify(id, "4821").await.ok();
    assert_eq!(v, json!({"valid": true, "remaining_attempts": 3}));

    assert_eq!(
        app.verify(id, "4822").await.ok(),
        json!({"valid": false, "remaining_attempts": 2})
    );
    assert_eq!(
        app.verify(id, "4823").await.ok(),
        json!({"valid": false, "remaining_attempts": 1})
    );
    assert_eq!(
        app.verify(id, "4824").await.ok(),
        json!({"valid": false, "remaining_attempts": 0})
    );
    assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok()["pin_status"], "BLOCKED");
    // Blocked: refused without checking the PIN, right or wrong.
    app.verify(id, "4821").await.expect(409, "pin_blocked");
    app.verify(id, "0000").await.expect(409, "pin_blocked");
    let types: Vec<String> = app
        .card_events(id)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types.iter().filter(|t| *t == "card.pin_blocked").count(), 1);
    let audit = app.audit(id).await;
    assert_eq!(audit[0]["type"], "card.pin_blocked");
    assert_eq!(audit[1]["type"], "card.pin_verification_failed");

    let u = app.post(&format!("/v1/cards/{id}/pin/unblock"), json!({})).await.ok();
    assert_eq!(u["changed"], true);
    assert_eq!(u["pin_status"], "SET");
    assert_eq!(app.card_events(id).await.last().unwrap()["type"], "card.pin_unblocked");
    assert_eq!(app.verify(id, "4821").await.ok()["valid"], true);
    let again = app.post(&format!("/v1/cards/{id}/pin/unblock"), json!({})).await.ok();
    assert_eq!(again["changed"], false);

    // Nothing recorded holds the PIN.
    let all = format!(
        "{} {}",
        serde_json::to_string(&app.audit(id).await).unwrap(),
        serde_json::to_string(&app.all_events().await).unwrap()
    );
    // A leaked PIN would be a JSON string value; bare digits can occur by
    // chance inside ids and timestamps.
    assert!(!all.contains("\"4821\""));
}

#[tokio::test]
async fn a_right_pin_resets_the_count_and_a_set_unblocks() {
    let app = spawn_app().await;
    let id = app.active_card("virtual").await["id"].as_str().unwrap().to_owned();
    app.set_pin(&id, "4821").await;
    app.verify(&id, "1111").await.ok();
    app.verify(&id, "2222").await.ok();
    assert_eq!(app.verify(&id, "4821").await.ok()["remaining_attempts"], 3);
    assert_eq!(app.verify(&id, "1111").await.ok()["remaining_attempts"], 2);
    for _ in 0..2 {
        app.verify(&id, "1111").await.ok();
    }
    assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok()["pin_status"], "BLOCKED");
    let c = app.set_pin(&id, "7391").await;
    assert_eq!(c["pin_status"], "SET");
    assert_eq!(
        app.verify(&id, "7391").await.ok(),
        json!({"valid": true, "remaining_attempts": 3})
    );
}

#[tokio::test]
async fn pin_rules_by_card_status() {
    let app = spawn_app().await;
    let inactive = app.card("physical").await;
    let iid = inactive["id"].as_str().unwrap();
    app.set_pin(iid, "4821").await; // a new physical card gets its PIN before activation
    app.verify(iid, "4821").await.expect(409, "invalid_card_status");
    let locked = app.active_card("virtual").await;
    let lid = locked["id"].as_str().unwrap();
    app.set_pin(lid, "4821").await;
    app.post(&format!("/v1/cards/{lid}/lock"), json!({})).await.ok();
    assert_eq!(app.verify(lid, "4821").await.ok()["valid"], true);
    app.post(&format!("/v1/cards/{lid}/block"), json!({"reason_code": "STOLEN_CARD"}))
        .await
        .ok();
    app.verify(lid, "4821").await.expect(409, "invalid_card_status");
    app.put(&format!("/v1/cards/{lid}/pin"), json!({"pin": "7391"}))
        .await
        .expect(409, "invalid_card_status");
    app.post(&format!("/v1/cards/{lid}/otp"), json!({}))
        .await
        .expect(409, "invalid_card_status");
}

#[tokio::test]
async fn weak_pins_are_refused_naming_the_rule() {
    let app = spawn_app().await;
    let id = app.active_card("virtual").await["id"].as_str().unwrap().to_owned();
    // The cardholder was born 1990-05-17.
    for (pin, rule) in [
        ("1111", "repeated_digits"),
        ("1234", "sequential_digits"),
        ("9876", "sequential_digits"),
        ("1705", "birth_date"),
        ("0517", "birth_date"),
        ("1990", "birth_date"),
        ("1212", "common_pin"),
        ("0000", "repeated_digits"),
    ] {
        let p = app
            .put(&format!("/v1/cards/{id}/pin"), json!({ "pin": pin }))
            .await
            .expect(422, "pin_too_weak");
        assert_eq!(p["rule"], rule, "{pin}");
        assert!(
            !p["detail"].as_str().unwrap().contains(pin),
            "the detail never repeats the PIN"
        );
    }
    let p = app
        .put(&format!("/v1/cards/{id}/pin"), json!({"pin": "48213"}))
        .await
        .expect(422, "pin_invalid");
    assert!(p["detail"].as_str().unwrap().contains("4 to 4"));
    let p = app
        .put(&format!("/v1/cards/{id}/pin"), json!({"pin": "48a1"}))
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "pin");
    let p = app
        .put(&format!("/v1/cards/{id}/pin"), json!({"pin": 4821}))
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "pin");
    assert!(
        !format!("{}{}", p["detail"], p["errors"]).contains("4821"),
        "a PIN sent as a number is not echoed: {p}"
    );
    let p = app
        .post(
            &format!("/v1/cards/{id}/pin/change"),
            json!({"old_pin": "4821", "new_pin": "7391", "otp": 654321, "trace_number": "t"}),
        )
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "otp");
    assert!(
        !format!("{}{}", p["detail"], p["errors"]).contains("654321"),
        "an OTP sent as a number is not echoed: {p}"
    );
    app.put(
        &format!("/v1/cards/{id}/pin"),
        json!({"pin": "4821", "encrypted_pin": "x", "key_id": "y"}),
    )
    .await
    .expect(422, "validation_error");
    app.put(&format!("/v1/cards/{id}/pin"), json!({"pin": "4821", "pn": 1}))
        .await
        .expect(422, "validation_error");
    assert_eq!(
        app.get(&format!("/v1/cards/{id}")).await.ok()["pin_status"],
        "NOT_SET",
        "nothing changed"
    );
    assert!(app.card_events(&id).await.iter().all(|e| e["type"] != "card.pin_set"));
}

#[tokio::test]
async fn program_pin_length_is_a_setting() {
    let app = spawn_app_with(&["--pin-min-length", "4", "--pin-max-length", "6"]).await;
    let id = app.active_card("virtual").await["id"].as_str().unwrap().to_owned();
    app.set_pin(&id, "482193").await;
    assert_eq!(app.verify(&id, "482193").await.ok()["valid"], true);
    app.put(&format!("/v1/cards/{id}/pin"), json!({"pin": "4821937"}))
        .await
        .expect(422, "pin_invalid");
}

#[tokio::test]
async fn rsa_oaep_encrypted_pins() {
    let app = spawn_app().await;
    let id = app.active_card("virtual").await["id"].as_str().unwrap().to_owned();
    let key = app.get("/v1/pin-encryption-key").await.ok();
    assert_eq!(key["algorithm"], "RSA-OAEP-256");
    let pem = key["public_key_pem"].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    let key_id = key["key_id"].as_str().unwrap();
    let ct = cardcore_crypto::transport::encrypt_with_public_pem(pem, b"4821").unwrap();
    app.put(
        &format!("/v1/cards/{id}/pin"),
        json!({"encrypted_pin": ct, "key_id": key_id}),
    )
    .await
    .ok();
    assert_eq!(app.verify(&id, "4821").await.ok()["valid"], true);
    // Verify with an encrypted PIN too, in both accepted shapes.
    let ct = cardcore_crypto::transport::encrypt_with_public_pem(pem, b"4821").unwrap();
    assert_eq!(
        app.post(
            &format!("/v1/cards/{id}/pin/verify"),
            json!({"encrypted_pin": ct, "key_id": key_id})
        )
        .await
        .ok()["valid"],
        true
    );
    let ct = cardcore_crypto::transport::encrypt_with_public_pem(pem, b"4821").unwrap();
    assert_eq!(
        app.post(
            &format!("/v1/cards/{id}/pin/verify"),
            json!({"pin": {"encrypted_pin": ct, "key_id": key_id}})
        )
        .await
        .ok()["valid"],
        true
    );

    let ct = cardcore_crypto::transport::encrypt_with_public_pem(pem, b"7391").unwrap();
    let p = app
        .put(
            &format!("/v1/cards/{id}/pin"),
            json!({"encrypted_pin": ct, "key_id": "rsa-oaep-v9"}),
        )
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "key_id");
    app.put(
        &format!("/v1/cards/{id}/pin"),
        json!({"encrypted_pin": "bm90IGEgY2lwaGVydGV4dA==", "key_id": key_id}),
    )
    .await
    .expect(422, "encrypted_pin_invalid");
    app.put(
        &format!("/v1/cards/{id}/pin"),
        json!({"encrypted_pin": "***", "key_id": key_id}),
    )
    .await
    .expect(422, "encrypted_pin_invalid");
    let other = cardcore_crypto::transport::TransportKey::from_pkcs8(
        &cardcore_crypto::transport::TransportKey::generate_pkcs8().unwrap(),
    )
    .unwrap();
    let foreign = cardcore_crypto::transport::encrypt_with_public_pem(other.public_key_pem(), b"7391").unwrap();
    app.put(
        &format!("/v1/cards/{id}/pin"),
        json!({"encrypted_pin": foreign, "key_id": key_id}),
    )
    .await
    .expect(422, "encrypted_pin_invalid");
    let not_pin = cardcore_crypto::transport::encrypt_with_public_pem(pem, b"73x1").unwrap();
    app.put(
        &format!("/v1/cards/{id}/pin"),
        json!({"encrypted_pin": not_pin, "key_id": key_id}),
    )
    .await
    .expect(422, "encrypted_pin_invalid");
    assert_eq!(
        app.verify(&id, "4821").await.ok()["valid"],
        true,
        "refused inputs changed nothing"
    );
}

#[tokio::test]
async fn iso_pin_blocks_under_zone_keys() {
    let app = spawn_app().await;
    let tenant = app.tenant_id.parse().unwrap();
    let id = app.active_card("virtual").await["id"].as_str().unwrap().to_owned();
    let pan = Pan::parse(&app.pan(&id).await).unwrap();
    let aes = app.service().keys().create_zone_key(tenant, "aes").await.unwrap();
    let tdes = app.service().keys().create_zone_key(tenant, "tdes").await.unwrap();
    let rng = &mut rand::rngs::OsRng;

    // Format 4 under AES, with and without key_id.
    let block = pinblock::encrypt_format4(aes.key.expose(), &Pin::parse("4821").unwrap(), &pan, rng).unwrap();
    app.put(
        &format!("/v1/cards/{id}/pin"),
        json!({"pin_block": hex::encode_upper(block), "format": "ISO-4", "key_id": aes.id}),
    )
    .await
    .ok();
    assert_eq!(app.verify(&id, "4821").await.ok()["valid"], true);
    let block = pinblock::encrypt_format4(aes.key.expose(), &Pin::parse("7391").unwrap(), &pan, rng).unwrap();
    app.put(
        &format!("/v1/cards/{id}/pin"),
        json!({"pin_block": hex::encode(block), "format": "ISO-4"}),
    )
    .await
    .ok();
    assert_eq!(app.verify(&id, "7391").await.ok()["valid"], true);

    // Formats 0 and 3 under double-length TDES.
    for (format, f) in [("ISO-0", TdesFormat::Format0), ("ISO-3", TdesFormat::Format3)] {
        let block = pinblock::encrypt_tdes(tdes.key.expose(), f, &Pin::parse("5083").unwrap(), &pan, rng).unwrap();
        app.put(
            &format!("/v1/cards/{id}/pin"),
            json!({"pin_block": hex::encode(block), "format": format, "key_id": tdes.id}),
        )
        .await
        .ok();
        assert_eq!(app.verify(&id, "5083").await.ok()["valid"], true, "{format}");
        let block = pinblock::encrypt_tdes(tdes.key.expose(), f, &Pin::parse("5083").unwrap(), &pan, rng).unwrap();
        let v = app
            .post(
                &format!("/v1/cards/{id}/pin/verify"),
                json!({"pin_block": hex::encode(block), "format": format}),
            )
            .await
            .ok();
        assert_eq!(v["valid"], true);
    }

    // Refusals: wrong PAN binding, wrong key, clear block, algorithm mismatch,
    // format 1, bad hex, unknown key. Each changes nothing.
    let other_pan = Pan::parse("4242424242424242").unwrap();
    let block = pinblock::encrypt_format4(aes.key.expose(), &Pin::parse("6150").unwrap(), &other_pan, rng).unwrap();
    app.put(
        &format!("/v1/cards/{id}/pin"),
        json!({"pin_block": hex::encode(block), "format": "ISO-4", "key_id": aes.id}),
    )
    .await
    .expect(422, "pin_block_invalid");
    let stray = [7u8; 16];
    let block = pinblock::encrypt_format4(&stray, &Pin::parse("6150").unwrap(), &pan, rng).unwrap();
    let p = app
        .put(
            &format!("/v1/cards/{id}/pin"),
            json!({"pin_block": hex::encode(block), "format": "ISO-4", "key_id": aes.id}),
        )
        .await
        .expect(422, "pin_block_invalid");
    assert!(
        !p["detail"].as_str().unwrap().contains("fill"),
        "one generic answer for every decoding failure"
    );
    let clear = pinblock::encode_format0(&Pin::parse("6150").unwrap(), &pan);
    let p = app
        .put(
            &format!("/v1/cards/{id}/pin"),
            json!({"pin_block": hex::encode(clear), "format": "ISO-0", "key_id": tdes.id}),
        )
        .await
        .expect(422, "pin_block_invalid");
    // Refused like any other block that does not decode (no PAN oracle).
    assert!(!p["detail"].as_str().unwrap().contains("clear"));
    let p = app
        .put(
            &format!("/v1/cards/{id}/pin"),
            json!({"pin_block": hex::encode([0u8; 16]), "format": "ISO-4", "key_id": tdes.id}),
        )
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "key_id");
    let p = app
        .put(
            &format!("/v1/cards/{id}/pin"),
            json!({"pin_block": hex::encode([0u8; 8]), "format": "ISO-1", "key_id": tdes.id}),
        )
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "format");
    app.put(
        &format!("/v1/cards/{id}/pin"),
        json!({"pin_block": "zz", "format": "ISO-4"}),
    )
    .await
    .expect(422, "validation_error");
    let p = app
        .put(
            &format!("/v1/cards/{id}/pin"),
            json!({"pin_block": hex::encode([0u8; 16]), "format": "ISO-4", "key_id": uuid::Uuid::new_v4()}),
        )
        .await
        .expect(422, "validation_error");
    assert_eq!(p["errors"][0]["field"], "key_id");
    app.put(
        &format!("/v1/cards/{id}/pin"),
        json!({"pin_block": hex::encode([0u8; 8]), "format": "ISO-4"}),
    )
    .await
    .expect(422, "validation_error");
    assert_eq!(
        app.verify(&id, "5083").await.ok()["valid"],
        true,
        "refused blocks changed nothing"
    );

    // Another tenant's zone key is not usable.
    let b = app.new_tenant("tenant-b").await;
    let b_tenant = app.service().authenticate(&b).await.unwrap().tenant.id;
    let b_key = app.service().keys().create_zone_key(b_tenant, "aes").await.unwrap();
    let block = pinblock::encrypt_format4(b_key.key.expose(), &Pin::parse("6150").unwrap(), &pan, rng).unwrap();
    app.put(
        &format!("/v1/cards/{id}/pin"),
        json!({"pin_block": hex::encode(block), "format": "ISO-4", "key_id": b_key.id}),
    )
    .await
    .expect(422, "validation_error");
}

#[tokio::test]
async fn zone_key_from_the_cli_is_usable_at_once() {
    let app = spawn_app().await;
    let id = app.active_card("virtual").await["id"].as_str().unwrap().to_owned();
    let pan = Pan::parse(&app.pan(&id).await).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cardcore"))
        .env_remove("CARDCORE_MASTER_KEY")
        .args([
            "tenant",
            "zone-key",
            "--tenant",
            &app.tenant_id,
            "--algorithm",
            "tdes",
            "--json",
            "--database",
        ])
        .arg(format!("sqlite://{}", app.db_path().display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let k: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(k["algorithm"], "tdes");
    let key = hex::decode(k["key_hex"].as_str().unwrap()).unwrap();
    assert_eq!(key.len(), 16);
    assert_eq!(k["kcv"], cardcore_crypto::kcv::tdes_kcv(&key).unwrap());
    let block = pinblock::encrypt_tdes(
        &key,
        TdesFormat::Format0,
        &Pin::parse("6150").unwrap(),
        &pan,
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    app.put(
        &format!("/v1/cards/{id}/pin"),
        json!({"pin_block": hex::encode(block), "format": "ISO-0", "key_id": k["key_id"]}),
    )
    .await
    .ok();
    assert_eq!(app.verify(&id, "6150").await.ok()["valid"], true);
}

#[tokio::test]
async fn key_rotation_keeps_old_rows_verifying_and_moves_them_on_write() {
    let app = spawn_app().await;
    let tenant: cardcore_domain::TenantId = app.tenant_id.parse().unwrap();
    let id = app.active_card("virtual").await["id"].as_str().unwrap().to_owned();
    let card_id: cardcore_domain::CardId = id.parse().unwrap();
    let pan = app.pan(&id).await;
    app.set_pin(&id, "4821").await;
    let row = app.service().store().card(tenant, card_id).await.unwrap().unwrap();
    assert_eq!(row.secrets.pin.as_ref().unwrap().key_version, 1);
    assert_eq!(row.secrets.data_key_version, 1);

    // Rotate from the command line, against the running server's database.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cardcore"))
        .env_remove("CARDCORE_MASTER_KEY")
        .args(["keys", "rotate", "--database"])
        .arg(format!("sqlite://{}", app.db_path().display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("pin key: now version 2"));
    // A running node learns of new versions within a minute (its periodic
    // refresh); do now what that refresh does.
    app.service().keys().reload().await.unwrap();

    // The old row still verifies, and the verification moves it to version 2.
    assert_eq!(app.verify(&id, "4821").await.ok()["valid"], true);
    let row = app.service().store().card(tenant, card_id).await.unwrap().unwrap();
    assert_eq!(row.secrets.pin.as_ref().unwrap().key_version, 2);
    assert_eq!(row.secrets.data_key_version, 2, "the same write re-sealed PAN and CVV");
    assert_eq!(app.verify(&id, "4821").await.ok()["valid"], true);
    assert_eq!(app.verify(&id, "4822").await.ok()["valid"], false);
    assert_eq!(app.pan(&id).await, pan, "re-sealed data reads the same");

    // A card created after rotation uses the new versions from the start.
    let new = app.active_card("virtual").await["id"].as_str().unwrap().to_owned();
    app.set_pin(&new, "7391").await;
    let row = app
        .service()
        .store()
        .card(tenant, new.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.secrets.pin.as_ref().unwrap().key_version, 2);
    assert_eq!(row.secrets.data_key_version, 2);
}

/// The try counter is one per card because one server decides on a SQLite
/// file: a second server on it is refused, naming the first (this process)
/// and PostgreSQL; the first keeps counting. Across nodes: tests/nodes.rs.
#[tokio::test]
async fn the_try_counter_has_one_server_per_sqlite_file() {
    let app = spawn_app().await;
    let id = app.active_card("virtual").await["id"].as_str().unwrap().to_owned();
    app.set_pin(&id, "4821").await;
    assert_eq!(app.verify(&id, "0001").await.ok()["remaining_attempts"], 2);
    let refused = app
        .second_server()
        .await
        .err()
        .expect("a second server is refused")
        .to_string();
    assert!(refused.contains(&format!("pid {}", std::process::id())), "{refused}");
    assert!(refused.contains("PostgreSQL"), "{refused}");
    assert_eq!(app.verify(&id, "0002").await.ok()["remaining_attempts"], 1);
    assert_eq!(app.verify(&id, "0003").await.ok()["remaining_attempts"], 0);
    app.verify(&id, "4821").await.expect(409, "pin_blocked");
    let _ = Method::GET;
}
