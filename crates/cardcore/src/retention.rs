//! `cardcore retention` and the background retention job of `serve`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use cardcore_service::retention::{self, RetentionPolicy, RetentionReport};
use cardcore_service::Service;
use cardcore_store::RetentionCutoffs;

use crate::cli::{RetentionArgs, RetentionCommandArgs};
use crate::{database_url, display_url, open_store, sqlite_path};

/// The policy the flags describe, or what is wrong with them.
pub fn policy(args: &RetentionArgs) -> anyhow::Result<RetentionPolicy> {
    RetentionPolicy::from_days(
        args.retention_events_days,
        args.retention_dead_deliveries_days,
        args.retention_audit_days,
        args.retention_batch_size,
    )
    .map_err(anyhow::Error::msg)
}

/// `cardcore retention [--dry-run]`.
pub async fn command(args: RetentionCommandArgs) -> anyhow::Result<()> {
    let policy = policy(&args.retention)?;
    let url = display_url(&database_url(&args.db));
    if let Some(path) = sqlite_path(&database_url(&args.db)) {
        if !path.exists() {
            bail!("{url}: no such database file; check --database");
        }
    }
    let store = open_store(&args.db).await?;
    if args.dry_run {
        // Reads only: no migration either.
        if store.migration_status().await?.applied.is_empty() {
            bail!("{url} holds no cardcore database (nothing to count); check --database");
        }
        let report = retention::preview(store.as_ref(), &policy)
            .await
            .map_err(anyhow::Error::msg)?;
        println!("retention on {url}, dry run: nothing is deleted");
        print_report(&report, &args.retention, true);
        if let Some(dir) = &args.retention.export_dir {
            println!(
                "  audit entries would be written to a new JSON Lines file in {} first",
                dir.display()
            );
        }
        return Ok(());
    }
    if let Some(dir) = &args.retention.export_dir {
        retention::check_export_dir(dir).map_err(anyhow::Error::msg)?;
    }
    store.migrate().await.context("cannot apply database migrations")?;
    let report = retention::run(store.as_ref(), &policy, args.retention.export_dir.as_deref(), &|| false)
        .await
        .map_err(anyhow::Error::msg)?;
    let Some(report) = report else {
        bail!(
            "another node or `cardcore retention` is running retention on {url} right now (it holds the lease; \
             a lease left by a stopped process runs out within 2 minutes); try again later"
        );
    };
    println!("retention on {url}: done");
    print_report(&report, &args.retention, false);
    Ok(())
}

/// Milliseconds, for people.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print_report(report: &RetentionReport, args: &RetentionArgs, dry_run: bool) {
    let RetentionCutoffs {
        events_before,
        dead_deliveries_before,
        audit_before,
    } = report.cutoffs;
    let c = &report.counts;
    let verb = if dry_run { "would go" } else { "deleted" };
    let when = |before: Option<chrono::DateTime<chrono::Utc>>, days: u32, flag: &str| match before {
        Some(t) => format!("made before {} ({days} days)", t.format("%Y-%m-%dT%H:%M:%SZ")),
        None => format!("kept forever ({flag} 0)"),
    };
    println!(
        "  delivered events {}: {} {verb}, with {} webhook deliveries",
        when(events_before, args.retention_events_days, "--retention-events-days"),
        c.events,
        c.event_deliveries
    );
    if dry_run && events_before.is_some() {
        println!(
            "    kept for now: {} old events with a delivery still pending or retrying, or not yet sent",
            c.events_held
        );
    }
    println!(
        "  dead webhook deliveries {}: {} {verb}",
        when(
            dead_deliveries_before,
            args.retention_dead_deliveries_days,
            "--retention-dead-deliveries-days"
        ),
        c.dead_deliveries
    );
    println!(
        "  audit entries {}: {} {verb}",
        when(audit_before, args.retention_audit_days, "--retention-audit-days"),
        c.audit_entries
    );
    if !dry_run {
        println!(
            "  {} delete transactions, each (waiting for the database included) p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            report.batch_times.len(),
            ms(report.batch_quantile(0.5)),
            ms(report.batch_quantile(0.99)),
            ms(report.batch_quantile(1.0))
        );
    }
    if let Some(path) = &report.export {
        println!("  the deleted audit entries are in {}", path.display());
    }
    println!("  idempotency keys: `serve` deletes them once past --idempotency-ttl-seconds");
}

/// Runs retention every `every` on this node; the lease makes it one node
/// at a time. The first run comes after `min(every, 60 s)`.
pub(crate) fn spawn(
    service: Arc<Service>,
    policy: RetentionPolicy,
    export_dir: Option<PathBuf>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let first = tokio::time::Instant::now() + every.min(Duration::from_secs(60));
        let mut tick = tokio::time::interval_at(first, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let stopping = stop.clone();
                    let asked_to_stop = move || *stopping.borrow();
                    match service.run_retention(&policy, export_dir.as_deref(), &asked_to_stop).await {
                        Ok(Some(r)) => {
                            let c = r.counts;
                            if c.events + c.dead_deliveries + c.audit_entries > 0 {
                                tracing::info!(
                                    events = c.events,
                                    event_deliveries = c.event_deliveries,
                                    dead_deliveries = c.dead_deliveries,
                                    audit_entries = c.audit_entries,
                                    batches = r.batch_times.len(),
                                    batch_p50_ms = ms(r.batch_quantile(0.5)),
                                    batch_p99_ms = ms(r.batch_quantile(0.99)),
                                    batch_max_ms = ms(r.batch_quantile(1.0)),
                                    export = ?r.export,
                                    "retention deleted what was past its period"
                                );
                            }
                        }
                        Ok(None) => tracing::debug!("retention: another node holds the lease"),
                        Err(e) => tracing::warn!(cause = %e, "retention failed; the next run tries again"),
                    }
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
        }
    })
}
