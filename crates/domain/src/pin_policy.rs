//! PIN policy: length and the weak-PIN rules. Pure: the caller says whether
//! the PIN equals the current one (it alone can compute that, with the key).

use std::fmt;

use cardcore_crypto::Pin;
use chrono::Datelike;

use crate::error::RuleViolation;

/// Which weak-PIN rule a PIN breaks; the API's `detail` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeakPin {
    /// One digit repeated (`1111`).
    Repeated,
    /// A run up or down (`1234`, `9876`).
    Sequential,
    /// The cardholder's birth date (DDMM, MMDD, YYYY and longer forms).
    BirthDate,
    /// The same as the current PIN.
    SameAsCurrent,
    /// One of the most common PINs.
    Common,
}

impl WeakPin {
    /// A stable name for the rule.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Repeated => "repeated_digits",
            Self::Sequential => "sequential_digits",
            Self::BirthDate => "birth_date",
            Self::SameAsCurrent => "same_as_current",
            Self::Common => "common_pin",
        }
    }
}

impl fmt::Display for WeakPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Repeated => "the same digit repeated",
            Self::Sequential => "a run of consecutive digits, up or down",
            Self::BirthDate => "the cardholder's date of birth",
            Self::SameAsCurrent => "the same as the current PIN",
            Self::Common => "one of the most commonly used PINs",
        })
    }
}

/// The most common PINs (DataGenetics' analysis of 3.4 million leaked PINs,
/// and the 6-digit equivalents). Repeated and sequential ones are caught by
/// their own rules.
const COMMON: &[&str] = &[
    "1212", "1004", "2000", "6969", "1122", "1313", "2001", "1010", "2580", "0852", "1998", "1999", "2002", "2020",
    "2468", "1357", "5683", "7410", "1230", "0007", "0070", "1984", "1986", "1990", "1225", "1231", "4200", "121212",
    "112233", "123123", "159753", "131313", "696969", "147258", "520520", "123321", "102030",
];

/// A program's PIN rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinPolicy {
    /// Shortest PIN (4..=12).
    pub min_len: usize,
    /// Longest PIN (min_len..=12).
    pub max_len: usize,
}

impl Default for PinPolicy {
    fn default() -> Self {
        Self { min_len: 4, max_len: 4 }
    }
}

impl PinPolicy {
    /// A policy, if the bounds are within 4..=12 and ordered.
    pub fn new(min_len: usize, max_len: usize) -> Option<Self> {
        (4 <= min_len && min_len <= max_len && max_len <= 12).then_some(Self { min_len, max_len })
    }

    /// Checks a new PIN. `same_as_current` is computed by the caller.
    pub fn check(
        &self,
        pin: &Pin,
        date_of_birth: Option<chrono::NaiveDate>,
        same_as_current: bool,
    ) -> Result<(), RuleViolation> {
        if pin.len() < self.min_len || pin.len() > self.max_len {
            return Err(RuleViolation::PinLength {
                min: self.min_len,
                max: self.max_len,
            });
        }
        weakness(pin, date_of_birth, same_as_current).map_or(Ok(()), |w| Err(RuleViolation::PinTooWeak(w)))
    }
}

/// The first weak-PIN rule `pin` breaks, if any.
pub fn weakness(pin: &Pin, date_of_birth: Option<chrono::NaiveDate>, same_as_current: bool) -> Option<WeakPin> {
    let digits: Vec<u8> = pin.digit_values().collect();
    if digits.windows(2).all(|w| w[0] == w[1]) {
        return Some(WeakPin::Repeated);
    }
    if digits.windows(2).all(|w| w[1] == w[0] + 1) || digits.windows(2).all(|w| w[0] == w[1] + 1) {
        return Some(WeakPin::Sequential);
    }
    if let Some(dob) = date_of_birth {
        if birth_date_forms(dob)
            .iter()
            .any(|form| form.as_bytes() == pin.expose_bytes())
        {
            return Some(WeakPin::BirthDate);
        }
    }
    if same_as_current {
        return Some(WeakPin::SameAsCurrent);
    }
    if COMMON.iter().any(|c| c.as_bytes() == pin.expose_bytes()) {
        return Some(WeakPin::Common);
    }
    None
}

fn birth_date_forms(dob: chrono::NaiveDate) -> Vec<String> {
    let (d, m, y) = (dob.day(), dob.month(), dob.year());
    let yy = y % 100;
    vec![
        format!("{d:02}{m:02}"),
        format!("{m:02}{d:02}"),
        format!("{y:04}"),
        format!("{d:02}{m:02}{yy:02}"),
        format!("{m:02}{d:02}{yy:02}"),
        format!("{yy:02}{m:02}{d:02}"),
        format!("{d:02}{m:02}{y:04}"),
        format!("{m:02}{d:02}{y:04}"),
        format!("{y:04}{m:02}{d:02}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pin(s: &str) -> Pin {
        Pin::parse(s).unwrap()
    }

    fn dob() -> Option<chrono::NaiveDate> {
        chrono::NaiveDate::from_ymd_opt(1987, 7, 25)
    }

    #[test]
    fn the_documented_weak_pins_are_refused_with_their_rule() {
        for (p, rule) in [
            ("1111", WeakPin::Repeated),
            ("0000", WeakPin::Repeated),
            ("1234", WeakPin::Sequential),
            ("9876", WeakPin::Sequential),
            ("2507", WeakPin::BirthDate),
            ("0725", WeakPin::BirthDate),
            ("1987", WeakPin::BirthDate),
            ("1212", WeakPin::Common),
            ("6969", WeakPin::Common),
            ("1004", WeakPin::Common),
            ("2000", WeakPin::Common),
        ] {
            assert_eq!(weakness(&pin(p), dob(), false), Some(rule), "{p}");
        }
        assert_eq!(weakness(&pin("4821"), dob(), true), Some(WeakPin::SameAsCurrent));
    }

    #[test]
    fn ordinary_pins_pass() {
        for p in ["4821", "2143", "4545", "0570", "7391"] {
            assert_eq!(weakness(&pin(p), dob(), false), None, "{p}");
        }
        // A birth date only counts for the cardholder who has it.
        assert_eq!(weakness(&pin("2507"), None, false), None);
    }

    #[test]
    fn length_is_the_programs() {
        let four = PinPolicy::default();
        assert_eq!(
            four.check(&pin("482193"), None, false),
            Err(RuleViolation::PinLength { min: 4, max: 4 })
        );
        let six = PinPolicy::new(4, 6).unwrap();
        assert_eq!(six.check(&pin("482193"), None, false), Ok(()));
        assert!(PinPolicy::new(3, 4).is_none());
        assert!(PinPolicy::new(6, 4).is_none());
        assert!(PinPolicy::new(4, 13).is_none());
    }

    proptest! {
        #[test]
        fn repeated_and_runs_are_always_refused(d in 0u8..10, len in 4usize..=12, start in 0u8..10, up in any::<bool>()) {
            let rep: Vec<u8> = vec![d; len];
            prop_assert_eq!(weakness(&Pin::from_digit_values(&rep).unwrap(), None, false), Some(WeakPin::Repeated));
            let run: Vec<u8> = (0..len as u8).map(|i| if up { start.wrapping_add(i) } else { start.wrapping_sub(i) }).collect();
            if run.iter().all(|v| *v <= 9) {
                prop_assert_eq!(weakness(&Pin::from_digit_values(&run).unwrap(), None, false), Some(WeakPin::Sequential));
            }
        }
    }
}
