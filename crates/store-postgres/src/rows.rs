//! Conversions between rows and domain records.

use cardcore_domain::authorization::{SpendTotals, SpendingControls};
use cardcore_domain::event::Actor;
use cardcore_domain::{
    AuditEntry, Brand, Card, CardStatus, CardType, Cardholder, Event, EventType, Expiry, ExternalId, KitNumber, Limits,
    Phone, PinStatus, ReasonCode, StatusReason, Tenant, Timestamp,
};
use cardcore_store::{
    ApiKeyRecord, CardRecord, CardSecrets, CardUsage, SealedData, StoreError, StoreResult, StoredEvent, Verifier,
};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::Row;
use uuid::Uuid;

/// Column decode errors name the column, never the value (it may be a secret).
pub fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
    row: &'r PgRow,
    col: &str,
) -> StoreResult<T> {
    row.try_get(col)
        .map_err(|e| StoreError::caused(format!("column {col}"), e))
}

fn id<T: From<Uuid>>(row: &PgRow, col: &str) -> StoreResult<T> {
    get::<Uuid>(row, col).map(T::from)
}

fn opt_id<T: From<Uuid>>(row: &PgRow, col: &str) -> StoreResult<Option<T>> {
    Ok(get::<Option<Uuid>>(row, col)?.map(T::from))
}

fn bad(col: &str) -> StoreError {
    StoreError::internal(format!("column {col}: unexpected value"))
}

/// A jsonb column. serde's message is withheld: it can quote the stored
/// value, and some of these hold verifiers.
pub fn json<T: serde::de::DeserializeOwned>(row: &PgRow, col: &str) -> StoreResult<T> {
    opt_json(row, col)?.ok_or_else(|| bad(col))
}

fn opt_json<T: serde::de::DeserializeOwned>(row: &PgRow, col: &str) -> StoreResult<Option<T>> {
    match row.try_get::<Option<Json<T>>, _>(col) {
        Ok(v) => Ok(v.map(|j| j.0)),
        Err(sqlx::Error::ColumnDecode { .. }) => Err(StoreError::internal(format!(
            "column {col}: not the expected JSON shape"
        ))),
        Err(e) => Err(StoreError::caused(format!("column {col}"), e)),
    }
}

/// A non-negative counter stored as bigint.
pub fn count(row: &PgRow, col: &str) -> StoreResult<u32> {
    u32::try_from(get::<i64>(row, col)?).map_err(|_| bad(col))
}

pub fn tenant(row: &PgRow) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: id(row, "id")?,
        name: get(row, "name")?,
        default_program_id: id(row, "default_program_id")?,
        created_at: get::<Timestamp>(row, "created_at")?,
    })
}

pub fn api_key(row: &PgRow) -> StoreResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: id(row, "key_id")?,
        tenant_id: id(row, "key_tenant_id")?,
        key_hash: get(row, "key_hash")?,
        prefix: get(row, "prefix")?,
        can_reveal: get(row, "can_reveal")?,
        created_at: get(row, "key_created_at")?,
        name: get(row, "key_name")?,
        last_used_at: get(row, "last_used_at")?,
        revoked_at: get(row, "revoked_at")?,
    })
}

pub fn cardholder(row: &PgRow) -> StoreResult<Cardholder> {
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
        date_of_birth: get(row, "date_of_birth")?,
        default_account_id: id(row, "default_account_id")?,
        created_at: get(row, "created_at")?,
    })
}

/// The card columns, in the order `insert_card` binds them.
pub const CARD_COLUMNS: &str = "id, tenant_id, cardholder_id, account_id, program_id, type, status, reason_code, \
    reason_message, pin_status, brand, last_four, expiry_month, expiry_year, card_name, printed_name, kit_number, \
    replacement_for, limits, pan_hash, pan_sealed, cvv_sealed, data_key_version, activation_verifier, \
    activation_key_version, pin_verifier, pin_key_version, pin_failures, created_at, updated_at, controls, spend";

