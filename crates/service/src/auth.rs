//! Tenants and API keys. A key is 32 random bytes shown once; only its
//! SHA-256 is stored (a key has 256 bits of entropy, so a fast hash is the
//! right tool: there is nothing to brute-force).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use cardcore_domain::{ApiKeyId, ProgramId, Tenant, TenantId, Timestamp};
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

fn new_key(tenant: TenantId, name: Option<String>, can_reveal: bool) -> (NewApiKey, ApiKeyRecord) {
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
        name,
        last_used_at: None,
        revoked_at: None,
    };
    (NewApiKey { id, secret }, record)
}

/// Could `secret` be a key cardcore made (`cc_` and 43 base64url
/// characters)? Anything else is refused without a lookup.
fn well_formed(secret: &str) -> bool {
    secret.len() == KEY_LEN
        && secret.starts_with(KEY_PREFIX)
        && secret
            .bytes()
            .skip(KEY_PREFIX.len())
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

const KEY_LEN: usize = KEY_PREFIX.len() + 43;

/// An API key as an operator sees it: never the key or its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub name: Option<String>,
    /// The key's first characters (`cc_` and 6 more), to tell keys apart.
    pub prefix: String,
    pub can_reveal: bool,
    pub created_at: Timestamp,
    /// Minute-accurate: recorded at most once a minute per key and node.
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl From<ApiKeyRecord> for ApiKeyInfo {
    fn from(r: ApiKeyRecord) -> Self {
        Self {
            id: r.id,
            tenant_id: r.tenant_id,
            name: r.name,
            prefix: r.prefix,
            can_reveal: r.can_reveal,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// How long a node trusts what it read about a key: a key revoked on any
/// node (or by the CLI) is refused everywhere within this time. Each key
/// costs a node one database read per period, not one per request.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(5);
/// How long a key that matched nothing is remembered as such. A key is 256
/// random bits, so one that is unknown now will not exist later; the limit
/// only bounds memory.
const NEGATIVE_TTL: Duration = Duration::from_secs(60);
const CACHE_MAX: usize = 10_000;
/// "Last used" is written at most this often per key and node.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// One bounded map of entries that expire.
struct Expiring<K, V> {
    ttl: Duration,
    entries: RwLock<HashMap<K, (V, Instant)>>,
}

impl<K: std::hash::Hash + Eq, V: Clone> Expiring<K, V> {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.read().ok()?;
        let (value, at) = entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    fn put(&self, key: K, value: V) {
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= CACHE_MAX {
                let ttl = self.ttl;
                entries.retain(|_, (_, at)| at.elapsed() < ttl);
                if entries.len() >= CACHE_MAX {
                    entries.clear();
                }
            }
            entries.insert(key, (value, Instant::now()));
        }
    }

    fn remove_where(&self, mut doomed: impl FnMut(&K, &V) -> bool) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|k, (v, _)| !doomed(k, v));
        }
    }
}

/// What this node knows about API keys: recently authenticated ones (by
/// hash, and by id for M2P tokens), recently unknown ones, and when each
/// key's last use was written.
pub(crate) struct AuthCache {
    by_hash: Expiring<[u8; 32], Principal>,
    by_id: Expiring<ApiKeyId, Principal>,
    unknown_hashes: Expiring<[u8; 32], ()>,
    unknown_ids: Expiring<ApiKeyId, ()>,
    touched: Expiring<ApiKeyId, ()>,
    lookups: AtomicU64,
}

impl Default for AuthCache {
    fn default() -> Self {
        Self {
            by_hash: Expiring::new(AUTH_CACHE_TTL),
            by_id: Expiring::new(AUTH_CACHE_TTL),
            unknown_hashes: Expiring::new(NEGATIVE_TTL),
            unknown_ids: Expiring::new(NEGATIVE_TTL),
            touched: Expiring::new(TOUCH_EVERY),
            lookups: AtomicU64::new(0),
        }
    }
}

fn principal_of(key: &ApiKeyRecord, tenant: Tenant) -> Principal {
    Principal {
        tenant,
        api_key_id: Some(key.id),
        can_reveal: key.can_reveal,
    }
}

