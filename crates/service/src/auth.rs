//! Tenants and API keys. A key is 32 random bytes shown once; only its
//! SHA-256 is stored (a key has 256 bits of entropy, so a fast hash is the
//! right tool: there is nothing to brute-force).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use cardcore_domain::{ApiKeyId, ProgramId, Tenant, TenantId};
use cardcore_store::ApiKeyRecord;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{Service, ServiceError, ServiceResult};

/// Prefix of every API key, so scanners and humans recognise one.
pub const KEY_PREFIX: &str = "cc_";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: Tenant,
    /// None for the CLI.
    pub api_key_id: Option<ApiKeyId>,
    /// May read PAN and CVV.
    pub can_reveal: bool,
}

/// A freshly made API key: the secret is here once and never again.
pub struct NewApiKey {
    pub id: ApiKeyId,
    pub secret: Zeroizing<String>,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NewApiKey({}, [redacted])", self.id)
    }
}

fn hash_key(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn new_key(tenant: TenantId, can_reveal: bool) -> (NewApiKey, ApiKeyRecord) {
    let mut raw = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(raw.as_mut());
    let secret = Zeroizing::new(format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_ref())
    ));
    let id = ApiKeyId::new();
    let record = ApiKeyRecord {
        id,
        tenant_id: tenant,
        key_hash: hash_key(&secret).to_vec(),
        prefix: secret.chars().take(KEY_PREFIX.len() + 6).collect(),
        can_reveal,
        created_at: crate::now(),
    };
    (NewApiKey { id, secret }, record)
}

/// Recently authenticated keys, so a request costs no database read for
/// its key. Entries live 60 seconds.
#[derive(Default)]
pub(crate) struct AuthCache {
    entries: RwLock<HashMap<[u8; 32], (Principal, Instant)>>,
}

const CACHE_TTL: Duration = Duration::from_secs(60);
const CACHE_MAX: usize = 10_000;

impl Service {
    /// Creates a tenant and its first API key (allowed to reveal card data).
    pub async fn create_tenant(&self, name: &str) -> ServiceResult<(Tenant, NewApiKey)> {
        cardcore_domain::tenant::validate_name(name).map_err(|m| ServiceError::invalid("name", m))?;
        let tenant = Tenant {
            id: TenantId::new(),
            name: name.to_owned(),
            default_program_id: ProgramId::new(),
            created_at: crate::now(),
        };
        let (key, record) = new_key(tenant.id, true);
        if !self.store.create_tenant(&tenant, &record).await? {
            return Err(ServiceError::Conflict {
                code: "tenant_exists",
                message: format!("a tenant named {name:?} already exists; tenant names are unique"),
            });
        }
        Ok((tenant, key))
    }

    /// Adds an API key to a tenant.
    pub async fn create_api_key(&self, tenant: TenantId, can_reveal: bool) -> ServiceResult<NewApiKey> {
        let (key, record) = new_key(tenant, can_reveal);
        self.store.insert_api_key(&record).await?;
        Ok(key)
    }

    /// The caller behind an API key, or `Unauthorized`.
    pub async fn authenticate(&self, secret: &str) -> ServiceResult<Principal> {
        if !secret.starts_with(KEY_PREFIX) || secret.len() > 128 {
            return Err(ServiceError::Unauthorized);
        }
        let hash = hash_key(secret);
        if let Ok(cache) = self.auth_cache.entries.read() {
            if let Some((p, at)) = cache.get(&hash) {
                if at.elapsed() < CACHE_TTL {
                    return Ok(p.clone());
                }
            }
        }
        let (key, tenant) = self
            .store
            .api_key_by_hash(&hash)
            .await?
            .ok_or(ServiceError::Unauthorized)?;
        let principal = Principal {
            tenant,
            api_key_id: Some(key.id),
            can_reveal: key.can_reveal,
        };
        if let Ok(mut cache) = self.auth_cache.entries.write() {
            if cache.len() >= CACHE_MAX {
                cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(hash, (principal.clone(), Instant::now()));
        }
        Ok(principal)
    }

    /// A tenant by id.
    pub async fn tenant(&self, id: TenantId) -> ServiceResult<Tenant> {
        self.store.tenant(id).await?.ok_or(ServiceError::NotFound("tenant"))
    }

    /// A tenant by id or name (M2P's `X-TENANT-ID` may be either).
    pub async fn tenant_by_id_or_name(&self, id_or_name: &str) -> ServiceResult<Tenant> {
        if let Ok(id) = id_or_name.parse::<TenantId>() {
            if let Some(t) = self.store.tenant(id).await? {
                return Ok(t);
            }
        }
        self.store
            .tenant_by_name(id_or_name)
            .await?
            .ok_or(ServiceError::NotFound("tenant"))
    }

    /// How many tenants exist.
    pub async fn tenant_count(&self) -> ServiceResult<u64> {
        Ok(self.store.tenant_count().await?)
    }
}
