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

impl WeakPin {
    /// Every rule.
    pub const ALL: [WeakPin; 5] = [
        Self::Repeated,
        Self::Sequential,
        Self::BirthDate,
        Self::Common,
        Self::SameAsCurrent,
    ];

    /// The rule's name in tenant settings (`--pin-rules`).
    pub fn setting_name(self) -> &'static str {
        match self {
            Self::Repeated => "repeated",
            Self::Sequential => "sequential",
            Self::BirthDate => "birth_date",
            Self::SameAsCurrent => "same_as_current",
            Self::Common => "common",
        }
    }

    /// A rule by its setting name (the API's `rule` name is accepted too).
    pub fn parse_setting(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.setting_name() == s || w.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// Which weak-PIN rules a tenant applies (all by default; `none` is allowed:
/// the vendors cardcore stands in for document no PIN policy).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PinRules(u8);

impl PinRules {
    /// Every rule.
    pub const ALL: Self = Self(0b1_1111);
    /// No rule.
    pub const NONE: Self = Self(0);

    /// True when the rule applies.
    pub fn contains(self, rule: WeakPin) -> bool {
        self.0 & rule.bit() != 0
    }

    /// These rules with `rule` on.
    pub fn with(self, rule: WeakPin) -> Self {
        Self(self.0 | rule.bit())
    }

    /// The rules on, in [`WeakPin::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = WeakPin> {
        WeakPin::ALL.into_iter().filter(move |w| self.contains(*w))
    }

    /// Parses `none`, `all` or a comma-separated list of rule names
    /// (`repeated,sequential,birth_date,common,same_as_current`).
    pub fn parse(list: &str) -> Result<Self, String> {
        match list.trim() {
            "none" => return Ok(Self::NONE),
            "all" => return Ok(Self::ALL),
            "" => return Err("give a comma-separated list of rules, `all` or `none`".into()),
            _ => {}
        }
        let mut rules = Self::NONE;
        for name in list.split(',').map(str::trim) {
            let rule = WeakPin::parse_setting(name).ok_or_else(|| {
                format!(
                    "unknown rule {name:?}; the rules are {} (or `all`, or `none`)",
                    WeakPin::ALL.map(WeakPin::setting_name).join(", ")
                )
            })?;
            rules = rules.with(rule);
        }
        Ok(rules)
    }
}

impl Default for PinRules {
    fn default() -> Self {
        Self::ALL
    }
}

impl fmt::Display for PinRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::NONE {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.iter().map(WeakPin::setting_name).collect();
        f.write_str(&names.join(","))
    }
}

impl fmt::Debug for PinRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PinRules({self})")
    }
}

impl serde::Serialize for PinRules {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(WeakPin::setting_name))
    }
}

impl<'de> serde::Deserialize<'de> for PinRules {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names.iter().try_fold(Self::NONE, |rules, name| {
            WeakPin::parse_setting(name)
                .map(|w| rules.with(w))
                .ok_or_else(|| serde::de::Error::custom(format!("unknown PIN rule {name:?}")))
        })
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

    /// Checks a new PIN's length and every weak-PIN rule. `same_as_current`
    /// is computed by the caller.
    pub fn check(
        &self,
        pin: &Pin,
        date_of_birth: Option<chrono::NaiveDate>,
        same_as_current: bool,
    ) -> Result<(), RuleViolation> {
        self.check_with(PinRules::ALL, pin, date_of_birth, same_as_current)
    }

    /// Checks a new PIN's length and the weak-PIN rules in `rules` (the
    /// tenant's).
    pub fn check_with(
        &self,
        rules: PinRules,
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
        weakness_under(rules, pin, date_of_birth, same_as_current).map_or(Ok(()), |w| Err(RuleViolation::PinTooWeak(w)))
    }
}

/// The first weak-PIN rule `pin` breaks, if any.
pub fn weakness(pin: &Pin, date_of_birth: Option<chrono::NaiveDate>, same_as_current: bool) -> Option<WeakPin> {
    weakness_under(PinRules::ALL, pin, date_of_birth, same_as_current)
}

/// The first rule of `rules` that `pin` breaks, if any.
pub fn weakness_under(
    rules: PinRules,
    pin: &Pin,
    date_of_birth: Option<chrono::NaiveDate>,
    same_as_current: bool,
) -> Option<WeakPin> {
    let broken = all_weaknesses(pin, date_of_birth, same_as_current);
    broken.into_iter().find(|w| rules.contains(*w))
}

