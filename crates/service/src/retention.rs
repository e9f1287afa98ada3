//! Retention: what bounds the growth of the event log, the webhook
//! deliveries and the audit log.
//!
//! A run deletes, oldest first and `batch` rows per short transaction (a
//! pause between batches lets other writers in): dead deliveries past their
//! cut-off, then events past theirs that were fanned out and have no open
//! delivery (with all their deliveries), then audit entries past theirs,
//! each batch appended to a JSON Lines file and flushed to disk before it
//! is deleted when an export directory is set. One run at a time across
//! nodes and CLI calls: a run holds the `retention` lease in the database,
//! renewed before every batch; a run that loses it stops.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cardcore_domain::{AuditEntry, TenantId, Timestamp};
use cardcore_store::{EventPosition, RetentionCounts, RetentionCutoffs, Store};
use serde::Serialize;

use crate::{Service, ServiceError, ServiceResult};

/// The lease's name in the database.
const LEASE: &str = "retention";
/// How long a lease lasts without renewal (a run renews it every batch).
const LEASE_FOR: Duration = Duration::from_secs(120);

/// A deployment's retention settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Events older than this, once delivered (no pending or retrying
    /// delivery), go with their deliveries. None: kept forever.
    pub events: Option<Duration>,
    /// Dead deliveries older than this go. None: kept forever.
    pub dead_deliveries: Option<Duration>,
    /// Audit entries older than this go. None: kept forever.
    pub audit: Option<Duration>,
    /// Rows per transaction.
    pub batch: u32,
    /// The wait between batches, so other writers get the database.
    pub pause: Duration,
}

const DAY: u64 = 24 * 60 * 60;

impl Default for RetentionPolicy {
    /// 90 days of delivered events, 30 of dead deliveries, 400 of audit
    /// (PCI DSS 10.5.1 keeps a year), 500 rows a batch.
    fn default() -> Self {
        Self {
            events: Some(Duration::from_secs(90 * DAY)),
            dead_deliveries: Some(Duration::from_secs(30 * DAY)),
            audit: Some(Duration::from_secs(400 * DAY)),
            batch: 500,
            pause: Duration::from_millis(20),
        }
    }
}

/// The longest period a setting may name, in days (100 years).
pub const MAX_DAYS: u32 = 36_500;
/// The shortest audit period (PCI DSS 10.5.1 keeps a year), other than 0.
pub const MIN_AUDIT_DAYS: u32 = 365;

impl RetentionPolicy {
    /// A policy from periods in days (0: keep forever) and a batch size in
    /// rows, or which setting is wrong and why (the fields are the flags'
    /// names). The audit floor is checked here, not by each caller.
    pub fn from_days(events: u32, dead_deliveries: u32, audit: u32, batch: u32) -> ServiceResult<Self> {
        if audit != 0 && audit < MIN_AUDIT_DAYS {
            return Err(ServiceError::invalid(
                "--retention-audit-days",
                format!(
                    "{audit}: keep audit entries at least {MIN_AUDIT_DAYS} days (PCI DSS 10.5.1 keeps a year), \
                     or 0 to keep them forever"
                ),
            ));
        }
        if !(1..=10_000).contains(&batch) {
            return Err(ServiceError::invalid(
                "--retention-batch-size",
                format!("{batch}: must be 1 to 10000 rows per transaction"),
            ));
        }
        for (flag, days) in [
            ("--retention-events-days", events),
            ("--retention-dead-deliveries-days", dead_deliveries),
            ("--retention-audit-days", audit),
        ] {
            if days > MAX_DAYS {
                return Err(ServiceError::invalid(
                    flag,
                    format!("{days}: at most {MAX_DAYS} (100 years), or 0 to keep forever"),
                ));
            }
        }
        let days = |d: u32| (d > 0).then(|| Duration::from_secs(u64::from(d) * DAY));
        Ok(Self {
            events: days(events),
            dead_deliveries: days(dead_deliveries),
            audit: days(audit),
            batch,
            ..Self::default()
        })
    }

    /// The instants before which rows go, as of `now`.
    pub fn cutoffs(&self, now: Timestamp) -> RetentionCutoffs {
        // An age past what a timestamp can hold deletes nothing.
        let before = |age: Option<Duration>| {
            age.map(|age| {
                chrono::Duration::from_std(age)
                    .ok()
                    .and_then(|age| now.checked_sub_signed(age))
                    .unwrap_or(Timestamp::UNIX_EPOCH)
            })
        };
        RetentionCutoffs {
            events_before: before(self.events),
            dead_deliveries_before: before(self.dead_deliveries),
            audit_before: before(self.audit),
        }
    }
}

/// What a run deleted (or a dry run would delete).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub cutoffs: RetentionCutoffs,
    /// Deleted rows; `events_held` is what stayed (counted by dry runs only).
    pub counts: RetentionCounts,
    /// The JSON Lines file the deleted audit entries went to, if any.
    pub export: Option<PathBuf>,
    /// How long each delete transaction took, waiting for the database
    /// included, in the order run.
    pub batch_times: Vec<Duration>,
}

