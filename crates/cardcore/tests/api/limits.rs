//! HTTP limits, tried with raw TCP clients: a client that stalls in its
//! headers or its body, more connections than the cap, and `/metrics` on
//! its own listener. No assertion here is about how fast anything is; the
//! outer timeouts only keep a broken server from hanging the test.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::spawn_app_with;

/// Everything the server sends until it closes the connection (an error,
/// such as a reset, also counts as closed).
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the server closes the connection");
    String::from_utf8_lossy(&seen).into_owned()
}

/// One request on a kept-alive connection; the response head.
async fn get_healthz(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: cardcore\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before answering: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("\"ok\"") {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("an answer");
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn a_client_stalled_in_its_headers_is_disconnected() {
    let app = spawn_app_with(&["--header-read-timeout-ms", "300"]).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    // Half a header line, then nothing more.
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: cardcore\r\nx-slow: abc")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stalled).await;
    assert!(
        !answer.contains("\"ok\""),
        "the stalled request was not served: {answer}"
    );
    // A connection that says nothing at all is closed too.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    read_until_closed(&mut silent).await;
    // A whole request is served as usual.
    let mut fine = TcpStream::connect(&addr).await.unwrap();
    assert!(get_healthz(&mut fine).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_body_that_stops_arriving_fails_with_408() {
    let app = spawn_app_with(&["--body-read-timeout-ms", "300"]).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/cardholders HTTP/1.1\r\nhost: cardcore\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 200\r\n\r\n{{\"external_id\": ",
        app.key
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    // Nothing was made.
    let found = app.get("/v1/cardholders?external_id=x").await.ok();
    assert_eq!(found["data"], serde_json::json!([]));
}

#[tokio::test]
async fn connections_over_the_cap_are_answered_503_and_closed() {
    let app = spawn_app_with(&["--max-connections", "2"]).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    // Two kept-alive connections hold the two places (each answered once,
    // so the server has surely taken them).
    let mut first = TcpStream::connect(&addr).await.unwrap();
    let mut second = TcpStream::connect(&addr).await.unwrap();
    assert!(get_healthz(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(get_healthz(&mut second).await.starts_with("HTTP/1.1 200"));
    let mut third = TcpStream::connect(&addr).await.unwrap();
    let refused = read_until_closed(&mut third).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.to_ascii_lowercase().contains("retry-after: 1"), "{refused}");
    // The held connections still work.
    assert!(get_healthz(&mut first).await.starts_with("HTTP/1.1 200"));
    // One goes away: its place is free again (once the server has seen it
    // close, which this waits for).
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut next = TcpStream::connect(&addr).await.unwrap();
        next.write_all(b"GET /healthz HTTP/1.1\r\nhost: cardcore\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_until_closed(&mut next).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(Instant::now() < deadline, "the freed place was never given again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn metrics_listen_serves_metrics_there_and_not_on_the_main_port() {
    let app = spawn_app_with(&["--metrics-listen", "127.0.0.1:0"]).await;
    let metrics_addr = app.server.as_ref().unwrap().metrics_addr.expect("a metrics listener");
    // Some traffic to count.
    app.get("/v1/webhook-endpoints").await.ok();
    let main = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap();
    assert_eq!(main.status(), 404);
    let metrics = app
        .client
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("cardcore_http_requests_total"), "{text}");
    // The metrics listener serves nothing else.
    let other = app
        .client
        .get(format!("http://{metrics_addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    let api = app
        .client
        .get(format!("http://{metrics_addr}/v1/webhook-endpoints"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 404);
}
