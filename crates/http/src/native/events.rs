//! The audit trail of a card and the tenant's event log.

use axum::extract::State;
use axum::Json;
use cardcore_domain::{AuditEntry, AuditId, CardId, Event, EventId, EventType};
use cardcore_service::events::ListEvents;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    /// The card's id.
    id: CardId,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Page size, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page (an audit entry id).
    cursor: Option<AuditId>,
}

/// A page of a card's audit trail, newest first.
#[derive(Serialize, ToSchema)]
pub struct AuditList {
    data: Vec<AuditEntry>,
    /// The cursor of the next page; `null` on the last one.
    #[schema(required = true)]
    next_cursor: Option<AuditId>,
}

/// `GET /v1/cards/{id}/events`: the card's audit trail, newest first.
#[utoipa::path(
    get,
    path = "/v1/cards/{id}/events",
    tag = "Events",
    operation_id = "listCardAudit",
    summary = "A card's audit trail",
    description = "Every change to the card and every sensitive read, newest first, with actor, request id and \
                   reason. Never holds a PIN, OTP, PAN, CVV or code.",
    params(IdPath, AuditQuery),
    responses(
        (status = 200, description = "A page of audit entries.", body = AuditList),
        (status = 404, description = "`card_not_found`: no such card in this tenant."),
        (status = 422, description = "`validation_error`: a bad `id`, `limit` or `cursor`, or an unknown query parameter."),
    )
)]
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events of this type.
    #[serde(rename = "type")]
    #[param(value_type = Option<EventType>)]
    event_type: Option<String>,
    /// Only this card's events.
    card_id: Option<CardId>,
    /// Events after this one (an event id of this tenant, e.g. the previous page's `next_cursor`).
    after: Option<EventId>,
    /// Page size, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// A page of the tenant's events, oldest first.
#[derive(Serialize, ToSchema)]
pub struct EventList {
    data: Vec<Event>,
    /// The `after` of the next page; `null` when there is none yet.
    #[schema(required = true)]
    next_cursor: Option<EventId>,
}

/// `GET /v1/events`: the tenant's events, oldest first, after a cursor.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "Events",
    operation_id = "listEvents",
    summary = "The tenant's event log",
    description = "What webhooks deliver, oldest first. Events that carry a code (`card.activation_code`, \
                   `otp.created`) carry it in clear here.",
    params(EventsQuery),
    responses(
        (status = 200, description = "A page of events.", body = EventList),
        (status = 422, description = "`validation_error`: an unknown `type`, an `after` that is not one of the \
                                      tenant's events, a bad `limit`, or an unknown query parameter."),
    )
)]
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
