//! Conversions between rows and domain records.

use std::str::FromStr;

use cardcore_domain::event::Actor;
use cardcore_domain::{
    AuditEntry, Brand, Card, CardStatus, CardType, Cardholder, Event, EventType, Expiry, ExternalId, KitNumber, Limits,
    Phone, PinStatus, ReasonCode, StatusReason, Tenant, Timestamp,
};
use cardcore_store::{
    ApiKeyRecord, CardRecord, CardSecrets, SealedData, StoreError, StoreResult, StoredEvent, Verifier,
};
use chrono::SecondsFormat;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

/// Timestamps as fixed-width RFC 3339 text, so they sort as text.
pub fn ts(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn parse_ts(s: &str) -> StoreResult<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| StoreError::Internal(format!("bad timestamp {s:?}: {e}")))
}

pub(crate) fn get<'r, T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>>(
    row: &'r SqliteRow,
    col: &str,
) -> StoreResult<T> {
    row.try_get(col)
        .map_err(|e| StoreError::Internal(format!("column {col}: {e}")))
}

pub(crate) fn id<T: FromStr>(row: &SqliteRow, col: &str) -> StoreResult<T> {
    let s: String = get(row, col)?;
    s.parse()
        .map_err(|_| StoreError::Internal(format!("column {col}: not a UUID")))
}

pub(crate) fn opt_id<T: FromStr>(row: &SqliteRow, col: &str) -> StoreResult<Option<T>> {
    let s: Option<String> = get(row, col)?;
    s.map(|s| {
        s.parse()
            .map_err(|_| StoreError::Internal(format!("column {col}: not a UUID")))
    })
    .transpose()
}

fn bad(col: &str) -> StoreError {
    StoreError::Internal(format!("column {col}: unexpected value"))
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(s: &str, col: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Internal(format!("column {col}: {e}")))
}

pub fn to_json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Internal(e.to_string()))
}

pub fn tenant(row: &SqliteRow) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: id(row, "id")?,
        name: get(row, "name")?,
        default_program_id: id(row, "default_program_id")?,
        created_at: parse_ts(&get::<String>(row, "created_at")?)?,
    })
}

pub fn api_key(row: &SqliteRow) -> StoreResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: id(row, "key_id")?,
        tenant_id: id(row, "key_tenant_id")?,
        key_hash: get(row, "key_hash")?,
        prefix: get(row, "prefix")?,
        can_reveal: get::<i64>(row, "can_reveal")? != 0,
        created_at: parse_ts(&get::<String>(row, "key_created_at")?)?,
    })
}

