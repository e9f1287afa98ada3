//! One card's PIN decisions, one after another, in this process: a fixed
//! array of async mutexes, a card taking the one its id hashes to. Memory is
//! bounded whatever the number of cards; two cards on one stripe only wait
//! for each other. Across nodes the store orders them ([`Store::hold_card`],
//! [`Tx::lock_card`]); a SQLite database has one server process.
//!
//! [`Store::hold_card`]: cardcore_store::Store::hold_card
//! [`Tx::lock_card`]: cardcore_store::Tx::lock_card

use std::hash::BuildHasher;

use cardcore_domain::CardId;
use tokio::sync::{Mutex, MutexGuard};

/// Stripes: enough that unrelated cards rarely meet, few enough to be small.
const STRIPES: usize = 1024;

/// The per-card order of PIN decisions in this process.
pub(crate) struct CardOrder {
    stripes: Box<[Mutex<()>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl CardOrder {
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Waits for the card's turn; the turn lasts as long as the guard. Hold
    /// it across the read, the decision and the commit, and take no other
    /// card's turn meanwhile.
    pub(crate) async fn turn(&self, card: CardId) -> MutexGuard<'_, ()> {
        let i = (self.hasher.hash_one(card.as_uuid()) as usize) % self.stripes.len();
        self.stripes[i].lock().await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_card_waits_for_its_own_turn_only() {
        let order = Arc::new(CardOrder::new());
        let card = CardId::new();
        let turn = order.turn(card).await;
        // The same card: not granted while the turn is held.
        let same = order.stripes[(order.hasher.hash_one(card.as_uuid()) as usize) % STRIPES].try_lock();
        assert!(same.is_err());
        // Some other card hashes elsewhere and goes at once.
        let other = (0..64)
            .map(|_| CardId::new())
            .find(|c| {
                (order.hasher.hash_one(c.as_uuid()) as usize) % STRIPES
                    != (order.hasher.hash_one(card.as_uuid()) as usize) % STRIPES
            })
            .unwrap();
        drop(order.turn(other).await);
        drop(turn);
        drop(order.turn(card).await);
    }
}
