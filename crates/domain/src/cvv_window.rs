//! Dynamic CVV2 windows: a program may rotate its virtual cards' CVV2
//! every `interval_hours`. Windows are counted from the Unix epoch in UTC
//! (window `n` covers `[n·interval, (n+1)·interval)`), so every node and
//! every restart agrees on the window of a moment without storing anything.
//! The CVV2 of a window is computed from the CVK and the window's number
//! (`cardcore_crypto::cvv::generate_dynamic_cvv2`).

use chrono::TimeZone;

use crate::Timestamp;

/// Longest rotation interval: a year.
pub const MAX_INTERVAL_HOURS: u32 = 8760;

/// One CVV2 window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CvvWindow {
    /// Windows since the Unix epoch (0 for any moment before it).
    pub number: u64,
    /// The first moment of the window.
    pub starts_at: Timestamp,
    /// The first moment of the next window: when the CVV2 changes.
    pub ends_at: Timestamp,
    interval_secs: i64,
}

/// Why an interval is refused.
pub const INTERVAL_RULE: &str = "must be 1 to 8760 hours (a year), or 0 for a CVV2 that does not rotate";

/// True for a usable rotation interval (`1..=8760` hours).
pub fn valid_interval(hours: u32) -> bool {
    (1..=MAX_INTERVAL_HOURS).contains(&hours)
}

impl CvvWindow {
    /// The window `now` falls in, for windows of `interval_hours` (clamped
    /// to `1..=8760`).
    pub fn at(interval_hours: u32, now: Timestamp) -> Self {
        let interval_secs = i64::from(interval_hours.clamp(1, MAX_INTERVAL_HOURS)) * 3600;
        let number = now.timestamp().max(0).div_euclid(interval_secs);
        Self::numbered(number as u64, interval_secs)
    }

    fn numbered(number: u64, interval_secs: i64) -> Self {
        // number ≤ i64::MAX / 3600 (it came from a timestamp): no overflow.
        let start = (number as i64).saturating_mul(interval_secs);
        let at = |s: i64| {
            chrono::Utc
                .timestamp_opt(s, 0)
                .single()
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
        };
        Self {
            number,
            starts_at: at(start),
            ends_at: at(start.saturating_add(interval_secs)),
            interval_secs,
        }
    }

    /// The window before this one (None for window 0).
    pub fn previous(&self) -> Option<Self> {
        self.number
            .checked_sub(1)
            .map(|n| Self::numbered(n, self.interval_secs))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn windows_count_from_the_epoch() {
        // 72 h = 259,200 s; 2026-12-04T00:00:00Z = 1,796,342,400 s = 6930.333… windows.
        let w = CvvWindow::at(72, t("2026-12-04T00:00:00Z"));
        assert_eq!(w.number, 6930);
        assert_eq!(w.starts_at, t("2026-12-03T00:00:00Z"));
        assert_eq!(w.ends_at, t("2026-12-06T00:00:00Z"));
        assert_eq!(w.previous().unwrap().ends_at, w.starts_at);
        assert_eq!(w.previous().unwrap().number, 6929);
    }

    #[test]
    fn the_boundary_belongs_to_the_next_window() {
        let end = t("2026-12-06T00:00:00Z");
        let before = CvvWindow::at(72, end - chrono::Duration::microseconds(1));
        let at = CvvWindow::at(72, end);
        assert_eq!(before.number + 1, at.number);
        assert_eq!(before.ends_at, end);
        assert_eq!(at.starts_at, end);
        // Hourly windows start on the hour.
        let w = CvvWindow::at(1, t("2026-12-04T22:59:59.999999Z"));
        assert_eq!(w.starts_at, t("2026-12-04T22:00:00Z"));
        assert_eq!(w.ends_at, t("2026-12-04T23:00:00Z"));
    }

    #[test]
    fn before_the_epoch_is_window_zero_which_has_no_previous() {
        let w = CvvWindow::at(24, t("1969-07-20T20:17:00Z"));
        assert_eq!(w.number, 0);
        assert_eq!(w.previous(), None);
    }

    #[test]
    fn intervals() {
        assert!(!valid_interval(0));
        assert!(valid_interval(1));
        assert!(valid_interval(72));
        assert!(valid_interval(MAX_INTERVAL_HOURS));
        assert!(!valid_interval(MAX_INTERVAL_HOURS + 1));
    }

    proptest! {
        /// Every moment lies in its window, and windows tile time.
        #[test]
        fn a_moment_lies_in_its_window(secs in 0i64..4_000_000_000, micros in 0u32..1_000_000, hours in 1u32..=MAX_INTERVAL_HOURS) {
            let now = chrono::Utc.timestamp_opt(secs, micros * 1000).single().unwrap();
            let w = CvvWindow::at(hours, now);
            prop_assert!(w.starts_at <= now && now < w.ends_at);
            prop_assert_eq!(w.ends_at - w.starts_at, chrono::Duration::hours(i64::from(hours)));
            prop_assert_eq!(CvvWindow::at(hours, w.ends_at).number, w.number + 1);
            if let Some(p) = w.previous() {
                prop_assert_eq!(p.ends_at, w.starts_at);
                prop_assert_eq!(CvvWindow::at(hours, p.starts_at), p);
            }
        }
    }
}
