//! Operations, through the real binary: serialization failures retried on
//! PostgreSQL at SERIALIZABLE, backups that restore, graceful hand-over.
//!
//! The PostgreSQL tests need PostgreSQL (`CARDCORE_TEST_POSTGRES_URL`);
//! skipped without one, except under `CI`, where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::io::Write as _;

use reqwest::Method;
use serde_json::{json, Value};
use support::{count_type, postgres_or_skip, Api, Database};

fn id(card: &Value) -> String {
    card["id"].as_str().expect("id").to_owned()
}

/// The sum of a Prometheus counter over its label sets, from a node's /metrics.
async fn counter(api: &Api, name: &str) -> f64 {
    let text = api.get("/metrics").await.text;
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Concurrent writers on one card from two nodes at SERIALIZABLE: the card
/// lock's `SELECT ... FOR UPDATE` meets rows committed after the
/// transaction's snapshot, which PostgreSQL answers with 40001. Every such
/// transaction runs again as a whole, so no request sees a 5xx, every
/// acknowledged change is in the audit trail and the outbox once, and the
/// card's events follow its audit trail's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serialization_failures_are_retried_whole_with_no_5xx_and_nothing_lost() {
    let test = "serialization_failures_are_retried_whole_with_no_5xx_and_nothing_lost";
    if !postgres_or_skip(test) {
        return;
    }
    let db = Database::postgres();
    let tenant = db.create_tenant("serializable");
    let extra = ["--db-isolation", "serializable", "--db-pool-size", "12"];
    let na = db.start("a", &extra);
    let nb = db.start("b", &extra);
    let a = Api::new(&na, &tenant.key);
    let b = a.on(&nb);
    let card = id(&a.new_card("serial-1").await);
    a.put(&format!("/v1/cards/{card}/pin"), json!({ "pin": "4821" }))
        .await
        .ok();
    let limits = a.get(&format!("/v1/cards/{card}/limits")).await.ok();

    // 16 writers, 8 per node, each 12 limit changes with values no other
    // request uses, and a wrong PIN now and then (a counter write).
    let mut set = tokio::task::JoinSet::new();
    for w in 0..16u64 {
        let api = if w % 2 == 0 { a.clone() } else { b.clone() };
        let (card, limits) = (card.clone(), limits.clone());
        set.spawn(async move {
            let mut answers = Vec::new();
            for n in 0..12u64 {
                let value = 1_000 + w * 100 + n;
                let mut body = limits.clone();
                body["channels"]["pos"]["per_transaction"] = json!(value);
                let rid = format!("w{w}-n{n}");
                let r = api
                    .send(
                        Method::PUT,
                        &format!("/v1/cards/{card}/limits"),
                        Some(body),
                        &[("x-request-id", rid.as_str())],
                    )
                    .await
                    .expect("an answer");
                answers.push((rid, value, r.status, r.text));
                if n % 4 == 3 {
                    let r = api
                        .post(&format!("/v1/cards/{card}/pin/verify"), json!({ "pin": "0000" }))
                        .await;
                    answers.push((format!("w{w}-v{n}"), 0, r.status, r.text));
                    // Right again before the counter blocks the PIN.
                    let r = api
                        .post(&format!("/v1/cards/{card}/pin/verify"), json!({ "pin": "4821" }))
                        .await;
                    answers.push((format!("w{w}-r{n}"), 0, r.status, r.text));
                }
            }
            answers
        });
    }
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut verifications = 0;
    while let Some(answers) = set.join_next().await {
        for (rid, value, status, text) in answers.expect("writer") {
            assert!(
                status < 500,
                "{rid}: {status} {text}\nnode a: {}\nnode b: {}",
                na.log_tail(),
                nb.log_tail()
            );
            if value > 0 {
                assert_eq!(status, 200, "{rid}: {text}");
                acked.insert(rid, value);
            } else {
                // A wrong PIN may meet a PIN another writer's wrong PINs
                // blocked meanwhile; anything but a 5xx is an answer.
                verifications += 1;
            }
        }
    }
    assert_eq!(acked.len(), 16 * 12);
    assert!(verifications > 0);

    // The database did abort transactions, and they were run again.
    let retries = counter(&a, "cardcore_db_retries_total").await + counter(&b, "cardcore_db_retries_total").await;
    let exhausted = counter(&a, "cardcore_db_retries_exhausted_total").await
        + counter(&b, "cardcore_db_retries_exhausted_total").await;
    let _ = writeln!(
        std::io::stderr(),
        "{test}: {retries} transactions run again, {} gave up",
        exhausted.abs()
    );
    assert!(
        retries > 0.0,
        "no serialization failure was forced: the test proves nothing"
    );
    assert_eq!(exhausted, 0.0);

    // Every acknowledged change is audited once, with its own value.
    let audit = a.audit(&card).await;
    let mut audited: Vec<u64> = Vec::new();
    for e in audit.iter().rev().filter(|e| e["type"] == "card.limits_updated") {
        let rid = e["request_id"].as_str().expect("request_id");
        let value = e["after"]["channels"]["pos"]["per_transaction"]
            .as_u64()
            .expect("value");
        assert_eq!(acked.get(rid), Some(&value), "audit row {e}");
        audited.push(value);
    }
    assert_eq!(audited.len(), acked.len(), "one audit row per acknowledged change");
    // The outbox has one event per change, in the audit trail's order.
    let events = b
        .events_until(&card, |e| count_type(e, "card.limits_updated") >= audited.len())
        .await;
    let published: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "card.limits_updated")
        .map(|e| {
            e["data"]["limits"]["channels"]["pos"]["per_transaction"]
                .as_u64()
                .expect("value")
        })
        .collect();
    assert_eq!(published, audited, "events in commit order, none lost or doubled");
    // The card ends with the last change's value.
    let now = a.get(&format!("/v1/cards/{card}/limits")).await.ok();
    assert_eq!(
        now["channels"]["pos"]["per_transaction"].as_u64(),
        audited.last().copied()
    );
}
