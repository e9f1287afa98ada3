//! The PIN try counter: a card's PIN state (none, set, blocked) and the
//! consecutive wrong PINs decided since the last reset. 3 wrong ones
//! (configurable) block the PIN; a right one, a new PIN and a back-office
//! unblock reset the count. The state lives in the card row; the service
//! decides one card's verifications one after another against the committed
//! state (card order), and these functions only decide.

use crate::card::PinStatus;
use crate::error::RuleViolation;

/// A card's PIN state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinTries {
    /// Whether a PIN is set, and whether wrong tries blocked it.
    pub status: PinStatus,
    /// Consecutive wrong PINs since the last right one, new PIN or unblock.
    pub failures: u32,
}

/// What one verification decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinDecision {
    /// The PIN is right. `reset`: wrong tries were counted before and are
    /// now cleared, so the state changed and must be saved.
    Right { reset: bool },
    /// The PIN is wrong and counted; `remaining_attempts` 0 means this try
    /// blocked the PIN.
    Wrong { remaining_attempts: u32 },
}

impl PinDecision {
    /// Whether the state changed (and must be saved before answering).
    pub fn changed(self) -> bool {
        match self {
            Self::Right { reset } => reset,
            Self::Wrong { .. } => true,
        }
    }

    /// Whether this decision blocked the PIN.
    pub fn blocked(self) -> bool {
        matches!(self, Self::Wrong { remaining_attempts: 0 })
    }
}

impl PinTries {
    /// A card without a PIN.
    pub const NOT_SET: Self = Self {
        status: PinStatus::NotSet,
        failures: 0,
    };

    /// The state as stored.
    pub fn new(status: PinStatus, failures: u32) -> Self {
        Self { status, failures }
    }

    /// Whether a PIN may be verified at all: `pin_blocked` or `pin_not_set`
    /// otherwise, decided without looking at the PIN.
    pub fn check_verifiable(&self) -> Result<(), RuleViolation> {
        match self.status {
            PinStatus::Set => Ok(()),
            PinStatus::Blocked => Err(RuleViolation::PinBlocked),
            PinStatus::NotSet => Err(RuleViolation::PinNotSet),
        }
    }

    /// Decides one verification; `right` says whether the PIN given is the
    /// card's (the caller computes it, with the key, only after
    /// [`Self::check_verifiable`]). A right PIN is accepted only while fewer
    /// than `max_failures` wrong ones were decided before it; the wrong one
    /// that reaches `max_failures` blocks the PIN.
    pub fn verify(&mut self, max_failures: u32, right: bool) -> Result<PinDecision, RuleViolation> {
        self.check_verifiable()?;
        if self.failures >= max_failures {
            // Only when the maximum was lowered after these tries were counted.
            return Err(RuleViolation::PinBlocked);
        }
        if right {
            let reset = self.failures > 0;
            self.failures = 0;
            return Ok(PinDecision::Right { reset });
        }
        self.failures += 1;
        let remaining_attempts = max_failures - self.failures;
        if remaining_attempts == 0 {
            self.status = PinStatus::Blocked;
        }
        Ok(PinDecision::Wrong { remaining_attempts })
    }

    /// A new PIN was set or changed: set, nothing counted.
    pub fn set_new(&mut self) {
        self.status = PinStatus::Set;
        self.failures = 0;
    }

