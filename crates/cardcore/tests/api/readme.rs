//! The README's walkthrough, run verbatim against a real server started the
//! way the README starts it (default database in the working directory).
//! `sh_block` and `run_doc_script` also run docs/dialects.md's example.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// The `sh` code blocks between two markers of a document, one script (the
/// README's walkthrough has two blocks, the second "continuing in the same
/// shell").
pub(crate) fn sh_block(doc: &str, start_marker: &str, end_marker: &str) -> String {
    let start = doc.find(start_marker).expect("start marker");
    let end = doc.find(end_marker).expect("end marker");
    let mut region = &doc[start..end];
    let mut script = String::new();
    while let Some(open) = region.find("```sh\n") {
        let code_start = open + "```sh\n".len();
        let code_end = region[code_start..].find("```").expect("block end") + code_start;
        script.push_str(&region[code_start..code_end]);
        region = &region[code_end + 3..];
    }
    assert!(!script.is_empty(), "no sh block between the markers");
    script
}

fn walkthrough() -> String {
    sh_block(
        include_str!("../../../../README.md"),
        "<!-- walkthrough:start -->",
        "<!-- walkthrough:end -->",
    )
}

/// Starts `cardcore serve` the way the docs do (default database in a fresh
/// working directory), runs a doc's script against it with bash, and returns
/// what the script printed. The script speaks of the default address and
/// `cargo run`; both are pointed at this server and binary, nothing else
/// changes. `None` when curl or jq is missing outside CI (a skip).
pub(crate) fn run_doc_script(test: &str, script: &str) -> Option<String> {
    for tool in ["curl", "jq"] {
        if Command::new(tool).arg("--version").output().is_err() {
            assert!(std::env::var_os("CI").is_none(), "{tool} is required under CI");
            eprintln!("SKIP {test}: {tool} is not installed");
            return None;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_cardcore");
    let mut server = Command::new(bin)
        .current_dir(dir.path())
        .env_remove("CARDCORE_DATABASE_URL")
        .env_remove("CARDCORE_MASTER_KEY")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    // Keep draining the server's stdout so it never writes to a closed pipe.
    std::thread::spawn(move || for _ in lines {});
    let addr = first
        .split("http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let script = script
        .replace("http://127.0.0.1:8080", &format!("http://{addr}"))
        .replace("cargo run --release -q --", bin);
    let out = Command::new("bash")
        .current_dir(dir.path())
        .env_remove("CARDCORE_DATABASE_URL")
        .env_remove("CARDCORE_MASTER_KEY")
        .args(["-euo", "pipefail", "-c", &script])
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{test} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout)
}

#[test]
fn readme_walkthrough() {
    let has_cryptography = Command::new("python3")
        .args(["-c", "import cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_cryptography || std::env::var_os("CI").is_none(),
        "python3 with cryptography is required under CI"
    );
    if !has_cryptography {
        eprintln!("SKIP readme_walkthrough: python3 with the cryptography package is not installed");
        return;
    }
    let script = walkthrough().replace(
        "scripts/pin-tool.py",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pin-tool.py"),
    );
    let Some(stdout) = run_doc_script("readme_walkthrough", &script) else {
        return;
    };
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], r#"{"status":"LOCKED","changed":true}"#);
    assert_eq!(lines[1], r#"{"status":"LOCKED","changed":false}"#);
    assert_eq!(lines[2], r#"{"status":"ACTIVE","changed":true}"#);
    assert!(
        lines[3].contains(r#""status":"BLOCKED""#) && lines[3].contains("LOST_CARD"),
        "{}",
        lines[3]
    );
    assert!(
        lines[4].contains(r#""status":409"#) && lines[4].contains("invalid_status_transition"),
        "{}",
        lines[4]
    );
    assert!(
        stdout.contains(r#"{"type":"card.created","status":"ACTIVE"}"#),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"{"type":"card.block","reason":"LOST_CARD","actor":"api_key"}"#),
        "{stdout}"
    );
    // The PIN and OTP part: set, verify right and wrong, set encrypted, set
    // as a block, change with an OTP, verify the new PIN.
    let pins: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("pin_status") || l.contains("\"valid\""))
        .collect();
    assert_eq!(pins.len(), 8, "{stdout}");
    for (line, want) in pins.iter().zip([
        r#""pin_status":"SET""#,
        r#""valid":true"#,
        r#""valid":false"#,
        r#""pin_status":"SET""#,
        r#""valid":true"#,
        r#""pin_status":"SET""#,
        r#""pin_status":"SET""#,
        r#""valid":true"#,
    ]) {
        assert!(line.contains(want), "{line} should contain {want}\n{stdout}");
    }
    // The authorization story: approve (its retry answers 200), a PIN-block
    // purchase, capture part, reverse the rest, spend and transactions, a
    // decline on the locked card.
    let story = lines
        .iter()
        .position(|l| *l == "200")
        .unwrap_or_else(|| panic!("the retry's 200\n{stdout}"));
    let tail = &lines[story + 1..];
    assert_eq!(
        tail[0],
        r#"{"status":"APPROVED","response_code":"00","pending_amount":4000}"#
    );
    assert_eq!(
        tail[1],
        r#"{"status":"APPROVED","pending_amount":250,"captured_amount":1000}"#
    );
    assert_eq!(
        tail[2],
        r#"{"status":"CLOSED","pending_amount":0,"captured_amount":1000,"reversed_amount":250}"#
    );
    assert!(tail[3].contains(r#""used":1000,"count":1,"limit":null"#), "{}", tail[3]);
    assert_eq!(tail[4], r#"{"type":"capture","amount":1000}"#);
    assert_eq!(tail[5], r#"{"status":"LOCKED"}"#);
    assert_eq!(
        tail[6],
        r#"{"status":"DECLINED","decline_reason":"CARD_LOCKED","response_code":"62"}"#
    );
}
