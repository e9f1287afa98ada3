//! Authorizations and card transactions: rows and reads.

use cardcore_domain::authorization::{
    Amounts, AuthorizationStatus, DecidedBy, DeclineReason, Merchant, PaymentChannel, Windows,
};
use cardcore_domain::{AuthorizationId, CardId, TenantId, Timestamp};
use cardcore_store::{
    AuthorizationRecord, DueAuthorization, MoneyPage, StoreError, StoreResult, TransactionKind, TransactionRecord,
};
use sqlx::postgres::PgRow;
use sqlx::types::Json;

use crate::rows::get;
use crate::{map_err, PostgresStore};

fn bad(col: &str) -> StoreError {
    StoreError::internal(format!("column {col}: unexpected value"))
}

fn amount(row: &PgRow, col: &str) -> StoreResult<u64> {
    u64::try_from(get::<i64>(row, col)?).map_err(|_| bad(col))
}

pub(crate) fn sql_amount(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) const AUTH_COLUMNS: &str = "id, tenant_id, card_id, status, decline_reason, response_code, decided_by, \
    amount, currency, billing_amount, billing_currency, approved_amount, pending_amount, captured_amount, \
    reversed_amount, merchant, channel, network_reference, day_key, month_key, expires_at, created_at, updated_at";

pub(crate) fn authorization(row: &PgRow) -> StoreResult<AuthorizationRecord> {
    Ok(AuthorizationRecord {
        id: AuthorizationId(get(row, "id")?),
        tenant_id: TenantId(get(row, "tenant_id")?),
        card_id: get::<Option<uuid::Uuid>>(row, "card_id")?.map(CardId),
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
        merchant: get::<Json<Merchant>>(row, "merchant")?.0,
        channel: PaymentChannel::parse(&get::<String>(row, "channel")?).ok_or_else(|| bad("channel"))?,
        network_reference: get(row, "network_reference")?,
        windows: Windows {
            day: get(row, "day_key")?,
            month: get(row, "month_key")?,
        },
        expires_at: get(row, "expires_at")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub(crate) const TXN_COLUMNS: &str =
    "id, tenant_id, card_id, authorization_id, kind, amount, currency, merchant, network_reference, created_at";

pub(crate) fn transaction(row: &PgRow) -> StoreResult<TransactionRecord> {
    Ok(TransactionRecord {
        id: cardcore_domain::TransactionId(get(row, "id")?),
        tenant_id: TenantId(get(row, "tenant_id")?),
        card_id: CardId(get(row, "card_id")?),
        authorization_id: get::<Option<uuid::Uuid>>(row, "authorization_id")?.map(AuthorizationId),
        kind: TransactionKind::parse(&get::<String>(row, "kind")?).ok_or_else(|| bad("kind"))?,
        amount: amount(row, "amount")?,
        currency: get(row, "currency")?,
        merchant: get::<Option<Json<Merchant>>>(row, "merchant")?.map(|j| j.0),
        network_reference: get(row, "network_reference")?,
        created_at: get(row, "created_at")?,
    })
}

impl PostgresStore {
    pub(crate) async fn authorization_one(
        &self,
        tenant: TenantId,
        auth: AuthorizationId,
    ) -> StoreResult<Option<AuthorizationRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {AUTH_COLUMNS} FROM authorizations WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.0)
        .bind(auth.0)
        .fetch_optional(&self.pool)
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
            "SELECT {AUTH_COLUMNS} FROM authorizations WHERE tenant_id = $1 AND network_reference = $2"
        ))
        .bind(tenant.0)
        .bind(reference)
        .fetch_optional(&self.pool)
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
        let rows = sqlx::query(&format!(
            "SELECT {AUTH_COLUMNS} FROM authorizations WHERE tenant_id = $1 AND card_id = $2 \
             AND ($3::uuid IS NULL OR id < $3) AND ($4::text IS NULL OR status = $4) ORDER BY id DESC LIMIT $5"
        ))
        .bind(tenant.0)
        .bind(card.0)
        .bind(page.before)
        .bind(page.status.map(|s| s.as_str()))
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
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
            "SELECT {TXN_COLUMNS} FROM card_transactions WHERE tenant_id = $1 AND network_reference = $2"
        ))
        .bind(tenant.0)
        .bind(reference)
        .fetch_optional(&self.pool)
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
        let rows = sqlx::query(&format!(
            "SELECT {TXN_COLUMNS} FROM card_transactions WHERE tenant_id = $1 AND card_id = $2 \
             AND ($3::uuid IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        ))
        .bind(tenant.0)
        .bind(card.0)
        .bind(page.before)
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(transaction).collect()
    }

    pub(crate) async fn due(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<DueAuthorization>> {
        let rows = sqlx::query(
            "SELECT tenant_id, card_id, id FROM authorizations WHERE status = 'APPROVED' AND expires_at <= $1 \
             AND card_id IS NOT NULL ORDER BY expires_at LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok(DueAuthorization {
                    tenant_id: TenantId(get(r, "tenant_id")?),
                    card_id: CardId(get(r, "card_id")?),
                    id: AuthorizationId(get(r, "id")?),
                })
            })
            .collect()
    }
}
