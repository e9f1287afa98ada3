//! The bare durable-commit baselines durable writes are compared with.
//!
//! SQLite: what cardcore's store does for a write, minus cardcore: one
//! writer connection (a pool of one, as `cardcore-store-sqlite`), WAL,
//! `synchronous=FULL`, `BEGIN IMMEDIATE`, one small insert, `COMMIT`, in a
//! loop, through the same driver (sqlx). PostgreSQL: `pgbench` with a
//! one-row update at the same concurrency; [`pgbench_summary`] turns its
//! output and per-transaction log into the same JSON line.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rand::RngCore as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::report::{cpu_seconds, new_histogram, record, Latency, ScenarioResult};

/// Most commits one baseline run makes (a bound far above any run).
const MAX_COMMITS: u64 = 1_000_000_000;

/// Runs the SQLite insert-and-commit loop in a new database under `dir`.
pub async fn sqlite_commit(dir: &Path, warmup: Duration, duration: Duration) -> anyhow::Result<ScenarioResult> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("commit-baseline.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    // The options cardcore-store-sqlite opens its writer with.
    let connect = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(3));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(connect)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    sqlx::query(
        "CREATE TABLE commit_baseline (seq INTEGER PRIMARY KEY AUTOINCREMENT, id BLOB NOT NULL, \
         created_at TEXT NOT NULL, data TEXT NOT NULL)",
    )
    .execute(&pool)
    .await?;
    let mut hist = new_histogram();
    let mut rng = rand::thread_rng();
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut cpu_from = None;
    let mut count = 0u64;
    for _ in 0..MAX_COMMITS {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if now >= measure_from && cpu_from.is_none() {
            cpu_from = cpu_seconds(None);
        }
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("INSERT INTO commit_baseline (id, created_at, data) VALUES (?, ?, ?)")
            .bind(&id[..])
            .bind(format!("{:?}", std::time::SystemTime::now()))
            .bind("{\"pin_failures\":1}")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if now >= measure_from {
            record(&mut hist, now.elapsed().as_micros().min(u128::from(u64::MAX)) as u64);
            count += 1;
        }
    }
    let cpu = match (cpu_from, cpu_seconds(None)) {
        (Some(a), Some(b)) => Some(((b - a) / duration.as_secs_f64() * 1000.0).round() / 10.0),
        _ => None,
    };
    pool.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(ScenarioResult {
        scenario: "sqlite-commit".into(),
        kind: "baseline".into(),
        available: true,
        connections: 1,
        duration_s: duration.as_secs_f64(),
        requests: count,
        throughput_rps: count as f64 / duration.as_secs_f64(),
        latency: Latency::of(&hist),
        loadgen_cpu_pct: cpu,
        ..ScenarioResult::default()
    })
}

/// Reads pgbench's stdout (for `tps`) and its per-transaction logs
/// (`--log --log-prefix PREFIX`: one file per thread, latency in µs in the
/// third column) into a result line.
pub fn pgbench_summary(
    stdout: &Path,
    log_prefix: &Path,
    clients: u32,
    duration: f64,
) -> anyhow::Result<ScenarioResult> {
    let out = std::fs::read_to_string(stdout).with_context(|| format!("cannot read {}", stdout.display()))?;
    let field = |prefix: &str| -> Option<f64> {
        let line = out.lines().find(|l| l.trim_start().starts_with(prefix))?;
        line.trim_start()[prefix.len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let Some(tps) = field("tps = ") else {
        bail!("no `tps = ` line in {}: did pgbench run?", stdout.display());
    };
    let failed = field("number of failed transactions:").unwrap_or(0.0) as u64;
    let dir = log_prefix.parent().unwrap_or(Path::new("."));
    let stem = log_prefix
        .file_name()
        .and_then(|s| s.to_str())
        .context("--log-prefix needs a file name")?;
    let mut hist = new_histogram();
    let mut count = 0u64;
    let mut files = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(&format!("{stem}.")) {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(entry.path())?;
        for line in text.lines() {
            if let Some(us) = line.split_whitespace().nth(2).and_then(|v| v.parse::<u64>().ok()) {
                record(&mut hist, us);
                count += 1;
            }
        }
    }
    if files == 0 {
        bail!("no pgbench log files {}.*", log_prefix.display());
    }
    let mut errors_by_status = std::collections::BTreeMap::new();
    if failed > 0 {
        errors_by_status.insert("failed_transactions".into(), failed);
    }
    Ok(ScenarioResult {
        scenario: "pg-commit".into(),
        kind: "baseline".into(),
        available: true,
        connections: clients,
        duration_s: duration,
        requests: count,
        errors: failed,
        errors_by_status,
        throughput_rps: tps,
        latency: Latency::of(&hist),
        ..ScenarioResult::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pgbench_output_and_logs() {
        let dir = std::env::temp_dir().join(format!("cardcore-loadgen-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("out.txt"),
            "number of transactions actually processed: 3\nnumber of failed transactions: 0 (0.000%)\n\
             latency average = 1.5 ms\ntps = 2000.5 (without initial connection time)\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("pgb.123"),
            "0 1 1000 0 1700000000 1\n1 1 2000 0 1700000000 2\n",
        )
        .unwrap();
        std::fs::write(dir.join("pgb.123.1"), "2 1 1500 0 1700000000 3\n").unwrap();
        let r = pgbench_summary(&dir.join("out.txt"), &dir.join("pgb"), 64, 20.0).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(r.requests, 3);
        assert!((r.throughput_rps - 2000.5).abs() < 1e-9);
        assert!((r.latency.p50_ms - 1.5).abs() < 0.01, "{:?}", r.latency);
    }
}
