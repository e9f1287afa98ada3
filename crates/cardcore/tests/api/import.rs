//! `cardcore import` through the real binary, beside a running server on the
//! same database: every imported PIN (ISO-4 block, ISO-0 block, Visa PVV)
//! verifies through the API, bad lines are named by number and field
//! without their secrets, a dry run writes nothing and a re-run changes
//! nothing.

use std::path::Path;
use std::process::{Command, Output};

use cardcore_crypto::pinblock::{self, TdesFormat};
use cardcore_crypto::pvv::generate_visa_pvv;
use cardcore_crypto::{Pan, Pin};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

/// The psec PVK of pin-security.md's PVV vectors.
const PVK_HEX: &str = "0123456789ABCDEFFEDCBA9876543210";

fn cardcore(dir: &Path, db: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cardcore"))
        .current_dir(dir)
        .env_remove("CARDCORE_DATABASE_URL")
        .env_remove("CARDCORE_MASTER_KEY")
        .env_remove("CARDCORE_MASTER_KEY_FILE")
        .args(args)
        .args(["--database", db])
        .output()
        .unwrap()
}

/// A Visa PAN with a valid Luhn digit: `body` is 15 digits.
fn pan(body: &str) -> String {
    let check = cardcore_crypto::luhn::check_digit(body.as_bytes()).unwrap();
    format!("{body}{}", char::from(check))
}

