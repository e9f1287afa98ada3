//! Per-card throttle for PIN, OTP and activation calls (default 20 a minute
//! per card), whatever the API they come through. It protects capacity and
//! slows scripted abuse; the security limits (3 wrong PINs, 3 wrong OTPs, 5
//! OTPs per 15 minutes, 3 wrong activation codes) are rules in the database, global across nodes. This one
//! is per node, in memory, like the per-key limit (see docs/native-api.md).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use cardcore_domain::{CardId, TenantId};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::{ServiceError, ServiceResult};

type Limiter = RateLimiter<(TenantId, CardId), DashMapStateStore<(TenantId, CardId)>, DefaultClock>;

/// The per-card limiter.
pub(crate) struct CardThrottle {
    limiter: Option<Limiter>,
    per_minute: u32,
    seen: AtomicU64,
}

impl CardThrottle {
    /// `per_minute` calls per card (also the burst); 0 turns it off.
    pub(crate) fn new(per_minute: u32) -> Self {
        Self {
            limiter: NonZeroU32::new(per_minute).map(|n| RateLimiter::dashmap(Quota::per_minute(n))),
            per_minute,
            seen: AtomicU64::new(0),
        }
    }

    /// Counts one PIN or OTP call on a card; refuses it past the limit.
    pub(crate) fn check(&self, tenant: TenantId, card: CardId) -> ServiceResult<()> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if self.seen.fetch_add(1, Ordering::Relaxed) % 10_000 == 9_999 {
            limiter.retain_recent();
        }
        limiter.check_key(&(tenant, card)).map_err(|not_until| {
            let wait = not_until.wait_time_from(limiter.clock().now());
            ServiceError::RateLimited {
                limit: self.per_minute,
                period: "minute",
                scope: "card",
                retry_after_seconds: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_tenant_and_card_and_can_be_off() {
        let t = CardThrottle::new(2);
        let (a, b) = (CardId::new(), CardId::new());
        let tenant = TenantId::new();
        assert!(t.check(tenant, a).is_ok());
        assert!(t.check(tenant, a).is_ok());
        match t.check(tenant, a) {
            Err(ServiceError::RateLimited {
                limit: 2,
                retry_after_seconds,
                ..
            }) => assert!((1..=60).contains(&retry_after_seconds)),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(t.check(tenant, b).is_ok(), "another card has its own budget");
        assert!(
            t.check(TenantId::new(), a).is_ok(),
            "so does the same id under another tenant"
        );
        let off = CardThrottle::new(0);
        for _ in 0..100 {
            assert!(off.check(tenant, a).is_ok());
        }
    }
}
