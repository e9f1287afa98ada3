//! The markdown table of a run: each scenario with the ceiling it is
//! compared with, measured in the same run. Reads are divided by the
//! `/healthz` throughput, durable writes by the bare-commit baseline.

use std::fmt::Write as _;

use crate::report::ScenarioResult;

/// What a scenario must reach (issue targets) on `backend`, if it has a target.
fn target(scenario: &str, backend: &str) -> Option<(f64, Option<f64>)> {
    match scenario {
        // Authorizations (contract, "Speed"): >= 70 % of the bare durable
        // commit with p99 <= 50 ms on SQLite; reported on PostgreSQL.
        "authorize" if backend == "sqlite" => Some((0.7, Some(50.0))),
        // PIN verification: >= 50 % of the HTTP ceiling, p99 <= 5 ms.
        "verify" | "m2p-validate" => Some((0.5, Some(5.0))),
        // Durable PIN writes: >= 70 % of the bare durable commit.
        "pin-set" | "p100-pin" => Some((0.7, None)),
        _ => None,
    }
}

fn thousands(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map(|x| format!("{x:.0}{unit}")).unwrap_or_else(|| "–".into())
}

/// The table for the results of one backend.
pub fn render(title: &str, results: &[ScenarioResult]) -> String {
    let ceiling = results
        .iter()
        .find(|r| r.kind == "ceiling" && r.available)
        .map(|r| (r.scenario.clone(), r.throughput_rps));
    let baseline = results
        .iter()
        .find(|r| r.kind == "baseline" && r.available)
        .map(|r| (r.scenario.clone(), r.throughput_rps));
    let mut out = String::new();
    let _ = writeln!(out, "### {title}\n");
    let _ = writeln!(
        out,
        "| scenario | req/s | ratio | compared with | target | p50 ms | p99 ms | p99.9 ms | errors | server CPU | peak RSS |"
    );
    let _ = writeln!(out, "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|");
    for r in results {
        if !r.available {
            let _ = writeln!(
                out,
                "| {} | not available | | | | | | | | | ({}) |",
                r.scenario,
                r.reason.as_deref().unwrap_or("")
            );
            continue;
        }
        let against = match r.kind.as_str() {
            "read" => ceiling.clone(),
            "write" => baseline.clone(),
            _ => Some((format!("({})", r.kind), r.throughput_rps)),
        };
        let ratio = against
            .as_ref()
            .filter(|(_, base)| *base > 0.0)
            .map(|(_, base)| r.throughput_rps / base);
        let verdict = match (target(&r.scenario, r.backend.as_deref().unwrap_or("")), ratio) {
            (Some((min, p99)), Some(ratio)) => {
                let met = ratio >= min && p99.is_none_or(|p| r.latency.p99_ms <= p);
                let p99_text = p99.map(|p| format!(", p99 ≤ {p} ms")).unwrap_or_default();
                format!("≥ {min:.2}{p99_text}: {}", if met { "met" } else { "**missed**" })
            }
            (Some(_), None) => "no ceiling measured".into(),
            _ => String::new(),
        };
        let errors = if r.errors == 0 {
            "0".to_owned()
        } else {
            let detail: Vec<String> = r.errors_by_status.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            format!("{} ({})", r.errors, detail.join(", "))
        };
        // Declines are neither throughput nor errors: shown beside them.
        let errors = match r.declines {
            Some(n) if n > 0 => {
                let detail: Vec<String> = r.declines_by_reason.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{errors}; declined {n} ({})", detail.join(", "))
            }
            _ => errors,
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            r.scenario,
            thousands(r.throughput_rps),
            ratio.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into()),
            against.map(|(name, _)| name).unwrap_or_else(|| "–".into()),
            verdict,
            r.latency.p50_ms,
            r.latency.p99_ms,
            r.latency.p999_ms,
            errors,
            opt(r.server_cpu_pct, " %"),
            opt(r.peak_rss_mb, " MiB"),
        );
    }
    out
}

/// Groups result lines by backend (in order of first appearance) and
/// renders one table per backend.
pub fn render_all(results: &[ScenarioResult]) -> String {
    let mut backends: Vec<String> = Vec::new();
    for r in results {
        let b = r.backend.clone().unwrap_or_else(|| "unlabelled".into());
        if !backends.contains(&b) {
            backends.push(b);
        }
    }
    let mut out = String::new();
    for b in backends {
        let rows: Vec<ScenarioResult> = results
            .iter()
            .filter(|r| r.backend.as_deref().unwrap_or("unlabelled") == b)
            .cloned()
            .collect();
        let cards = rows.iter().find_map(|r| r.cards);
        let conns = rows.iter().find(|r| r.kind != "baseline").map(|r| r.connections);
        let secs = rows.iter().find(|r| r.kind != "baseline").map(|r| r.duration_s);
        let title = format!(
            "{b}: {} cards, {} connections, {} s per scenario",
            cards.map(|c| thousands(c as f64)).unwrap_or_else(|| "?".into()),
            conns.map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
            secs.map(|s| format!("{s:.0}")).unwrap_or_else(|| "?".into()),
        );
        out.push_str(&render(&title, &rows));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Latency;

    fn row(scenario: &str, kind: &str, rps: f64, p99: f64) -> ScenarioResult {
        ScenarioResult {
            scenario: scenario.into(),
            kind: kind.into(),
            available: true,
            backend: Some("sqlite".into()),
            throughput_rps: rps,
            latency: Latency {
                p99_ms: p99,
                ..Latency::default()
            },
            ..ScenarioResult::default()
        }
    }

    #[test]
    fn authorize_has_its_target_on_sqlite_and_declines_beside_errors() {
        let mut auth = row("authorize", "write", 800.0, 30.0);
        auth.declines = Some(3);
        auth.declines_by_reason.insert("LIMIT_EXCEEDED".into(), 3);
        let mut on_pg = auth.clone();
        on_pg.backend = Some("postgres".into());
        let t = render_all(&[row("sqlite-commit", "baseline", 1_000.0, 2.0), auth]);
        assert!(
            t.contains("| authorize | 800 | 0.80 | sqlite-commit | ≥ 0.70, p99 ≤ 50 ms: met |"),
            "{t}"
        );
        assert!(t.contains("| 0; declined 3 (LIMIT_EXCEEDED: 3) |"), "{t}");
        let t = render_all(&[on_pg]);
        assert!(t.contains("| authorize | 800 | – | – |  |"), "{t}");
    }

    #[test]
    fn ratios_use_the_right_ceiling() {
        let rows = vec![
            row("healthz", "ceiling", 20_000.0, 1.0),
            row("sqlite-commit", "baseline", 1_000.0, 2.0),
            row("verify", "read", 12_000.0, 4.0),
            row("pin-set", "write", 600.0, 9.0),
            ScenarioResult::unavailable("p100-pin", "write", "no route".into()),
        ];
        let t = render_all(&rows);
        assert!(
            t.contains("| verify | 12,000 | 0.60 | healthz | ≥ 0.50, p99 ≤ 5 ms: met |"),
            "{t}"
        );
        assert!(
            t.contains("| pin-set | 600 | 0.60 | sqlite-commit | ≥ 0.70: **missed** |"),
            "{t}"
        );
        assert!(t.contains("| p100-pin | not available |"), "{t}");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }
}
