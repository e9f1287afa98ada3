//! Results: one JSON line per scenario (or baseline), and what /proc says
//! about the server.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in microseconds, 1 µs to 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants that satisfy the constructor's rules.
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable()))
}

#[allow(clippy::panic)]
fn unreachable() -> Histogram<u64> {
    panic!("a 3-significant-digit histogram is always valid")
}

/// Records `us` microseconds, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, us: u64) {
    let _ = h.record(us.clamp(1, 60_000_000));
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Latency figures of one histogram, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: (h.mean()).round() / 1000.0,
        }
    }
}

/// One request type inside a scenario (e.g. `lock` and `unlock`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Part {
    pub name: String,
    pub requests: u64,
    #[serde(flatten)]
    pub latency: Latency,
}

/// One result line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScenarioResult {
    pub scenario: String,
    /// `ceiling`, `read`, `write` or `baseline`.
    pub kind: String,
    /// False when the server has no such route (a dialect not built yet).
    pub available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `sqlite` or `postgres`: which table this line belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cards: Option<u64>,
    pub connections: u32,
    pub duration_s: f64,
    /// Completed requests started inside the measured window (2xx or not).
    pub requests: u64,
    /// Non-2xx answers, unexpected bodies and transport errors.
    pub errors: u64,
    /// `"409"`, `"transport"`, `"unexpected_body"`, ... → count.
    pub errors_by_status: BTreeMap<String, u64>,
    /// Authorizations answered `DECLINED` (not in `errors`, not in the
    /// throughput): a benchmark of declines is not what is measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declines: Option<u64>,
    /// `decline_reason` → count.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub declines_by_reason: BTreeMap<String, u64>,
    /// Successful requests per second over the measured window.
    pub throughput_rps: f64,
    /// Latency of the successful requests.
    #[serde(flatten)]
    pub latency: Latency,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
    /// PIN unblocks the harness had to send (0 in a clean wrong-PIN run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unblocks: Option<u64>,
    /// CPU the server used in the window, % of one core (200 = both cores).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_pct: Option<f64>,
    /// CPU this load generator used in the window, % of one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loadgen_cpu_pct: Option<f64>,
    /// Server's peak resident set since it started (VmHWM), MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mb: Option<f64>,
    /// Server's resident set at the end of the window (VmRSS), MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_mb: Option<f64>,
}

impl ScenarioResult {
    /// A scenario the server cannot run.
    pub fn unavailable(scenario: &str, kind: &str, reason: String) -> Self {
        Self {
            scenario: scenario.into(),
            kind: kind.into(),
            available: false,
            reason: Some(reason),
            ..Self::default()
        }
    }

    /// The JSON line.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// `VmHWM` and `VmRSS` of a process, in MiB.
pub fn rss_of(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse::<f64>().ok()
    };
    Some((kb("VmHWM:")? / 1024.0, kb("VmRSS:")? / 1024.0))
}

/// CPU time (user + system, all threads) a process has used, in seconds.
/// `/proc/PID/stat` counts in USER_HZ, 100 on Linux.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".into(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces; fields restart after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_in_milliseconds() {
        let mut h = new_histogram();
        for us in 1..=1000 {
            record(&mut h, us);
        }
        let l = Latency::of(&h);
        assert!((l.p50_ms - 0.5).abs() < 0.01, "{l:?}");
        assert!((l.p99_ms - 0.99).abs() < 0.01, "{l:?}");
        assert!((l.max_ms - 1.0).abs() < 0.01, "{l:?}");
    }

    #[test]
    fn own_process_is_readable() {
        assert!(cpu_seconds(None).is_some());
        assert!(rss_of(std::process::id()).is_some());
    }

    #[test]
    fn result_lines_round_trip() {
        let r = ScenarioResult {
            scenario: "verify".into(),
            kind: "read".into(),
            available: true,
            throughput_rps: 10.0,
            ..ScenarioResult::default()
        };
        let back: ScenarioResult = serde_json::from_str(&r.to_line()).unwrap();
        assert_eq!(back, r);
    }
}
