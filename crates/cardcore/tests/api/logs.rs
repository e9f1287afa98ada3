//! No secret in logs: a full story against the real binary with debug logs
//! captured, then a search of everything it printed for every secret used.

use std::io::Read;
use std::process::{Command, Stdio};

use cardcore_crypto::pinblock::{self, TdesFormat};
use cardcore_crypto::{Pan, Pin};
use serde_json::{json, Value};

use crate::helpers::contains_token;

struct Node {
    child: std::process::Child,
    base: String,
    client: reqwest::Client,
    key: String,
}

impl Node {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn a_full_story_leaves_no_secret_in_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cardcore.db").display());
    let bin = env!("CARGO_BIN_EXE_cardcore");
    // Long PINs (the program allows 12) so a match cannot be a coincidence.
    let pins = ["739164825019", "582047193628", "604918273645", "815263940172"];
    let tenant = Command::new(bin)
        .args(["tenant", "create", "--name", "logs", "--json", "--database", &db])
        .output()
        .unwrap();
    assert!(tenant.status.success());
    let tenant: Value = serde_json::from_slice(&tenant.stdout).unwrap();
    let api_key = tenant["api_key"].as_str().unwrap().to_owned();
    let zone = Command::new(bin)
        .args([
            "tenant",
            "zone-key",
            "--tenant",
            tenant["tenant_id"].as_str().unwrap(),
            "--algorithm",
            "aes",
            "--json",
            "--database",
            &db,
        ])
        .output()
        .unwrap();
    let zone: Value = serde_json::from_slice(&zone.stdout).unwrap();
    let tdes = Command::new(bin)
        .args([
            "tenant",
            "zone-key",
            "--tenant",
            tenant["tenant_id"].as_str().unwrap(),
            "--algorithm",
            "tdes",
            "--json",
            "--database",
            &db,
        ])
        .output()
        .unwrap();
    let tdes: Value = serde_json::from_slice(&tdes.stdout).unwrap();

