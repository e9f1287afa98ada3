//! OTP rules (NIST SP 800-63B out-of-band secrets, with card issuers'
//! stricter lockout): codes valid 5 minutes (up to 10), single use, bound to
//! card and purpose; at most 5 per card and purpose per 15 minutes; 3
//! consecutive wrong codes lock the operation for 10 minutes. A correct code
//! resets the count. The state lives in the database, so the lock holds
//! across nodes and restarts; these functions only decide.

use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::error::RuleViolation;
use crate::Timestamp;

/// What an OTP authorises. A code made for one purpose is useless for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OtpPurpose {
    /// Changing or (re)setting the PIN with the cardholder's consent (native
    /// `pin/change`, M2P `cards/update/pin` and `cards/v2/set-pin`).
    PinChange,
    /// A 3-D Secure challenge: the code the cardholder types on the
    /// merchant's page (P100's Card 3DS Code webhook).
    ThreeDs,
}

impl OtpPurpose {
    /// Every purpose.
    pub const ALL: [OtpPurpose; 2] = [Self::PinChange, Self::ThreeDs];

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PinChange => "pin_change",
            Self::ThreeDs => "three_ds",
        }
    }

    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The OTP rules' numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtpPolicy {
    /// How long a code is valid (at most 10 minutes).
    pub ttl: Duration,
    /// Consecutive wrong codes that lock the operation.
    pub max_failures: u32,
    /// How long the lock lasts.
    pub lock_for: Duration,
    /// Codes allowed per card and purpose within `issue_window`.
    pub max_issued: usize,
    /// The window for `max_issued`.
    pub issue_window: Duration,
}

impl Default for OtpPolicy {
    fn default() -> Self {
        Self {
            ttl: Duration::minutes(5),
            max_failures: 3,
            lock_for: Duration::minutes(10),
            max_issued: 5,
            issue_window: Duration::minutes(15),
        }
    }
}

/// One code issued: only its keyed verification value is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedOtp {
    pub trace_number: String,
    /// HMAC of (card, purpose, trace number, code) under the OTP key.
    #[serde(with = "hex_bytes")]
    pub verifier: Vec<u8>,
    pub key_version: i32,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used: bool,
}

/// The OTP state of one card and purpose.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtpState {
    /// Consecutive wrong codes since the last right one or the last lock.
    pub failures: u32,
    /// The operation is locked until then.
    pub locked_until: Option<Timestamp>,
    /// Codes issued within the rate-limit window (older ones are pruned).
    pub codes: Vec<IssuedOtp>,
}

fn seconds_until(later: Timestamp, now: Timestamp) -> u64 {
    // Round up, so a client that waits exactly this long is past the window.
    let ms = (later - now).num_milliseconds().max(0) as u64;
    ms.div_ceil(1000).max(1)
}

impl OtpState {
    /// The lock, if one is running at `now`.
    pub fn check_lock(&self, now: Timestamp) -> Result<(), RuleViolation> {
        match self.locked_until {
            Some(until) if until > now => Err(RuleViolation::OtpLocked {
                retry_after_seconds: seconds_until(until, now),
            }),
            _ => Ok(()),
        }
    }

    /// Records a new code, if the lock and the rate limit allow one.
    pub fn issue(&mut self, policy: &OtpPolicy, now: Timestamp, code: IssuedOtp) -> Result<(), RuleViolation> {
        self.check_lock(now)?;
        self.codes.retain(|c| c.created_at > now - policy.issue_window);
        if self.codes.len() >= policy.max_issued {
            let oldest = self.codes.iter().map(|c| c.created_at).min().unwrap_or(now);
            return Err(RuleViolation::OtpRateLimited {
                retry_after_seconds: seconds_until(oldest + policy.issue_window, now),
            });
        }
        self.codes.push(code);
        Ok(())
    }

