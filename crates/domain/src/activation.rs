//! Activation-code attempts, counted like OTPs: a physical card's 6-digit
//! activation code has 10^6 values, so without a counter it is guessed. 3
//! consecutive wrong codes lock activation of the card for 10 minutes
//! (configurable); during the lock every attempt is refused, the right code
//! included, and nothing is counted. The lock ends the run of failures, so
//! after it the card has 3 attempts again. The state lives in the database,
//! so the lock holds across nodes and restarts; these functions only decide.

use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::error::RuleViolation;
use crate::Timestamp;

/// The activation rules' numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivationPolicy {
    /// Consecutive wrong codes that lock activation.
    pub max_failures: u32,
    /// How long the lock lasts.
    pub lock_for: Duration,
}

impl Default for ActivationPolicy {
    fn default() -> Self {
        Self {
            max_failures: 3,
            lock_for: Duration::minutes(10),
        }
    }
}

/// The activation attempts of one card.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationState {
    /// Consecutive wrong codes since the last lock.
    pub failures: u32,
    /// Activation is locked until then.
    pub locked_until: Option<Timestamp>,
}

/// What an attempt decided besides its answer, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The right code: activate.
    Accepted,
    /// A wrong code, counted.
    Failed,
    /// A wrong code, counted, and it set the lock.
    FailedAndLocked,
    /// Refused during a lock: nothing counted, nothing changed.
    Refused,
}

fn seconds_until(later: Timestamp, now: Timestamp) -> u64 {
    // Round up, so a client that waits exactly this long is past the lock.
    let ms = (later - now).num_milliseconds().max(0) as u64;
    ms.div_ceil(1000).max(1)
}

impl ActivationState {
    /// The lock, if one is running at `now`.
    pub fn check_lock(&self, now: Timestamp) -> Result<(), RuleViolation> {
        match self.locked_until {
            Some(until) if until > now => Err(RuleViolation::ActivationLocked {
                retry_after_seconds: seconds_until(until, now),
            }),
            _ => Ok(()),
        }
    }

    /// Decides one attempt; `right` tells whether the code matched. On
    /// `Failed` and `FailedAndLocked` the state changed and must be saved
    /// (with the refusal answered after it is saved).
    pub fn attempt(
        &mut self,
        policy: &ActivationPolicy,
        now: Timestamp,
        right: bool,
    ) -> (Attempt, Result<(), RuleViolation>) {
        if let Err(locked) = self.check_lock(now) {
            return (Attempt::Refused, Err(locked));
        }
        if right {
            return (Attempt::Accepted, Ok(()));
        }
        self.failures += 1;
        if self.failures >= policy.max_failures {
            self.failures = 0;
            self.locked_until = Some(now + policy.lock_for);
            (Attempt::FailedAndLocked, self.check_lock(now))
        } else {
            (
                Attempt::Failed,
                Err(RuleViolation::ActivationCodeInvalid {
                    remaining_attempts: policy.max_failures - self.failures,
                }),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn t0() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn third_wrong_code_locks_and_the_right_one_is_refused_until_the_lock_ends() {
        let p = ActivationPolicy::default();
        let mut s = ActivationState::default();
        assert_eq!(
            s.attempt(&p, t0(), false),
            (
                Attempt::Failed,
                Err(RuleViolation::ActivationCodeInvalid { remaining_attempts: 2 })
            )
        );
        assert_eq!(
            s.attempt(&p, t0(), false),
            (
                Attempt::Failed,
                Err(RuleViolation::ActivationCodeInvalid { remaining_attempts: 1 })
            )
        );
        assert_eq!(
            s.attempt(&p, t0(), false),
            (
                Attempt::FailedAndLocked,
                Err(RuleViolation::ActivationLocked {
                    retry_after_seconds: 600
                })
            )
        );
        let later = t0() + Duration::seconds(30);
        let before = s;
        assert_eq!(
            s.attempt(&p, later, true),
            (
                Attempt::Refused,
                Err(RuleViolation::ActivationLocked {
                    retry_after_seconds: 570
                })
            )
        );
        assert_eq!(s, before, "a refusal during the lock changes nothing");
        let after = t0() + Duration::minutes(10);
        assert_eq!(s.attempt(&p, after, true), (Attempt::Accepted, Ok(())));
    }

    #[test]
    fn after_a_lock_the_card_has_the_full_count_again() {
        let p = ActivationPolicy::default();
        let mut s = ActivationState::default();
        for _ in 0..3 {
            let _ = s.attempt(&p, t0(), false);
        }
        let after = t0() + Duration::minutes(10);
        assert_eq!(
            s.attempt(&p, after, false).1,
            Err(RuleViolation::ActivationCodeInvalid { remaining_attempts: 2 })
        );
    }

    #[test]
    fn a_lock_of_a_fraction_of_a_second_answers_one_second() {
        let p = ActivationPolicy {
            max_failures: 1,
            lock_for: Duration::milliseconds(200),
        };
        let mut s = ActivationState::default();
        assert_eq!(
            s.attempt(&p, t0(), false).1,
            Err(RuleViolation::ActivationLocked { retry_after_seconds: 1 })
        );
    }

    proptest! {
        /// However attempts are ordered and spaced, no window of one lock
        /// period sees more than `max_failures` wrong codes counted, and a
        /// right code is accepted only when no lock is running.
        #[test]
        fn no_order_of_attempts_counts_more_than_max_failures_per_lock(
            attempts in proptest::collection::vec((any::<bool>(), 0i64..400), 1..200),
            max_failures in 1u32..6,
        ) {
            let p = ActivationPolicy { max_failures, lock_for: Duration::seconds(600) };
            let mut s = ActivationState::default();
            let mut now = t0();
            let mut counted: Vec<Timestamp> = Vec::new();
            for (right, gap) in attempts {
                now += Duration::seconds(gap);
                let locked = s.check_lock(now).is_err();
                let (what, answer) = s.attempt(&p, now, right);
                match what {
                    Attempt::Accepted => prop_assert!(!locked && right && answer.is_ok()),
                    Attempt::Refused => prop_assert!(locked && answer.is_err()),
                    Attempt::Failed | Attempt::FailedAndLocked => {
                        prop_assert!(!locked && !right && answer.is_err());
                        counted.push(now);
                    }
                }
                // Between two locks at most max_failures wrong codes count:
                // in any run of max_failures + 1 counted failures, the first
                // and the last are a lock period apart.
                if counted.len() > max_failures as usize {
                    let first = counted[counted.len() - 1 - max_failures as usize];
                    prop_assert!(now - first >= p.lock_for);
                }
            }
        }
    }
}
