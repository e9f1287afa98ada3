//! Business rule violations: the only way the domain says no.

use crate::card::{CardStatus, CardType};
use crate::lifecycle::LifecycleAction;
use crate::pin_policy::WeakPin;

/// A request the rules refuse. Each maps to one stable API error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleViolation {
    #[error("cannot {} a card whose status is {}", action.as_str(), from.as_str())]
    InvalidStatusTransition { from: CardStatus, action: LifecycleAction },
    #[error("cannot replace a card whose status is {}; only ACTIVE, LOCKED and BLOCKED cards can be replaced", from.as_str())]
    ReplaceNotAllowed { from: CardStatus },
    #[error("the card was blocked for CARD_CLOSURE, a terminal closure: it cannot be replaced")]
    NotReplaceable,
    #[error("the card has already been replaced")]
    AlreadyReplaced,
    #[error("{operation} is not allowed on a card whose status is {}", status.as_str())]
    InvalidCardStatus {
        status: CardStatus,
        operation: &'static str,
    },
    /// The operation exists only for other card types (e.g. a vendor's
    /// password on plastic cards only).
    #[error("{operation} is not available for {} cards", card_type.as_str())]
    CardTypeNotAllowed {
        card_type: CardType,
        operation: &'static str,
    },
    #[error("the activation code is not valid for this card ({remaining_attempts} attempts left)")]
    ActivationCodeInvalid { remaining_attempts: u32 },
    #[error(
        "too many wrong activation codes: activation of this card is locked; retry in {retry_after_seconds} seconds"
    )]
    ActivationLocked { retry_after_seconds: u64 },
    #[error("the PIN is too weak: {0}")]
    PinTooWeak(WeakPin),
    #[error("the PIN must be {min} to {max} digits for this program")]
    PinLength { min: usize, max: usize },
    #[error("the card has no PIN yet")]
    PinNotSet,
    #[error("the PIN is blocked after too many wrong attempts; unblock it or set a new PIN")]
    PinBlocked,
    #[error("the current PIN is not correct ({remaining_attempts} attempts left)")]
    PinIncorrect { remaining_attempts: u32 },
    #[error("the OTP is not correct ({remaining_attempts} attempts left)")]
    OtpInvalid { remaining_attempts: u32 },
    #[error("the OTP has expired or was already used; request a new one")]
    OtpExpired,
    #[error("too many wrong OTPs: this operation is locked; retry in {retry_after_seconds} seconds")]
    OtpLocked { retry_after_seconds: u64 },
    #[error("too many OTPs requested for this card; retry in {retry_after_seconds} seconds")]
    OtpRateLimited { retry_after_seconds: u64 },
}