fn zone_key(dir: &Path, db: &str, tenant: &str, algorithm: &str, key_file: Option<&Path>) -> Value {
    let mut args = vec![
        "tenant",
        "zone-key",
        "--tenant",
        tenant,
        "--algorithm",
        algorithm,
        "--json",
    ];
    let path;
    if let Some(f) = key_file {
        path = f.display().to_string();
        args.extend_from_slice(&["--key-file", &path]);
    }
    let out = cardcore(dir, db, &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn line(external_id: &str, name: &str, card: Value) -> String {
    json!({
        "external_id": external_id,
        "name": name,
        "phone": {"country_code": "351", "number": "912345678"},
        "date_of_birth": "1980-02-29",
        "card": card,
    })
    .to_string()
}

async fn card_of(app: &TestApp, external_id: &str, last_four: &str) -> Value {
    let holders = app
        .get(&format!("/v1/cardholders?external_id={external_id}"))
        .await
        .ok();
    let holder = holders["data"][0]["id"].as_str().unwrap().to_owned();
    let cards = app.get(&format!("/v1/cards?cardholder_id={holder}")).await.ok();
    cards["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["last_four"] == last_four)
        .cloned()
        .unwrap_or_else(|| panic!("no card ending {last_four} for {external_id}: {cards}"))
}

/// The stored PIN verifier's length: 32 for the keyed HMAC, 24 for an imported PVV.
async fn verifier_len(app: &TestApp, card_id: &str) -> usize {
    let tenant = app.tenant_id.parse().unwrap();
    let rec = app
        .service()
        .store()
        .card(tenant, card_id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    rec.secrets.pin.unwrap().value.len()
}

async fn verify(app: &TestApp, card_id: &str, pin: &str) -> (bool, u64) {
    let v = app.verify(card_id, pin).await.ok();
    (v["valid"].as_bool().unwrap(), v["remaining_attempts"].as_u64().unwrap())
}

#[tokio::test]
async fn a_portfolio_imports_once_and_every_pin_verifies_through_the_api() {
    let app = spawn_app().await;
    let dir = app.dir.path().to_owned();
    let db = format!("sqlite://{}", app.db_path().display());
    let tenant = app.tenant_id.clone();

    let aes = zone_key(&dir, &db, &tenant, "aes", None);
    let tdes = zone_key(&dir, &db, &tenant, "tdes", None);
    let pvk_file = dir.join("pvk.hex");
    std::fs::write(&pvk_file, PVK_HEX).unwrap();
    let pvk = zone_key(&dir, &db, &tenant, "pvk", Some(&pvk_file));
    assert!(pvk.get("key_hex").is_none(), "an imported key is never printed: {pvk}");
    assert_eq!(pvk["algorithm"], "pvk");
    // A PVK is no zone PIN key: it cannot be made, only imported.
    let made = cardcore(
        &dir,
        &db,
        &["tenant", "zone-key", "--tenant", &tenant, "--algorithm", "pvk"],
    );
    assert!(!made.status.success());

    // The PVV algorithm is the crypto crate's, anchored on psec's vector.
    let pvk_bytes: [u8; 16] = hex::decode(PVK_HEX).unwrap().try_into().unwrap();
    let vector = generate_visa_pvv(
        &pvk_bytes,
        1,
        &Pin::parse("4524").unwrap(),
        &Pan::parse("1122334455667788").unwrap(),
    )
    .unwrap();
    assert_eq!(vector.as_str(), "8523");

    let aes_key = hex::decode(aes["key_hex"].as_str().unwrap()).unwrap();
    let tdes_key = hex::decode(tdes["key_hex"].as_str().unwrap()).unwrap();
    let (pan4, pan0, pan_pvv, pan_pvv2, pan_bad) = (
        pan("400000123456789"),
        pan("510510123456789"),
        pan("400000987654321"),
        pan("400000555566667"),
        pan("400000111122223"),
    );
    let bad_luhn = {
        let last = pan_bad.as_bytes()[15] - b'0';
        format!("{}{}", &pan_bad[..15], (last + 1) % 10)
    };
    let block4 = hex::encode_upper(
        pinblock::encrypt_format4(
            &aes_key,
            &Pin::parse("4821").unwrap(),
            &Pan::parse(&pan4).unwrap(),
            &mut rand::rngs::OsRng,
        )
        .unwrap(),
    );
    let block0 = hex::encode_upper(
        pinblock::encrypt_tdes(
            &tdes_key,
            TdesFormat::Format0,
            &Pin::parse("7351").unwrap(),
            &Pan::parse(&pan0).unwrap(),
            &mut rand::rngs::OsRng,
        )
        .unwrap(),
    );
    let pvv = |pin: &str, pan: &str| {
        generate_visa_pvv(&pvk_bytes, 1, &Pin::parse(pin).unwrap(), &Pan::parse(pan).unwrap())
            .unwrap()
            .as_str()
            .to_owned()
    };
    let (pvv1, pvv2) = (pvv("4524", &pan_pvv), pvv("9180", &pan_pvv2));
    let limits = json!({"currency": "EUR", "channels": {
        "pos": {"enabled": true, "per_transaction": 50000, "daily": 100000, "monthly": 300000},
        "ecommerce": {"enabled": true, "per_transaction": null, "daily": null, "monthly": null},
        "atm": {"enabled": false, "per_transaction": null, "daily": null, "monthly": null},
        "contactless": {"enabled": true, "per_transaction": 5000, "daily": null, "monthly": null}}});
    let lines = [
        // 1: ISO-4 under the AES zone key, a virtual card.
        line(
            "imp-a",
            "Ana Silva",
            json!({"pan": pan4, "expiry": "04/29", "type": "virtual", "status": "ACTIVE",
                   "pin": {"format": "ISO-4", "key_id": aes["key_id"], "block": block4}}),
        ),
        // 2: the same cardholder's plastic, ISO-0 under the TDES key, with kit and limits.
        line(
            "imp-a",
            "Ana Silva",
            json!({"pan": pan0, "expiry": "11/28", "kit_number": "20004195", "type": "physical",
                   "status": "ACTIVE", "limits": limits,
                   "pin": {"format": "ISO-0", "key_id": tdes["key_id"], "block": block0}}),
        ),
        // 3, 4: Visa PVVs under the imported PVK.
        line(
            "imp-b",
            "Bruno Costa",
            json!({"pan": pan_pvv, "expiry": "01/30", "type": "physical", "status": "LOCKED",
                   "pin": {"pvv": pvv1, "pvk_key_id": pvk["key_id"], "pvki": 1}}),
        ),
        line(
            "imp-c",
            "Carla Dias",
            json!({"pan": pan_pvv2, "expiry": "01/30", "type": "virtual",
                   "pin": {"format": "VISA-PVV", "pvv": pvv2, "pvk_key_id": pvk["key_id"], "pvki": "1"}}),
        ),
        // 5: bad Luhn digit.
        line(
            "imp-d",
            "Dora Bad",
            json!({"pan": bad_luhn, "expiry": "01/30", "type": "virtual"}),
        ),
        // 6: a key id the tenant does not have.
        line(
            "imp-e",
            "Eva Bad",
            json!({"pan": pan_bad, "expiry": "01/30", "type": "virtual",
                   "pin": {"format": "ISO-4", "key_id": "0190f2a4-0000-7000-8000-000000000000", "block": block4}}),
        ),
        // 7: a block that is not one (a truncated block).
        line(
            "imp-f",
            "Filipa Bad",
            json!({"pan": pan_bad, "expiry": "01/30", "type": "virtual",
                   "pin": {"format": "ISO-4", "key_id": aes["key_id"], "block": &block4[..30]}}),
        ),
        // 8: not JSON.
        "{\"external_id\": \"imp-g\", \"card\": ".to_owned(),
    ];
    let file = dir.join("cards.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let file_arg = file.display().to_string();
    let secrets = [
        pan4.as_str(),
        pan0.as_str(),
        pan_pvv.as_str(),
        pan_pvv2.as_str(),
        pan_bad.as_str(),
        bad_luhn.as_str(),
        block4.as_str(),
        &block4[..30],
        block0.as_str(),
        pvv1.as_str(),
        pvv2.as_str(),
        PVK_HEX,
    ];
    let run = |extra: &[&str]| {
        let mut args = vec!["import", "--tenant", &tenant, "--file", &file_arg];
        args.extend_from_slice(extra);
        let out = cardcore(&dir, &db, &args);
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        for s in secrets {
            assert!(
                !stdout.contains(s) && !stderr.contains(s),
                "a secret leaked into the output:\n{stdout}\n{stderr}"
            );
        }
        (out.status.success(), stdout, stderr)
    };
    let events_before = app.all_events().await.len();

    // A dry run checks every line and writes nothing.
    let (ok, stdout, stderr) = run(&["--dry-run"]);
    assert!(!ok, "failed lines fail the run");
    assert!(
        stdout.contains("would have imported 4, unchanged 0, failed 4"),
        "{stdout}"
    );
    assert!(stderr.contains("line 5: card.pan: fails the Luhn check"), "{stderr}");
    let found = app.get("/v1/cardholders?external_id=imp-a").await.ok();
    assert_eq!(found["data"], json!([]), "the dry run wrote a cardholder");
    assert_eq!(app.all_events().await.len(), events_before);

    let (ok, stdout, stderr) = run(&[]);
    assert!(!ok);
    assert!(stdout.contains("imported 4, unchanged 0, failed 4"), "{stdout}");
    assert!(stderr.contains("line 5: card.pan: fails the Luhn check"), "{stderr}");
    assert!(
        stderr.contains("line 6: card.pin.key_id: no aes zone PIN key of this tenant matches"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 7: card.pin.block: must be 32 hex characters"),
        "{stderr}"
    );
    assert!(stderr.contains("line 8: is not a JSON object"), "{stderr}");
    assert_eq!(stderr.matches("line ").count(), 4, "{stderr}");
    for n in 1..=4 {
        assert!(!stderr.contains(&format!("line {n}:")), "{stderr}");
    }

    // Every imported PIN verifies, right and wrong, through the API.
    let c4 = card_of(&app, "imp-a", &pan4[12..]).await;
    let c0 = card_of(&app, "imp-a", &pan0[12..]).await;
    let cp = card_of(&app, "imp-b", &pan_pvv[12..]).await;
    let cp2 = card_of(&app, "imp-c", &pan_pvv2[12..]).await;
    assert_eq!(c4["cardholder_id"], c0["cardholder_id"], "one cardholder, two cards");
    assert_eq!(c0["kit_number"], "20004195", "a vendor's 8-digit kit is kept");
    assert_eq!(c4["card_name"], "virtual", "named by its type, as at creation");
    assert_eq!(c0["brand"], "mastercard");
    assert_eq!(c0["expiry"], "11/28");
    assert_eq!(cp["status"], "LOCKED");
    for c in [&c4, &c0, &cp, &cp2] {
        assert_eq!(c["pin_status"], "SET", "{c}");
    }
    let id = |c: &Value| c["id"].as_str().unwrap().to_owned();
    let limits_read = app.get(&format!("/v1/cards/{}/limits", id(&c0))).await.ok();
    assert_eq!(limits_read, limits);
    let sensitive = app.get(&format!("/v1/cards/{}/sensitive", id(&c0))).await.ok();
    assert_eq!(sensitive["pan"], pan0.as_str());

    assert_eq!(verify(&app, &id(&c4), "4822").await, (false, 2));
    assert_eq!(verify(&app, &id(&c4), "4821").await, (true, 3));
    assert_eq!(verify(&app, &id(&c0), "7350").await, (false, 2));
    assert_eq!(verify(&app, &id(&c0), "7351").await, (true, 3));

    // A PVV verifies until the PIN is written: a wrong PIN is counted
    // against the PVV, and the first right one moves it to the keyed verifier.
    assert_eq!(verifier_len(&app, &id(&cp)).await, 24);
    assert_eq!(verify(&app, &id(&cp), "4525").await, (false, 2));
    assert_eq!(verifier_len(&app, &id(&cp)).await, 24);
    assert_eq!(verify(&app, &id(&cp), "4524").await, (true, 3));
    assert_eq!(verifier_len(&app, &id(&cp)).await, 32);
    assert_eq!(verify(&app, &id(&cp), "4524").await, (true, 3));

    // A PIN change moves a PVV-imported PIN to the keyed verifier.
    assert_eq!(verifier_len(&app, &id(&cp2)).await, 24);
    app.set_pin(&id(&cp2), "6203").await;
    assert_eq!(verifier_len(&app, &id(&cp2)).await, 32);
    assert_eq!(verify(&app, &id(&cp2), "9180").await, (false, 2));
    assert_eq!(verify(&app, &id(&cp2), "6203").await, (true, 3));

    // Each imported card has its audit entry and its event, without secrets.
    let audit = app.audit(&id(&c0)).await;
    let imported: Vec<&Value> = audit.iter().filter(|e| e["type"] == "card.imported").collect();
    assert_eq!(imported.len(), 1, "{audit:?}");
    assert_eq!(imported[0]["after"]["pin_source"], "ISO-0");
    let all = app.all_events().await;
    let created: Vec<&Value> = all
        .iter()
        .filter(|e| e["type"] == "card.created" && e["data"]["imported"] == true)
        .collect();
    assert_eq!(created.len(), 4);
    let dump = serde_json::to_string(&(&audit, &all)).unwrap();
    for s in secrets {
        assert!(!dump.contains(s), "a secret in the audit trail or events");
    }

    // Running the same file again changes nothing.
    let events_after = all.len();
    let (ok, stdout, _) = run(&[]);
    assert!(!ok);
    assert!(stdout.contains("imported 0, unchanged 4, failed 4"), "{stdout}");
    assert_eq!(app.all_events().await.len(), events_after);
    assert_eq!(app.audit(&id(&c0)).await.len(), audit.len());

    // A PAN the tenant has, with other data, is refused, not overwritten.
    let changed = line(
        "imp-a",
        "Ana Silva",
        json!({"pan": pan4, "expiry": "05/29", "type": "virtual"}),
    );
    std::fs::write(&file, changed + "\n").unwrap();
    let (ok, stdout, stderr) = run(&[]);
    assert!(!ok);
    assert!(stdout.contains("imported 0, unchanged 0, failed 1"), "{stdout}");
    assert!(
        stderr.contains("line 1: card.expiry: differs from the card already imported with this PAN"),
        "{stderr}"
    );

    // A PAN is unique across tenants: another tenant's card's PAN is a failed line.
    let b_key = app.new_tenant("tenant-b").await;
    let b_holder = app.create_cardholder_as(&b_key, "b-1").await;
    let b_card = app
        .create_card_as(&b_key, b_holder["id"].as_str().unwrap(), "virtual")
        .await;
    let b_pan = app
        .call_as(
            &b_key,
            reqwest::Method::GET,
            &format!("/v1/cards/{}/sensitive", b_card["id"].as_str().unwrap()),
            None,
        )
        .await
        .ok()["pan"]
        .as_str()
        .unwrap()
        .to_owned();
    let taken = line(
        "imp-z",
        "Zeca Taken",
        json!({"pan": b_pan, "expiry": "05/29", "type": "virtual"}),
    );
    std::fs::write(&file, taken + "\n").unwrap();
    let (ok, stdout, stderr) = run(&[]);
    assert!(!ok);
    assert!(stdout.contains("imported 0, unchanged 0, failed 1"), "{stdout}");
    assert!(
        stderr.contains("line 1: card.pan: is already another card's PAN"),
        "{stderr}"
    );
    assert!(!stderr.contains(&b_pan) && !stdout.contains(&b_pan));
    let found = app.get("/v1/cardholders?external_id=imp-z").await.ok();
    assert_eq!(found["data"], json!([]), "the failed line left no cardholder behind");
}