fn verifier(row: &PgRow, value: &str, version: &str) -> StoreResult<Option<Verifier>> {
    let v: Option<Vec<u8>> = get(row, value)?;
    let k: Option<i32> = get(row, version)?;
    Ok(match (v, k) {
        (Some(value), Some(key_version)) => Some(Verifier { value, key_version }),
        _ => None,
    })
}

pub fn card(row: &PgRow) -> StoreResult<CardRecord> {
    let reason_code: Option<String> = get(row, "reason_code")?;
    let month = u8::try_from(get::<i32>(row, "expiry_month")?).map_err(|_| bad("expiry_month"))?;
    let year = u16::try_from(get::<i32>(row, "expiry_year")?).map_err(|_| bad("expiry_year"))?;
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
                    // Stored codes were valid when written; the catalogue may
                    // have shrunk since, so they are not re-validated here.
                    code: serde_json::from_value::<ReasonCode>(serde_json::Value::String(code))
                        .map_err(|_| bad("reason_code"))?,
                    message: get(row, "reason_message")?,
                })
            })
            .transpose()?,
        pin_status: PinStatus::parse(&get::<String>(row, "pin_status")?).ok_or_else(|| bad("pin_status"))?,
        brand: Brand::parse(&get::<String>(row, "brand")?).ok_or_else(|| bad("brand"))?,
        last_four: get(row, "last_four")?,
        expiry: Expiry::new(month, year).ok_or_else(|| bad("expiry"))?,
        card_name: get(row, "card_name")?,
        printed_name: get(row, "printed_name")?,
        kit_number: KitNumber::parse(&get::<String>(row, "kit_number")?).ok_or_else(|| bad("kit_number"))?,
        replacement_for: opt_id(row, "replacement_for")?,
        limits: json::<Limits>(row, "limits")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    };
    let secrets = CardSecrets {
        pan_hash: get(row, "pan_hash")?,
        pan_sealed: get(row, "pan_sealed")?,
        data_key_version: get(row, "data_key_version")?,
        activation_code: verifier(row, "activation_verifier", "activation_key_version")?,
        pin: verifier(row, "pin_verifier", "pin_key_version")?,
        pin_failures: count(row, "pin_failures")?,
    };
    let usage = CardUsage {
        controls: opt_json::<SpendingControls>(row, "controls")?,
        totals: json::<SpendTotals>(row, "spend")?,
    };
    Ok(CardRecord { card, secrets, usage })
}

pub fn audit(row: &PgRow) -> StoreResult<AuditEntry> {
    Ok(AuditEntry {
        id: id(row, "id")?,
        tenant_id: id(row, "tenant_id")?,
        card_id: opt_id(row, "card_id")?,
        entry_type: get(row, "type")?,
        actor: json::<Actor>(row, "actor")?,
        request_id: get(row, "request_id")?,
        reason: opt_json(row, "reason")?,
        before: opt_json(row, "before")?,
        after: opt_json(row, "after")?,
        created_at: get(row, "created_at")?,
    })
}

pub fn event(row: &PgRow) -> StoreResult<StoredEvent> {
    let sealed: Option<Vec<u8>> = get(row, "sealed_data")?;
    let sealed_version: Option<i32> = get(row, "sealed_key_version")?;
    Ok(StoredEvent {
        event: Event {
            id: id(row, "id")?,
            tenant_id: id(row, "tenant_id")?,
            event_type: EventType::parse(&get::<String>(row, "type")?).ok_or_else(|| bad("type"))?,
            card_id: opt_id(row, "card_id")?,
            created_at: get(row, "created_at")?,
            data: opt_json(row, "data")?.unwrap_or(serde_json::Value::Null),
        },
        sealed_data: match (sealed, sealed_version) {
            (Some(ciphertext), Some(key_version)) => Some(SealedData {
                ciphertext,
                key_version,
            }),
            _ => None,
        },
    })
}
