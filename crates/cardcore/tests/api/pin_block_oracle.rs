//! One answer for every refused PIN block: a clear block, a block under a
//! wrong key, a block made for another PAN and random garbage get the same
//! status, code and text, so chosen blocks learn nothing about the PAN (and
//! no PIN try is counted for any of them). The same holds for refused
//! RSA-encrypted PINs through the M2P dialect, which takes PINs that way.

use cardcore_crypto::pinblock::{self, TdesFormat};
use cardcore_crypto::{Pan, Pin};
use rand::RngCore;
use reqwest::Method;
use serde_json::{json, Value};

use crate::dialect_cross::{m2p, m2p_login, owned_card};
use crate::helpers::{spawn_app, Resp, TestApp};

/// What a caller can compare: status, content type and body without the
/// request id (which every answer has its own of).
fn comparable(r: &Resp) -> (u16, String, Value) {
    let mut body = r.body.clone();
    if let Some(o) = body.as_object_mut() {
        o.remove("request_id");
    }
    let ct = r
        .headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (r.status.as_u16(), ct, body)
}

#[track_caller]
fn all_the_same(answers: &[(&str, Resp)]) -> (u16, String, Value) {
    let (first_name, first) = &answers[0];
    let first = comparable(first);
    for (name, r) in &answers[1..] {
        assert_eq!(comparable(r), first, "{name} is answered unlike {first_name}");
    }
    first
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// Another 16-digit PAN whose block can never decode under `pan`: formats 0
/// and 3 XOR the PIN field with 12 PAN digits, so a PAN that differs only
/// where the XOR leaves fill nibbles inside A..F (format 3's random fill)
/// would decode to the right PIN now and then. Digit 10 of the PAN lands on a
/// fill nibble of a 4-digit PIN; here it differs from the card's in its top
/// bit, which takes that nibble out of A..F (and off F) whatever the fill.
fn another_pan(pan: &str) -> Pan {
    let mut digits = pan.as_bytes()[..15].to_vec();
    digits[10] = if digits[10] <= b'7' { b'9' } else { b'0' };
    let check = cardcore_crypto::luhn::check_digit(&digits).unwrap();
    digits.push(check);
    Pan::parse(std::str::from_utf8(&digits).unwrap()).unwrap()
}

async fn verify_block(app: &TestApp, id: &str, block: &[u8], format: &str, key_id: &str) -> Resp {
    app.post(
        &format!("/v1/cards/{id}/pin/verify"),
        json!({"pin_block": hex::encode_upper(block), "format": format, "key_id": key_id}),
    )
    .await
}

#[tokio::test]
async fn every_refused_pin_block_gets_the_same_answer() {
    let app = spawn_app().await;
    let tenant = app.tenant_id.parse().unwrap();
    let id = app.active_card("virtual").await["id"].as_str().unwrap().to_owned();
    app.set_pin(&id, "4821").await;
    let pan_digits = app.pan(&id).await;
    let pan = Pan::parse(&pan_digits).unwrap();
    let other_pan = another_pan(&pan_digits);
    let tdes = app.service().keys().create_zone_key(tenant, "tdes").await.unwrap();
    let aes = app.service().keys().create_zone_key(tenant, "aes").await.unwrap();
    let (tdes_id, aes_id) = (tdes.id.to_string(), aes.id.to_string());
    let stray = [0x5a_u8; 16];
    let pin = Pin::parse("4821").unwrap();
    let rng = &mut rand::rngs::OsRng;

    // Formats 0 and 3 under the TDES zone key.
    for (format, f) in [("ISO-0", TdesFormat::Format0), ("ISO-3", TdesFormat::Format3)] {
        let clear = match f {
            TdesFormat::Format0 => pinblock::encode_format0(&pin, &pan).to_vec(),
            _ => pinblock::encode_format3(&pin, &pan, rng).to_vec(),
        };
        let wrong_key = pinblock::encrypt_tdes(&stray, f, &pin, &pan, rng).unwrap();
        let other = pinblock::encrypt_tdes(tdes.key.expose(), f, &pin, &other_pan, rng).unwrap();
        let answers = [
            ("a clear block", verify_block(&app, &id, &clear, format, &tdes_id).await),
            (
                "a wrong key",
                verify_block(&app, &id, &wrong_key, format, &tdes_id).await,
            ),
            ("another PAN", verify_block(&app, &id, &other, format, &tdes_id).await),
            (
                "garbage",
                verify_block(&app, &id, &random_bytes(8), format, &tdes_id).await,
            ),
            ("zeros", verify_block(&app, &id, &[0u8; 8], format, &tdes_id).await),
        ];
        let (status, ct, body) = all_the_same(&answers);
        assert_eq!((status, ct.as_str()), (422, "application/problem+json"), "{format}");
        assert_eq!(body["code"], "pin_block_invalid");
        assert_eq!(body["errors"][0]["field"], "pin_block");
        assert!(!body.to_string().contains("clear"), "{body}");
    }

    // Format 4 under the AES zone key.
    let mut clear4 = [0u8; 16];
    clear4[..8].copy_from_slice(&hex::decode("441234AAAAAAAAAA").unwrap());
    let wrong_key = pinblock::encrypt_format4(&stray, &pin, &pan, rng).unwrap();
    let other = pinblock::encrypt_format4(aes.key.expose(), &pin, &other_pan, rng).unwrap();
    let answers = [
        (
            "a clear block",
            verify_block(&app, &id, &clear4, "ISO-4", &aes_id).await,
        ),
        (
            "a wrong key",
            verify_block(&app, &id, &wrong_key, "ISO-4", &aes_id).await,
        ),
        ("another PAN", verify_block(&app, &id, &other, "ISO-4", &aes_id).await),
        (
            "garbage",
            verify_block(&app, &id, &random_bytes(16), "ISO-4", &aes_id).await,
        ),
    ];
    let four = all_the_same(&answers);
    assert_eq!(four.2["code"], "pin_block_invalid");

    // PIN set and change refuse the same way (set: the card keeps its PIN).
    let clear = pinblock::encode_format0(&Pin::parse("6150").unwrap(), &pan);
    let set_clear = app
        .put(
            &format!("/v1/cards/{id}/pin"),
            json!({"pin_block": hex::encode(clear), "format": "ISO-0", "key_id": tdes_id}),
        )
        .await;
    let set_garbage = app
        .put(
            &format!("/v1/cards/{id}/pin"),
            json!({"pin_block": hex::encode(random_bytes(8)), "format": "ISO-0", "key_id": tdes_id}),
        )
        .await;
    all_the_same(&[("set: a clear block", set_clear), ("set: garbage", set_garbage)]);

    // None of them counted a try or changed the PIN.
    let audit = app.audit(&id).await;
    assert!(
        audit.iter().all(|e| e["type"] != "card.pin_verification_failed"),
        "no try counted"
    );
    let ok = app.verify(&id, "4821").await.ok();
    assert_eq!(ok["valid"], true);
    assert_eq!(ok["remaining_attempts"], 3);
}

#[tokio::test]
async fn every_refused_encrypted_pin_gets_the_same_answer_in_m2p() {
    let app = spawn_app().await;
    let auth = m2p_login(&app, &app.tenant_id, &app.key.clone()).await;
    let c = owned_card(&app, "virtual").await;
    app.set_pin(c.id(), "4821").await;
    let pem = app.get("/v1/pin-encryption-key").await.ok()["public_key_pem"]
        .as_str()
        .unwrap()
        .to_owned();
    // Another tenant's deployment key stands in for "a wrong key": a fresh
    // server has its own transport key.
    let elsewhere = spawn_app().await;
    let other_pem = elsewhere.get("/v1/pin-encryption-key").await.ok()["public_key_pem"]
        .as_str()
        .unwrap()
        .to_owned();
    let enc = |pem: &str, plain: &[u8]| cardcore_crypto::transport::encrypt_with_public_pem(pem, plain).unwrap();
    let b64 = |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b);
    let cases = [
        ("a wrong key", enc(&other_pem, b"4821")),
        ("not digits", enc(&pem, b"48a1")),
        ("too short", enc(&pem, b"48")),
        ("garbage", b64(&random_bytes(256))),
        ("not base64", "this is not a PIN".to_owned()),
    ];
    let mut answers = Vec::new();
    for (name, old_pin) in cases {
        let body = json!({"entityId": c.external_id, "kit": c.kit(), "oldPin": old_pin});
        answers.push((name, m2p(&app, &auth, "cards/v2/validate-pin", body).await));
    }
    let (status, _, body) = all_the_same(&answers);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["fieldErrors"][0]["field"], "oldPin");
    assert!(app
        .audit(c.id())
        .await
        .iter()
        .all(|e| e["type"] != "card.pin_verification_failed"));
    assert_eq!(app.verify(c.id(), "4821").await.ok()["remaining_attempts"], 3);
    // The same in the native API.
    let mut native = Vec::new();
    for (name, ciphertext) in [
        ("a wrong key", enc(&other_pem, b"4821")),
        ("garbage", b64(&random_bytes(256))),
    ] {
        let key_id = app.get("/v1/pin-encryption-key").await.ok()["key_id"].clone();
        let r = app
            .call_as(
                &app.key,
                Method::POST,
                &format!("/v1/cards/{}/pin/verify", c.id()),
                Some(json!({"encrypted_pin": ciphertext, "key_id": key_id})),
            )
            .await;
        native.push((name, r));
    }
    let (status, _, body) = all_the_same(&native);
    assert_eq!((status, body["code"].as_str()), (422, Some("encrypted_pin_invalid")));
}
