//! `cardcore import`: brings a vendor's cardholders and cards in from a JSON
//! Lines file (format in docs/native-api.md), one transaction per line,
//! several lines in flight (on SQLite they share commits through the
//! store's group commit). Bad lines are reported by number with the field
//! and the reason, never a value; the summary goes to stdout, the exit code
//! is non-zero when any line failed. On a terminal, stderr shows a progress
//! line (hand-written: one `\r` line needs no dependency).

use std::collections::BTreeMap;
use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use cardcore_domain::Channel;
use cardcore_service::import::{Importer, LineError, LineOutcome, MAX_LINE};
use cardcore_service::{cli_principal, Ctx, ServiceConfig};
use clap::Args;

use crate::cli::DbArgs;

/// Arguments of `cardcore import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The tenant id the cards belong to.
    #[arg(long)]
    pub tenant: String,
    /// The JSON Lines file: one cardholder with one card per line.
    #[arg(long)]
    pub file: PathBuf,
    /// Check every line (keys, PIN blocks, the tenant's existing cards) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Lines in flight at once (each its own transaction).
    #[arg(long, default_value_t = 64)]
    pub jobs: usize,
    /// Shortest PIN the program allows (as `serve --pin-min-length`).
    #[arg(long, env = "CARDCORE_PIN_MIN_LENGTH", default_value_t = 4)]
    pub pin_min_length: usize,
    /// Longest PIN the program allows (as `serve --pin-max-length`).
    #[arg(long, env = "CARDCORE_PIN_MAX_LENGTH", default_value_t = 4)]
    pub pin_max_length: usize,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Default)]
struct Tally {
    imported: u64,
    unchanged: u64,
    failed: u64,
    /// Failures by line number, printed in file order at the end.
    failures: BTreeMap<u64, LineError>,
    /// The first failure of the system (not of a line): the import stops.
    fatal: Option<LineError>,
}

impl Tally {
    fn record(&mut self, n: u64, outcome: Result<LineOutcome, LineError>) {
        match outcome {
            Ok(LineOutcome::Imported) => self.imported += 1,
            Ok(LineOutcome::Unchanged) => self.unchanged += 1,
            Err(e) => {
                self.failed += 1;
                if e.fatal && self.fatal.is_none() {
                    self.fatal = Some(e.clone());
                }
                self.failures.insert(n, e);
            }
        }
    }
}

/// Runs `cardcore import`.
pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    if args.jobs == 0 || args.jobs > 256 {
        bail!("--jobs must be 1 to 256");
    }
    let pin_policy = cardcore_domain::pin_policy::PinPolicy::new(args.pin_min_length, args.pin_max_length)
        .context("--pin-min-length and --pin-max-length must be 4 to 12, min ≤ max")?;
    let tenant_id = crate::parse_tenant(&args.tenant)?;
    let file = std::fs::File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?;
    let config = ServiceConfig {
        pin_policy,
        ..ServiceConfig::default()
    };
    let service = crate::open_service(&args.db, config).await?;
    let tenant = service.tenant(tenant_id).await.map_err(anyhow::Error::msg)?;
    let ctx = Ctx::new(cli_principal(tenant), Channel::CLI, Some("import".into()));
    let importer = Arc::new(Importer::new(service, ctx, args.dry_run));

    let progress = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut tally = Tally::default();
    let mut tasks = tokio::task::JoinSet::new();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    let mut number: u64 = 0;
    loop {
        buf.clear();
        // Bounded read: a line longer than MAX_LINE is refused, not buffered whole.
        let read = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("cannot read {}", args.file.display()))?;
        if read == 0 {
            break;
        }
        number += 1;
        let n = number;
        if buf.len() > MAX_LINE && buf.last() != Some(&b'\n') {
            // Skip the rest of the long line.
            let mut sink = Vec::new();
            reader.read_until(b'\n', &mut sink)?;
            tally.record(n, Err(too_long()));
            continue;
        }
        let text = match std::str::from_utf8(&buf) {
            Ok(t) => t.trim(),
            Err(_) => {
                tally.record(n, Err(not_utf8()));
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        let text = text.to_owned();
        let importer = importer.clone();
        tasks.spawn(async move { (n, importer.line(&text).await) });
        while tasks.len() >= args.jobs {
            if let Some(joined) = tasks.join_next().await {
                let (n, outcome) = joined.context("an import task failed")?;
                tally.record(n, outcome);
            }
        }
        if progress && last_progress.elapsed() >= Duration::from_millis(200) {
            last_progress = Instant::now();
            show_progress(&tally, started);
        }
        if tally.fatal.is_some() {
            break;
        }
    }
    while let Some(joined) = tasks.join_next().await {
        let (n, outcome) = joined.context("an import task failed")?;
        tally.record(n, outcome);
    }
    if progress {
        eprint!("\r\x1b[K");
    }
    let mut err = std::io::stderr().lock();
    for (n, e) in &tally.failures {
        writeln!(err, "line {n}: {e}")?;
    }
    drop(err);
    let seconds = started.elapsed().as_secs_f64();
    let done = tally.imported + tally.unchanged + tally.failed;
    println!(
        "{}imported {}, unchanged {}, failed {} ({done} lines in {seconds:.1} s, {:.0} lines/s)",
        if args.dry_run {
            "dry run, nothing written: would have "
        } else {
            ""
        },
        tally.imported,
        tally.unchanged,
        tally.failed,
        done as f64 / seconds.max(1e-9),
    );
    if let Some(e) = tally.fatal.take() {
        bail!("import stopped: {e}");
    }
    if tally.failed > 0 {
        bail!(
            "{} line(s) failed; fix them and run the same file again (lines already imported are left unchanged)",
            tally.failed
        );
    }
    Ok(())
}

fn show_progress(tally: &Tally, started: Instant) {
    let done = tally.imported + tally.unchanged + tally.failed;
    let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
    eprint!(
        "\r\x1b[K{done} lines: imported {}, unchanged {}, failed {} ({rate:.0}/s)",
        tally.imported, tally.unchanged, tally.failed
    );
}

fn too_long() -> LineError {
    LineError {
        field: String::new(),
        message: format!("is longer than {MAX_LINE} bytes"),
        fatal: false,
    }
}

fn not_utf8() -> LineError {
    LineError {
        field: String::new(),
        message: "is not UTF-8 text".into(),
        fatal: false,
    }
}
