//! M2P's `POST .../otp/validate-otp`
//! (https://dev.m2p.app/docs/prepaidv2/api-library/authentication/validateOtp):
//! checks the code the cardholder typed against an OTP of `otp/generate`
//! without spending it, so the app can go on to the PIN change with it.

use axum::extract::State;
use axum::Json;
use cardcore_domain::{Card, CardId, ValidationErrors};
use cardcore_service::pins::OtpProof;
use cardcore_service::ServiceError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::Op;
use super::types::{Envelope, Mobile};
use super::{answer, check_mobile, same_phone, Body, M2pAuth, M2pError};
use crate::dialects::{card_by_kit_of_holder, only_card_of_holder, parse_body, parse_id};
use crate::AppState;

/// The card an OTP of `otp/generate` belongs to, as `refNumber` names it
/// (M2P's reference of the generated OTP; cardcore's is the card's id in
/// 32 hex digits).
pub(super) fn ref_number(card: &Card) -> String {
    card.id.as_uuid().simple().to_string()
}

/// `POST .../otp/validate-otp` (no `Debug`: the OTP).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = M2pValidateOtpRequest)]
pub struct ValidateOtpRequest {
    /// The `traceNumber` of `otp/generate`.
    pub trace_number: String,
    /// The `refNumber` of `otp/generate`: names the card when `kitNo` is not given.
    pub ref_number: Option<String>,
    /// The 6-digit code the cardholder received.
    #[schema(min_length = 6, max_length = 6)]
    pub mobile_otp: String,
    /// Not used: cardcore sends no e-mail OTP (the mobile OTP is always checked).
    #[serde(rename = "emailOtp")]
    pub _email_otp: Option<String>,
    #[schema(schema_with = otp_type)]
    pub otp_type: Option<String>,
    /// When given, must be the cardholder's phone.
    pub mobile: Option<Mobile>,
    /// The cardholder's `external_id`; with `kitNo` (or alone, for its only open card) it names the card.
    pub entity_id: Option<String>,
    /// Not used.
    #[serde(rename = "eventName")]
    pub _event_name: Option<String>,
    /// The card's kit number (also accepted as `kit`).
    #[serde(alias = "kit")]
    #[schema(pattern = "^[0-9]{6,16}$")]
    pub kit_no: Option<String>,
    /// Not used.
    #[serde(rename = "linkData")]
    pub _link_data: Option<String>,
    /// When given, must be the cardholder's phone number.
    pub mobile_number: Option<String>,
    /// When given, must equal `mobileOtp`.
    pub otp: Option<String>,
}

fn otp_type() -> utoipa::openapi::Object {
    crate::openapi::string_enum(["SINGLE_OTP_MOBILE", "SINGLE_OTP_DUAL", "DIFFERENT_OTP_DUAL"])
}

/// `{"status": true, "refNumber", "messageHash"}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = M2pValidateOtpResponse)]
pub struct ValidateOtpResponse {
    /// Always `true` on success (a wrong code is an error).
    pub status: bool,
    /// The `refNumber` of the OTP.
    pub ref_number: String,
    /// Proof that the code was checked: a keyed hash of the card and the
    /// trace number (64 hex digits), never of the code.
    #[schema(pattern = "^[0-9A-F]{64}$")]
    pub message_hash: String,
}

