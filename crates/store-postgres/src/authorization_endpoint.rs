//! A tenant's authorization endpoint (migration 0010).

use cardcore_domain::{TenantId, Timestamp};
use cardcore_store::{AuthorizationEndpointRecord, OnTimeout, SealedData, StoreError, StoreResult};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::rows::get;
use crate::{map_err, PostgresStore};

const COLUMNS: &str =
    "tenant_id, url, timeout_ms, on_timeout, secret_sealed, secret_key_version, created_at, updated_at";

fn record(row: &PgRow) -> StoreResult<AuthorizationEndpointRecord> {
    let on_timeout: String = get(row, "on_timeout")?;
    Ok(AuthorizationEndpointRecord {
        tenant_id: get::<Uuid>(row, "tenant_id")?.into(),
        url: get(row, "url")?,
        timeout_ms: u32::try_from(get::<i32>(row, "timeout_ms")?)
            .map_err(|_| StoreError::internal("authorization endpoint timeout out of range"))?,
        on_timeout: OnTimeout::parse(&on_timeout)
            .ok_or_else(|| StoreError::internal(format!("unknown on_timeout {on_timeout:?}")))?,
        secret: SealedData {
            ciphertext: get(row, "secret_sealed")?,
            key_version: get(row, "secret_key_version")?,
        },
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

impl PostgresStore {
    pub(crate) async fn authorization_endpoint_of(
        &self,
        tenant: TenantId,
    ) -> StoreResult<Option<AuthorizationEndpointRecord>> {
        self.run(|| async {
            let row = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM authorization_endpoints WHERE tenant_id = $1"
            ))
            .bind(tenant.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            row.as_ref().map(record).transpose()
        })
        .await
    }
}

pub(crate) async fn put(
    tx: &mut Transaction<'static, Postgres>,
    ep: &AuthorizationEndpointRecord,
    replacing: Option<Timestamp>,
) -> StoreResult<bool> {
    let timeout = i32::try_from(ep.timeout_ms)
        .map_err(|_| StoreError::internal("authorization endpoint timeout out of range"))?;
    let sql = match replacing {
        None => format!(
            "INSERT INTO authorization_endpoints ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (tenant_id) DO NOTHING"
        ),
        Some(_) => "UPDATE authorization_endpoints SET url = $2, timeout_ms = $3, on_timeout = $4, \
                    secret_sealed = $5, secret_key_version = $6, updated_at = $8 \
                    WHERE tenant_id = $1 AND updated_at = $9 AND $7::timestamptz IS NOT NULL"
            .to_owned(),
    };
    let mut q = sqlx::query(&sql)
        .bind(ep.tenant_id.0)
        .bind(&ep.url)
        .bind(timeout)
        .bind(ep.on_timeout.as_str())
        .bind(&ep.secret.ciphertext)
        .bind(ep.secret.key_version)
        .bind(ep.created_at)
        .bind(ep.updated_at);
    if let Some(at) = replacing {
        q = q.bind(at);
    }
    let r = q.execute(&mut **tx).await.map_err(map_err)?;
    Ok(r.rows_affected() == 1)
}

pub(crate) async fn delete(tx: &mut Transaction<'static, Postgres>, tenant: TenantId) -> StoreResult<bool> {
    let r = sqlx::query("DELETE FROM authorization_endpoints WHERE tenant_id = $1")
        .bind(tenant.0)
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    Ok(r.rows_affected() > 0)
}
