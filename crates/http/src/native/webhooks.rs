//! `/v1/webhook-endpoints`, `GET /v1/events/{id}` (the event with its
//! deliveries) and `POST /v1/events/{id}/redeliver`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cardcore_domain::{Event, EventId, Timestamp, WebhookEndpointId};
use cardcore_service::webhooks::{CreateWebhookEndpoint, EventDetail, WebhookEndpoint};
use cardcore_store::{DeliveryAttempt, DeliveryState, WebhookDelivery};
use serde::{Deserialize, Serialize};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    url: String,
    events: Option<Vec<String>>,
}

#[derive(Serialize)]
pub struct EndpointView {
    id: WebhookEndpointId,
    url: String,
    events: Vec<String>,
    created_at: Timestamp,
}

impl From<WebhookEndpoint> for EndpointView {
    fn from(e: WebhookEndpoint) -> Self {
        Self {
            id: e.id,
            url: e.url,
            events: e.events,
            created_at: e.created_at,
        }
    }
}

/// The creation answer: the endpoint and its secret, shown this once.
#[derive(Serialize)]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    endpoint: EndpointView,
    secret: String,
}

/// `POST /v1/webhook-endpoints`.
pub async fn create(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiJson(b): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<CreatedEndpoint>), ApiError> {
    let created = s
        .service
        .create_webhook_endpoint(
            &ctx,
            CreateWebhookEndpoint {
                url: b.url,
                events: b.events,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedEndpoint {
            endpoint: created.endpoint.into(),
            secret: created.secret.to_string(),
        }),
    ))
}

#[derive(Serialize)]
pub struct EndpointList {
    data: Vec<EndpointView>,
}

/// `GET /v1/webhook-endpoints`: oldest first, without secrets.
pub async fn list(State(s): State<AppState>, Auth(ctx): Auth) -> Result<Json<EndpointList>, ApiError> {
    let data = s.service.webhook_endpoints(&ctx).await?;
    Ok(Json(EndpointList {
        data: data.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Debug, Deserialize)]
pub struct EndpointPath {
    id: WebhookEndpointId,
}

#[derive(Serialize)]
pub struct Deleted {
    id: WebhookEndpointId,
    deleted: bool,
}

/// `DELETE /v1/webhook-endpoints/{id}`.
pub async fn delete(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<EndpointPath>,
) -> Result<Json<Deleted>, ApiError> {
    s.service.delete_webhook_endpoint(&ctx, p.id).await?;
    Ok(Json(Deleted {
        id: p.id,
        deleted: true,
    }))
}

#[derive(Debug, Deserialize)]
pub struct EventPath {
    id: EventId,
}

#[derive(Serialize)]
pub struct DeliveryView {
    id: uuid::Uuid,
    endpoint_id: WebhookEndpointId,
    state: DeliveryState,
    attempts: u32,
    next_attempt_at: Option<Timestamp>,
    last_status: Option<u16>,
    last_error: Option<String>,
    attempts_log: Vec<DeliveryAttempt>,
    created_at: Timestamp,
}

impl From<WebhookDelivery> for DeliveryView {
    fn from(d: WebhookDelivery) -> Self {
        Self {
            id: d.id,
            endpoint_id: d.endpoint_id,
            state: d.state,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_status: d.last_status,
            last_error: d.last_error,
            attempts_log: d.attempts_log,
            created_at: d.created_at,
        }
    }
}

/// An event with its deliveries.
#[derive(Serialize)]
pub struct EventView {
    #[serde(flatten)]
    event: Event,
    deliveries: Vec<DeliveryView>,
}

impl From<EventDetail> for EventView {
    fn from(d: EventDetail) -> Self {
        Self {
            event: d.event,
            deliveries: d.deliveries.into_iter().map(Into::into).collect(),
        }
    }
}

/// `GET /v1/events/{id}`: the event (as webhooks deliver it) and every
/// delivery of it, with their attempts.
pub async fn event(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<EventPath>,
) -> Result<Json<EventView>, ApiError> {
    Ok(Json(s.service.event_detail(&ctx, p.id).await?.into()))
}

/// `POST /v1/events/{id}/redeliver`: 202, a new delivery to every endpoint
/// that receives the type, with the same `webhook-id`.
pub async fn redeliver(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<EventPath>,
) -> Result<(StatusCode, Json<EventView>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(s.service.redeliver_event(&ctx, p.id).await?.into()),
    ))
}