    for format in ["text", "json"] {
        let log_path = dir.path().join(format!("server-{format}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let log2 = log.try_clone().unwrap();
        let mut child = Command::new(bin)
            .env("RUST_LOG", "debug")
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--pin-max-length",
                "12",
                "--log-format",
                format,
                "--database",
                &db,
            ])
            .stdout(Stdio::piped())
            .stderr(log2)
            .spawn()
            .unwrap();
        let mut first = [0u8; 256];
        let n = child.stdout.as_mut().unwrap().read(&mut first).unwrap();
        let line = String::from_utf8_lossy(&first[..n]).to_string();
        let addr = line
            .split("http://")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        let node = Node {
            child,
            base: format!("http://{addr}"),
            client: crate::helpers::client(),
            key: api_key.clone(),
        };
        let mut secrets: Vec<String> = vec![
            api_key.clone(),
            zone["key_hex"].as_str().unwrap().into(),
            tdes["key_hex"].as_str().unwrap().into(),
        ];
        secrets.extend(pins.iter().map(|p| p.to_string()));
        secrets.push(
            std::fs::read_to_string(dir.path().join("master.key"))
                .unwrap()
                .trim()
                .to_owned(),
        );

        let (_, holder) = node
            .call(reqwest::Method::POST, "/v1/cardholders", Some(json!({"external_id": format!("u-{format}"), "name": "Log Test", "phone": {"country_code": "351", "number": "912345678"}})))
            .await;
        let (_, card) = node
            .call(
                reqwest::Method::POST,
                "/v1/cards",
                Some(json!({"cardholder_id": holder["id"], "type": "physical"})),
            )
            .await;
        let id = card["id"].as_str().unwrap().to_owned();
        let (_, events) = node
            .call(
                reqwest::Method::GET,
                &format!("/v1/events?card_id={id}&type=card.activation_code"),
                None,
            )
            .await;
        let activation = events["data"][0]["data"]["activation_code"]
            .as_str()
            .unwrap()
            .to_owned();
        let (s, _) = node
            .call(
                reqwest::Method::POST,
                &format!("/v1/cards/{id}/activate"),
                Some(json!({"activation_code": activation})),
            )
            .await;
        assert_eq!(s, 200);
        secrets.push(activation);
        let (_, sensitive) = node
            .call(reqwest::Method::GET, &format!("/v1/cards/{id}/sensitive"), None)
            .await;
        let pan_text = sensitive["pan"].as_str().unwrap().to_owned();
        let cvv = sensitive["cvv"].as_str().unwrap().to_owned();
        secrets.push(pan_text.clone());
        let pan = Pan::parse(&pan_text).unwrap();

        // Set in all three forms.
        assert_eq!(
            node.call(
                reqwest::Method::PUT,
                &format!("/v1/cards/{id}/pin"),
                Some(json!({"pin": pins[0]}))
            )
            .await
            .0,
            200
        );
        let (_, key) = node.call(reqwest::Method::GET, "/v1/pin-encryption-key", None).await;
        let ct = cardcore_crypto::transport::encrypt_with_public_pem(
            key["public_key_pem"].as_str().unwrap(),
            pins[1].as_bytes(),
        )
        .unwrap();
        secrets.push(ct[..48].to_owned());
        let (s, _) = node
            .call(
                reqwest::Method::PUT,
                &format!("/v1/cards/{id}/pin"),
                Some(json!({"encrypted_pin": ct, "key_id": key["key_id"]})),
            )
            .await;
        assert_eq!(s, 200);
        let aes = hex::decode(zone["key_hex"].as_str().unwrap()).unwrap();
        let block = hex::encode_upper(
            pinblock::encrypt_format4(&aes, &Pin::parse(pins[2]).unwrap(), &pan, &mut rand::rngs::OsRng).unwrap(),
        );
        secrets.push(block.clone());
        let (s, _) = node
            .call(
                reqwest::Method::PUT,
                &format!("/v1/cards/{id}/pin"),
                Some(json!({"pin_block": block, "format": "ISO-4"})),
            )
            .await;
        assert_eq!(s, 200);
        let tdes_key = hex::decode(tdes["key_hex"].as_str().unwrap()).unwrap();
        let block0 = hex::encode_upper(
            pinblock::encrypt_tdes(
                &tdes_key,
                TdesFormat::Format0,
                &Pin::parse(pins[2]).unwrap(),
                &pan,
                &mut rand::rngs::OsRng,
            )
            .unwrap(),
        );
        secrets.push(block0.clone());
        let (s, v) = node
            .call(
                reqwest::Method::POST,
                &format!("/v1/cards/{id}/pin/verify"),
                Some(json!({"pin_block": block0, "format": "ISO-0"})),
            )
            .await;
        assert_eq!((s, v["valid"].as_bool()), (200, Some(true)));

        // Verify right and wrong, OTP, change, then block by wrong PINs.
        assert_eq!(
            node.call(
                reqwest::Method::POST,
                &format!("/v1/cards/{id}/pin/verify"),
                Some(json!({"pin": pins[2]}))
            )
            .await
            .1["valid"],
            true
        );
        assert_eq!(
            node.call(
                reqwest::Method::POST,
                &format!("/v1/cards/{id}/pin/verify"),
                Some(json!({"pin": pins[3]}))
            )
            .await
            .1["valid"],
            false
        );
        let (_, otp) = node
            .call(
                reqwest::Method::POST,
                &format!("/v1/cards/{id}/otp"),
                Some(json!({"purpose": "pin_change"})),
            )
            .await;
        let (_, evs) = node
            .call(
                reqwest::Method::GET,
                &format!("/v1/events?card_id={id}&type=otp.created"),
                None,
            )
            .await;
        let code = evs["data"][0]["data"]["otp"].as_str().unwrap().to_owned();
        let (s, _) = node
            .call(
                reqwest::Method::POST,
                &format!("/v1/cards/{id}/pin/change"),
                Some(json!({"old_pin": pins[2], "new_pin": pins[3], "otp": code, "trace_number": otp["trace_number"]})),
            )
            .await;
        assert_eq!(s, 200);
        for _ in 0..3 {
            node.call(
                reqwest::Method::POST,
                &format!("/v1/cards/{id}/pin/verify"),
                Some(json!({"pin": pins[0]})),
            )
            .await;
        }
        assert_eq!(
            node.call(
                reqwest::Method::POST,
                &format!("/v1/cards/{id}/pin/verify"),
                Some(json!({"pin": pins[3]}))
            )
            .await
            .0,
            409
        );
        // A wrong OTP and bad inputs produce log lines of their own.
        node.call(
            reqwest::Method::POST,
            &format!("/v1/cards/{id}/pin/change"),
            Some(json!({"old_pin": pins[3], "new_pin": pins[0], "otp": "000000", "trace_number": "x"})),
        )
        .await;
        node.call(
            reqwest::Method::PUT,
            &format!("/v1/cards/{id}/pin"),
            Some(json!({"pin": "12345678901234"})),
        )
        .await;
        node.call(
            reqwest::Method::PUT,
            &format!("/v1/cards/{id}/pin"),
            Some(json!({"pin_block": block, "format": "ISO-0"})),
        )
        .await;

        let mut child = node.child;
        #[cfg(unix)]
        unsafe_free_sigterm(child.id());
        let _ = child.wait();
        let logs = std::fs::read_to_string(&log_path).unwrap();
        assert!(logs.contains("request done"), "the run was logged at all ({format})");
        assert!(
            logs.contains("DEBUG") || logs.contains("\"level\":\"DEBUG\""),
            "debug level was on ({format})"
        );
        for secret in &secrets {
            assert!(
                !logs.contains(secret.as_str()),
                "a secret leaked into the {format} logs"
            );
        }
        assert!(!contains_token(&logs, &code), "the OTP leaked into the {format} logs");
        assert!(
            !contains_token(&logs, &cvv) || !logs.contains(&format!("\"{cvv}\"")),
            "the CVV leaked"
        );
        for needle in [
            "\"pin\"", "pin=", "\"otp\"", "otp=", "\"cvv\"", "cvv=", "\"pan\"", "pan=",
        ] {
            assert!(!logs.contains(needle), "{needle} appears in the {format} logs");
        }
    }
}

/// Sends SIGTERM through the `kill` command (no unsafe code in the workspace).
#[cfg(unix)]
fn unsafe_free_sigterm(pid: u32) {
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}
