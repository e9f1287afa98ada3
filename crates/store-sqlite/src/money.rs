//! Authorizations and card transactions: rows, reads and the statements a
//! write transaction queues.

use cardcore_domain::authorization::{
    Amounts, AuthorizationStatus, DecidedBy, DeclineReason, Merchant, PaymentChannel, Windows,
};
use cardcore_domain::{AuthorizationId, CardId, TenantId, Timestamp};
use cardcore_store::{
    AuthorizationRecord, DueAuthorization, MoneyPage, StoreError, StoreResult, TransactionKind, TransactionRecord,
};
use sqlx::sqlite::SqliteRow;

use crate::group::Batch;
use crate::rows::{get, id, json, opt_id, opt_ts, parse_ts, to_json, ts};
use crate::{id_str, map_err, SqliteStore};

fn bad(col: &str) -> StoreError {
    StoreError::internal(format!("column {col}: unexpected value"))
}

fn amount(row: &SqliteRow, col: &str) -> StoreResult<u64> {
    u64::try_from(get::<i64>(row, col)?).map_err(|_| bad(col))
}

fn sql_amount(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) const AUTH_COLUMNS: &str = "id, tenant_id, card_id, status, decline_reason, response_code, decided_by, \
    amount, currency, billing_amount, billing_currency, approved_amount, pending_amount, captured_amount, \
    reversed_amount, merchant, channel, network_reference, day_key, month_key, expires_at, created_at, updated_at";

pub(crate) fn authorization(row: &SqliteRow) -> StoreResult<AuthorizationRecord> {
    Ok(AuthorizationRecord {
        id: id(row, "id")?,
        tenant_id: id(row, "tenant_id")?,
        card_id: opt_id(row, "card_id")?,
        status: AuthorizationStatus::parse(&get::<String>(row, "status")?).ok_or_else(|| bad("status"))?,
        decline_reason: get::<Option<String>>(row, "decline_reason")?
            .map(|r| DeclineReason::parse(&r).ok_or_else(|| bad("decline_reason")))
            .transpose()?,
        response_code: get(row, "response_code")?,
        decided_by: DecidedBy::parse(&get::<String>(row, "decided_by")?).ok_or_else(|| bad("decided_by"))?,
        amount: amount(row, "amount")?,
        currency: get(row, "currency")?,
        billing_amount: amount(row, "billing_amount")?,
        billing_currency: get(row, "billing_currency")?,
        amounts: Amounts {
            approved: amount(row, "approved_amount")?,
            pending: amount(row, "pending_amount")?,
            captured: amount(row, "captured_amount")?,
            reversed: amount(row, "reversed_amount")?,
        },
        merchant: json::<Merchant>(&get::<String>(row, "merchant")?, "merchant")?,
        channel: PaymentChannel::parse(&get::<String>(row, "channel")?).ok_or_else(|| bad("channel"))?,
        network_reference: get(row, "network_reference")?,
        windows: Windows {
            day: get(row, "day_key")?,
            month: get(row, "month_key")?,
        },
        expires_at: opt_ts(row, "expires_at")?,
        created_at: parse_ts(&get::<String>(row, "created_at")?)?,
        updated_at: parse_ts(&get::<String>(row, "updated_at")?)?,
    })
}

pub(crate) const TXN_COLUMNS: &str =
    "id, tenant_id, card_id, authorization_id, kind, amount, currency, merchant, network_reference, created_at";

pub(crate) fn transaction(row: &SqliteRow) -> StoreResult<TransactionRecord> {
    Ok(TransactionRecord {
        id: id(row, "id")?,
        tenant_id: id(row, "tenant_id")?,
        card_id: id(row, "card_id")?,
        authorization_id: opt_id(row, "authorization_id")?,
        kind: TransactionKind::parse(&get::<String>(row, "kind")?).ok_or_else(|| bad("kind"))?,
        amount: amount(row, "amount")?,
        currency: get(row, "currency")?,
        merchant: get::<Option<String>>(row, "merchant")?
            .map(|m| json::<Merchant>(&m, "merchant"))
            .transpose()?,
        network_reference: get(row, "network_reference")?,
        created_at: parse_ts(&get::<String>(row, "created_at")?)?,
    })
}

/// Binds an authorization's columns in `AUTH_COLUMNS` order.
pub(crate) fn bind_authorization(q: &mut Batch, r: &AuthorizationRecord) -> StoreResult<()> {
    q.bind(id_str(&r.id))
        .bind(id_str(&r.tenant_id))
        .bind(r.card_id.map(|c| id_str(&c)))
        .bind(r.status.as_str().to_owned())
        .bind(r.decline_reason.map(|d| d.as_str().to_owned()))
        .bind(r.response_code.clone())
        .bind(r.decided_by.as_str().to_owned())
        .bind(sql_amount(r.amount))
        .bind(r.currency.clone())
        .bind(sql_amount(r.billing_amount))
        .bind(r.billing_currency.clone())
        .bind(sql_amount(r.amounts.approved))
        .bind(sql_amount(r.amounts.pending))
        .bind(sql_amount(r.amounts.captured))
        .bind(sql_amount(r.amounts.reversed))
        .bind(to_json(&r.merchant)?)
        .bind(r.channel.as_str().to_owned())
        .bind(r.network_reference.clone())
        .bind(r.windows.day.clone())
        .bind(r.windows.month.clone())
        .bind(r.expires_at.as_ref().map(ts))
        .bind(ts(&r.created_at))
        .bind(ts(&r.updated_at));
    Ok(())
}

