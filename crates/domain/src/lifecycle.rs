//! The card status machine, exactly as the table in native-api.md:
//!
//! | from → to | action |
//! |---|---|
//! | INACTIVE → ACTIVE | activate (with the activation code) |
//! | ACTIVE → LOCKED | lock |
//! | LOCKED → ACTIVE | unlock |
//! | ACTIVE, LOCKED → BLOCKED | block (reason required) |
//! | any but CLOSED → CLOSED | close |
//! | BLOCKED, ACTIVE, LOCKED → new card | replace (not after a CARD_CLOSURE block) |
//!
//! A request for the status the card already has is a success that changes
//! nothing. Every other move is refused.

use serde::{Deserialize, Serialize};

use crate::card::CardStatus;
use crate::error::RuleViolation;
use crate::reason::{ReasonCode, StatusReason};

/// A lifecycle action a caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LifecycleAction {
    Activate,
    Lock,
    Unlock,
    Block,
    Close,
}

impl LifecycleAction {
    /// Every action.
    pub const ALL: [LifecycleAction; 5] = [Self::Activate, Self::Lock, Self::Unlock, Self::Block, Self::Close];

    /// The status the action leads to.
    pub fn target(self) -> CardStatus {
        match self {
            Self::Activate | Self::Unlock => CardStatus::Active,
            Self::Lock => CardStatus::Locked,
            Self::Block => CardStatus::Blocked,
            Self::Close => CardStatus::Closed,
        }
    }

    /// The action's name, as in paths and audit entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Activate => "activate",
            Self::Lock => "lock",
            Self::Unlock => "unlock",
            Self::Block => "block",
            Self::Close => "close",
        }
    }
}

/// The outcome of an allowed action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The status moves.
    Changed { from: CardStatus, to: CardStatus },
    /// The card already has the requested status: success, nothing written.
    Unchanged,
}

impl Transition {
    /// True when something moves.
    pub fn is_change(self) -> bool {
        matches!(self, Self::Changed { .. })
    }
}

/// Which statuses a block may start from. The native API blocks ACTIVE and
/// LOCKED cards; M2P: "A card must be ACTIVE to be locked or blocked".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlockFrom {
    /// ACTIVE or LOCKED (the native table).
    #[default]
    ActiveOrLocked,
    /// ACTIVE only: a LOCKED card is unlocked first.
    ActiveOnly,
}

/// Decides whether `action` may be applied to a card in `from`.
///
/// The activation code and the block reason are checked by the caller; this
/// function is the table and nothing else.
pub fn transition(from: CardStatus, action: LifecycleAction) -> Result<Transition, RuleViolation> {
    transition_with(from, action, BlockFrom::ActiveOrLocked)
}

/// [`transition`], with the statuses a block may start from.
pub fn transition_with(
    from: CardStatus,
    action: LifecycleAction,
    block_from: BlockFrom,
) -> Result<Transition, RuleViolation> {
    use CardStatus::*;
    use LifecycleAction::*;
    let to = action.target();
    let allowed = match (action, from) {
        (_, f) if f == to => return Ok(Transition::Unchanged),
        (Activate, Inactive) => true,
        (Lock, Active) => true,
        (Unlock, Locked) => true,
        (Block, Active) => true,
        (Block, Locked) => block_from == BlockFrom::ActiveOrLocked,
        (Close, Inactive | Active | Locked | Blocked) => true,
        _ => false,
    };
    if allowed {
        Ok(Transition::Changed { from, to })
    } else {
        Err(RuleViolation::InvalidStatusTransition { from, action })
    }
}

/// Why a card is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum ReplaceReason {
    Lost,
    Stolen,
    Damaged,
    Expired,
}

/// What happens to the old card on replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    /// The old card's status afterwards.
    pub old_status: CardStatus,
    /// The old card's reason afterwards.
    pub old_reason: Option<StatusReason>,
}