pub fn cardholder(row: &SqliteRow) -> StoreResult<Cardholder> {
    let dob: Option<String> = get(row, "date_of_birth")?;
    Ok(Cardholder {
        id: id(row, "id")?,
        tenant_id: id(row, "tenant_id")?,
        external_id: ExternalId::parse(&get::<String>(row, "external_id")?).map_err(|_| bad("external_id"))?,
        name: get(row, "name")?,
        phone: Phone {
            country_code: get(row, "phone_country_code")?,
            number: get(row, "phone_number")?,
        },
        email: get(row, "email")?,
        date_of_birth: dob
            .map(|d| chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").map_err(|_| bad("date_of_birth")))
            .transpose()?,
        default_account_id: id(row, "default_account_id")?,
        created_at: parse_ts(&get::<String>(row, "created_at")?)?,
    })
}

pub const CARD_COLUMNS: &str = "id, tenant_id, cardholder_id, account_id, program_id, type, status, reason_code, \
    reason_message, pin_status, brand, last_four, expiry_month, expiry_year, card_name, printed_name, kit_number, \
    replacement_for, limits, pan_hash, pan_sealed, cvv_sealed, data_key_version, activation_verifier, \
    activation_key_version, pin_verifier, pin_key_version, pin_failures, created_at, updated_at";

fn verifier(row: &SqliteRow, value: &str, version: &str) -> StoreResult<Option<Verifier>> {
    let v: Option<Vec<u8>> = get(row, value)?;
    let k: Option<i64> = get(row, version)?;
    Ok(match (v, k) {
        (Some(value), Some(k)) => Some(Verifier {
            value,
            key_version: k as i32,
        }),
        _ => None,
    })
}

pub fn card(row: &SqliteRow) -> StoreResult<CardRecord> {
    let reason_code: Option<String> = get(row, "reason_code")?;
    let card = Card {
        id: id(row, "id")?,
        tenant_id: id(row, "tenant_id")?,
        cardholder_id: id(row, "cardholder_id")?,
        account_id: id(row, "account_id")?,
        program_id: id(row, "program_id")?,
        card_type: CardType::parse(&get::<String>(row, "type")?).ok_or_else(|| bad("type"))?,
        status: CardStatus::parse(&get::<String>(row, "status")?).ok_or_else(|| bad("status"))?,
        status_reason: reason_code
            .map(|code| {
                Ok::<_, StoreError>(StatusReason {
                    code: serde_json::from_value::<ReasonCode>(serde_json::Value::String(code))
                        .map_err(|_| bad("reason_code"))?,
                    message: get(row, "reason_message")?,
                })
            })
            .transpose()?,
        pin_status: PinStatus::parse(&get::<String>(row, "pin_status")?).ok_or_else(|| bad("pin_status"))?,
        brand: Brand::parse(&get::<String>(row, "brand")?).ok_or_else(|| bad("brand"))?,
        last_four: get(row, "last_four")?,
        expiry: Expiry::new(
            get::<i64>(row, "expiry_month")? as u8,
            get::<i64>(row, "expiry_year")? as u16,
        )
        .ok_or_else(|| bad("expiry"))?,
        card_name: get(row, "card_name")?,
        printed_name: get(row, "printed_name")?,
        kit_number: KitNumber::parse(&get::<String>(row, "kit_number")?).ok_or_else(|| bad("kit_number"))?,
        replacement_for: opt_id(row, "replacement_for")?,
        limits: json::<Limits>(&get::<String>(row, "limits")?, "limits")?,
        created_at: parse_ts(&get::<String>(row, "created_at")?)?,
        updated_at: parse_ts(&get::<String>(row, "updated_at")?)?,
    };
    let secrets = CardSecrets {
        pan_hash: get(row, "pan_hash")?,
        pan_sealed: get(row, "pan_sealed")?,
        cvv_sealed: get(row, "cvv_sealed")?,
        data_key_version: get::<i64>(row, "data_key_version")? as i32,
        activation_code: verifier(row, "activation_verifier", "activation_key_version")?,
        pin: verifier(row, "pin_verifier", "pin_key_version")?,
        pin_failures: get::<i64>(row, "pin_failures")? as u32,
    };
    Ok(CardRecord { card, secrets })
}

pub fn audit(row: &SqliteRow) -> StoreResult<AuditEntry> {
    let reason: Option<String> = get(row, "reason")?;
    let before: Option<String> = get(row, "before")?;
    let after: Option<String> = get(row, "after")?;
    Ok(AuditEntry {
        id: id(row, "id")?,
        tenant_id: id(row, "tenant_id")?,
        card_id: opt_id(row, "card_id")?,
        entry_type: get(row, "type")?,
        actor: json::<Actor>(&get::<String>(row, "actor")?, "actor")?,
        request_id: get(row, "request_id")?,
        reason: reason.map(|r| json(&r, "reason")).transpose()?,
        before: before.map(|b| json(&b, "before")).transpose()?,
        after: after.map(|a| json(&a, "after")).transpose()?,
        created_at: parse_ts(&get::<String>(row, "created_at")?)?,
    })
}

pub fn event(row: &SqliteRow) -> StoreResult<StoredEvent> {
    let data: Option<String> = get(row, "data")?;
    let sealed: Option<Vec<u8>> = get(row, "sealed_data")?;
    let sealed_version: Option<i64> = get(row, "sealed_key_version")?;
    Ok(StoredEvent {
        event: Event {
            id: id(row, "id")?,
            tenant_id: id(row, "tenant_id")?,
            event_type: EventType::parse(&get::<String>(row, "type")?).ok_or_else(|| bad("type"))?,
            card_id: opt_id(row, "card_id")?,
            created_at: parse_ts(&get::<String>(row, "created_at")?)?,
            data: data
                .map(|d| json(&d, "data"))
                .transpose()?
                .unwrap_or(serde_json::Value::Null),
        },
        sealed_data: match (sealed, sealed_version) {
            (Some(ciphertext), Some(v)) => Some(SealedData {
                ciphertext,
                key_version: v as i32,
            }),
            _ => None,
        },
    })
}
