//! `/v1/webhook-endpoints`, `GET /v1/events/{id}` (the event with its
//! deliveries) and `POST /v1/events/{id}/redeliver`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cardcore_domain::{Event, EventId, Timestamp, WebhookEndpointId};
use cardcore_service::webhooks::{CreateWebhookEndpoint, EventDetail, WebhookEndpoint};
use cardcore_store::{DeliveryAttempt, DeliveryState, EndpointFormat, WebhookDelivery};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::AppState;

/// A new webhook endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateWebhookEndpointRequest)]
pub struct CreateBody {
    /// An absolute `http` or `https` URL with a host, without credentials.
    #[schema(format = "uri", max_length = 2048)]
    url: String,
    /// Event types to receive; left out, `null` or `["*"]`: every type.
    #[schema(value_type = Option<Vec<String>>, min_items = 1)]
    events: Option<Vec<String>>,
    /// `standard` (the default): cardcore's payload, signed per Standard
    /// Webhooks. `p100`: P100's card webhooks (`{"event_type", "data"}`, the
    /// secret sent as is in `Authorization`), for `card.activation_code` and
    /// `otp.created` of purpose `three_ds`.
    #[serde(default)]
    format: FormatBody,
}

/// The payload formats a tenant can ask for.
#[derive(Debug, Default, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = WebhookEndpointFormat)]
pub enum FormatBody {
    #[default]
    Standard,
    P100,
}

/// A webhook endpoint (never its secret).
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookEndpoint)]
pub struct EndpointView {
    id: WebhookEndpointId,
    #[schema(format = "uri")]
    url: String,
    /// The event types it receives, or `["*"]` for every type.
    events: Vec<String>,
    /// `standard` or `p100`.
    #[schema(value_type = String)]
    format: EndpointFormat,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
}

impl From<WebhookEndpoint> for EndpointView {
    fn from(e: WebhookEndpoint) -> Self {
        Self {
            id: e.id,
            url: e.url,
            events: e.events,
            format: e.format,
            created_at: e.created_at,
        }
    }
}

/// The creation answer: the endpoint and its secret, shown this once.
#[derive(Serialize, ToSchema)]
#[schema(as = CreatedWebhookEndpoint)]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    endpoint: EndpointView,
    /// `whsec_` + base64 of 32 random bytes (the HMAC key of the Standard Webhooks signature); shown only here.
    secret: String,
}

/// `POST /v1/webhook-endpoints`.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints",
    tag = "Webhooks",
    operation_id = "createWebhookEndpoint",
    summary = "Create a webhook endpoint",
    description = "Events of the tenant made from now on are delivered to it, signed per the Standard Webhooks \
                   specification. The secret is answered once, here.",
    request_body = CreateBody,
    responses(
        (status = 201, description = "The endpoint and its secret.", body = CreatedEndpoint),
        (status = 409, description = "`webhook_endpoint_limit`: the tenant has 20 live endpoints."),
        (status = 422, description = "`validation_error` naming `url`, `events` or `events[i]`; a `url` whose host \
                                      is or resolves to a loopback, private, link-local, CGNAT, multicast or reserved \
                                      address, or plain http to a network the operator did not admit, is refused."),
    )
)]
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
                format: match b.format {
                    FormatBody::Standard => EndpointFormat::Standard,
                    FormatBody::P100 => EndpointFormat::P100,
                },
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

/// The tenant's live endpoints, oldest first.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookEndpointList)]
pub struct EndpointList {
    data: Vec<EndpointView>,
}

/// `GET /v1/webhook-endpoints`: oldest first, without secrets.
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints",
    tag = "Webhooks",
    operation_id = "listWebhookEndpoints",
    summary = "List webhook endpoints",
    responses(
        (status = 200, description = "The endpoints, without secrets.", body = EndpointList),
    )
)]
pub async fn list(State(s): State<AppState>, Auth(ctx): Auth) -> Result<Json<EndpointList>, ApiError> {
    let data = s.service.webhook_endpoints(&ctx).await?;
    Ok(Json(EndpointList {
        data: data.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EndpointPath {
    /// The endpoint's id.
    id: WebhookEndpointId,
}

/// A deleted endpoint.
#[derive(Serialize, ToSchema)]
#[schema(as = DeletedWebhookEndpoint)]
pub struct Deleted {
    id: WebhookEndpointId,
    /// Always `true`.
    deleted: bool,
}

/// `DELETE /v1/webhook-endpoints/{id}`.
#[utoipa::path(
    delete,
    path = "/v1/webhook-endpoints/{id}",
    tag = "Webhooks",
    operation_id = "deleteWebhookEndpoint",
    summary = "Delete a webhook endpoint",
    description = "The endpoint gets nothing more; its open deliveries are given up (`dead`).",
    params(EndpointPath),
    responses(
        (status = 200, description = "Deleted.", body = Deleted),
        (status = 404, description = "`webhook_endpoint_not_found`: no such live endpoint in this tenant."),
        (status = 422, description = "`validation_error`: `id` is not a UUID."),
    )
)]
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EventPath {
    /// The event's id.
    id: EventId,
}

/// One delivery of an event to one endpoint.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookDelivery)]
pub struct DeliveryView {
    id: uuid::Uuid,
    endpoint_id: WebhookEndpointId,
    state: DeliveryState,
    /// Attempts made so far.
    attempts: u32,
    /// When the next attempt is due; `null` once finished.
    #[schema(required = true, value_type = Option<String>, format = DateTime)]
    next_attempt_at: Option<Timestamp>,
    /// The HTTP status of the last attempt, if it got one.
    #[schema(required = true)]
    last_status: Option<u16>,
    /// A short error of the last attempt (never the URL).
    #[schema(required = true)]
    last_error: Option<String>,
    attempts_log: Vec<DeliveryAttempt>,
    #[schema(value_type = String, format = DateTime)]
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
#[derive(Serialize, ToSchema)]
#[schema(as = EventWithDeliveries)]
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
#[utoipa::path(
    get,
    path = "/v1/events/{id}",
    tag = "Events",
    operation_id = "getEvent",
    summary = "Get an event with its deliveries",
    description = "The event as in the log (codes included) and every delivery of it, in the order queued.",
    params(EventPath),
    responses(
        (status = 200, description = "The event and its deliveries.", body = EventView),
        (status = 404, description = "`event_not_found`: no such event in this tenant."),
        (status = 422, description = "`validation_error`: `id` is not a UUID."),
    )
)]
pub async fn event(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<EventPath>,
) -> Result<Json<EventView>, ApiError> {
    Ok(Json(s.service.event_detail(&ctx, p.id).await?.into()))
}

/// `POST /v1/events/{id}/redeliver`: 202, a new delivery to every endpoint
/// that receives the type, with the same `webhook-id`.
#[utoipa::path(
    post,
    path = "/v1/events/{id}/redeliver",
    tag = "Webhooks",
    operation_id = "redeliverEvent",
    summary = "Redeliver an event",
    description = "A new delivery to every live endpoint of the tenant that receives the event's type (whatever \
                   the endpoint's age), with the same `webhook-id`.",
    params(EventPath),
    responses(
        (status = 202, description = "The event and its deliveries, the new ones included.", body = EventView),
        (status = 404, description = "`event_not_found`: no such event in this tenant."),
        (status = 422, description = "`validation_error`: `id` is not a UUID."),
        (status = 429, description = "`rate_limited`: more redeliveries this minute than the tenant may ask for \
                                      (`--webhook-redeliveries-per-minute`, per node); `Retry-After` says when."),
    )
)]
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
