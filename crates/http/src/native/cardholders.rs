//! `/v1/cardholders`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cardcore_domain::{Cardholder, CardholderId, Phone};
use cardcore_service::cardholders::CreateCardholder;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::AppState;

/// A new cardholder.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateCardholderRequest)]
pub struct CreateBody {
    /// The tenant's own id for the person, unique per tenant (P100 `externalUserId`, M2P `entityId`).
    #[schema(pattern = "^[A-Za-z0-9_.:@-]{1,64}$")]
    external_id: String,
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    phone: PhoneBody,
    #[schema(format = Email, max_length = 254)]
    email: Option<String>,
    /// A past date after 1900-01-01.
    date_of_birth: Option<chrono::NaiveDate>,
}

/// The cardholder's phone: country calling code (a leading `+` is accepted
/// and removed) and national number, digits only.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PhoneRequest)]
pub struct PhoneBody {
    #[schema(pattern = "^\\+?[0-9]{1,4}$")]
    country_code: String,
    #[schema(pattern = "^[0-9]{4,15}$")]
    number: String,
}

#[utoipa::path(
    post,
    path = "/v1/cardholders",
    tag = "Cardholders",
    operation_id = "createCardholder",
    summary = "Create a cardholder",
    request_body = CreateBody,
    responses(
        (status = 201, description = "The new cardholder.", body = Cardholder),
        (status = 409, description = "`cardholder_exists`: the `external_id` is taken in this tenant."),
        (status = 422, description = "`validation_error` naming each bad field (`phone.number`, `email`, ...)."),
    )
)]
pub async fn create(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiJson(b): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<Cardholder>), ApiError> {
    let c = s
        .service
        .create_cardholder(
            &ctx,
            CreateCardholder {
                external_id: b.external_id,
                name: b.name,
                phone: Phone {
                    country_code: b.phone.country_code,
                    number: b.phone.number,
                },
                email: b.email,
                date_of_birth: b.date_of_birth,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(c)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    /// The cardholder's id.
    id: CardholderId,
}

#[utoipa::path(
    get,
    path = "/v1/cardholders/{id}",
    tag = "Cardholders",
    operation_id = "getCardholder",
    summary = "Get a cardholder",
    params(IdPath),
    responses(
        (status = 200, description = "The cardholder.", body = Cardholder),
        (status = 404, description = "`cardholder_not_found`: no such cardholder in this tenant."),
        (status = 422, description = "`validation_error`: `id` is not a UUID."),
    )
)]
pub async fn get(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
) -> Result<Json<Cardholder>, ApiError> {
    Ok(Json(s.service.cardholder(&ctx, p.id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FindQuery {
    /// The tenant's own id for the person (required: this is a lookup).
    external_id: String,
}

/// Zero or one cardholder.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CardholderList)]
pub struct List {
    data: Vec<Cardholder>,
    /// Always `null`: a lookup has one page.
    #[schema(required = true, value_type = Option<String>)]
    next_cursor: Option<String>,
}

/// `GET /v1/cardholders?external_id=`: a list of zero or one cardholder.
#[utoipa::path(
    get,
    path = "/v1/cardholders",
    tag = "Cardholders",
    operation_id = "findCardholder",
    summary = "Find a cardholder by external id",
    description = "A lookup by the tenant's own id: a list of zero or one cardholder. Unknown query parameters are refused.",
    params(FindQuery),
    responses(
        (status = 200, description = "Zero or one cardholder.", body = List),
        (status = 422, description = "`validation_error`: `external_id` missing, or an unknown query parameter."),
    )
)]
pub async fn find(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiQuery(q): ApiQuery<FindQuery>,
) -> Result<Json<List>, ApiError> {
    let data = match s.service.cardholder_by_external_id(&ctx, &q.external_id).await {
        Ok(c) => vec![c],
        Err(cardcore_service::ServiceError::NotFound(_)) => vec![],
        Err(e) => return Err(e.into()),
    };
    Ok(Json(List {
        data,
        next_cursor: None,
    }))
}
