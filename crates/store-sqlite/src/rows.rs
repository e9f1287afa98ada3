//! Conversions between rows and domain records.

use std::str::FromStr;

use cardcore_domain::authorization::{SpendTotals, SpendingControls};
use cardcore_domain::event::Actor;
use cardcore_domain::{
    AuditEntry, Brand, Card, CardStatus, CardType, Cardholder, Event, EventType, Expiry, ExternalId, KitNumber, Limits,
    Phone, PinStatus, ReasonCode, StatusReason, Tenant, Timestamp,
};
use cardcore_store::{
    ApiKeyRecord, CardRecord, CardSecrets, CardUsage, SealedData, StoreError, StoreResult, StoredEvent, Verifier,
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
        .map_err(|e| StoreError::caused(format!("bad timestamp {s:?}"), e))
}

/// An optional RFC 3339 column.
pub(crate) fn opt_ts(row: &SqliteRow, col: &str) -> StoreResult<Option<Timestamp>> {
    get::<Option<String>>(row, col)?.as_deref().map(parse_ts).transpose()
}

pub(crate) fn get<'r, T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>>(
    row: &'r SqliteRow,
    col: &str,
) -> StoreResult<T> {
    row.try_get(col)
        .map_err(|e| StoreError::caused(format!("column {col}"), e))
}

pub(crate) fn id<T: FromStr>(row: &SqliteRow, col: &str) -> StoreResult<T> {
    let s: String = get(row, col)?;
    s.parse()
        .map_err(|_| StoreError::internal(format!("column {col}: not a UUID")))
}

pub(crate) fn opt_id<T: FromStr>(row: &SqliteRow, col: &str) -> StoreResult<Option<T>> {
    let s: Option<String> = get(row, col)?;
    s.map(|s| {
        s.parse()
            .map_err(|_| StoreError::internal(format!("column {col}: not a UUID")))
    })
    .transpose()
}

/// The columns of a row by name, whichever driver read it: sqlx's rows and
/// the point reads' rusqlite rows (`read.rs`) map to records by the same
/// code.
pub(crate) trait Columns {
    fn text(&self, col: &str) -> StoreResult<String>;
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>>;
    fn int(&self, col: &str) -> StoreResult<i64>;
    fn opt_int(&self, col: &str) -> StoreResult<Option<i64>>;
    fn blob(&self, col: &str) -> StoreResult<Vec<u8>>;
    fn opt_blob(&self, col: &str) -> StoreResult<Option<Vec<u8>>>;

    fn uuid<T: FromStr>(&self, col: &str) -> StoreResult<T> {
        self.text(col)?
            .parse()
            .map_err(|_| StoreError::internal(format!("column {col}: not a UUID")))
    }

    fn opt_uuid<T: FromStr>(&self, col: &str) -> StoreResult<Option<T>> {
        self.opt_text(col)?
            .map(|s| {
                s.parse()
                    .map_err(|_| StoreError::internal(format!("column {col}: not a UUID")))
            })
            .transpose()
    }
}

impl Columns for SqliteRow {
    fn text(&self, col: &str) -> StoreResult<String> {
        get(self, col)
    }
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>> {
        get(self, col)
    }
    fn int(&self, col: &str) -> StoreResult<i64> {
        get(self, col)
    }
    fn opt_int(&self, col: &str) -> StoreResult<Option<i64>> {
        get(self, col)
    }
    fn blob(&self, col: &str) -> StoreResult<Vec<u8>> {
        get(self, col)
    }
    fn opt_blob(&self, col: &str) -> StoreResult<Option<Vec<u8>>> {
        get(self, col)
    }
}

fn bad(col: &str) -> StoreError {
    StoreError::internal(format!("column {col}: unexpected value"))
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(s: &str, col: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| StoreError::caused(format!("column {col}"), e))
}

pub fn to_json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::caused("encoding JSON", e))
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
        name: get(row, "key_name")?,
        last_used_at: opt_ts(row, "last_used_at")?,
        revoked_at: opt_ts(row, "revoked_at")?,
    })
}

