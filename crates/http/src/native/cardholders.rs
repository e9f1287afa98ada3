//! `/v1/cardholders`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cardcore_domain::{Cardholder, CardholderId, Phone};
use cardcore_service::cardholders::CreateCardholder;
use serde::{Deserialize, Serialize};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    external_id: String,
    name: String,
    phone: PhoneBody,
    email: Option<String>,
    date_of_birth: Option<chrono::NaiveDate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneBody {
    country_code: String,
    number: String,
}

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

#[derive(Debug, Deserialize)]
pub struct IdPath {
    id: CardholderId,
}

pub async fn get(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
) -> Result<Json<Cardholder>, ApiError> {
    Ok(Json(s.service.cardholder(&ctx, p.id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindQuery {
    external_id: String,
}

#[derive(Debug, Serialize)]
pub struct List {
    data: Vec<Cardholder>,
    next_cursor: Option<String>,
}

/// `GET /v1/cardholders?external_id=`: a list of zero or one cardholder.
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
