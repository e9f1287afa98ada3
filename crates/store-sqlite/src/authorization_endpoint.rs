//! A tenant's authorization endpoint (migration 0010).

use cardcore_domain::{TenantId, Timestamp};
use cardcore_store::{AuthorizationEndpointRecord, OnTimeout, SealedData, StoreError, StoreResult};
use sqlx::sqlite::SqliteRow;
use sqlx::SqliteConnection;

use crate::rows::{self, parse_ts, ts};
use crate::{id_str, map_err, SqliteStore};

const COLUMNS: &str =
    "tenant_id, url, timeout_ms, on_timeout, secret_sealed, secret_key_version, created_at, updated_at";

fn record(row: &SqliteRow) -> StoreResult<AuthorizationEndpointRecord> {
    let on_timeout: String = rows::get(row, "on_timeout")?;
    Ok(AuthorizationEndpointRecord {
        tenant_id: rows::id(row, "tenant_id")?,
        url: rows::get(row, "url")?,
        timeout_ms: u32::try_from(rows::get::<i64>(row, "timeout_ms")?)
            .map_err(|_| StoreError::internal("authorization endpoint timeout out of range"))?,
        on_timeout: OnTimeout::parse(&on_timeout)
            .ok_or_else(|| StoreError::internal(format!("unknown on_timeout {on_timeout:?}")))?,
        secret: SealedData {
            ciphertext: rows::get(row, "secret_sealed")?,
            key_version: rows::get(row, "secret_key_version")?,
        },
        created_at: parse_ts(&rows::get::<String>(row, "created_at")?)?,
        updated_at: parse_ts(&rows::get::<String>(row, "updated_at")?)?,
    })
}

impl SqliteStore {
    pub(crate) async fn authorization_endpoint_of(
        &self,
        tenant: TenantId,
    ) -> StoreResult<Option<AuthorizationEndpointRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM authorization_endpoints WHERE tenant_id = ?"
        ))
        .bind(id_str(&tenant))
        .fetch_optional(&self.reader)
        .await
        .map_err(map_err)?;
        row.as_ref().map(record).transpose()
    }
}

pub(crate) async fn put(
    conn: &mut SqliteConnection,
    ep: &AuthorizationEndpointRecord,
    replacing: Option<Timestamp>,
) -> StoreResult<bool> {
    let sql = match replacing {
        None => format!(
            "INSERT INTO authorization_endpoints ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (tenant_id) DO NOTHING"
        ),
        Some(_) => "UPDATE authorization_endpoints SET url = ?2, timeout_ms = ?3, on_timeout = ?4, \
                    secret_sealed = ?5, secret_key_version = ?6, updated_at = ?8 \
                    WHERE tenant_id = ?1 AND updated_at = ?9"
            .to_owned(),
    };
    let mut q = sqlx::query(&sql)
        .bind(id_str(&ep.tenant_id))
        .bind(&ep.url)
        .bind(i64::from(ep.timeout_ms))
        .bind(ep.on_timeout.as_str())
        .bind(&ep.secret.ciphertext)
        .bind(ep.secret.key_version)
        .bind(ts(&ep.created_at))
        .bind(ts(&ep.updated_at));
    if let Some(at) = replacing {
        q = q.bind(ts(&at));
    }
    let r = q.execute(&mut *conn).await.map_err(map_err)?;
    Ok(r.rows_affected() == 1)
}

pub(crate) async fn delete(conn: &mut SqliteConnection, tenant: TenantId) -> StoreResult<bool> {
    let r = sqlx::query("DELETE FROM authorization_endpoints WHERE tenant_id = ?")
        .bind(id_str(&tenant))
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    Ok(r.rows_affected() > 0)
}
