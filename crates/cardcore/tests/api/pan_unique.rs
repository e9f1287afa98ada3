//! A PAN names one card in the world: unique across tenants under a tiny
//! card space, existing databases re-hashed (and stopped on a duplicate,
//! naming the cards, never the PAN), and the CVV2 computed, never stored.

use std::collections::HashMap;

use cardcore_crypto::verifier::label;
use cardcore_service::keyring::Purpose;
use reqwest::Method;
use serde_json::Value;

use crate::helpers::{serve_args, spawn_app_with, TestApp};

/// An 11-digit BIN leaves 4 free digits before the check digit: 10,000 PANs.
const TINY_BIN: &[&str] = &["--bin", "42424242424"];

async fn sensitive_as(app: &TestApp, key: &str, id: &str) -> Value {
    app.call_as(key, Method::GET, &format!("/v1/cards/{id}/sensitive"), None)
        .await
        .ok()
}

fn sqlite(app: &TestApp) -> rusqlite::Connection {
    rusqlite::Connection::open(app.db_path()).unwrap()
}

#[tokio::test]
async fn two_tenants_in_a_tiny_card_space_never_share_a_pan() {
    let app = spawn_app_with(TINY_BIN).await;
    let other = app.new_tenant("tenant-b").await;
    // 2 x 150 cards out of 10,000 PANs: a draw that ignored the other
    // tenant would repeat a PAN with a probability of about 90 %.
    let mut owner: HashMap<String, (String, String)> = HashMap::new();
    for key in [app.key.clone(), other] {
        let holder = app.create_cardholder_as(&key, "same-external-id").await;
        for _ in 0..150 {
            let card = app
                .create_card_as(&key, holder["id"].as_str().unwrap(), "virtual")
                .await;
            let id = card["id"].as_str().unwrap().to_owned();
            let pan = sensitive_as(&app, &key, &id).await["pan"].as_str().unwrap().to_owned();
            assert!(pan.starts_with("42424242424"));
            if let Some(first) = owner.insert(pan.clone(), (key.clone(), id.clone())) {
                panic!("cards {} and {id} share a PAN", first.1);
            }
        }
    }
    assert_eq!(owner.len(), 300);
}