    /// Checks a code. `matches` tells whether an issued code's verifier is
    /// the one of the code given (the caller holds the key). On `Err`, the
    /// state may still have changed (a failure counted, a lock set) and must
    /// be saved.
    pub fn redeem(
        &mut self,
        policy: &OtpPolicy,
        now: Timestamp,
        trace_number: &str,
        matches: impl Fn(&IssuedOtp) -> bool,
    ) -> Result<(), RuleViolation> {
        self.attempt(policy, now, trace_number, matches, true)
    }

    /// Checks a code without spending it (M2P's `validate-otp`: the app
    /// checks the code the cardholder typed, then uses it for the PIN
    /// change). A wrong code counts exactly as in [`Self::redeem`], so the
    /// two together never allow more guesses than the lock does.
    pub fn validate(
        &mut self,
        policy: &OtpPolicy,
        now: Timestamp,
        trace_number: &str,
        matches: impl Fn(&IssuedOtp) -> bool,
    ) -> Result<(), RuleViolation> {
        self.attempt(policy, now, trace_number, matches, false)
    }

    fn attempt(
        &mut self,
        policy: &OtpPolicy,
        now: Timestamp,
        trace_number: &str,
        matches: impl Fn(&IssuedOtp) -> bool,
        spend: bool,
    ) -> Result<(), RuleViolation> {
        self.check_lock(now)?;
        let found = self
            .codes
            .iter_mut()
            .find(|c| c.trace_number == trace_number && !c.used);
        match found {
            Some(code) if matches(code) => {
                if code.expires_at <= now {
                    // A right but late code: refused, but no guess was wrong.
                    return Err(RuleViolation::OtpExpired);
                }
                code.used = spend;
                self.failures = 0;
                Ok(())
            }
            _ => {
                // Wrong code, unknown trace number or a used code: all count,
                // so that guessing is bounded whatever the caller sends.
                self.failures += 1;
                if self.failures >= policy.max_failures {
                    self.failures = 0;
                    self.locked_until = Some(now + policy.lock_for);
                    self.check_lock(now)
                } else {
                    Err(RuleViolation::OtpInvalid {
                        remaining_attempts: policy.max_failures - self.failures,
                    })
                }
            }
        }
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        (0..s.len())
            .step_by(2)
            .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| serde::de::Error::custom("expected hex"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
    }

    fn code(trace: &str, secret: u8, at: Timestamp) -> IssuedOtp {
        IssuedOtp {
            trace_number: trace.into(),
            verifier: vec![secret],
            key_version: 1,
            created_at: at,
            expires_at: at + Duration::minutes(5),
            used: false,
        }
    }

    fn is(secret: u8) -> impl Fn(&IssuedOtp) -> bool {
        move |c: &IssuedOtp| c.verifier == [secret]
    }

    #[test]
    fn right_code_once_only() {
        let p = OtpPolicy::default();
        let mut s = OtpState::default();
        s.issue(&p, t0(), code("t1", 7, t0())).unwrap();
        assert_eq!(s.redeem(&p, t0(), "t1", is(7)), Ok(()));
        assert_eq!(
            s.redeem(&p, t0(), "t1", is(7)),
            Err(RuleViolation::OtpInvalid { remaining_attempts: 2 })
        );
    }

    #[test]
    fn validate_leaves_the_code_for_redeem_and_counts_wrong_codes_alike() {
        let p = OtpPolicy::default();
        let mut s = OtpState::default();
        s.issue(&p, t0(), code("t1", 7, t0())).unwrap();
        assert_eq!(
            s.validate(&p, t0(), "t1", is(1)),
            Err(RuleViolation::OtpInvalid { remaining_attempts: 2 })
        );
        assert_eq!(s.validate(&p, t0(), "t1", is(7)), Ok(()));
        assert_eq!(s.failures, 0);
        assert_eq!(s.validate(&p, t0(), "t1", is(7)), Ok(()));
        assert_eq!(s.redeem(&p, t0(), "t1", is(7)), Ok(()));
        // Spent by redeem: validate no longer accepts it, and that counts.
        assert_eq!(
            s.validate(&p, t0(), "t1", is(7)),
            Err(RuleViolation::OtpInvalid { remaining_attempts: 2 })
        );
        // Wrong validations and wrong redemptions share one lock.
        assert!(s.redeem(&p, t0(), "t1", is(1)).is_err());
        assert_eq!(
            s.validate(&p, t0(), "t1", is(1)),
            Err(RuleViolation::OtpLocked {
                retry_after_seconds: 600
            })
        );
    }

    #[test]
    fn expired_code_is_refused_without_counting() {
        let p = OtpPolicy::default();
        let mut s = OtpState::default();
        s.issue(&p, t0(), code("t1", 7, t0())).unwrap();
        let late = t0() + Duration::minutes(5);
        assert_eq!(s.redeem(&p, late, "t1", is(7)), Err(RuleViolation::OtpExpired));
        assert_eq!(s.failures, 0);
    }

    #[test]
    fn third_wrong_code_locks_for_ten_minutes_and_right_code_resets() {
        let p = OtpPolicy::default();
        let mut s = OtpState::default();
        s.issue(&p, t0(), code("t1", 7, t0())).unwrap();
        assert_eq!(
            s.redeem(&p, t0(), "t1", is(1)),
            Err(RuleViolation::OtpInvalid { remaining_attempts: 2 })
        );
        assert_eq!(s.redeem(&p, t0(), "t1", is(7)), Ok(()));
        assert_eq!(s.failures, 0);
        s.issue(&p, t0(), code("t2", 8, t0())).unwrap();
        assert_eq!(
            s.redeem(&p, t0(), "t2", is(1)),
            Err(RuleViolation::OtpInvalid { remaining_attempts: 2 })
        );
        assert_eq!(
            s.redeem(&p, t0(), "t2", is(1)),
            Err(RuleViolation::OtpInvalid { remaining_attempts: 1 })
        );
        assert_eq!(
            s.redeem(&p, t0(), "t2", is(1)),
            Err(RuleViolation::OtpLocked {
                retry_after_seconds: 600
            })
        );
        // Every call in the window is locked, right code or not.
        let later = t0() + Duration::seconds(30);
        assert_eq!(
            s.redeem(&p, later, "t2", is(8)),
            Err(RuleViolation::OtpLocked {
                retry_after_seconds: 570
            })
        );
        assert!(s.issue(&p, later, code("t3", 9, later)).is_err());
        // After ten minutes the operation is open again.
        let after = t0() + Duration::minutes(10);
        assert_eq!(s.redeem(&p, after, "t2", is(8)), Err(RuleViolation::OtpExpired));
        s.issue(&p, after, code("t4", 9, after)).unwrap();
        assert_eq!(s.redeem(&p, after, "t4", is(9)), Ok(()));
    }

    #[test]
    fn at_most_five_codes_per_fifteen_minutes() {
        let p = OtpPolicy::default();
        let mut s = OtpState::default();
        for i in 0..5 {
            let at = t0() + Duration::minutes(i);
            s.issue(&p, at, code(&format!("t{i}"), 1, at)).unwrap();
        }
        let at = t0() + Duration::minutes(5);
        assert_eq!(
            s.issue(&p, at, code("t5", 1, at)),
            Err(RuleViolation::OtpRateLimited {
                retry_after_seconds: 600
            })
        );
        let at = t0() + Duration::minutes(15) + Duration::seconds(1);
        assert!(s.issue(&p, at, code("t6", 1, at)).is_ok());
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut s = OtpState::default();
        s.issue(&OtpPolicy::default(), t0(), code("t1", 0xab, t0())).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"ab\""));
        assert_eq!(serde_json::from_str::<OtpState>(&json).unwrap(), s);
    }
}
