//! P100 "User Accounts without KYC": create, update, get, suspend,
//! unsuspend and delete, on the cardholder core. Only the create path is
//! from P100's public page
//! (https://partner-api-docs.p100.io/create-user-account-and-generate-balances-without-kyc-19953092e0);
//! the others are named in P100's menu with their methods (PATCH, DELETE,
//! PATCH, PATCH) but their paths and bodies were not found: **assumed**.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use cardcore_domain::{Cardholder, Phone};
use cardcore_service::cardholders::{CreateCardholder, UpdateCardholder};
use cardcore_service::ServiceError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::P100Error;
use super::types::Message;
use super::{Body, P100Auth};
use crate::dialects::{holder, parse_body};
use crate::AppState;

/// `POST /v1/user/balances/crypto`: P100's body (KYC-less). cardcore keeps
/// the name, e-mail, phone and birth date; the address and document fields
/// P100 takes are accepted and not kept (cardcore holds no KYC data).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = P100CreateUserRequest)]
// The KYC fields are parsed (so P100's body is accepted as written and
// checked for type) and deliberately not kept.
#[allow(dead_code)]
pub struct CreateUserRequest {
    pub external_user_id: String,
    pub email: Option<String>,
    pub first_name: String,
    pub last_name: String,
    /// International digits with the country code and no `+` (P100's
    /// `"486012334567"`); cardcore needs it to send OTPs.
    pub phone: Option<String>,
    /// `YYYY-MM-DD`.
    #[schema(value_type = Option<String>, format = Date)]
    pub birth_date: Option<chrono::NaiveDate>,
    pub address: Option<String>,
    pub street: Option<String>,
    pub number: Option<String>,
    pub city: Option<String>,
    pub post_code: Option<String>,
    pub country: Option<String>,
    pub citizenship: Option<String>,
    pub nationality: Option<String>,
    pub birth_country: Option<String>,
    pub document_type: Option<String>,
    pub document_number: Option<String>,
    pub pesel: Option<String>,
    pub user_identification_number: Option<String>,
}

/// The create answer: P100's `{userId, balances}` (cardcore keeps no balances).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = P100CreatedUser)]
pub struct CreatedUser {
    pub user_id: String,
    #[schema(value_type = Vec<Object>)]
    pub balances: Vec<serde_json::Value>,
}

/// `PATCH /v1/user` (assumed): fields left out are kept.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = P100UpdateUserRequest)]
pub struct UpdateUserRequest {
    pub external_user_id: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    #[schema(value_type = Option<String>, format = Date)]
    pub birth_date: Option<chrono::NaiveDate>,
}

/// `PATCH /v1/user/suspend` and `/unsuspend` (assumed).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = P100UserRequest)]
pub struct UserRequest {
    pub external_user_id: String,
    /// Why (suspend only): kept as the locked cards' reason message.
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// A user (assumed shape).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = P100User)]
pub struct UserView {
    pub user_id: String,
    pub external_user_id: String,
    pub first_name: String,
    pub last_name: String,
    pub email: Option<String>,
    pub phone: String,
    #[schema(value_type = Option<String>, format = Date)]
    pub birth_date: Option<chrono::NaiveDate>,
    /// `ACTIVE` or `SUSPENDED` (a card is locked by a suspension).
    pub status: &'static str,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
}

/// Calling codes are prefix-free (ITU-T E.164): 1 and 7 are one digit,
/// these two, every other three.
const TWO_DIGIT_CODES: &[&str] = &[
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47", "48", "49", "51",
    "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65", "66", "81", "82", "84", "86", "90",
    "91", "92", "93", "94", "95", "98",
];

/// P100's phone (`"486012334567"`, `+` allowed) as country code and number.
fn phone(field: &str, text: &str) -> Result<Phone, ServiceError> {
    let digits = text.trim().trim_start_matches('+');
    if digits.len() < 8 || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ServiceError::invalid(
            field,
            "must be 8 to 15 digits: the country code then the number, e.g. \"486012334567\"",
        ));
    }
    let cc_len = if digits.starts_with('1') || digits.starts_with('7') {
        1
    } else if TWO_DIGIT_CODES.contains(&&digits[..2]) {
        2
    } else {
        3
    };
    Ok(Phone {
        country_code: digits[..cc_len].to_owned(),
        number: digits[cc_len..].to_owned(),
    })
}

fn full_name(first: &str, last: &str) -> String {
    format!("{} {}", first.trim(), last.trim()).trim().to_owned()
}

