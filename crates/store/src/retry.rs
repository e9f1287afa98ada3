//! How a unit of work the database aborted (a [`crate::StoreError::Retryable`]:
//! serialization failure 40001 or deadlock 40P01) runs again: a bounded
//! number of attempts within a bounded time, each after a jittered,
//! exponentially growing wait ("full jitter": uniform in `[0, min(cap, base·2^n)]`),
//! so that writers that collided do not collide again in step. The waiting
//! itself is the caller's (this crate has no runtime).

use std::time::Duration;

/// The retry bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most attempts in all (the first one included).
    pub max_attempts: u32,
    /// No new attempt starts once this much time went by since the first.
    pub max_elapsed: Duration,
    /// The first wait's upper bound.
    pub base: Duration,
    /// The largest upper bound of one wait.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 25,
            max_elapsed: Duration::from_secs(5),
            base: Duration::from_millis(2),
            cap: Duration::from_millis(100),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (`attempt` ≥ 1 attempts failed),
    /// or `None` when the bounds say stop. `random` is uniform in `[0, 1)`.
    pub fn next_wait(&self, attempt: u32, elapsed: Duration, random: f64) -> Option<Duration> {
        if attempt >= self.max_attempts || elapsed >= self.max_elapsed {
            return None;
        }
        let exp = self.base.saturating_mul(1u32 << attempt.min(16));
        let upper = exp.min(self.cap);
        let wait = upper.mul_f64(random.clamp(0.0, 1.0));
        // Never sleep past the time bound.
        Some(wait.min(self.max_elapsed.saturating_sub(elapsed)))
    }
}

/// A uniform random number in `[0, 1)` for jitter (from a v4 UUID's random
/// bits: not for secrets, just to spread retries).
pub fn jitter() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64 >> 11;
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_stay_under_the_cap_and_stop_at_the_bounds() {
        let p = RetryPolicy::default();
        assert!(p.next_wait(1, Duration::ZERO, 1.0).unwrap() <= Duration::from_millis(4));
        assert!(p.next_wait(9, Duration::ZERO, 1.0).unwrap() <= p.cap);
        assert_eq!(p.next_wait(3, Duration::ZERO, 0.0), Some(Duration::ZERO));
        assert_eq!(p.next_wait(p.max_attempts, Duration::ZERO, 0.5), None);
        assert_eq!(p.next_wait(1, p.max_elapsed, 0.5), None);
        assert!(p.next_wait(5, p.max_elapsed - Duration::from_millis(1), 1.0).unwrap() <= Duration::from_millis(1));
        for _ in 0..1000 {
            let r = jitter();
            assert!((0.0..1.0).contains(&r));
        }
    }
}
