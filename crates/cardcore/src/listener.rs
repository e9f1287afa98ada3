//! The HTTP listener: hyper's HTTP/1 connections with the limits a public
//! listener needs and `axum::serve` does not offer. A client that stops
//! in the middle of its request head (or idles on a keep-alive connection)
//! is closed after the header read timeout; a body that stops arriving
//! fails its request with 408 after the body read timeout; past the
//! connection cap, a new connection is answered 503 and closed at once
//! (no work, no waiting in a queue). Stopping closes the listener, lets
//! the requests in flight finish and closes idle connections.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower::{Layer as _, ServiceExt as _};
use tower_http::timeout::RequestBodyTimeoutLayer;

/// What a listener holds its clients to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest a connection may take to send a whole request head.
    pub header_read_timeout: Duration,
    /// Longest wait for the next piece of a request body.
    pub body_read_timeout: Duration,
    /// Most open connections.
    pub max_connections: usize,
}

/// The answer to a connection over the cap.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: text/plain\r\n\
content-length: 37\r\nconnection: close\r\n\r\ntoo many connections; try again later";

/// Serves `app` on `listener` until `stop` turns true, then lets the
/// requests in flight finish. Handlers see the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = RequestBodyTimeoutLayer::new(limits.body_read_timeout).layer(app);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors or a connection reset before it
                // was accepted: wait a little rather than spin.
                tracing::warn!(cause = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics::counter!("cardcore_http_connections_refused_total").increment(1);
            connections.spawn(refuse(stream));
            continue;
        };
        let app = app.clone().map_request(move |mut req: axum::http::Request<_>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        });
        let mut stop = stop.clone();
        connections.spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
            tokio::pin!(conn);
            let stopping = tokio::select! {
                _ = conn.as_mut() => false,
                _ = stop.wait_for(|stop| *stop) => true,
            };
            if stopping {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Answers a connection over the cap and closes it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
    let _ = stream.shutdown().await;
}
