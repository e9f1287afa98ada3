//! The retry schedule: how long to wait after each failed attempt, with
//! ±20 % jitter so that retries to a receiver that came back do not arrive
//! in lockstep. After the last delay's attempt fails, the delivery is dead.

use std::fmt;
use std::time::Duration;

/// The default schedule: 10 attempts over about 23 hours.
pub const DEFAULT_SCHEDULE: &str = "5s,30s,2m,10m,30m,1h,3h,6h,12h";

/// Jitter: each delay is drawn uniformly from ±this fraction of itself.
pub const JITTER: f64 = 0.2;

/// Delays between attempts.
#[derive(Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl fmt::Debug for RetrySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetrySchedule({self})")
    }
}

impl fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.delays.iter().map(|d| format!("{}ms", d.as_millis())).collect();
        f.write_str(&parts.join(","))
    }
}

/// Why a schedule does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a retry schedule is a comma-separated list of 1 to 20 durations such as 500ms, 5s, 2m or 1h (each at most 24h); got {0:?}")]
pub struct ScheduleError(String);

impl Default for RetrySchedule {
    fn default() -> Self {
        // The default is a constant that parses.
        Self::parse(DEFAULT_SCHEDULE).unwrap_or(Self {
            delays: vec![Duration::from_secs(5)],
        })
    }
}

fn parse_one(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    };
    (d > Duration::ZERO && d <= Duration::from_secs(24 * 3600)).then_some(d)
}

impl RetrySchedule {
    /// Parses `5s,30s,2m,...` (units ms, s, m, h).
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let delays = text
            .split(',')
            .map(parse_one)
            .collect::<Option<Vec<_>>>()
            .filter(|d| (1..=20).contains(&d.len()))
            .ok_or_else(|| ScheduleError(text.to_owned()))?;
        Ok(Self { delays })
    }

    /// The delays, without jitter.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// Attempts in all: the first and one after each delay.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len()).unwrap_or(u32::MAX).saturating_add(1)
    }

    /// The wait before the next attempt, once `failed` attempts have
    /// failed; `None` when that was the last (the delivery is dead). `unit`
    /// is a uniform random number in [0, 1) that places the delay within
    /// the jitter band.
    pub fn next_delay(&self, failed: u32, unit: f64) -> Option<Duration> {
        let index = usize::try_from(failed.checked_sub(1)?).ok()?;
        let base = *self.delays.get(index)?;
        let factor = 1.0 + JITTER * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        Some(base.mul_f64(factor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_documented_schedule() {
        let s = RetrySchedule::default();
        let secs: Vec<u64> = s.delays().iter().map(Duration::as_secs).collect();
        assert_eq!(secs, vec![5, 30, 120, 600, 1800, 3600, 10_800, 21_600, 43_200]);
        assert_eq!(s.max_attempts(), 10);
    }

    #[test]
    fn delays_stay_within_twenty_percent_and_run_out() {
        let s = RetrySchedule::parse("50ms,100ms,2s").unwrap();
        for (failed, base) in [(1, 50u64), (2, 100), (3, 2000)] {
            let lo = s.next_delay(failed, 0.0).unwrap().as_secs_f64() * 1000.0;
            let mid = s.next_delay(failed, 0.5).unwrap().as_secs_f64() * 1000.0;
            let hi = s.next_delay(failed, 0.999_999).unwrap().as_secs_f64() * 1000.0;
            let base = base as f64;
            assert!((lo - base * 0.8).abs() < 1e-6, "{failed}: {lo}");
            assert!((mid - base).abs() < 1e-6, "{failed}: {mid}");
            assert!(hi < base * 1.2 && hi > base * 1.19, "{failed}: {hi}");
            for i in 0..100 {
                let d = s.next_delay(failed, f64::from(i) / 100.0).unwrap().as_secs_f64() * 1000.0;
                assert!(d >= base * 0.8 - 1e-6 && d < base * 1.2, "{failed}: {d}");
            }
        }
        assert_eq!(s.next_delay(4, 0.5), None, "after the last delay's attempt: dead");
        assert_eq!(s.next_delay(0, 0.5), None);
        assert_eq!(s.max_attempts(), 4);
    }

    #[test]
    fn schedules_parse_strictly() {
        assert_eq!(
            RetrySchedule::parse(" 1h, 2m ,3s,4ms").unwrap().delays(),
            &[
                Duration::from_secs(3600),
                Duration::from_secs(120),
                Duration::from_secs(3),
                Duration::from_millis(4)
            ]
        );
        for bad in ["", "5", "5x", "0s", "-1s", "5s,,6s", "25h", "s", "1.5s"] {
            assert!(RetrySchedule::parse(bad).is_err(), "{bad}");
        }
        assert!(RetrySchedule::parse(&vec!["1s"; 21].join(",")).is_err());
        assert_eq!(RetrySchedule::parse("1s,2m").unwrap().to_string(), "1000ms,120000ms");
    }
}