/// Decides a replacement: lost and stolen cards end BLOCKED (a thief must not
/// be able to use them), damaged and expired ones end CLOSED. A card already
/// BLOCKED stays BLOCKED with its reason. A block for `CARD_CLOSURE` is a
/// terminal intent: not replaceable.
pub fn replace(
    status: CardStatus,
    reason: Option<&StatusReason>,
    why: ReplaceReason,
) -> Result<Replacement, RuleViolation> {
    match status {
        CardStatus::Active | CardStatus::Locked => {}
        CardStatus::Blocked => {
            if reason.is_some_and(|r| r.code.is_closure()) {
                return Err(RuleViolation::NotReplaceable);
            }
            return Ok(Replacement {
                old_status: CardStatus::Blocked,
                old_reason: reason.cloned(),
            });
        }
        CardStatus::Inactive | CardStatus::Closed => {
            return Err(RuleViolation::ReplaceNotAllowed { from: status });
        }
    }
    let (old_status, code) = match why {
        ReplaceReason::Lost => (CardStatus::Blocked, ReasonCode::LOST_CARD),
        ReplaceReason::Stolen => (CardStatus::Blocked, ReasonCode::STOLEN_CARD),
        ReplaceReason::Damaged => (CardStatus::Closed, ReasonCode::DAMAGED_CARD),
        ReplaceReason::Expired => (CardStatus::Closed, ReasonCode::EXPIRED),
    };
    Ok(Replacement {
        old_status,
        old_reason: Some(StatusReason {
            code: ReasonCode::builtin(code),
            message: Some("replaced".to_owned()),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use CardStatus::*;
    use LifecycleAction::*;

    /// The table of native-api.md, written out: every (from, action) that moves.
    const MOVES: &[(CardStatus, LifecycleAction, CardStatus)] = &[
        (Inactive, Activate, Active),
        (Active, Lock, Locked),
        (Locked, Unlock, Active),
        (Active, Block, Blocked),
        (Locked, Block, Blocked),
        (Inactive, Close, Closed),
        (Active, Close, Closed),
        (Locked, Close, Closed),
        (Blocked, Close, Closed),
    ];

    #[test]
    fn exactly_the_table() {
        for from in CardStatus::ALL {
            for action in LifecycleAction::ALL {
                let got = transition(from, action);
                let expected = if from == action.target() {
                    Ok(Transition::Unchanged)
                } else if let Some((_, _, to)) = MOVES.iter().find(|(f, a, _)| *f == from && *a == action) {
                    Ok(Transition::Changed { from, to: *to })
                } else {
                    Err(RuleViolation::InvalidStatusTransition { from, action })
                };
                assert_eq!(got, expected, "{from:?} + {action:?}");
            }
        }
    }

    /// With blocks from ACTIVE only, the table loses exactly LOCKED → BLOCKED.
    #[test]
    fn blocks_from_active_only_refuse_a_locked_card_and_nothing_else_changes() {
        for from in CardStatus::ALL {
            for action in LifecycleAction::ALL {
                let strict = transition_with(from, action, BlockFrom::ActiveOnly);
                if (from, action) == (Locked, Block) {
                    assert_eq!(strict, Err(RuleViolation::InvalidStatusTransition { from, action }));
                } else {
                    assert_eq!(strict, transition(from, action), "{from:?} + {action:?}");
                }
            }
        }
        assert_eq!(
            transition_with(Blocked, Block, BlockFrom::ActiveOnly),
            Ok(Transition::Unchanged)
        );
        assert!(transition_with(Blocked, Unlock, BlockFrom::ActiveOnly).is_err());
        assert!(transition_with(Blocked, Lock, BlockFrom::ActiveOnly).is_err());
    }

    #[test]
    fn same_status_is_unchanged() {
        assert_eq!(transition(Locked, Lock), Ok(Transition::Unchanged));
        assert_eq!(transition(Active, Unlock), Ok(Transition::Unchanged));
        assert_eq!(transition(Active, Activate), Ok(Transition::Unchanged));
        assert_eq!(transition(Blocked, Block), Ok(Transition::Unchanged));
        assert_eq!(transition(Closed, Close), Ok(Transition::Unchanged));
    }

    #[test]
    fn unlock_never_activates() {
        assert!(transition(Inactive, Unlock).is_err());
    }

    #[test]
    fn replacement_rules() {
        let lost = replace(Active, None, ReplaceReason::Lost).unwrap();
        assert_eq!(lost.old_status, Blocked);
        assert_eq!(lost.old_reason.unwrap().code.as_str(), "LOST_CARD");
        assert_eq!(
            replace(Locked, None, ReplaceReason::Damaged).unwrap().old_status,
            Closed
        );
        let fraud = StatusReason {
            code: ReasonCode::builtin(ReasonCode::FRAUD_CONFIRMED),
            message: None,
        };
        assert_eq!(
            replace(Blocked, Some(&fraud), ReplaceReason::Expired)
                .unwrap()
                .old_reason,
            Some(fraud)
        );
        let closure = StatusReason {
            code: ReasonCode::builtin(ReasonCode::CARD_CLOSURE),
            message: None,
        };
        assert_eq!(
            replace(Blocked, Some(&closure), ReplaceReason::Lost),
            Err(RuleViolation::NotReplaceable)
        );
        assert!(replace(Inactive, None, ReplaceReason::Lost).is_err());
        assert!(replace(Closed, None, ReplaceReason::Lost).is_err());
    }

    fn any_status() -> impl Strategy<Value = CardStatus> {
        prop::sample::select(CardStatus::ALL.to_vec())
    }

    fn any_action() -> impl Strategy<Value = LifecycleAction> {
        prop::sample::select(LifecycleAction::ALL.to_vec())
    }

    proptest! {
        /// Whatever sequence of requests arrives, the card only ever moves
        /// along the table, CLOSED is terminal and BLOCKED never comes back.
        #[test]
        fn any_sequence_stays_on_the_table(start in any_status(), actions in prop::collection::vec(any_action(), 0..40)) {
            let mut status = start;
            let mut was_blocked = status == Blocked;
            for action in actions {
                let before = status;
                match transition(status, action) {
                    Ok(Transition::Changed { from, to }) => {
                        prop_assert_eq!(from, before);
                        prop_assert!(MOVES.contains(&(from, action, to)));
                        status = to;
                    }
                    Ok(Transition::Unchanged) => prop_assert_eq!(before, action.target()),
                    Err(_) => prop_assert_ne!(before, action.target()),
                }
                if before == Closed {
                    prop_assert_eq!(status, Closed);
                }
                if was_blocked {
                    prop_assert!(matches!(status, Blocked | Closed));
                }
                was_blocked |= status == Blocked;
            }
        }

        /// Applying the same action twice: the second time is always a no-op
        /// or the same refusal.
        #[test]
        fn actions_are_idempotent(start in any_status(), action in any_action()) {
            match transition(start, action) {
                Ok(Transition::Changed { to, .. }) => prop_assert_eq!(transition(to, action), Ok(Transition::Unchanged)),
                Ok(Transition::Unchanged) => prop_assert_eq!(transition(start, action), Ok(Transition::Unchanged)),
                Err(e) => prop_assert_eq!(transition(start, action), Err(e)),
            }
        }
    }
}
