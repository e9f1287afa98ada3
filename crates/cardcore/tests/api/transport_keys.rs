//! Each tenant's own RSA PIN transport key: made on first use, one per
//! tenant even when asked for at once, rotated with `cardcore keys rotate`,
//! and a ciphertext made for one tenant never decrypts for another.

use std::time::Instant;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

async fn key_of(app: &TestApp, api_key: &str) -> Value {
    app.call_as(api_key, Method::GET, "/v1/pin-encryption-key", None)
        .await
        .ok()
}

fn encrypt(key: &Value, pin: &str) -> String {
    cardcore_crypto::transport::encrypt_with_public_pem(key["public_key_pem"].as_str().unwrap(), pin.as_bytes())
        .unwrap()
}

#[tokio::test]
async fn a_blob_made_for_one_tenant_is_refused_on_another_tenants_card() {
    let app = spawn_app().await;
    let b = app.new_tenant("tenant-b").await;
    let key_a = key_of(&app, &app.key).await;
    let key_b = key_of(&app, &b).await;
    assert_ne!(key_a["public_key_pem"], key_b["public_key_pem"], "one key per tenant");
    assert_eq!(key_a["key_id"], "rsa-oaep-v1");
    assert_eq!(key_b["key_id"], "rsa-oaep-v1");
    assert_eq!(key_of(&app, &app.key).await, key_a, "the same key on every ask");

    let card_a = app.active_card("virtual").await["id"].as_str().unwrap().to_owned();
    let holder_b = app.create_cardholder_as(&b, "b-1").await;
    let card_b = app
        .create_card_as(&b, holder_b["id"].as_str().unwrap(), "virtual")
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Tenant A's blob, replayed by tenant B on its own card: refused like any
    // ciphertext that does not decrypt, and nothing changes.
    let blob = encrypt(&key_a, "4821");
    let set = |id: &str| format!("/v1/cards/{id}/pin");
    app.call_as(
        &b,
        Method::PUT,
        &set(&card_b),
        Some(json!({"encrypted_pin": blob, "key_id": "rsa-oaep-v1"})),
    )
    .await
    .expect(422, "encrypted_pin_invalid");
    let card = app
        .call_as(&b, Method::GET, &format!("/v1/cards/{card_b}"), None)
        .await
        .ok();
    assert_eq!(card["pin_status"], "NOT_SET");
    // Nor is it an oracle on B's PIN: a verification with it counts nothing.
    app.call_as(&b, Method::PUT, &set(&card_b), Some(json!({"pin": "4821"})))
        .await
        .ok();
    app.call_as(
        &b,
        Method::POST,
        &format!("/v1/cards/{card_b}/pin/verify"),
        Some(json!({"encrypted_pin": blob, "key_id": "rsa-oaep-v1"})),
    )
    .await
    .expect(422, "encrypted_pin_invalid");
    let wrong = app
        .call_as(
            &b,
            Method::POST,
            &format!("/v1/cards/{card_b}/pin/verify"),
            Some(json!({"pin": "7391"})),
        )
        .await
        .ok();
    assert_eq!(wrong["remaining_attempts"], 2, "the refused blob was not counted");

    // The same blob on tenant A's card does what it was made for.
    app.put(&set(&card_a), json!({"encrypted_pin": blob, "key_id": "rsa-oaep-v1"}))
        .await
        .ok();
    assert_eq!(app.verify(&card_a, "4821").await.ok()["valid"], true);
    // And B's blob does not work on A's card.
    let blob_b = encrypt(&key_b, "5937");
    app.put(&set(&card_a), json!({"encrypted_pin": blob_b, "key_id": "rsa-oaep-v1"}))
        .await
        .expect(422, "encrypted_pin_invalid");
}