    /// Back-office unblock: the count cleared and a block lifted. `Ok(false)`
    /// when there was nothing to clear; `pin_not_set` without a PIN.
    pub fn unblock(&mut self) -> Result<bool, RuleViolation> {
        match self.status {
            PinStatus::NotSet => Err(RuleViolation::PinNotSet),
            PinStatus::Set if self.failures == 0 => Ok(false),
            PinStatus::Set | PinStatus::Blocked => {
                self.set_new();
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MAX: u32 = 3;

    fn set() -> PinTries {
        PinTries::new(PinStatus::Set, 0)
    }

    #[test]
    fn three_wrong_block_and_a_right_one_resets() {
        let mut t = set();
        assert_eq!(t.verify(MAX, false), Ok(PinDecision::Wrong { remaining_attempts: 2 }));
        assert_eq!(t.verify(MAX, true), Ok(PinDecision::Right { reset: true }));
        assert_eq!(t.verify(MAX, true), Ok(PinDecision::Right { reset: false }));
        for remaining in [2, 1, 0] {
            assert_eq!(
                t.verify(MAX, false),
                Ok(PinDecision::Wrong {
                    remaining_attempts: remaining
                })
            );
        }
        assert_eq!(t.status, PinStatus::Blocked);
        assert_eq!(t.verify(MAX, true), Err(RuleViolation::PinBlocked));
        assert_eq!(t.unblock(), Ok(true));
        assert_eq!(t, set());
        assert_eq!(t.unblock(), Ok(false));
    }

    #[test]
    fn no_pin_is_never_verified_or_unblocked() {
        let mut t = PinTries::NOT_SET;
        assert_eq!(t.verify(MAX, true), Err(RuleViolation::PinNotSet));
        assert_eq!(t.unblock(), Err(RuleViolation::PinNotSet));
        t.set_new();
        assert_eq!(t, set());
    }

    #[test]
    fn a_lowered_maximum_refuses_even_the_right_pin() {
        let mut t = PinTries::new(PinStatus::Set, 2);
        assert_eq!(t.verify(2, true), Err(RuleViolation::PinBlocked));
        assert_eq!(t.failures, 2);
    }

    /// What can happen to a card's PIN, in some order.
    #[derive(Debug, Clone, Copy)]
    enum Op {
        Verify { right: bool },
        SetNew,
        Unblock,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => any::<bool>().prop_map(|right| Op::Verify { right }),
            1 => Just(Op::SetNew),
            1 => Just(Op::Unblock),
        ]
    }

    proptest! {
        /// A burst of attempts, k right and the rest wrong, decided in any
        /// order: no more than `max` wrong PINs are decided before the
        /// block, a right PIN is accepted only while fewer than `max` wrong
        /// ones were decided before it, and after the block nothing is.
        #[test]
        fn no_order_of_a_burst_decides_more_than_max_wrong_pins(
            (max, attempts) in (1u32..6, 0usize..4, 0usize..25).prop_flat_map(|(max, right, wrong)| {
                let burst: Vec<bool> = std::iter::repeat_n(true, right)
                    .chain(std::iter::repeat_n(false, wrong))
                    .collect();
                (Just(max), Just(burst).prop_shuffle())
            }),
        ) {
            let mut t = set();
            let mut wrong_in_a_row = 0u32;
            let mut blocked = false;
            for right in attempts {
                let before = t.failures;
                match t.verify(max, right) {
                    Ok(PinDecision::Right { reset }) => {
                        prop_assert!(right && !blocked);
                        prop_assert!(before < max, "accepted after {before} wrong");
                        prop_assert_eq!(reset, before > 0);
                        wrong_in_a_row = 0;
                    }
                    Ok(PinDecision::Wrong { remaining_attempts }) => {
                        prop_assert!(!right && !blocked);
                        wrong_in_a_row += 1;
                        prop_assert!(wrong_in_a_row <= max);
                        prop_assert_eq!(remaining_attempts, max - wrong_in_a_row);
                        blocked = remaining_attempts == 0;
                    }
                    Err(e) => {
                        prop_assert_eq!(e, RuleViolation::PinBlocked);
                        prop_assert!(blocked);
                    }
                }
                prop_assert_eq!(t.failures, wrong_in_a_row);
                prop_assert_eq!(t.status == PinStatus::Blocked, blocked);
            }
        }

        /// Any history of verifications, new PINs and unblocks: a new PIN
        /// and an unblock leave a set PIN with nothing counted, the count
        /// never passes `max`, and BLOCKED is exactly "`max` counted".
        #[test]
        fn set_change_and_unblock_reset_the_count(max in 1u32..6, ops in proptest::collection::vec(op(), 0..60)) {
            let mut t = PinTries::NOT_SET;
            for op in ops {
                let before = t;
                match op {
                    Op::Verify { right } => {
                        let r = t.verify(max, right);
                        if before.status != PinStatus::Set {
                            prop_assert!(r.is_err());
                            prop_assert_eq!(t, before);
                        }
                    }
                    Op::SetNew => {
                        t.set_new();
                        prop_assert_eq!(t, set());
                    }
                    Op::Unblock => match t.unblock() {
                        Ok(changed) => {
                            prop_assert_eq!(t, set());
                            prop_assert_eq!(changed, before != set());
                        }
                        Err(e) => {
                            prop_assert_eq!(e, RuleViolation::PinNotSet);
                            prop_assert_eq!(t, before);
                        }
                    },
                }
                prop_assert!(t.failures <= max);
                prop_assert_eq!(t.status == PinStatus::Blocked, t.failures == max && t.status != PinStatus::NotSet);
                prop_assert!(t.status != PinStatus::NotSet || t.failures == 0);
            }
        }
    }
}