fn validate_key_name(name: &str) -> ServiceResult<()> {
    if name.trim().is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "name",
            "must be 1 to 100 characters without control characters",
        ));
    }
    Ok(())
}

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
        let (key, record) = new_key(tenant.id, None, true);
        if !self.store.create_tenant(&tenant, &record).await? {
            return Err(ServiceError::Conflict {
                code: "tenant_exists",
                message: format!("a tenant named {name:?} already exists; tenant names are unique"),
            });
        }
        Ok((tenant, key))
    }

    /// Adds an API key to a tenant, with an optional label.
    pub async fn create_api_key(
        &self,
        tenant: TenantId,
        name: Option<&str>,
        can_reveal: bool,
    ) -> ServiceResult<NewApiKey> {
        if let Some(n) = name {
            validate_key_name(n)?;
        }
        let (key, record) = new_key(tenant, name.map(|n| n.trim().to_owned()), can_reveal);
        self.store.insert_api_key(&record).await?;
        Ok(key)
    }

    /// The tenant's API keys, revoked ones included, oldest first.
    pub async fn api_keys(&self, tenant: TenantId) -> ServiceResult<Vec<ApiKeyInfo>> {
        Ok(self
            .store
            .api_keys(tenant)
            .await?
            .into_iter()
            .map(ApiKeyInfo::from)
            .collect())
    }

    /// Revokes one of the tenant's keys: this node refuses it at once, every
    /// other node within [`AUTH_CACHE_TTL`], and so are the M2P tokens
    /// made with it. Revoking a revoked key changes nothing.
    pub async fn revoke_api_key(&self, tenant: TenantId, id: ApiKeyId) -> ServiceResult<ApiKeyInfo> {
        let record = self
            .store
            .revoke_api_key(tenant, id, crate::now())
            .await?
            .ok_or(ServiceError::NotFound("api key"))?;
        self.auth_cache.by_hash.remove_where(|_, p| p.api_key_id == Some(id));
        self.auth_cache.by_id.remove_where(|_, p| p.api_key_id == Some(id));
        Ok(record.into())
    }

    /// How many times this node has looked an API key up in the database
    /// (cache misses); a metric of the same name counts them too.
    pub fn auth_key_lookups(&self) -> u64 {
        self.auth_cache.lookups.load(Ordering::Relaxed)
    }

    fn count_lookup(&self, found: bool) {
        self.auth_cache.lookups.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("cardcore_auth_key_lookups_total", "result" => if found { "found" } else { "unknown" })
            .increment(1);
    }

    /// Notes that a key authenticated a request: written at most once a
    /// minute per key and node, off the request's path.
    fn note_use(&self, id: Option<ApiKeyId>) {
        let Some(id) = id else { return };
        if self.auth_cache.touched.get(&id).is_some() {
            return;
        }
        self.auth_cache.touched.put(id, ());
        let store = self.store.clone();
        let at = crate::now();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.touch_api_key(id, at).await {
                    tracing::debug!(cause = %e, api_key_id = %id, "could not record the API key's last use");
                }
            });
        }
    }

    /// The caller behind an API key, or `Unauthorized`.
    pub async fn authenticate(&self, secret: &str) -> ServiceResult<Principal> {
        if !well_formed(secret) {
            return Err(ServiceError::Unauthorized);
        }
        let hash = hash_key(secret);
        if let Some(p) = self.auth_cache.by_hash.get(&hash) {
            self.note_use(p.api_key_id);
            return Ok(p);
        }
        if self.auth_cache.unknown_hashes.get(&hash).is_some() {
            return Err(ServiceError::Unauthorized);
        }
        let found = self.store.api_key_by_hash(&hash).await?;
        self.count_lookup(found.is_some());
        let Some((key, tenant)) = found else {
            self.auth_cache.unknown_hashes.put(hash, ());
            return Err(ServiceError::Unauthorized);
        };
        let principal = principal_of(&key, tenant);
        self.auth_cache.by_hash.put(hash, principal.clone());
        self.note_use(principal.api_key_id);
        Ok(principal)
    }

    /// The caller behind an API key named by id (an M2P token's key), if
    /// the key is the tenant's and not revoked; otherwise `Unauthorized`.
    pub async fn authenticate_key_id(&self, tenant: TenantId, id: ApiKeyId) -> ServiceResult<Principal> {
        let principal = match self.auth_cache.by_id.get(&id) {
            Some(p) => p,
            None => {
                if self.auth_cache.unknown_ids.get(&id).is_some() {
                    return Err(ServiceError::Unauthorized);
                }
                let found = self.store.api_key_by_id(id).await?;
                self.count_lookup(found.is_some());
                let Some((key, tenant)) = found else {
                    self.auth_cache.unknown_ids.put(id, ());
                    return Err(ServiceError::Unauthorized);
                };
                let principal = principal_of(&key, tenant);
                self.auth_cache.by_id.put(id, principal.clone());
                principal
            }
        };
        if principal.tenant.id != tenant {
            return Err(ServiceError::Unauthorized);
        }
        self.note_use(principal.api_key_id);
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