impl RetentionReport {
    /// The batch time at quantile `q` (0 to 1), nearest rank; zero without batches.
    pub fn batch_quantile(&self, q: f64) -> Duration {
        let mut times = self.batch_times.clone();
        times.sort_unstable();
        let Some(last) = times.len().checked_sub(1) else {
            return Duration::ZERO;
        };
        // A rank from 0 to `last`: the cast cannot lose anything that matters.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((q.clamp(0.0, 1.0) * last as f64).round() as usize).min(last);
        times[rank]
    }

    /// Runs one delete transaction, counting it and its time.
    async fn time<T>(&mut self, batch: impl std::future::Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let out = batch.await;
        self.batch_times.push(started.elapsed());
        metrics::histogram!("cardcore_retention_batch_seconds").record(started.elapsed().as_secs_f64());
        out
    }
}

/// One line of an audit export: the entry with its tenant.
#[derive(Serialize)]
struct ExportLine<'a> {
    tenant_id: TenantId,
    #[serde(flatten)]
    entry: &'a AuditEntry,
}

impl Service {
    /// [`run`] on this service's store.
    pub async fn run_retention(
        &self,
        policy: &RetentionPolicy,
        export_dir: Option<&Path>,
        stop: &(dyn Fn() -> bool + Send + Sync),
    ) -> ServiceResult<Option<RetentionReport>> {
        run(self.store.as_ref(), policy, export_dir, stop).await
    }
}

/// What a run of `policy` would delete now, by the database's clock (reads
/// only; needs no keys).
pub async fn preview(store: &dyn Store, policy: &RetentionPolicy) -> ServiceResult<RetentionReport> {
    let cutoffs = policy.cutoffs(store.database_time().await?);
    let counts = store.retention_counts(&cutoffs).await?;
    Ok(RetentionReport {
        cutoffs,
        counts,
        ..RetentionReport::default()
    })
}

/// Runs `policy` once: `None` when another node or CLI holds the lease.
/// With `export_dir`, audit entries are written to a new JSON Lines file
/// there (mode 0600) and flushed to disk before they are deleted; a run
/// cut short may export entries twice (in two files), never lose one.
/// Stops between batches when `stop` answers true. Needs no keys. Its
/// cut-offs and lease are by the database's clock, so nodes whose clocks
/// differ still agree.
pub async fn run(
    store: &dyn Store,
    policy: &RetentionPolicy,
    export_dir: Option<&Path>,
    stop: &(dyn Fn() -> bool + Send + Sync),
) -> ServiceResult<Option<RetentionReport>> {
    let job = Job {
        store,
        holder: uuid::Uuid::new_v4(),
        renewed: std::sync::Mutex::new(None),
    };
    if !job.renew_lease().await? {
        return Ok(None);
    }
    let outcome = job.retain(policy, export_dir, stop).await;
    if let Err(e) = store.release_job(LEASE, job.holder).await {
        tracing::warn!(cause = %e, "could not give the retention lease back; it runs out by itself");
    }
    outcome.map(Some)
}

/// Checks that audit entries can be exported to `dir`: makes it (mode
/// 0700) if missing and writes and removes a file there. For start-up, so a
/// wrong directory is found before the first run.
pub fn check_export_dir(dir: &Path) -> ServiceResult<()> {
    let (file, path) = open_export(dir, chrono::Utc::now())?;
    drop(file);
    std::fs::remove_file(&path).map_err(|e| {
        ServiceError::Unavailable(format!(
            "audit export to {}: cannot remove a test file: {e}",
            dir.display()
        ))
    })
}