/// `POST .../otp/validate-otp`: a wrong code counts toward the PIN-change
/// OTP lock; a right one stays usable for `cards/update/pin` or `set-pin`.
#[utoipa::path(
    post,
    path = "/otp/validate-otp",
    operation_id = "m2pValidateOtp",
    summary = "Validate an OTP",
    description = "Checks `mobileOtp` against the OTP `traceNumber` of `otp/generate`, without spending it: the same code then authorises the PIN change. The card is named by `kitNo` (with `entityId`), by `refNumber` (as `otp/generate` answered it), or by `entityId` alone when the cardholder has one open card. A wrong code counts toward the same lock as a wrong code in a PIN change (3 in a row lock for 10 minutes). `emailOtp`, `eventName` and `linkData` are accepted and not used; `mobile`, `mobileNumber` and `otp`, when given, must match.",
    request_body = ValidateOtpRequest,
    responses(
        (status = 200, description = "`{\"result\": {\"status\": true, \"refNumber\", \"messageHash\"}, \"pagination\": null}`.", body = Envelope<ValidateOtpResponse>),
        (status = 400, description = "`error.validation` with `fieldErrors`: a field missing or mistyped, no way to name the card (`refNumber`), `mobile` or `mobileNumber` not the cardholder's (\"Invalid contact\"), `otp` not `mobileOtp`, an unknown `otpType`."),
        (status = 409, description = "`PP_MIDD_034` \"Otp Validation is not allowed more than 3 times in 24hrs\": locked after 3 wrong codes (with `Retry-After`, the lock's real end); `invalid.otp`: a wrong, unknown or used code; `otp.expired`: a right code after its 5 minutes; `card.not.found`: no such card for that `entityId`, kit or `refNumber`."),
        (status = 429, description = "`rate.limited`: over the per-card limit on PIN and OTP calls (all APIs together), with `Retry-After`."),
    )
)]
pub(super) async fn validate_otp(
    State(s): State<AppState>,
    M2pAuth(ctx): M2pAuth,
    body: Body,
) -> Result<Json<Envelope<ValidateOtpResponse>>, M2pError> {
    let outcome = async {
        let b: ValidateOtpRequest = parse_body(body)?;
        if b.otp_type
            .as_deref()
            .is_some_and(|t| !["SINGLE_OTP_MOBILE", "SINGLE_OTP_DUAL", "DIFFERENT_OTP_DUAL"].contains(&t))
        {
            return Err(ServiceError::invalid(
                "otpType",
                "must be SINGLE_OTP_MOBILE, SINGLE_OTP_DUAL or DIFFERENT_OTP_DUAL",
            ));
        }
        let (holder, card) = match (&b.entity_id, &b.kit_no, &b.ref_number) {
            (Some(entity), Some(kit), _) => card_by_kit_of_holder(&s.service, &ctx, entity, kit).await?,
            (None, Some(_), _) => {
                return Err(ServiceError::invalid(
                    "entityId",
                    "must not be null when kitNo is given",
                ))
            }
            (_, None, Some(r)) if !r.trim().is_empty() => {
                let id: CardId = parse_id("refNumber", r)
                    .map_err(|_| ServiceError::invalid("refNumber", "must be the refNumber otp/generate answered"))?;
                let card = s.service.card(&ctx, id).await?;
                let holder = s.service.cardholder(&ctx, card.cardholder_id).await?;
                if b.entity_id.as_deref().is_some_and(|e| holder.external_id.as_str() != e) {
                    return Err(ServiceError::NotFound("card"));
                }
                (holder, card)
            }
            (Some(entity), None, _) => match only_card_of_holder(&s.service, &ctx, entity, None).await? {
                (holder, Some(card)) => (holder, card),
                (_, None) => {
                    return Err(ServiceError::invalid(
                        "kitNo",
                        "required: this entityId has no single open card to name without it",
                    ))
                }
            },
            (None, None, _) => {
                return Err(ServiceError::invalid(
                    "refNumber",
                    "must not be null: name the card by refNumber (from otp/generate) or by entityId and kitNo",
                ))
            }
        };
        let mut errors = ValidationErrors::new();
        check_mobile(&mut errors, &holder, b.mobile.as_ref());
        if b.mobile_number
            .as_deref()
            .is_some_and(|n| !same_phone(&holder, n, None))
        {
            errors.add("mobileNumber", "Invalid contact");
        }
        if b.otp.as_deref().is_some_and(|o| o != b.mobile_otp) {
            errors.add("otp", "does not match mobileOtp");
        }
        errors.into_result()?;
        let proof = OtpProof {
            trace_number: b.trace_number,
            code: b.mobile_otp,
        };
        let checked = s.service.validate_otp(&ctx, card.id, proof).await?;
        Ok(Envelope::new(ValidateOtpResponse {
            status: true,
            ref_number: ref_number(&card),
            message_hash: checked.message_hash,
        }))
    };
    answer(Op::ValidateOtp, outcome.await)
}
