//! The harness end to end, in-process: `cardcore seed` into a fresh SQLite
//! database, a real server on a free port, and every scenario for a moment
//! with a few connections. Every scenario must be available and error-free:
//! a changed route or body (a dialect's, say) fails here, not in a
//! benchmark run. The authorization scenarios must be approved, not
//! declined (the seeded limits and controls let them through). No figure is
//! asserted: speed is measured by bench/run.sh, never in tests.

use cardcore::cli::{Cli, Command};
use cardcore_loadgen::runner::{run_scenario, RunArgs};
use cardcore_loadgen::scenario::Scenario;
use clap::Parser as _;

const SCENARIOS: [Scenario; 9] = [
    Scenario::Healthz,
    Scenario::Verify,
    Scenario::VerifyWrong,
    Scenario::PinSet,
    Scenario::LockUnlock,
    Scenario::P100Pin,
    Scenario::M2pValidate,
    Scenario::Authorize,
    Scenario::AuthorizePin,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_clean_against_a_seeded_server() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/cardcore.db", dir.path().display());
    let csv = dir.path().join("cards.csv");
    let csv_arg = csv.display().to_string();

    let seed = Cli::try_parse_from([
        "cardcore",
        "seed",
        "--tenant-name",
        "loadgen-e2e",
        "--cards",
        "40",
        "--batch",
        "16",
        "--out",
        &csv_arg,
        "--database",
        &url,
    ])
    .unwrap();
    cardcore::run(seed).await.unwrap();

    let serve = Cli::try_parse_from([
        "cardcore",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database",
        &url,
        "--rate-limit-per-second",
        "0",
        "--card-pin-calls-per-minute",
        "0",
    ])
    .unwrap();
    let Command::Serve(args) = serve.command else {
        panic!("serve expected")
    };
    let server = cardcore::Server::start(&args, None).await.unwrap();

    for scenario in SCENARIOS {
        let result = run_scenario(&RunArgs {
            url: format!("http://{}", server.addr),
            scenario,
            seed: Some(csv.clone()),
            connections: 4,
            duration: 0.4,
            warmup: 0.1,
            threads: 1,
            server_pid: Some(std::process::id()),
            backend: Some("sqlite".into()),
            rng_seed: 7,
            out: None,
        })
        .await
        .unwrap();
        let line = result.to_line();
        assert!(result.available, "{line}");
        assert_eq!(result.errors, 0, "{line}");
        assert!(result.requests > 0, "{line}");
        assert_eq!(result.cards, Some(40), "{line}");
        assert!(result.peak_rss_mb.is_some_and(|m| m > 0.0), "{line}");
        if scenario.authorizes() {
            assert_eq!(result.declines, Some(0), "{line}");
        }
        if scenario == Scenario::VerifyWrong {
            // The wrong/right pairs never let a PIN block.
            assert_eq!(result.unblocks, Some(0), "{line}");
            assert_eq!(result.parts.len(), 2, "{line}");
        }
    }
    server.stop().await.unwrap();
}