/// Every weak-PIN rule `pin` breaks, in the order they are reported.
fn all_weaknesses(pin: &Pin, date_of_birth: Option<chrono::NaiveDate>, same_as_current: bool) -> Vec<WeakPin> {
    let mut broken = Vec::new();
    let digits: Vec<u8> = pin.digit_values().collect();
    if digits.windows(2).all(|w| w[0] == w[1]) {
        broken.push(WeakPin::Repeated);
    }
    if digits.windows(2).all(|w| w[1] == w[0] + 1) || digits.windows(2).all(|w| w[0] == w[1] + 1) {
        broken.push(WeakPin::Sequential);
    }
    if let Some(dob) = date_of_birth {
        if birth_date_forms(dob)
            .iter()
            .any(|form| form.as_bytes() == pin.expose_bytes())
        {
            broken.push(WeakPin::BirthDate);
        }
    }
    if same_as_current {
        broken.push(WeakPin::SameAsCurrent);
    }
    if COMMON.iter().any(|c| c.as_bytes() == pin.expose_bytes()) {
        broken.push(WeakPin::Common);
    }
    broken
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

    #[test]
    fn pin_rules_parse_print_and_serialize_by_name() {
        assert_eq!(PinRules::parse("none"), Ok(PinRules::NONE));
        assert_eq!(PinRules::parse("all"), Ok(PinRules::ALL));
        let two = PinRules::parse("sequential, common").unwrap();
        assert!(two.contains(WeakPin::Sequential) && two.contains(WeakPin::Common));
        assert!(!two.contains(WeakPin::Repeated));
        assert_eq!(two.to_string(), "sequential,common");
        assert_eq!(
            PinRules::parse("repeated,sequential,birth_date,common,same_as_current"),
            Ok(PinRules::ALL)
        );
        assert_eq!(
            PinRules::ALL.to_string(),
            "repeated,sequential,birth_date,common,same_as_current"
        );
        let err = PinRules::parse("repeated,birthday").unwrap_err();
        assert!(err.contains("\"birthday\"") && err.contains("birth_date"), "{err}");
        assert!(PinRules::parse("").is_err());
        let json = serde_json::to_value(two).unwrap();
        assert_eq!(json, serde_json::json!(["sequential", "common"]));
        assert_eq!(serde_json::from_value::<PinRules>(json).unwrap(), two);
        assert!(serde_json::from_value::<PinRules>(serde_json::json!(["nope"])).is_err());
    }

    #[test]
    fn only_the_tenants_rules_refuse() {
        let policy = PinPolicy::default();
        // The seeds' PINs: refused by default, each by its rule.
        assert_eq!(
            policy.check(&pin("1234"), None, false),
            Err(RuleViolation::PinTooWeak(WeakPin::Sequential))
        );
        assert_eq!(policy.check_with(PinRules::NONE, &pin("1234"), None, false), Ok(()));
        let no_runs = PinRules::parse("repeated,birth_date,common,same_as_current").unwrap();
        assert_eq!(policy.check_with(no_runs, &pin("1234"), None, false), Ok(()));
        assert_eq!(
            policy.check_with(no_runs, &pin("1111"), None, false),
            Err(RuleViolation::PinTooWeak(WeakPin::Repeated))
        );
        // A rule that is off refuses nothing; one that is on still does.
        let only_common = PinRules::parse("common").unwrap();
        assert_eq!(
            policy.check_with(only_common, &pin("1212"), None, false),
            Err(RuleViolation::PinTooWeak(WeakPin::Common))
        );
        assert_eq!(policy.check_with(only_common, &pin("0000"), None, false), Ok(()));
        // Same as current and a birth date: the first rule on is named.
        let birth_and_same = PinRules::parse("same_as_current,birth_date").unwrap();
        assert_eq!(
            policy.check_with(birth_and_same, &pin("2507"), dob(), true),
            Err(RuleViolation::PinTooWeak(WeakPin::BirthDate))
        );
        assert_eq!(
            policy.check_with(PinRules::parse("same_as_current").unwrap(), &pin("2507"), dob(), true),
            Err(RuleViolation::PinTooWeak(WeakPin::SameAsCurrent))
        );
        assert_eq!(policy.check_with(only_common, &pin("4821"), dob(), true), Ok(()));
        // Length is the program's, whatever the rules.
        assert_eq!(
            policy.check_with(PinRules::NONE, &pin("48219"), None, false),
            Err(RuleViolation::PinLength { min: 4, max: 4 })
        );
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
