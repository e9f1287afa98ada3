//! The audit trail and the event log, as the tenant reads them.

use cardcore_domain::{AuditEntry, AuditId, CardId, Event, EventId, EventType};
use cardcore_store::{AuditPage, EventQuery};

use crate::cards::page_limit;
use crate::{Ctx, Service, ServiceError, ServiceResult};

/// A page of audit entries, newest first.
#[derive(Debug, Clone)]
pub struct AuditEntries {
    pub data: Vec<AuditEntry>,
    pub next_cursor: Option<AuditId>,
}

/// A page of events, oldest first.
#[derive(Debug, Clone)]
pub struct Events {
    pub data: Vec<Event>,
    pub next_cursor: Option<EventId>,
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct ListEvents {
    pub event_type: Option<String>,
    pub card_id: Option<CardId>,
    pub after: Option<EventId>,
    pub limit: Option<u32>,
}

impl Service {
    /// A card's audit trail, newest first.
    pub async fn card_audit(
        &self,
        ctx: &Ctx,
        card: CardId,
        cursor: Option<AuditId>,
        limit: Option<u32>,
    ) -> ServiceResult<AuditEntries> {
        let limit = page_limit(limit)?;
        // The card must be the tenant's: a foreign id is "not found".
        self.card_record(ctx, card).await?;
        let mut data = self
            .store
            .audit_entries(
                ctx.tenant_id(),
                card,
                &AuditPage {
                    before: cursor,
                    limit: limit + 1,
                },
            )
            .await?;
        let next_cursor = if data.len() > limit as usize {
            data.truncate(limit as usize);
            data.last().map(|e| e.id)
        } else {
            None
        };
        Ok(AuditEntries { data, next_cursor })
    }

    /// The tenant's events after a cursor, oldest first, codes included.
    pub async fn events(&self, ctx: &Ctx, query: ListEvents) -> ServiceResult<Events> {
        let limit = page_limit(query.limit)?;
        let event_type = match &query.event_type {
            Some(t) => Some(EventType::parse(t).ok_or_else(|| {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                ServiceError::invalid(
                    "type",
                    format!("unknown event type; expected one of {}", known.join(", ")),
                )
            })?),
            None => None,
        };
        let stored = self
            .store
            .events(
                ctx.tenant_id(),
                &EventQuery {
                    event_type,
                    card_id: query.card_id,
                    after: query.after,
                    limit: limit + 1,
                },
            )
            .await
            .map_err(|e| match e {
                cardcore_store::StoreError::NotFound(_) => {
                    ServiceError::invalid("after", "does not name an event of this tenant")
                }
                other => other.into(),
            })?;
        let mut data = Vec::with_capacity(stored.len());
        for s in stored {
            data.push(self.open_event(s).await?);
        }
        let next_cursor = if data.len() > limit as usize {
            data.truncate(limit as usize);
            data.last().map(|e| e.id)
        } else {
            None
        };
        Ok(Events { data, next_cursor })
    }
}
