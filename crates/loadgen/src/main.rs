//! `cardcore-load`: cardcore's load harness (bench/run.sh drives it).
//!
//! - `run`: one scenario against a running server, a JSON line out;
//! - `sqlite-commit`: the bare SQLite durable-commit baseline;
//! - `pgbench-summary`: pgbench's output as the PostgreSQL baseline line;
//! - `table`: the markdown table of a run's JSON lines.
//!
//! Load goes to a loopback address only.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use cardcore_loadgen::report::ScenarioResult;
use cardcore_loadgen::runner::{run_scenario, seconds, RunArgs};
use cardcore_loadgen::{baseline, table};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cardcore-load", version, about = "cardcore's load harness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Drive one scenario against a running cardcore; print a JSON line.
    Run(RunArgs),
    /// The bare SQLite baseline: insert + commit in a loop with cardcore's settings.
    SqliteCommit {
        /// Directory for the throwaway database (use the filesystem cardcore's database is on).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        /// Label of the table the line belongs to.
        #[arg(long)]
        backend: Option<String>,
        /// Append the JSON line to this file too.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The PostgreSQL baseline: read a pgbench run's output and logs.
    PgbenchSummary {
        /// pgbench's standard output.
        #[arg(long)]
        stdout: PathBuf,
        /// The `--log-prefix` pgbench was given.
        #[arg(long)]
        log_prefix: PathBuf,
        #[arg(long, default_value_t = 64)]
        clients: u32,
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
        #[arg(long)]
        backend: Option<String>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the markdown table of result files (JSON lines).
    Table {
        /// Files of JSON lines, as `run`, `sqlite-commit` and `pgbench-summary` write.
        files: Vec<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cardcore-load: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    Ok(rt)
}

fn emit(result: &ScenarioResult, out: Option<&PathBuf>) -> anyhow::Result<()> {
    let line = result.to_line();
    println!("{line}");
    if let Some(path) = out {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        writeln!(f, "{line}")?;
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => {
            let rt = runtime(args.threads)?;
            let result = rt.block_on(run_scenario(&args))?;
            emit(&result, args.out.as_ref())
        }
        Command::SqliteCommit {
            dir,
            duration,
            warmup,
            backend,
            out,
        } => {
            let rt = runtime(1)?;
            let mut result = rt.block_on(baseline::sqlite_commit(
                &dir,
                seconds(warmup, "--warmup")?,
                seconds(duration, "--duration")?,
            ))?;
            result.backend = backend;
            emit(&result, out.as_ref())
        }
        Command::PgbenchSummary {
            stdout,
            log_prefix,
            clients,
            duration,
            backend,
            out,
        } => {
            let mut result = baseline::pgbench_summary(&stdout, &log_prefix, clients, duration)?;
            result.backend = backend;
            emit(&result, out.as_ref())
        }
        Command::Table { files } => {
            let mut results = Vec::new();
            for f in &files {
                let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
                for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                    let r: ScenarioResult = serde_json::from_str(line)
                        .with_context(|| format!("{}:{}: not a result line", f.display(), n + 1))?;
                    results.push(r);
                }
            }
            print!("{}", table::render_all(&results));
            Ok(())
        }
    }
}
