//! The binary's commands, run as a user runs them.

use std::process::Command;

fn cardcore(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cardcore"));
    c.current_dir(dir)
        .env_remove("CARDCORE_DATABASE_URL")
        .env_remove("CARDCORE_MASTER_KEY")
        .env_remove("CARDCORE_MASTER_KEY_FILE");
    c
}

#[test]
fn tenant_create_prints_one_json_line_and_names_are_unique() {
    let dir = tempfile::tempdir().unwrap();
    let out = cardcore(dir.path())
        .args(["tenant", "create", "--name", "acme", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "--json prints the JSON and nothing else: {stdout}"
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["name"], "acme");
    assert!(v["api_key"].as_str().unwrap().starts_with("cc_"));
    assert!(v["tenant_id"].is_string());
    // The default data dir was made, with a private master key file.
    let key_file = dir.path().join("cardcore-data/master.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // The key is stored hashed, never in clear.
    let db = std::fs::read(dir.path().join("cardcore-data/cardcore.db")).unwrap();
    let wal = std::fs::read(dir.path().join("cardcore-data/cardcore.db-wal")).unwrap_or_default();
    let key = v["api_key"].as_str().unwrap().as_bytes();
    assert!(![db, wal].iter().any(|b| b.windows(key.len()).any(|w| w == key)));

    let again = cardcore(dir.path())
        .args(["tenant", "create", "--name", "acme"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn migrate_then_refuse_to_start_without_the_right_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = cardcore(dir.path()).args(["migrate"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cardcore(dir.path())
        .args(["tenant", "create", "--name", "acme"])
        .output()
        .unwrap();
    assert!(out.status.success());

    // Lost key file: refuse, never make a new one beside the data.
    let key_file = dir.path().join("cardcore-data/master.key");
    let saved = std::fs::read(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let out = cardcore(dir.path())
        .args(["tenant", "create", "--name", "other"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("master key file") && err.contains("missing"), "{err}");
    assert!(!key_file.exists(), "no new key was made");

    // Wrong key: refuse with a message that says so.
    let wrong = "ab".repeat(32);
    let out = cardcore(dir.path())
        .env("CARDCORE_MASTER_KEY", &wrong)
        .args(["tenant", "create", "--name", "other"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not match"), "{err}");
    assert!(!err.contains(&wrong), "the key is never printed");

    // The right key from the environment works.
    let right = String::from_utf8(saved).unwrap();
    let out = cardcore(dir.path())
        .env("CARDCORE_MASTER_KEY", right.trim())
        .args(["tenant", "create", "--name", "other"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn serve_prints_where_it_listens_and_how_to_make_a_tenant() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = cardcore(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.starts_with("cardcore listening on http://127.0.0.1:"), "{first}");
    assert!(second.contains("cardcore tenant create --name"), "{second}");
}

/// Runs the binary; stdout on success, stderr on failure.
fn run(dir: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let out = cardcore(dir).args(args).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8(out.stderr).unwrap())
    }
}

#[tokio::test]
async fn tenant_pin_rules_from_the_command_line_reach_the_server() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let created: serde_json::Value = serde_json::from_str(
        &run(
            dir.path(),
            &["tenant", "create", "--name", "acme", "--pin-rules", "none", "--json"],
        )
        .unwrap(),
    )
    .unwrap();
    let tenant = created["tenant_id"].as_str().unwrap();
    let key = created["api_key"].as_str().unwrap();

    // Bad lists and unknown tenants are refused, naming the flag and the rule.
    let err = run(
        dir.path(),
        &[
            "tenant",
            "update",
            "--tenant",
            tenant,
            "--pin-rules",
            "repeated,birthday",
        ],
    )
    .unwrap_err();
    assert!(
        err.contains("--pin-rules") && err.contains("\"birthday\"") && err.contains("birth_date"),
        "{err}"
    );
    let err = run(
        dir.path(),
        &["tenant", "update", "--tenant", tenant, "--m2p-required", "phone"],
    )
    .unwrap_err();
    assert!(err.contains("--m2p-required") && err.contains("expiryDate"), "{err}");
    let nobody = uuid::Uuid::new_v4().to_string();
    let err = run(
        dir.path(),
        &["tenant", "update", "--tenant", &nobody, "--pin-rules", "none"],
    )
    .unwrap_err();
    assert!(err.contains("not found"), "{err}");

    let out = run(
        dir.path(),
        &[
            "tenant",
            "update",
            "--tenant",
            tenant,
            "--pin-rules",
            "common,sequential",
            "--m2p-required",
            "mobile",
            "--time-zone",
            "Europe/Lisbon",
            "--authorization-expiry-days",
            "10",
            "--default-controls",
            r#"{"blocked_mccs": ["7995"]}"#,
            "--json",
        ],
    )
    .unwrap();
    assert_eq!(out.lines().count(), 1, "{out}");
    let settings: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        settings,
        serde_json::json!({"tenant_id": tenant, "pin_rules": ["sequential", "common"], "m2p_required": ["mobile"],
            "authorizations": {"time_zone": "Europe/Lisbon", "expiry_days": 10, "default_controls":
                {"allowed_mccs": null, "blocked_mccs": ["7995"], "allowed_countries": null, "blocked_countries": []}}, "programs": {}})
    );
    // An unknown time zone changes nothing.
    let err = run(
        dir.path(),
        &["tenant", "update", "--tenant", tenant, "--time-zone", "Mars/Olympus"],
    )
    .unwrap_err();
    assert!(err.contains("time_zone"), "{err}");
    // A program's CVV2 interval: the default program unless --program names one.
    let out = run(
        dir.path(),
        &[
            "tenant",
            "update",
            "--tenant",
            tenant,
            "--cvv-rotation-interval-hours",
            "24",
            "--json",
        ],
    )
    .unwrap();
    let settings: serde_json::Value = serde_json::from_str(&out).unwrap();
    let programs = settings["programs"].as_object().unwrap();
    assert_eq!(programs.len(), 1, "{out}");
    assert_eq!(programs.values().next().unwrap()["cvv_rotation_interval_hours"], 24);
    let other = uuid::Uuid::new_v4().to_string();
    let out = run(
        dir.path(),
        &[
            "tenant",
            "update",
            "--tenant",
            tenant,
            "--program",
            &other,
            "--cvv-rotation-interval-hours",
            "0",
            "--json",
        ],
    )
    .unwrap();
    let settings: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(settings["programs"][&other]["cvv_rotation_interval_hours"], 0, "{out}");
    let err = run(
        dir.path(),
        &[
            "tenant",
            "update",
            "--tenant",
            tenant,
            "--cvv-rotation-interval-hours",
            "9000",
        ],
    )
    .unwrap_err();
    assert!(
        err.contains("--cvv-rotation-interval-hours") && err.contains("8760"),
        "{err}"
    );
    // `default` gives both back to the server's flag.
    for program in [None, Some(other.as_str())] {
        let mut args = vec![
            "tenant",
            "update",
            "--tenant",
            tenant,
            "--cvv-rotation-interval-hours",
            "default",
            "--json",
        ];
        if let Some(p) = program {
            args.extend(["--program", p]);
        }
        run(dir.path(), &args).unwrap();
    }
    let out = run(dir.path(), &["tenant", "update", "--tenant", tenant, "--json"]).unwrap();
    let settings: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(settings["programs"], serde_json::json!({}), "{out}");
    // Without --json: the settings in words; a flag not given keeps its value.
    let out = run(dir.path(), &["tenant", "update", "--tenant", tenant]).unwrap();
    assert!(
        out.contains("PIN rules: sequential,common") && out.contains("M2P required fields: mobile"),
        "{out}"
    );

    // A server on that database applies them: common and sequential PINs
    // are refused, a repeated one (its rule is off) is not.
    let mut child = cardcore(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let base = first
        .strip_prefix("cardcore listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    let client = crate::helpers::client();
    let call = |path: &str, body: serde_json::Value| {
        client
            .request(
                if path.ends_with("/pin") {
                    reqwest::Method::PUT
                } else {
                    reqwest::Method::POST
                },
                format!("{base}{path}"),
            )
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let holder: serde_json::Value = call(
        "/v1/cardholders",
        serde_json::json!({"external_id": "u1", "name": "Ana", "phone": {"country_code": "91", "number": "9600389470"}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let card: serde_json::Value = call(
        "/v1/cards",
        serde_json::json!({"cardholder_id": holder["id"], "type": "virtual"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let pin_path = format!("/v1/cards/{}/pin", card["id"].as_str().unwrap());
    let common = call(&pin_path, serde_json::json!({"pin": "1212"})).await.unwrap();
    let common_status = common.status().as_u16();
    let common_body: serde_json::Value = common.json().await.unwrap();
    let repeated = call(&pin_path, serde_json::json!({"pin": "1111"}))
        .await
        .unwrap()
        .status()
        .as_u16();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(common_status, 422, "{common_body}");
    assert_eq!(common_body["code"], "pin_too_weak");
    assert_eq!(repeated, 200);
}
