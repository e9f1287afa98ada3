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
