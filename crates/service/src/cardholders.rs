//! Cardholders.

use cardcore_domain::cardholder::NewCardholder;
use cardcore_domain::{AccountId, Card, CardStatus, Cardholder, CardholderId, ExternalId, LifecycleAction, Phone};
use cardcore_domain::{ReasonCode, StatusReason};
use cardcore_store::CardFilter;

use crate::cards::ReasonInput;
use crate::{Ctx, Service, ServiceError, ServiceResult};

/// A change of a cardholder's profile; `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct UpdateCardholder {
    pub name: Option<String>,
    pub phone: Option<Phone>,
    pub email: Option<String>,
    pub date_of_birth: Option<chrono::NaiveDate>,
}

/// What a cardholder-wide action did to the cards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardsChanged {
    /// Cards whose status changed.
    pub changed: usize,
    /// Cards left as they were (another status, or already there).
    pub unchanged: usize,
}

/// Input for a new cardholder, as the API received it.
#[derive(Debug, Clone)]
pub struct CreateCardholder {
    pub external_id: String,
    pub name: String,
    pub phone: Phone,
    pub email: Option<String>,
    pub date_of_birth: Option<chrono::NaiveDate>,
}

impl Service {
    /// Creates a cardholder and their default account.
    pub async fn create_cardholder(&self, ctx: &Ctx, input: CreateCardholder) -> ServiceResult<Cardholder> {
        let now = self.now();
        let valid = NewCardholder::validate(
            &input.external_id,
            &input.name,
            &input.phone,
            input.email.as_deref(),
            input.date_of_birth,
            now.date_naive(),
        )?;
        let cardholder = Cardholder {
            id: CardholderId::new(),
            tenant_id: ctx.tenant_id(),
            external_id: valid.external_id,
            name: valid.name,
            phone: valid.phone,
            email: valid.email,
            date_of_birth: valid.date_of_birth,
            default_account_id: AccountId::new(),
            created_at: now,
        };
        let cardholder = &cardholder;
        self.unit_of_work(|| async move {
            let mut tx = self.store.begin().await?;
            if !tx.insert_cardholder(cardholder).await? {
                return Err(ServiceError::Conflict {
                    code: "cardholder_exists",
                    message: format!(
                        "a cardholder with external_id {:?} already exists; fetch it with GET /v1/cardholders?external_id=",
                        cardholder.external_id.as_str()
                    ),
                });
            }
            let after = serde_json::json!({ "cardholder_id": cardholder.id, "external_id": cardholder.external_id });
            tx.insert_audit(&self.audit(ctx, None, "cardholder.created", None, None, Some(after)))
                .await?;
            tx.commit().await?;
            Ok(cardholder.clone())
        })
        .await
    }

    /// Rewrites a cardholder's profile; the new values are checked as at
    /// creation.
    pub async fn update_cardholder(
        &self,
        ctx: &Ctx,
        id: CardholderId,
        change: UpdateCardholder,
    ) -> ServiceResult<Cardholder> {
        let current = self.cardholder(ctx, id).await?;
        let name = change.name.unwrap_or_else(|| current.name.clone());
        let phone = change.phone.unwrap_or_else(|| current.phone.clone());
        let email = change.email.or_else(|| current.email.clone());
        let date_of_birth = change.date_of_birth.or(current.date_of_birth);
        let valid = NewCardholder::validate(
            current.external_id.as_str(),
            &name,
            &phone,
            email.as_deref(),
            date_of_birth,
            self.now().date_naive(),
        )?;
        let updated = Cardholder {
            name: valid.name,
            phone: valid.phone,
            email: valid.email,
            date_of_birth: valid.date_of_birth,
            ..current.clone()
        };
        let (current, updated) = (&current, &updated);
        self.unit_of_work(|| async move {
            let mut tx = self.store.begin().await?;
            if !tx.update_cardholder(updated).await? {
                return Err(ServiceError::NotFound("cardholder"));
            }
            // Profile fields are personal data: the audit row names what changed, not the values.
            let mut fields = Vec::new();
            if updated.name != current.name {
                fields.push("name");
            }
            if updated.phone != current.phone {
                fields.push("phone");
            }
            if updated.email != current.email {
                fields.push("email");
            }
            if updated.date_of_birth != current.date_of_birth {
                fields.push("date_of_birth");
            }
            let after = serde_json::json!({ "cardholder_id": updated.id, "fields": fields });
            tx.insert_audit(&self.audit(ctx, None, "cardholder.updated", None, None, Some(after)))
                .await?;
            tx.commit().await?;
            Ok(updated.clone())
        })
        .await
    }

