//! The service's clock: the system clock plus an offset. The offset is 0
//! in production (nothing but Rust code holding the service can set it);
//! tests move the service through time with it (CVV2 windows, expiries)
//! instead of waiting.

use std::sync::atomic::{AtomicI64, Ordering};

use cardcore_domain::Timestamp;
use chrono::SubsecRound;

/// The system clock, shifted by a settable offset.
#[derive(Debug, Default)]
pub struct Clock {
    offset_micros: AtomicI64,
}

impl Clock {
    /// Now, truncated to microseconds (what both databases keep).
    pub fn now(&self) -> Timestamp {
        let offset = chrono::Duration::microseconds(self.offset_micros.load(Ordering::Relaxed));
        (chrono::Utc::now() + offset).trunc_subsecs(6)
    }

    /// From now on, the clock reads `at` now and runs on from there.
    pub fn set(&self, at: Timestamp) {
        let offset = at - chrono::Utc::now();
        self.offset_micros
            .store(offset.num_microseconds().unwrap_or(0), Ordering::Relaxed);
    }

    /// Moves the clock by `by` (negative: back).
    pub fn advance(&self, by: chrono::Duration) {
        self.offset_micros
            .fetch_add(by.num_microseconds().unwrap_or(0), Ordering::Relaxed);
    }

    /// Back to the system clock.
    pub fn reset(&self) {
        self.offset_micros.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn set_and_advance_move_the_clock() {
        let clock = Clock::default();
        let at: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        clock.set(at);
        let read = clock.now();
        assert!(read >= at && read - at < chrono::Duration::seconds(5), "{read}");
        clock.advance(chrono::Duration::hours(72));
        assert!(clock.now() - at >= chrono::Duration::hours(72));
        clock.reset();
        assert!((clock.now() - chrono::Utc::now()).num_seconds().abs() < 5);
    }
}