#[tokio::test]
async fn keys_rotate_keeps_the_replaced_key_for_its_grace_then_refuses_it() {
    let app = spawn_app().await;
    let id = app.active_card("virtual").await["id"].as_str().unwrap().to_owned();
    let v1 = key_of(&app, &app.key).await;
    let rotate = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cardcore"))
            .env_remove("CARDCORE_MASTER_KEY")
            .args(["keys", "rotate"])
            .args(extra)
            .arg("--database")
            .arg(format!("sqlite://{}", app.db_path().display()))
            // The server writes to the same file; under a loaded test run
            // the write lock may take longer than the default 3 s to get.
            .args(["--db-timeout-seconds", "30"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let pin = format!("/v1/cards/{id}/pin");

    // Default grace (a day): the new version is served, the old one still decrypts.
    let said = rotate(&[]);
    assert!(said.contains("transport keys: a new version for 1 tenant"), "{said}");
    // A running node learns of new versions within a minute (its periodic
    // refresh); do now what that refresh does.
    app.service().keys().reload().await.unwrap();
    let v2 = key_of(&app, &app.key).await;
    assert_eq!(v2["key_id"], "rsa-oaep-v2");
    assert_ne!(v2["public_key_pem"], v1["public_key_pem"]);
    app.put(
        &pin,
        json!({"encrypted_pin": encrypt(&v1, "4821"), "key_id": "rsa-oaep-v1"}),
    )
    .await
    .ok();
    assert_eq!(app.verify(&id, "4821").await.ok()["valid"], true);
    app.put(
        &pin,
        json!({"encrypted_pin": encrypt(&v2, "5937"), "key_id": "rsa-oaep-v2"}),
    )
    .await
    .ok();
    assert_eq!(app.verify(&id, "5937").await.ok()["valid"], true);

    // No grace (a suspected compromise): every replaced version is refused at once.
    rotate(&["--transport-grace-seconds", "0"]);
    app.service().keys().reload().await.unwrap();
    let v3 = key_of(&app, &app.key).await;
    assert_eq!(v3["key_id"], "rsa-oaep-v3");
    for (old, key_id) in [(&v1, "rsa-oaep-v1"), (&v2, "rsa-oaep-v2")] {
        let p = app
            .put(&pin, json!({"encrypted_pin": encrypt(old, "6150"), "key_id": key_id}))
            .await
            .expect(422, "validation_error");
        assert_eq!(p["errors"][0]["field"], "key_id", "{p}");
        assert!(
            p["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("/v1/pin-encryption-key"),
            "{p}"
        );
    }
    // A v3 key id with a v2 ciphertext does not decrypt either.
    app.put(
        &pin,
        json!({"encrypted_pin": encrypt(&v2, "6150"), "key_id": "rsa-oaep-v3"}),
    )
    .await
    .expect(422, "encrypted_pin_invalid");
    assert_eq!(
        app.verify(&id, "5937").await.ok()["valid"],
        true,
        "refusals changed nothing"
    );
    app.put(
        &pin,
        json!({"encrypted_pin": encrypt(&v3, "6150"), "key_id": "rsa-oaep-v3"}),
    )
    .await
    .ok();
    assert_eq!(app.verify(&id, "6150").await.ok()["valid"], true);
}

#[tokio::test]
async fn a_tenants_first_key_is_made_once_when_asked_for_at_once() {
    let app = spawn_app().await;
    let b = app.new_tenant("tenant-b").await;
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = app.client.clone();
        let url = format!("{}/v1/pin-encryption-key", app.base);
        let key = b.clone();
        set.spawn(async move {
            let r = client.get(url).bearer_auth(key).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        });
    }
    let mut answers = Vec::new();
    while let Some(r) = set.join_next().await {
        answers.push(r.unwrap());
    }
    eprintln!(
        "8 concurrent first asks answered in {:?} (RSA-2048 generation included)",
        started.elapsed()
    );
    assert!(answers.iter().all(|a| a == &answers[0]), "one key: {answers:?}");
    let tenant = app.service().authenticate(&b).await.unwrap().tenant.id;
    let stored = app.service().store().transport_keys(tenant).await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
}

#[tokio::test]
async fn m2p_ciphertexts_decrypt_only_under_the_tenants_own_keys() {
    use crate::dialect_cross::{m2p, m2p_login, owned_card};
    let app = spawn_app().await;
    let b = app.new_tenant("tenant-b").await;
    let c = owned_card(&app, "virtual").await;
    app.set_pin(c.id(), "4821").await;
    let auth = m2p_login(&app, &app.tenant_id, &app.key).await;
    let check = |pin: String| json!({"entityId": c.external_id, "kit": c.kit(), "oldPin": pin});
    let key_a = key_of(&app, &app.key).await;
    let key_b = key_of(&app, &b).await;

    // M2P sends no key id: tenant B's key is never among those tried.
    let r = m2p(&app, &auth, "cards/v2/validate-pin", check(encrypt(&key_b, "4821"))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["fieldErrors"][0]["field"], "oldPin", "{}", r.text);
    let r = m2p(&app, &auth, "cards/v2/validate-pin", check(encrypt(&key_a, "4821"))).await;
    assert_eq!(
        r.body,
        json!({"result": {"valid": true}, "pagination": null}),
        "{}",
        r.text
    );

    // After a rotation the replaced key still decrypts for its grace period.
    let tenants = app
        .service()
        .keys()
        .rotate_transport_keys(chrono::Duration::days(1))
        .await
        .unwrap();
    assert_eq!(tenants, 2);
    assert_eq!(key_of(&app, &app.key).await["key_id"], "rsa-oaep-v2");
    let r = m2p(&app, &auth, "cards/v2/validate-pin", check(encrypt(&key_a, "4821"))).await;
    assert_eq!(
        r.body,
        json!({"result": {"valid": true}, "pagination": null}),
        "{}",
        r.text
    );
    // The refused ciphertext counted no try.
    assert_eq!(app.verify(c.id(), "7391").await.ok()["remaining_attempts"], 2);
}
