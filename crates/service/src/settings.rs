//! Tenant settings (`cardcore tenant update`): stored as JSON on the tenant,
//! read through a cache whose entries live 5 seconds, so every running
//! server applies a change within 5 s without a read per request.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use cardcore_domain::{TenantId, TenantSettings};

use crate::{Service, ServiceError, ServiceResult};

/// How long a server may answer from settings it read before a change.
pub const SETTINGS_TTL: Duration = Duration::from_secs(5);

#[derive(Default)]
pub(crate) struct SettingsCache {
    entries: RwLock<HashMap<TenantId, (TenantSettings, Instant)>>,
}

impl Service {
    /// A tenant's settings (at most 5 seconds old).
    pub async fn tenant_settings(&self, tenant: TenantId) -> ServiceResult<TenantSettings> {
        if let Ok(cache) = self.settings_cache.entries.read() {
            if let Some((settings, at)) = cache.get(&tenant) {
                if at.elapsed() < SETTINGS_TTL {
                    return Ok(settings.clone());
                }
            }
        }
        let settings = self.load_settings(tenant).await?;
        if let Ok(mut cache) = self.settings_cache.entries.write() {
            cache.retain(|_, (_, at)| at.elapsed() < SETTINGS_TTL);
            cache.insert(tenant, (settings.clone(), Instant::now()));
        }
        Ok(settings)
    }

    async fn load_settings(&self, tenant: TenantId) -> ServiceResult<TenantSettings> {
        let raw = self
            .store
            .tenant_settings(tenant)
            .await?
            .ok_or(ServiceError::NotFound("tenant"))?;
        serde_json::from_str(&raw).map_err(|e| ServiceError::caused("tenant settings", e))
    }

    /// Changes a tenant's settings and answers them as stored. Servers
    /// running elsewhere see the change within [`SETTINGS_TTL`].
    pub async fn update_tenant_settings(
        &self,
        tenant: TenantId,
        change: impl FnOnce(&mut TenantSettings),
    ) -> ServiceResult<TenantSettings> {
        let mut settings = self.load_settings(tenant).await?;
        change(&mut settings);
        let raw = serde_json::to_string(&settings).map_err(|e| ServiceError::caused("encoding tenant settings", e))?;
        if !self.store.set_tenant_settings(tenant, &raw).await? {
            return Err(ServiceError::NotFound("tenant"));
        }
        if let Ok(mut cache) = self.settings_cache.entries.write() {
            cache.remove(&tenant);
        }
        Ok(settings)
    }
}