    /// Every card of a cardholder, oldest first.
    pub async fn cards_of_holder(&self, ctx: &Ctx, id: CardholderId) -> ServiceResult<Vec<Card>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .cards(
                    ctx.tenant_id(),
                    &CardFilter {
                        cardholder_id: Some(id),
                        status: None,
                        after,
                        limit: 100,
                        ..CardFilter::default()
                    },
                )
                .await?;
            let full = page.len() == 100;
            after = page.last().map(|c| c.id);
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
    }

    /// Suspends a cardholder: each ACTIVE card is locked with the reason
    /// `USER_SUSPENDED` (one transaction per card, each audited with its
    /// event). Cards in any other status are left alone.
    pub async fn suspend_cardholder(
        &self,
        ctx: &Ctx,
        id: CardholderId,
        message: Option<String>,
    ) -> ServiceResult<CardsChanged> {
        self.cardholder_wide(ctx, id, LifecycleAction::Lock, Some(message), |card| {
            card.status == CardStatus::Active
        })
        .await
    }

    /// Unsuspends a cardholder: unlocks exactly the cards a suspension
    /// locked (LOCKED with the reason `USER_SUSPENDED`); cards locked for
    /// another reason stay locked.
    pub async fn unsuspend_cardholder(&self, ctx: &Ctx, id: CardholderId) -> ServiceResult<CardsChanged> {
        self.cardholder_wide(ctx, id, LifecycleAction::Unlock, None, |card| {
            card.status == CardStatus::Locked && is_suspension(card.status_reason.as_ref())
        })
        .await
    }

    /// Closes every card of a cardholder that is not closed yet.
    pub async fn close_cardholder_cards(&self, ctx: &Ctx, id: CardholderId) -> ServiceResult<CardsChanged> {
        self.cardholder_wide(ctx, id, LifecycleAction::Close, None, |card| {
            card.status != CardStatus::Closed
        })
        .await
    }

    /// Whether a cardholder is suspended: one of its cards is locked by a suspension.
    pub async fn cardholder_suspended(&self, ctx: &Ctx, id: CardholderId) -> ServiceResult<bool> {
        Ok(self
            .cards_of_holder(ctx, id)
            .await?
            .iter()
            .any(|c| c.status == CardStatus::Locked && is_suspension(c.status_reason.as_ref())))
    }

    async fn cardholder_wide(
        &self,
        ctx: &Ctx,
        id: CardholderId,
        action: LifecycleAction,
        suspension: Option<Option<String>>,
        wanted: impl Fn(&Card) -> bool,
    ) -> ServiceResult<CardsChanged> {
        self.cardholder(ctx, id).await?;
        let mut done = CardsChanged::default();
        for card in self.cards_of_holder(ctx, id).await? {
            if !wanted(&card) {
                done.unchanged += 1;
                continue;
            }
            let reason = match &suspension {
                Some(message) => ReasonInput {
                    code: Some(ReasonCode::USER_SUSPENDED.to_owned()),
                    message: message.clone().or_else(|| Some("user suspended".to_owned())),
                },
                None => ReasonInput::default(),
            };
            // The card may have moved since it was listed: the core decides
            // again under the row lock, and a refused move is left alone.
            match self.change_status(ctx, card.id, action, reason).await {
                Ok(change) if change.changed => done.changed += 1,
                Ok(_) | Err(ServiceError::Rule(_)) => done.unchanged += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// A cardholder of the caller's tenant.
    pub async fn cardholder(&self, ctx: &Ctx, id: CardholderId) -> ServiceResult<Cardholder> {
        self.store
            .cardholder(ctx.tenant_id(), id)
            .await?
            .ok_or(ServiceError::NotFound("cardholder"))
    }

    /// A cardholder by the tenant's own id for them.
    pub async fn cardholder_by_external_id(&self, ctx: &Ctx, external_id: &str) -> ServiceResult<Cardholder> {
        let ext = ExternalId::parse(external_id).map_err(|_| ServiceError::NotFound("cardholder"))?;
        self.store
            .cardholder_by_external_id(ctx.tenant_id(), &ext)
            .await?
            .ok_or(ServiceError::NotFound("cardholder"))
    }
}

fn is_suspension(reason: Option<&StatusReason>) -> bool {
    reason.is_some_and(|r| r.code.as_str() == ReasonCode::USER_SUSPENDED)
}
