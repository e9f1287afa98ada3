//! `/v1/authorization-endpoint`: the tenant's own decision service.

use axum::extract::State;
use axum::Json;
use cardcore_domain::Timestamp;
use cardcore_service::authorization_endpoint::{AuthorizationEndpoint, SetAuthorizationEndpoint};
use cardcore_store::OnTimeout;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::AppState;

/// What stands in for a missing, late, non-2xx or malformed answer.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = AuthorizationEndpointOnTimeout)]
pub enum OnTimeoutBody {
    Approve,
    Decline,
}

impl From<OnTimeoutBody> for OnTimeout {
    fn from(o: OnTimeoutBody) -> Self {
        match o {
            OnTimeoutBody::Approve => Self::Approve,
            OnTimeoutBody::Decline => Self::Decline,
        }
    }
}

impl From<OnTimeout> for OnTimeoutBody {
    fn from(o: OnTimeout) -> Self {
        match o {
            OnTimeout::Approve => Self::Approve,
            OnTimeout::Decline => Self::Decline,
        }
    }
}

/// The tenant's decision service.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SetAuthorizationEndpointRequest)]
pub struct PutBody {
    /// An absolute `http` or `https` URL with a host, without credentials;
    /// the webhook network rules apply.
    #[schema(format = "uri", max_length = 2048)]
    url: String,
    /// How long cardcore waits for the answer, connecting included: 100 to 1500 ms (default 800).
    #[schema(minimum = 100, maximum = 1500, default = 800)]
    timeout_ms: Option<u32>,
    /// What decides when the answer does not come in time, is not a 2xx or
    /// is malformed (`decided_by: "stand_in"`). Default `decline`.
    on_timeout: Option<OnTimeoutBody>,
    /// `true`: make a new signing secret (answered once) although the
    /// endpoint has one. Default `false`: a later `PUT` keeps the secret.
    #[serde(default)]
    rotate_secret: bool,
}

/// The tenant's authorization endpoint (never its secret).
#[derive(Serialize, ToSchema)]
#[schema(as = AuthorizationEndpoint)]
pub struct EndpointView {
    #[schema(format = "uri")]
    url: String,
    timeout_ms: u32,
    on_timeout: OnTimeoutBody,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Timestamp,
}

impl From<AuthorizationEndpoint> for EndpointView {
    fn from(e: AuthorizationEndpoint) -> Self {
        Self {
            url: e.url,
            timeout_ms: e.timeout_ms,
            on_timeout: e.on_timeout.into(),
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// The `PUT` answer.
#[derive(Serialize, ToSchema)]
#[schema(as = SetAuthorizationEndpointResponse)]
pub struct PutView {
    #[serde(flatten)]
    endpoint: EndpointView,
    /// `whsec_` + base64 of 32 random bytes: the key of the Standard
    /// Webhooks signature on every decision request. Answered only when made
    /// (the first `PUT`, or `rotate_secret`); `null` otherwise.
    secret: Option<String>,
}

/// `PUT /v1/authorization-endpoint`.
#[utoipa::path(
    put,
    path = "/v1/authorization-endpoint",
    tag = "Authorization endpoint",
    operation_id = "setAuthorizationEndpoint",
    summary = "Set the tenant's authorization endpoint",
    description = "From now on every authorization that passed cardcore's own checks is sent to it as \
                   `{\"type\": \"authorization.request\", \"data\": <the authorization, status PENDING>}`, signed \
                   per Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`). It answers \
                   `{\"approved\": true | false, \"reason\"?: \"...\"}` within `timeout_ms`; otherwise \
                   `on_timeout` decides. The secret is answered once, on the first `PUT`.",
    request_body = PutBody,
    responses(
        (status = 200, description = "The endpoint (and its secret, when new).", body = PutView),
        (status = 422, description = "`validation_error` naming `url` (also a host that is or resolves to a \
                                      loopback, private, link-local, CGNAT, multicast or reserved address, or \
                                      plain http to a network the operator did not admit) or `timeout_ms`."),
        (status = 409, description = "`authorization_endpoint_changed`: other requests kept changing the \
                                      endpoint while this one wrote it (it read again 25 times); send it again."),
    )
)]
pub async fn put(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiJson(b): ApiJson<PutBody>,
) -> Result<Json<PutView>, ApiError> {
    let set = s
        .service
        .set_authorization_endpoint(
            &ctx,
            SetAuthorizationEndpoint {
                url: b.url,
                timeout_ms: b.timeout_ms,
                on_timeout: b.on_timeout.map(Into::into),
                rotate_secret: b.rotate_secret,
            },
        )
        .await?;
    Ok(Json(PutView {
        endpoint: set.endpoint.into(),
        secret: set.secret.map(|s| s.to_string()),
    }))
}

/// `GET /v1/authorization-endpoint`.
#[utoipa::path(
    get,
    path = "/v1/authorization-endpoint",
    tag = "Authorization endpoint",
    operation_id = "getAuthorizationEndpoint",
    summary = "Read the tenant's authorization endpoint",
    responses(
        (status = 200, description = "The endpoint, without its secret.", body = EndpointView),
        (status = 404, description = "`authorization_endpoint_not_found`: none is set; cardcore decides alone."),
    )
)]
pub async fn get(State(s): State<AppState>, Auth(ctx): Auth) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(s.service.authorization_endpoint(&ctx).await?.into()))
}

/// A removed endpoint.
#[derive(Serialize, ToSchema)]
#[schema(as = DeletedAuthorizationEndpoint)]
pub struct Deleted {
    /// Always `true`.
    deleted: bool,
}

/// `DELETE /v1/authorization-endpoint`.
#[utoipa::path(
    delete,
    path = "/v1/authorization-endpoint",
    tag = "Authorization endpoint",
    operation_id = "deleteAuthorizationEndpoint",
    summary = "Remove the tenant's authorization endpoint",
    description = "cardcore decides alone from now on (`decided_by: \"cardcore\"`).",
    responses(
        (status = 200, description = "Removed.", body = Deleted),
        (status = 404, description = "`authorization_endpoint_not_found`: none is set."),
    )
)]
pub async fn delete(State(s): State<AppState>, Auth(ctx): Auth) -> Result<Json<Deleted>, ApiError> {
    s.service.delete_authorization_endpoint(&ctx).await?;
    Ok(Json(Deleted { deleted: true }))
}