pub(crate) fn cardholder(row: &impl Columns) -> StoreResult<Cardholder> {
    Ok(Cardholder {
        id: row.uuid("id")?,
        tenant_id: row.uuid("tenant_id")?,
        external_id: ExternalId::parse(&row.text("external_id")?).map_err(|_| bad("external_id"))?,
        name: row.text("name")?,
        phone: Phone {
            country_code: row.text("phone_country_code")?,
            number: row.text("phone_number")?,
        },
        email: row.opt_text("email")?,
        date_of_birth: row
            .opt_text("date_of_birth")?
            .map(|d| chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").map_err(|_| bad("date_of_birth")))
            .transpose()?,
        default_account_id: row.uuid("default_account_id")?,
        created_at: parse_ts(&row.text("created_at")?)?,
    })
}

pub const CARD_COLUMNS: &str = "id, tenant_id, cardholder_id, account_id, program_id, type, status, reason_code, \
    reason_message, pin_status, brand, last_four, expiry_month, expiry_year, card_name, printed_name, kit_number, \
    replacement_for, limits, pan_hash, pan_sealed, cvv_sealed, data_key_version, activation_verifier, \
    activation_key_version, pin_verifier, pin_key_version, pin_failures, created_at, updated_at, controls, spend";

fn verifier(row: &impl Columns, value: &str, version: &str) -> StoreResult<Option<Verifier>> {
    Ok(match (row.opt_blob(value)?, row.opt_int(version)?) {
        (Some(value), Some(k)) => Some(Verifier {
            value,
            key_version: k as i32,
        }),
        _ => None,
    })
}

pub(crate) fn card(row: &impl Columns) -> StoreResult<CardRecord> {
    let card = Card {
        id: row.uuid("id")?,
        tenant_id: row.uuid("tenant_id")?,
        cardholder_id: row.uuid("cardholder_id")?,
        account_id: row.uuid("account_id")?,
        program_id: row.uuid("program_id")?,
        card_type: CardType::parse(&row.text("type")?).ok_or_else(|| bad("type"))?,
        status: CardStatus::parse(&row.text("status")?).ok_or_else(|| bad("status"))?,
        status_reason: row
            .opt_text("reason_code")?
            .map(|code| {
                Ok::<_, StoreError>(StatusReason {
                    code: serde_json::from_value::<ReasonCode>(serde_json::Value::String(code))
                        .map_err(|_| bad("reason_code"))?,
                    message: row.opt_text("reason_message")?,
                })
            })
            .transpose()?,
        pin_status: PinStatus::parse(&row.text("pin_status")?).ok_or_else(|| bad("pin_status"))?,
        brand: Brand::parse(&row.text("brand")?).ok_or_else(|| bad("brand"))?,
        last_four: row.text("last_four")?,
        expiry: Expiry::new(row.int("expiry_month")? as u8, row.int("expiry_year")? as u16)
            .ok_or_else(|| bad("expiry"))?,
        card_name: row.opt_text("card_name")?,
        printed_name: row.opt_text("printed_name")?,
        kit_number: KitNumber::parse(&row.text("kit_number")?).ok_or_else(|| bad("kit_number"))?,
        replacement_for: row.opt_uuid("replacement_for")?,
        limits: json::<Limits>(&row.text("limits")?, "limits")?,
        created_at: parse_ts(&row.text("created_at")?)?,
        updated_at: parse_ts(&row.text("updated_at")?)?,
    };
    let secrets = CardSecrets {
        pan_hash: row.blob("pan_hash")?,
        pan_sealed: row.blob("pan_sealed")?,
        data_key_version: row.int("data_key_version")? as i32,
        activation_code: verifier(row, "activation_verifier", "activation_key_version")?,
        pin: verifier(row, "pin_verifier", "pin_key_version")?,
        pin_failures: row.int("pin_failures")? as u32,
    };
    let usage = CardUsage {
        controls: row
            .opt_text("controls")?
            .map(|c| json::<SpendingControls>(&c, "controls"))
            .transpose()?,
        totals: json::<SpendTotals>(&row.text("spend")?, "spend")?,
    };
    Ok(CardRecord { card, secrets, usage })
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