pub(crate) fn bind_transaction(q: &mut Batch, r: &TransactionRecord) -> StoreResult<()> {
    q.bind(id_str(&r.id))
        .bind(id_str(&r.tenant_id))
        .bind(id_str(&r.card_id))
        .bind(r.authorization_id.map(|a| id_str(&a)))
        .bind(r.kind.as_str().to_owned())
        .bind(sql_amount(r.amount))
        .bind(r.currency.clone())
        .bind(r.merchant.as_ref().map(to_json).transpose()?)
        .bind(r.network_reference.clone())
        .bind(ts(&r.created_at));
    Ok(())
}

impl SqliteStore {
    pub(crate) async fn authorization_one(
        &self,
        tenant: TenantId,
        auth: AuthorizationId,
    ) -> StoreResult<Option<AuthorizationRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {AUTH_COLUMNS} FROM authorizations WHERE tenant_id = ? AND id = ?"
        ))
        .bind(id_str(&tenant))
        .bind(id_str(&auth))
        .fetch_optional(&self.reader)
        .await
        .map_err(map_err)?;
        row.as_ref().map(authorization).transpose()
    }

    pub(crate) async fn authorization_by_ref(
        &self,
        tenant: TenantId,
        reference: &str,
    ) -> StoreResult<Option<AuthorizationRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {AUTH_COLUMNS} FROM authorizations WHERE tenant_id = ? AND network_reference = ?"
        ))
        .bind(id_str(&tenant))
        .bind(reference)
        .fetch_optional(&self.reader)
        .await
        .map_err(map_err)?;
        row.as_ref().map(authorization).transpose()
    }

    pub(crate) async fn authorizations_of(
        &self,
        tenant: TenantId,
        card: CardId,
        page: &MoneyPage,
    ) -> StoreResult<Vec<AuthorizationRecord>> {
        let mut sql = format!("SELECT {AUTH_COLUMNS} FROM authorizations WHERE tenant_id = ? AND card_id = ?");
        if page.before.is_some() {
            sql.push_str(" AND id < ?");
        }
        if page.status.is_some() {
            sql.push_str(" AND status = ?");
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        let mut q = sqlx::query(&sql).bind(id_str(&tenant)).bind(id_str(&card));
        if let Some(b) = page.before {
            q = q.bind(b.to_string());
        }
        if let Some(s) = page.status {
            q = q.bind(s.as_str());
        }
        let rows = q
            .bind(i64::from(page.limit))
            .fetch_all(&self.reader)
            .await
            .map_err(map_err)?;
        rows.iter().map(authorization).collect()
    }

    pub(crate) async fn transaction_by_ref(
        &self,
        tenant: TenantId,
        reference: &str,
    ) -> StoreResult<Option<TransactionRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {TXN_COLUMNS} FROM card_transactions WHERE tenant_id = ? AND network_reference = ?"
        ))
        .bind(id_str(&tenant))
        .bind(reference)
        .fetch_optional(&self.reader)
        .await
        .map_err(map_err)?;
        row.as_ref().map(transaction).transpose()
    }

    pub(crate) async fn transactions_of(
        &self,
        tenant: TenantId,
        card: CardId,
        page: &MoneyPage,
    ) -> StoreResult<Vec<TransactionRecord>> {
        let mut sql = format!("SELECT {TXN_COLUMNS} FROM card_transactions WHERE tenant_id = ? AND card_id = ?");
        if page.before.is_some() {
            sql.push_str(" AND id < ?");
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        let mut q = sqlx::query(&sql).bind(id_str(&tenant)).bind(id_str(&card));
        if let Some(b) = page.before {
            q = q.bind(b.to_string());
        }
        let rows = q
            .bind(i64::from(page.limit))
            .fetch_all(&self.reader)
            .await
            .map_err(map_err)?;
        rows.iter().map(transaction).collect()
    }

    pub(crate) async fn due(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<DueAuthorization>> {
        let rows = sqlx::query(
            "SELECT tenant_id, card_id, id FROM authorizations WHERE status = 'APPROVED' AND expires_at <= ? \
             AND card_id IS NOT NULL ORDER BY expires_at LIMIT ?",
        )
        .bind(ts(&now))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok(DueAuthorization {
                    tenant_id: id(r, "tenant_id")?,
                    card_id: id(r, "card_id")?,
                    id: id(r, "id")?,
                })
            })
            .collect()
    }
}