#[tokio::test]
async fn the_cvv_is_computed_from_the_cvk_and_never_stored() {
    let app = spawn_app_with(&[]).await;
    let card = app.card("physical").await;
    let id = card["id"].as_str().unwrap();
    let first = sensitive_as(&app, &app.key, id).await;
    let again = sensitive_as(&app, &app.key, id).await;
    assert_eq!(first, again, "the same PAN, CVV and expiry every time");
    // The CVV is the Visa CVV algorithm under the CVK, service code 000.
    let cvk = app.service().keys().cvk().await.unwrap();
    let pan = cardcore_crypto::Pan::parse(first["pan"].as_str().unwrap()).unwrap();
    let expiry = first["expiry"].as_str().unwrap(); // MM/YY
    let yymm = format!("{}{}", &expiry[3..5], &expiry[0..2]);
    let cvv = cardcore_crypto::cvv::generate_cvv(&cvk, &pan, &yymm, cardcore_crypto::cvv::SERVICE_CODE_CVV2).unwrap();
    assert_eq!(first["cvv"].as_str().unwrap(), cvv.expose());
    // It survives a change that rewrites the card row.
    app.post(&format!("/v1/cards/{id}/lock"), serde_json::json!({})).await;
    assert_eq!(sensitive_as(&app, &app.key, id).await, first);
    // Nothing in the cards table holds a CVV.
    let stored: i64 = sqlite(&app)
        .query_row("SELECT count(*) FROM cards WHERE length(cvv_sealed) > 0", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, 0);
    // The unique index on the PAN hash alone is there.
    let sql: String = sqlite(&app)
        .query_row("SELECT sql FROM sqlite_master WHERE name = 'cards_pan_hash'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(sql.contains("UNIQUE") && sql.contains("(pan_hash)"), "{sql}");
}

/// The hash a database made before migration 0004 holds: bound to the tenant.
async fn old_hash(service: &cardcore_service::Service, tenant: &str, pan: &str) -> Vec<u8> {
    let (_, key) = service.keys().mac_key(Purpose::PanLookup, None).await.unwrap();
    let tenant: uuid::Uuid = tenant.parse().unwrap();
    key.compute(label::PAN_LOOKUP, &[tenant.as_bytes(), pan.as_bytes()])
        .to_vec()
}

#[tokio::test]
async fn an_older_database_is_rehashed_and_a_shared_pan_stops_the_upgrade_naming_both_cards() {
    let mut app = spawn_app_with(&[]).await;
    let other_key = app.new_tenant("tenant-b").await;
    let mine = app.card("virtual").await;
    let theirs = {
        let holder = app.create_cardholder_as(&other_key, "b-1").await;
        app.create_card_as(&other_key, holder["id"].as_str().unwrap(), "virtual")
            .await
    };
    let (mine_id, theirs_id) = (
        mine["id"].as_str().unwrap().to_owned(),
        theirs["id"].as_str().unwrap().to_owned(),
    );
    let my_pan = sensitive_as(&app, &app.key, &mine_id).await["pan"]
        .as_str()
        .unwrap()
        .to_owned();
    let my_hash_now: Vec<u8> = sqlite(&app)
        .query_row("SELECT pan_hash FROM cards WHERE id = ?1", [&mine_id], |r| r.get(0))
        .unwrap();
    let tenant_a = app.tenant_id.clone();
    let old = old_hash(app.service(), &tenant_a, &my_pan).await;
    assert_ne!(old, my_hash_now, "the new hash is not the tenant-bound one");

    // Back to how an older cardcore left the database: tenant-bound hashes,
    // and no record of the upgrade.
    let args = serve_args(app.dir.path(), &[]);
    app.server.take().unwrap().stop().await.unwrap();
    {
        let db = sqlite(&app);
        db.execute(
            "UPDATE cards SET pan_hash = ?1 WHERE id = ?2",
            rusqlite::params![old, mine_id],
        )
        .unwrap();
        db.execute("DELETE FROM meta WHERE key = 'pan_lookup_hash'", [])
            .unwrap();
    }
    cardcore::open_service(&args.db, cardcore_service::ServiceConfig::default())
        .await
        .expect("the upgrade runs");
    let rehashed: Vec<u8> = sqlite(&app)
        .query_row("SELECT pan_hash FROM cards WHERE id = ?1", [&mine_id], |r| r.get(0))
        .unwrap();
    assert_eq!(rehashed, my_hash_now, "re-hashed to the PAN-only form");

    // Now the other tenant's card holds the same PAN (as an 11-digit BIN
    // made possible before): the upgrade must stop and say which cards.
    let service = cardcore::open_service(&args.db, cardcore_service::ServiceConfig::default())
        .await
        .unwrap();
    let (_, data_key) = service.keys().data_key(None).await.unwrap();
    let their_tenant: String = sqlite(&app)
        .query_row("SELECT tenant_id FROM cards WHERE id = ?1", [&theirs_id], |r| r.get(0))
        .unwrap();
    let sealed = data_key.seal(
        format!("cardcore/pan/{their_tenant}/{theirs_id}").as_bytes(),
        my_pan.as_bytes(),
        &mut rand::rngs::OsRng,
    );
    let their_old = old_hash(&service, &their_tenant, &my_pan).await;
    drop(service);
    {
        let db = sqlite(&app);
        db.execute(
            "UPDATE cards SET pan_sealed = ?1, pan_hash = ?2 WHERE id = ?3",
            rusqlite::params![sealed, their_old, theirs_id],
        )
        .unwrap();
        db.execute("DELETE FROM meta WHERE key = 'pan_lookup_hash'", [])
            .unwrap();
    }
    let err = match cardcore::open_service(&args.db, cardcore_service::ServiceConfig::default()).await {
        Ok(_) => panic!("a shared PAN must stop the upgrade"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains(&mine_id) && err.contains(&theirs_id), "{err}");
    assert!(err.contains("same PAN"), "{err}");
    assert!(
        !err.contains(&my_pan) && !err.contains(&my_pan[6..]),
        "never the PAN: {err}"
    );
    // And it stops the server too, with the same words.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = cardcore::Server::start(&args, Some(listener)).await;
    let message = format!("{:#}", refused.err().expect("the server does not start"));
    assert!(message.contains(&mine_id) && message.contains(&theirs_id), "{message}");
}
