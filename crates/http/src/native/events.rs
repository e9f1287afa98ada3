//! The audit trail of a card and the tenant's event log.

use axum::extract::State;
use axum::Json;
use cardcore_domain::{AuditEntry, AuditId, CardId, Event, EventId};
use cardcore_service::events::ListEvents;
use serde::{Deserialize, Serialize};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::AppState;

#[derive(Debug, Deserialize)]
pub struct IdPath {
    id: CardId,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<u32>,
    cursor: Option<AuditId>,
}

#[derive(Serialize)]
pub struct AuditList {
    data: Vec<AuditEntry>,
    next_cursor: Option<AuditId>,
}

/// `GET /v1/cards/{id}/events`: the card's audit trail, newest first.
pub async fn card_audit(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    let page = s.service.card_audit(&ctx, p.id, q.cursor, q.limit).await?;
    Ok(Json(AuditList {
        data: page.data,
        next_cursor: page.next_cursor,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
    card_id: Option<CardId>,
    after: Option<EventId>,
    limit: Option<u32>,
}

#[derive(Serialize)]
pub struct EventList {
    data: Vec<Event>,
    next_cursor: Option<EventId>,
}

/// `GET /v1/events`: the tenant's events, oldest first, after a cursor.
pub async fn list(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<EventList>, ApiError> {
    let page = s
        .service
        .events(
            &ctx,
            ListEvents {
                event_type: q.event_type,
                card_id: q.card_id,
                after: q.after,
                limit: q.limit,
            },
        )
        .await?;
    Ok(Json(EventList {
        data: page.data,
        next_cursor: page.next_cursor,
    }))
}
