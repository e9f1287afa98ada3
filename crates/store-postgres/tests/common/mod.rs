//! What the PostgreSQL tests share: where the server is, a fresh schema per
//! test, and what to do when there is no server.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use cardcore_store::{Store, StoreError};
use cardcore_store_postgres::{PostgresOptions, PostgresStore};
use sqlx::postgres::PgConnectOptions;
use sqlx::Connection;

/// The server the tests use unless `CARDCORE_TEST_POSTGRES_URL` names another.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Test schemas are named `cc_test_<uuid v7>`: recognisable, and dated.
pub const SCHEMA_PREFIX: &str = "cc_test_";

pub fn url() -> String {
    std::env::var("CARDCORE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// The URL with any password masked, for messages.
pub fn shown_url() -> String {
    let url = url();
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
            None => url,
        },
        _ => url,
    }
}

/// Host and port of the server (None for a Unix socket).
pub fn server_addr() -> Option<(String, u16)> {
    let options: PgConnectOptions = url()
        .parse()
        .expect("CARDCORE_TEST_POSTGRES_URL is not a PostgreSQL URL");
    let host = options.get_host().to_owned();
    (!host.starts_with('/')).then(|| (host, options.get_port()))
}

/// The test URL with its host and port replaced, e.g. to go through a proxy.
pub fn url_via(host_port: &str) -> String {
    let url = url();
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find(['/', '?']).map_or(url.len(), |i| start + i);
    let host_start = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    format!("{}{}{}", &url[..host_start], host_port, &url[end..])
}

/// Options for tests: small pool, short waits.
pub fn options() -> PostgresOptions {
    PostgresOptions {
        max_connections: 8,
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(10),
        schema: None,
        application_name: "cardcore-test".into(),
        ..Default::default()
    }
}

/// Says the server is missing: fails under CI, prints SKIP otherwise.
/// Returns false when the test should return early.
pub fn missing_server(test: &str, why: &str) -> bool {
    let hint = "start it with scripts/ensure-postgres.sh, or point CARDCORE_TEST_POSTGRES_URL at a server";
    if std::env::var_os("CI").is_some() {
        panic!("{test}: PostgreSQL is not reachable at {} ({why}); {hint}", shown_url());
    }
    // Straight to stderr: libtest captures print! and eprint!, and a skip
    // that nobody sees passes for a test that ran.
    let _ = writeln!(
        std::io::stderr(),
        "SKIP {test}: PostgreSQL is not reachable at {} ({why}); {hint}",
        shown_url()
    );
    false
}

/// A quick TCP probe, once per test binary, so that a machine without a
/// server skips in milliseconds rather than an acquire timeout per test.
fn reachable() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let Some((host, port)) = server_addr() else {
                return Ok(());
            };
            let addrs = (host.as_str(), port).to_socket_addrs().map_err(|e| e.to_string())?;
            let mut last = String::from("no address");
            for addr in addrs {
                match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                    Ok(_) => return Ok(()),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(last)
        })
        .clone()
}

/// A migrated store in a schema of its own; `drop_schema` removes it.
pub struct TestSchema {
    pub name: String,
    pub store: PostgresStore,
    pub options: PostgresOptions,
}

/// Connects `options` to a new schema and migrates it; `None` to skip.
pub async fn fresh_schema(test: &str, mut options: PostgresOptions) -> Option<TestSchema> {
    if let Err(why) = reachable() {
        missing_server(test, &why);
        return None;
    }
    sweep_stale_schemas().await;
    let name = format!("{SCHEMA_PREFIX}{}", uuid::Uuid::now_v7().simple());
    options.schema = Some(name.clone());
    let store = match PostgresStore::connect(&url(), &options).await {
        Ok(store) => store,
        Err(StoreError::Unavailable(why)) => {
            missing_server(test, &why);
            return None;
        }
        Err(e) => panic!("{test}: cannot use PostgreSQL at {}: {e}", shown_url()),
    };
    store.migrate().await.expect("migrations");
    Some(TestSchema { name, store, options })
}

impl TestSchema {
    /// Another node: a second pool on the same schema.
    pub async fn another_node(&self) -> PostgresStore {
        PostgresStore::connect(&url(), &self.options)
            .await
            .expect("second pool")
    }

    /// Closes the pool and drops the schema.
    pub async fn drop_schema(self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.store.close()).await;
        drop_schema(&self.name).await;
    }
}

async fn drop_schema(name: &str) {
    match sqlx::PgConnection::connect(&url()).await {
        Ok(mut conn) => {
            if let Err(e) = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .execute(&mut conn)
                .await
            {
                let _ = writeln!(std::io::stderr(), "could not drop test schema {name}: {e}");
            }
            let _ = conn.close().await;
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "could not drop test schema {name}: {e}");
        }
    }
}

/// Drops test schemas more than an hour old (left by killed or panicked
/// runs), once per test binary. The uuid v7 in the name says when.
async fn sweep_stale_schemas() {
    static SWEPT: AtomicBool = AtomicBool::new(false);
    if SWEPT.swap(true, Ordering::SeqCst) {
        return;
    }
    let Ok(mut conn) = sqlx::PgConnection::connect(&url()).await else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1)")
            .bind(SCHEMA_PREFIX)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    let _ = conn.close().await;
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for name in names {
        let born = uuid::Uuid::parse_str(&name[SCHEMA_PREFIX.len()..])
            .ok()
            .and_then(|u| u.get_timestamp())
            .map(|ts| {
                let (secs, nanos) = ts.to_unix();
                std::time::UNIX_EPOCH + Duration::new(secs, nanos)
            });
        if born.is_some_and(|b| b < hour_ago) {
            drop_schema(&name).await;
        }
    }
}