impl UserView {
    fn new(h: &Cardholder, suspended: bool) -> Self {
        let (first, last) = h.name.split_once(' ').unwrap_or((h.name.as_str(), ""));
        Self {
            user_id: h.id.to_string(),
            external_user_id: h.external_id.as_str().to_owned(),
            first_name: first.to_owned(),
            last_name: last.to_owned(),
            email: h.email.clone(),
            phone: format!("{}{}", h.phone.country_code.trim_start_matches('+'), h.phone.number),
            birth_date: h.date_of_birth,
            status: if suspended { "SUSPENDED" } else { "ACTIVE" },
            created_at: h.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }
}

/// `POST /v1/user/balances/crypto`: a user without KYC.
#[utoipa::path(
    post,
    path = "/v1/user/balances/crypto",
    operation_id = "p100CreateUser",
    summary = "Create a user account without KYC",
    description = "P100's KYC-less user: a cardcore cardholder with `external_id` = `externalUserId`. `phone` \
                   is required by cardcore (OTPs go to it) although P100's example has none. Address and \
                   document fields are accepted and not kept. `balances` is always empty.",
    request_body = CreateUserRequest,
    responses(
        (status = 200, description = "The user's id.", body = CreatedUser),
        (status = 400, description = "`P403`: a field missing, mistyped or unknown, a bad phone, name, e-mail \
                                      or birth date, or an `externalUserId` already used."),
    )
)]
pub(super) async fn create_user(
    State(s): State<AppState>,
    P100Auth(ctx): P100Auth,
    body: Body,
) -> Result<Json<CreatedUser>, P100Error> {
    let b: CreateUserRequest = parse_body(body)?;
    let phone = match &b.phone {
        Some(p) => phone("phone", p)?,
        None => return Err(ServiceError::invalid("phone", "is required: cardcore sends the user's OTPs to it").into()),
    };
    let holder = s
        .service
        .create_cardholder(
            &ctx,
            CreateCardholder {
                external_id: b.external_user_id,
                name: full_name(&b.first_name, &b.last_name),
                phone,
                email: b.email,
                date_of_birth: b.birth_date,
            },
        )
        .await?;
    Ok(Json(CreatedUser {
        user_id: holder.id.to_string(),
        balances: Vec::new(),
    }))
}

/// `PATCH /v1/user` (assumed path): changes the fields given.
#[utoipa::path(
    patch,
    path = "/v1/user",
    operation_id = "p100UpdateUser",
    summary = "Update a user (assumed path)",
    request_body = UpdateUserRequest,
    responses(
        (status = 200, description = "Updated.", body = Message, example = json!({"message": "User updated successfully"})),
        (status = 400, description = "`P403`: a field missing, mistyped, unknown or invalid; `P459` \
                                      (`USER_NOT_VERIFIED`): an `externalUserId` cardcore does not know."),
    )
)]
pub(super) async fn update_user(
    State(s): State<AppState>,
    P100Auth(ctx): P100Auth,
    body: Body,
) -> Result<Json<Message>, P100Error> {
    let b: UpdateUserRequest = parse_body(body)?;
    let phone = b.phone.as_deref().map(|p| phone("phone", p)).transpose()?;
    let h = holder(&s.service, &ctx, &b.external_user_id).await?;
    let name = match (&b.first_name, &b.last_name) {
        (None, None) => None,
        (first, last) => {
            let (cur_first, cur_last) = h.name.split_once(' ').unwrap_or((h.name.as_str(), ""));
            Some(full_name(
                first.as_deref().unwrap_or(cur_first),
                last.as_deref().unwrap_or(cur_last),
            ))
        }
    };
    s.service
        .update_cardholder(
            &ctx,
            h.id,
            UpdateCardholder {
                name,
                phone,
                email: b.email,
                date_of_birth: b.birth_date,
            },
        )
        .await?;
    Ok(Json(Message {
        message: "User updated successfully",
    }))
}