/// One run: the store, who holds the lease, and when it was last renewed.
struct Job<'a> {
    store: &'a dyn Store,
    holder: uuid::Uuid,
    renewed: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Job<'_> {
    /// Takes the lease, or renews it once half of it has passed (a renewal
    /// is a write: not one per batch).
    async fn renew_lease(&self) -> ServiceResult<bool> {
        let due = self
            .renewed
            .lock()
            .map_or(true, |at| at.is_none_or(|at| at.elapsed() >= LEASE_FOR / 2));
        if !due {
            return Ok(true);
        }
        let now = self.store.database_time().await?;
        let until = now + chrono::Duration::from_std(LEASE_FOR).unwrap_or(chrono::Duration::MAX);
        let got = self.store.lease_job(LEASE, self.holder, now, until).await?;
        if got {
            if let Ok(mut at) = self.renewed.lock() {
                *at = Some(std::time::Instant::now());
            }
        }
        Ok(got)
    }

    async fn retain(
        &self,
        policy: &RetentionPolicy,
        export_dir: Option<&Path>,
        stop: &(dyn Fn() -> bool + Send + Sync),
    ) -> ServiceResult<RetentionReport> {
        let store = self.store;
        let batch = policy.batch.max(1);
        let now = store.database_time().await?;
        let cutoffs = policy.cutoffs(now);
        let mut report = RetentionReport {
            cutoffs,
            ..RetentionReport::default()
        };
        // Before every batch: still ours, and not told to stop.
        let go_on = || async {
            if stop() {
                return Ok(false);
            }
            if !self.renew_lease().await? {
                tracing::warn!("the retention lease went to another holder; this run stops");
                return Ok(false);
            }
            ServiceResult::Ok(true)
        };
        // Events first (their dead deliveries go with them), as a dry run counts.
        if let Some(before) = cutoffs.events_before {
            let mut after = EventPosition::start();
            while go_on().await? {
                let gone = report.time(store.purge_events(before, after, batch)).await?;
                report.counts.events += gone.events;
                report.counts.event_deliveries += gone.deliveries;
                metrics::counter!("cardcore_retention_deleted_total", "kind" => "events").increment(gone.events);
                metrics::counter!("cardcore_retention_deleted_total", "kind" => "event_deliveries")
                    .increment(gone.deliveries);
                let Some(next) = gone.next else {
                    break;
                };
                after = next;
                tokio::time::sleep(policy.pause).await;
            }
        }
        if let Some(before) = cutoffs.dead_deliveries_before {
            while go_on().await? {
                let n = report.time(store.purge_dead_deliveries(before, batch)).await?;
                report.counts.dead_deliveries += n;
                metrics::counter!("cardcore_retention_deleted_total", "kind" => "dead_deliveries").increment(n);
                if n < u64::from(batch) {
                    break;
                }
                tokio::time::sleep(policy.pause).await;
            }
        }
        if let Some(before) = cutoffs.audit_before {
            let mut export: Option<(std::fs::File, PathBuf)> = None;
            while go_on().await? {
                let expired = store.expired_audit(before, batch).await?;
                if expired.is_empty() {
                    break;
                }
                if let Some(dir) = export_dir {
                    let mut lines = Vec::new();
                    for e in &expired {
                        serde_json::to_writer(
                            &mut lines,
                            &ExportLine {
                                tenant_id: e.entry.tenant_id,
                                entry: &e.entry,
                            },
                        )
                        .map_err(|err| ServiceError::caused("audit export: an entry did not serialize", err))?;
                        lines.push(b'\n');
                    }
                    let (file, path) = match export.take() {
                        Some(open) => open,
                        None => open_export(dir, now)?,
                    };
                    let file = append_durably(file, lines, &path).await?;
                    report.export = Some(path.clone());
                    export = Some((file, path));
                }
                let seqs: Vec<i64> = expired.iter().map(|e| e.seq).collect();
                let n = report.time(store.delete_audit(&seqs)).await?;
                report.counts.audit_entries += n;
                metrics::counter!("cardcore_retention_deleted_total", "kind" => "audit_entries").increment(n);
                if expired.len() < batch as usize {
                    break;
                }
                tokio::time::sleep(policy.pause).await;
            }
        }
        Ok(report)
    }
}

/// A new export file in `dir` (made, mode 0700, if missing), mode 0600.
fn open_export(dir: &Path, now: Timestamp) -> ServiceResult<(std::fs::File, PathBuf)> {
    let failed = |what: &str, e: std::io::Error| {
        ServiceError::Unavailable(format!("audit export to {}: {what}: {e}", dir.display()))
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| failed("cannot create the directory", e))?;
    let path = dir.join(format!(
        "audit-{}-{}.jsonl",
        now.format("%Y%m%dT%H%M%S%.6fZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&path).map_err(|e| failed("cannot create the file", e))?;
    // The new name itself must survive a crash.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| failed("cannot flush the directory", e))?;
    Ok((file, path))
}

/// Appends `lines` and waits until they are on disk. On a failure the
/// file is cut back to where it was, so it never ends in half a line.
async fn append_durably(mut file: std::fs::File, lines: Vec<u8>, path: &Path) -> ServiceResult<std::fs::File> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::{Seek, Write};
        let written = file.stream_position();
        let appended = written.and_then(|at| {
            file.write_all(&lines).and_then(|()| file.sync_data()).inspect_err(|_| {
                // Best effort: the error that matters is the write's.
                let _ = file.set_len(at).and_then(|()| file.seek(std::io::SeekFrom::Start(at)));
            })
        });
        appended
            .map(|()| file)
            .map_err(|e| ServiceError::Unavailable(format!("audit export to {}: {e}", path.display())))
    })
    .await
    .map_err(|e| ServiceError::caused("audit export: the writer task failed", e))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_keeps_audit_a_year_and_refuses_what_cannot_be() {
        assert!(RetentionPolicy::from_days(90, 30, 364, 500).is_err());
        assert!(RetentionPolicy::from_days(90, 30, 365, 500).is_ok());
        let forever = RetentionPolicy::from_days(0, 0, 0, 500).unwrap();
        assert_eq!(
            (forever.events, forever.dead_deliveries, forever.audit),
            (None, None, None)
        );
        assert!(RetentionPolicy::from_days(MAX_DAYS + 1, 30, 400, 500).is_err());
        assert!(RetentionPolicy::from_days(90, 30, 400, 0).is_err());
        assert!(RetentionPolicy::from_days(90, 30, 400, 10_001).is_err());
        assert_eq!(
            RetentionPolicy::from_days(90, 30, 400, 500).unwrap(),
            RetentionPolicy::default()
        );
    }
}