/// `GET /v1/user/{externalUserId}` (assumed: P100 lists no such page).
#[utoipa::path(
    get,
    path = "/v1/user/{external_user_id}",
    operation_id = "p100GetUser",
    summary = "A user (assumed path and shape)",
    params(("external_user_id" = String, Path, description = "P100 `externalUserId`: the cardholder's `external_id`.")),
    responses(
        (status = 200, description = "The user.", body = UserView),
        (status = 400, description = "`P459` (`USER_NOT_VERIFIED`): an `externalUserId` cardcore does not know."),
    )
)]
pub(super) async fn get_user(
    State(s): State<AppState>,
    P100Auth(ctx): P100Auth,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<UserView>, P100Error> {
    let Path(user) = path.map_err(|r| ServiceError::invalid("path", r.body_text()))?;
    let h = holder(&s.service, &ctx, &user).await?;
    let suspended = s.service.cardholder_suspended(&ctx, h.id).await?;
    Ok(Json(UserView::new(&h, suspended)))
}

/// `PATCH /v1/user/suspend` (assumed path): locks the user's active cards.
#[utoipa::path(
    patch,
    path = "/v1/user/suspend",
    operation_id = "p100SuspendUser",
    summary = "Suspend a user (assumed path)",
    description = "Each ACTIVE card of the user is locked with the reason `USER_SUSPENDED` (and `reason` as \
                   its message); cards in other statuses are left alone.",
    request_body = UserRequest,
    responses(
        (status = 200, description = "Suspended.", body = Message, example = json!({"message": "User suspended successfully"})),
        (status = 400, description = "`P403`: a field missing, mistyped or unknown; `P459` (`USER_NOT_VERIFIED`): \
                                      an `externalUserId` cardcore does not know."),
    )
)]
pub(super) async fn suspend_user(
    State(s): State<AppState>,
    P100Auth(ctx): P100Auth,
    body: Body,
) -> Result<Json<Message>, P100Error> {
    let b: UserRequest = parse_body(body)?;
    let h = holder(&s.service, &ctx, &b.external_user_id).await?;
    s.service.suspend_cardholder(&ctx, h.id, b.reason).await?;
    Ok(Json(Message {
        message: "User suspended successfully",
    }))
}

/// `PATCH /v1/user/unsuspend` (assumed path): unlocks what suspend locked.
#[utoipa::path(
    patch,
    path = "/v1/user/unsuspend",
    operation_id = "p100UnsuspendUser",
    summary = "Unsuspend a user (assumed path)",
    description = "Unlocks exactly the cards a suspension locked; a card locked (P100 \"blocked\") for another \
                   reason stays locked.",
    request_body = UserRequest,
    responses(
        (status = 200, description = "Unsuspended.", body = Message, example = json!({"message": "User unsuspended successfully"})),
        (status = 400, description = "`P403`: a field missing, mistyped or unknown; `P459` (`USER_NOT_VERIFIED`): \
                                      an `externalUserId` cardcore does not know."),
    )
)]
pub(super) async fn unsuspend_user(
    State(s): State<AppState>,
    P100Auth(ctx): P100Auth,
    body: Body,
) -> Result<Json<Message>, P100Error> {
    let b: UserRequest = parse_body(body)?;
    if b.reason.is_some() {
        return Err(ServiceError::invalid("reason", "is only taken by suspend").into());
    }
    let h = holder(&s.service, &ctx, &b.external_user_id).await?;
    s.service.unsuspend_cardholder(&ctx, h.id).await?;
    Ok(Json(Message {
        message: "User unsuspended successfully",
    }))
}

/// `DELETE /v1/user/{externalUserId}` (assumed path): closes the user's cards.
#[utoipa::path(
    delete,
    path = "/v1/user/{external_user_id}",
    operation_id = "p100DeleteUser",
    summary = "Delete a user (assumed path)",
    description = "Closes every card of the user (terminal). The cardholder record stays, for the audit trail.",
    params(("external_user_id" = String, Path, description = "P100 `externalUserId`: the cardholder's `external_id`.")),
    responses(
        (status = 200, description = "Deleted.", body = Message, example = json!({"message": "User deleted successfully"})),
        (status = 400, description = "`P459` (`USER_NOT_VERIFIED`): an `externalUserId` cardcore does not know."),
    )
)]
pub(super) async fn delete_user(
    State(s): State<AppState>,
    P100Auth(ctx): P100Auth,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Message>, P100Error> {
    let Path(user) = path.map_err(|r| ServiceError::invalid("path", r.body_text()))?;
    let h = holder(&s.service, &ctx, &user).await?;
    s.service.close_cardholder_cards(&ctx, h.id).await?;
    Ok(Json(Message {
        message: "User deleted successfully",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_split_at_the_calling_code() {
        let p = phone("phone", "486012334567").unwrap();
        assert_eq!((p.country_code.as_str(), p.number.as_str()), ("48", "6012334567"));
        let p = phone("phone", "+919600389470").unwrap();
        assert_eq!((p.country_code.as_str(), p.number.as_str()), ("91", "9600389470"));
        let p = phone("phone", "15550001111").unwrap();
        assert_eq!((p.country_code.as_str(), p.number.as_str()), ("1", "5550001111"));
        let p = phone("phone", "351912345678").unwrap();
        assert_eq!((p.country_code.as_str(), p.number.as_str()), ("351", "912345678"));
        assert!(phone("phone", "12ab").is_err());
    }
}
