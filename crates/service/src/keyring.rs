//! The keyring: every service key, unwrapped in memory, with its versions.
//!
//! Keys are made once (by whichever node starts first) and stored wrapped by
//! the master key, so every node on the same database with the same master
//! key uses the same keys. Verification uses the version stored on the row;
//! new values use the newest version. A version a node does not know yet
//! (another node rotated) is fetched on first sight.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use cardcore_crypto::keys::{random_key, DataKey, MasterKey};
use cardcore_crypto::transport::TransportKey;
use cardcore_crypto::verifier::MacKey;
use cardcore_crypto::SecretBytes;
use cardcore_domain::{TenantId, Timestamp, ZoneKeyId};
use cardcore_store::{Store, StoredKey, TransportKeyRecord, ZoneKeyRecord};
use rand::rngs::OsRng;

use crate::error::ServiceError;

/// What a service key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    /// AES-256-GCM: PAN, CVV, codes in events, webhook secrets. Rotates.
    Data,
    /// HMAC-SHA256: PIN verification values. Rotates.
    Pin,
    /// HMAC-SHA256: OTP and activation-code verifiers.
    Otp,
    /// HMAC-SHA256: the PAN lookup hash. Never rotates (lookups need one
    /// stable hash per PAN).
    PanLookup,
    /// Double-length TDES card verification key (Visa CVV algorithm).
    Cvk,
    /// HMAC-SHA256: signs the M2P dialect's access tokens.
    Jwt,
    /// HMAC-SHA256: fingerprints of requests sent with an `Idempotency-Key`
    /// (a plain hash of a PIN body is reversed by a 10^4 dictionary). Does
    /// not rotate: a fingerprint lives 24 hours and records its version.
    Idempotency,
}

impl Purpose {
    /// Every purpose.
    pub const ALL: [Purpose; 7] = [
        Self::Data,
        Self::Pin,
        Self::Otp,
        Self::PanLookup,
        Self::Cvk,
        Self::Jwt,
        Self::Idempotency,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Pin => "pin",
            Self::Otp => "otp",
            Self::PanLookup => "pan_lookup",
            Self::Cvk => "cvk",
            Self::Jwt => "jwt",
            Self::Idempotency => "idempotency",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Purposes that `cardcore keys rotate` gives a new version (it also
    /// rotates each tenant's RSA transport key, which is not a service key).
    pub const ROTATING: [Purpose; 2] = [Self::Data, Self::Pin];

    fn generate(self) -> Result<SecretBytes, ServiceError> {
        match self {
            Self::Cvk => Ok(random_key(16, &mut OsRng)),
            _ => Ok(random_key(32, &mut OsRng)),
        }
    }
}

fn label(purpose: Purpose, version: i32) -> String {
    format!("cardcore/service-key/{}/v{version}", purpose.as_str())
}

fn transport_label(tenant: TenantId, version: i32) -> String {
    format!("cardcore/transport-key/{tenant}/v{version}")
}

/// The algorithm name of a tenant's Visa PIN verification key (double-length
/// TDES). It is kept apart from the `tdes` zone PIN keys: one key, one use.
pub const PVK: &str = "pvk";

fn zone_label(tenant: TenantId, id: ZoneKeyId, algorithm: &str) -> String {
    format!("cardcore/zone-key/{tenant}/{id}/{algorithm}")
}

const MASTER_CHECK_META: &str = "master_key_check";
const MASTER_CHECK_LABEL: &str = "cardcore/master-key-check";

/// What a node says when the master key was rotated under it.
pub const MASTER_KEY_ROTATED: &str = "the master key was rotated (`cardcore master-key rotate`): this node still has \
     the old one and stops; restart it with the new master key";

/// One unwrapped key.
#[derive(Clone)]
pub enum Key {
    Data(Arc<DataKey>),
    Mac(MacKey),
    Cvk(Arc<SecretBytes>),
}

/// One version of a tenant's RSA PIN transport key, unwrapped.
#[derive(Clone)]
pub struct TenantTransportKey {
    pub version: i32,
    pub key: Arc<TransportKey>,
    /// From then on this version decrypts nothing.
    pub retires_at: Option<Timestamp>,
}

/// A tenant's zone PIN key, unwrapped.
#[derive(Clone)]
pub struct ZoneKey {
    pub id: ZoneKeyId,
    /// `aes` or `tdes`.
    pub algorithm: String,
    pub key: Arc<SecretBytes>,
    pub kcv: String,
}

#[derive(Default)]
struct Keys {
    by_purpose: HashMap<Purpose, BTreeMap<i32, Key>>,
}

/// All keys of this database, unwrapped.
pub struct Keyring {
    master: MasterKey,
    /// The master key check value this node opened: a different one in the
    /// database means the master key was rotated under it.
    check: String,
    store: Arc<dyn Store>,
    keys: RwLock<Keys>,
    zones: RwLock<HashMap<TenantId, Vec<ZoneKey>>>,
    transports: RwLock<HashMap<TenantId, Vec<TenantTransportKey>>>,
    making_transport: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring([redacted])")
    }
}

/// Whether the database already holds keys (so a new master key must not be made).
pub async fn database_has_keys(store: &dyn Store) -> Result<bool, ServiceError> {
    Ok(store.meta(MASTER_CHECK_META).await?.is_some() || !store.service_keys().await?.is_empty())
}

impl Keyring {
    /// Checks the master key against the database, makes any missing key
    /// (version 1), and loads them all.
    pub async fn open(master: MasterKey, store: Arc<dyn Store>) -> Result<Self, ServiceError> {
        let check = match store.meta(MASTER_CHECK_META).await? {
            Some(check) => {
                let wrapped =
                    hex::decode(&check).map_err(|_| ServiceError::internal("master key check value is corrupt"))?;
                master.unwrap(MASTER_CHECK_LABEL, &wrapped).map_err(|_| {
                    ServiceError::Startup(
                        "the master key does not match this database: it was created with another master key \
                         (check CARDCORE_MASTER_KEY or the key file)"
                            .into(),
                    )
                })?;
                check
            }
            None => {
                if !store.service_keys().await?.is_empty() {
                    return Err(ServiceError::Startup(
                        "the database holds keys but no master key check value".into(),
                    ));
                }
                let check =
                    hex::encode(master.wrap(MASTER_CHECK_LABEL, &SecretBytes::from_slice(&[0u8; 32]), &mut OsRng));
                if !store.put_meta_if_absent(MASTER_CHECK_META, &check).await? {
                    // Another node initialised first: its check value must open with our key.
                    return Box::pin(Self::open(master, store)).await;
                }
                check
            }
        };
        let ring = Self {
            master,
            check,
            store,
            keys: RwLock::new(Keys::default()),
            zones: RwLock::new(HashMap::new()),
            transports: RwLock::new(HashMap::new()),
            making_transport: tokio::sync::Mutex::new(()),
        };
        for purpose in Purpose::ALL {
            ring.ensure(purpose).await?;
        }
        ring.reload().await?;
        Ok(ring)
    }

    async fn ensure(&self, purpose: Purpose) -> Result<(), ServiceError> {
        let exists = self
            .store
            .service_keys()
            .await?
            .iter()
            .any(|k| k.purpose == purpose.as_str());
        if !exists {
            self.add_version(purpose, 1).await?;
        }
        Ok(())
    }

    /// Fails with [`MASTER_KEY_ROTATED`] when the database's master key
    /// check value is no longer the one this node opened: the master key
    /// was rotated, and this node must stop rather than wrap a key with the
    /// old one or fail requests on keys it cannot open.
    pub async fn master_key_current(&self) -> Result<(), ServiceError> {
        match self.store.meta(MASTER_CHECK_META).await? {
            Some(check) if check == self.check => Ok(()),
            _ => Err(ServiceError::Startup(MASTER_KEY_ROTATED.into())),
        }
    }

    async fn add_version(&self, purpose: Purpose, version: i32) -> Result<bool, ServiceError> {
        let key = purpose.generate()?;
        self.master_key_current().await?;
        let wrapped = self.master.wrap(&label(purpose, version), &key, &mut OsRng);
        Ok(self
            .store
            .insert_service_key(&StoredKey {
                purpose: purpose.as_str().to_owned(),
                version,
                wrapped,
                created_at: crate::now(),
            })
            .await?)
    }

    /// Adds a new version of each rotating key; returns the new versions.
    pub async fn rotate(&self) -> Result<Vec<(Purpose, i32)>, ServiceError> {
        let mut out = Vec::new();
        for purpose in Purpose::ROTATING {
            loop {
                self.reload().await?;
                let next = self.current_version(purpose)? + 1;
                if self.add_version(purpose, next).await? {
                    out.push((purpose, next));
                    break;
                }
            }
        }
        self.reload().await?;
        Ok(out)
    }

    /// Re-reads every key from the database.
    pub async fn reload(&self) -> Result<(), ServiceError> {
        self.master_key_current().await?;
        let stored = self.store.service_keys().await?;
        let mut keys = Keys::default();
        for s in stored {
            let Some(purpose) = Purpose::parse(&s.purpose) else {
                continue;
            };
            let raw = self
                .master
                .unwrap(&label(purpose, s.version), &s.wrapped)
                .map_err(|_| {
                    ServiceError::Startup(format!(
                        "service key {} v{} does not open with the master key",
                        s.purpose, s.version
                    ))
                })?;
            let key = match purpose {
                Purpose::Data => Key::Data(Arc::new(
                    DataKey::from_bytes(&raw).map_err(|e| ServiceError::caused("data key", e))?,
                )),
                Purpose::Pin | Purpose::Otp | Purpose::PanLookup | Purpose::Jwt | Purpose::Idempotency => {
                    Key::Mac(MacKey::new(&raw).map_err(|e| ServiceError::caused("MAC key", e))?)
                }
                Purpose::Cvk => Key::Cvk(Arc::new(raw)),
            };
            keys.by_purpose.entry(purpose).or_default().insert(s.version, key);
        }
        *self.keys.write().map_err(|_| poisoned())? = keys;
        // Transport keys rotated elsewhere (new versions, retirements) are
        // read again on next use; parsed keys are not parsed twice.
        let tenants: Vec<TenantId> = self
            .transports
            .read()
            .map_err(|_| poisoned())?
            .keys()
            .copied()
            .collect();
        for tenant in tenants {
            self.load_transport_keys(tenant).await?;
        }
        Ok(())
    }

    fn current_version(&self, purpose: Purpose) -> Result<i32, ServiceError> {
        let keys = self.keys.read().map_err(|_| poisoned())?;
        Ok(keys
            .by_purpose
            .get(&purpose)
            .and_then(|m| m.keys().next_back().copied())
            .unwrap_or(0))
    }

    fn get(&self, purpose: Purpose, version: Option<i32>) -> Result<Option<(i32, Key)>, ServiceError> {
        let keys = self.keys.read().map_err(|_| poisoned())?;
        let Some(versions) = keys.by_purpose.get(&purpose) else {
            return Ok(None);
        };
        Ok(match version {
            Some(v) => versions.get(&v).map(|k| (v, k.clone())),
            None => versions.iter().next_back().map(|(v, k)| (*v, k.clone())),
        })
    }

    /// A key by purpose and version (`None`: the newest). A version this node
    /// has not seen yet is fetched from the database once.
    pub async fn key(&self, purpose: Purpose, version: Option<i32>) -> Result<(i32, Key), ServiceError> {
        if let Some(found) = self.get(purpose, version)? {
            return Ok(found);
        }
        self.reload().await?;
        self.get(purpose, version)?
            .ok_or_else(|| ServiceError::internal(format!("no {} key version {version:?}", purpose.as_str())))
    }

    /// The newest data key.
    pub async fn data_key(&self, version: Option<i32>) -> Result<(i32, Arc<DataKey>), ServiceError> {
        match self.key(Purpose::Data, version).await? {
            (v, Key::Data(k)) => Ok((v, k)),
            _ => Err(ServiceError::internal("data key has the wrong type")),
        }
    }

    /// A MAC key (PIN, OTP, PAN lookup, JWT).
    pub async fn mac_key(&self, purpose: Purpose, version: Option<i32>) -> Result<(i32, MacKey), ServiceError> {
        match self.key(purpose, version).await? {
            (v, Key::Mac(k)) => Ok((v, k)),
            _ => Err(ServiceError::internal(format!(
                "{} key has the wrong type",
                purpose.as_str()
            ))),
        }
    }

    /// The MAC key `version` if this node holds it, without asking the
    /// database (for versions named by a caller, e.g. a token's `kid`: a
    /// forged version must not cost a database read). Rotations reach
    /// every node through the periodic key refresh.
    pub fn held_mac_key(&self, purpose: Purpose, version: i32) -> Result<Option<MacKey>, ServiceError> {
        match self.get(purpose, Some(version))? {
            Some((_, Key::Mac(k))) => Ok(Some(k)),
            Some(_) => Err(ServiceError::internal(format!(
                "{} key has the wrong type",
                purpose.as_str()
            ))),
            None => Ok(None),
        }
    }

    /// The card verification key (16 bytes).
    pub async fn cvk(&self) -> Result<[u8; 16], ServiceError> {
        match self.key(Purpose::Cvk, None).await? {
            (_, Key::Cvk(k)) => k
                .expose()
                .try_into()
                .map_err(|_| ServiceError::internal("CVK must be 16 bytes")),
            _ => Err(ServiceError::internal("CVK has the wrong type")),
        }
    }

    /// The tenant's RSA transport key versions, oldest first, making version
    /// 1 on first use. Two nodes making it at once end with one key: the
    /// database keeps the first insert and the other node reads it back.
    pub async fn tenant_transport_keys(&self, tenant: TenantId) -> Result<Vec<TenantTransportKey>, ServiceError> {
        if let Some(keys) = self.transports.read().map_err(|_| poisoned())?.get(&tenant) {
            if !keys.is_empty() {
                return Ok(keys.clone());
            }
        }
        let keys = self.load_transport_keys(tenant).await?;
        if !keys.is_empty() {
            return Ok(keys);
        }
        // One RSA key generation at a time on this node (it takes a while);
        // whoever waited finds the key made meanwhile.
        let _making = self.making_transport.lock().await;
        let keys = self.load_transport_keys(tenant).await?;
        if !keys.is_empty() {
            return Ok(keys);
        }
        self.add_transport_version(tenant, 1).await?;
        self.load_transport_keys(tenant).await
    }

    /// The newest version of the tenant's transport key (made on first use).
    pub async fn transport_key(&self, tenant: TenantId) -> Result<TenantTransportKey, ServiceError> {
        self.tenant_transport_keys(tenant)
            .await?
            .pop()
            .ok_or_else(|| ServiceError::internal("no transport key after making one"))
    }

    /// The tenant's transport key versions that decrypt at `now`, newest
    /// first (`version`: only that one). A version this node has not seen
    /// yet is fetched from the database once.
    pub async fn live_transport_keys(
        &self,
        tenant: TenantId,
        version: Option<i32>,
        now: Timestamp,
    ) -> Result<Vec<TenantTransportKey>, ServiceError> {
        let mut keys = self.tenant_transport_keys(tenant).await?;
        if let Some(v) = version {
            if keys.last().is_some_and(|k| k.version < v) {
                keys = self.load_transport_keys(tenant).await?;
            }
            keys.retain(|k| k.version == v);
        }
        keys.retain(|k| k.retires_at.is_none_or(|at| now < at));
        keys.reverse();
        Ok(keys)
    }

    /// Adds a new transport key version for every tenant that has one; the
    /// versions it replaces stop decrypting `grace` from now. Returns how
    /// many tenants got a new version.
    pub async fn rotate_transport_keys(&self, grace: chrono::Duration) -> Result<usize, ServiceError> {
        let mut rotated = 0;
        for tenant in self.store.transport_key_tenants().await? {
            loop {
                let current = self.load_transport_keys(tenant).await?.last().map_or(0, |k| k.version);
                if self.add_transport_version(tenant, current + 1).await? {
                    self.store
                        .retire_transport_keys(tenant, current + 1, crate::now() + grace)
                        .await?;
                    rotated += 1;
                    break;
                }
            }
            self.load_transport_keys(tenant).await?;
        }
        Ok(rotated)
    }

    async fn add_transport_version(&self, tenant: TenantId, version: i32) -> Result<bool, ServiceError> {
        // RSA key generation takes long enough to stall other requests on
        // this worker thread.
        let key = tokio::task::spawn_blocking(TransportKey::generate_pkcs8)
            .await
            .map_err(|e| ServiceError::caused("transport key generation stopped", e))?
            .map_err(|e| ServiceError::caused("transport key generation", e))?;
        self.master_key_current().await?;
        let wrapped = self.master.wrap(&transport_label(tenant, version), &key, &mut OsRng);
        Ok(self
            .store
            .insert_transport_key(&TransportKeyRecord {
                tenant_id: tenant,
                version,
                wrapped,
                created_at: crate::now(),
                retires_at: None,
            })
            .await?)
    }

    /// Reads the tenant's versions from the database into this node's cache
    /// (parsing only versions it has not parsed before).
    async fn load_transport_keys(&self, tenant: TenantId) -> Result<Vec<TenantTransportKey>, ServiceError> {
        let records = self.store.transport_keys(tenant).await?;
        let known: HashMap<i32, Arc<TransportKey>> = self
            .transports
            .read()
            .map_err(|_| poisoned())?
            .get(&tenant)
            .map(|keys| keys.iter().map(|k| (k.version, k.key.clone())).collect())
            .unwrap_or_default();
        let mut keys = Vec::with_capacity(records.len());
        for r in records {
            let key = match known.get(&r.version) {
                Some(k) => k.clone(),
                None => {
                    let raw = self
                        .master
                        .unwrap(&transport_label(tenant, r.version), &r.wrapped)
                        .map_err(|_| ServiceError::internal("transport key does not open with the master key"))?;
                    Arc::new(TransportKey::from_pkcs8(&raw).map_err(|e| ServiceError::caused("transport key", e))?)
                }
            };
            keys.push(TenantTransportKey {
                version: r.version,
                key,
                retires_at: r.retires_at,
            });
        }
        self.transports
            .write()
            .map_err(|_| poisoned())?
            .insert(tenant, keys.clone());
        Ok(keys)
    }

    /// Makes a zone PIN key for a tenant and returns it in clear, once.
    pub async fn create_zone_key(&self, tenant: TenantId, algorithm: &str) -> Result<ZoneKey, ServiceError> {
        if algorithm == PVK {
            return Err(ServiceError::invalid(
                "algorithm",
                "a PIN verification key is imported (the PVVs were made under it), never made",
            ));
        }
        self.store_zone_key(tenant, algorithm, random_key(16, &mut OsRng)).await
    }

    /// Imports a tenant's existing key (16 bytes): a zone PIN key (`aes`,
    /// `tdes`) its PIN blocks are encrypted under, or a Visa PIN
    /// verification key (`pvk`, double-length TDES) its PVVs were made
    /// under. The caller compares the answered KCV with the one it was given.
    pub async fn import_zone_key(
        &self,
        tenant: TenantId,
        algorithm: &str,
        key: SecretBytes,
    ) -> Result<ZoneKey, ServiceError> {
        if key.len() != 16 {
            return Err(ServiceError::invalid(
                "key",
                "must be 16 bytes (32 hex characters): AES-128, or double-length TDES (K1K2)",
            ));
        }
        self.store_zone_key(tenant, algorithm, key).await
    }

    async fn store_zone_key(
        &self,
        tenant: TenantId,
        algorithm: &str,
        key: SecretBytes,
    ) -> Result<ZoneKey, ServiceError> {
        let kcv = match algorithm {
            "aes" => cardcore_crypto::kcv::aes_kcv(key.expose()),
            "tdes" | PVK => cardcore_crypto::kcv::tdes_kcv(key.expose()),
            _ => return Err(ServiceError::invalid("algorithm", "must be aes, tdes or pvk")),
        }
        .map_err(|e| ServiceError::caused("key check value", e))?;
        let id = ZoneKeyId::new();
        self.master_key_current().await?;
        let wrapped = self.master.wrap(&zone_label(tenant, id, algorithm), &key, &mut OsRng);
        self.store
            .insert_zone_key(&ZoneKeyRecord {
                id,
                tenant_id: tenant,
                algorithm: algorithm.to_owned(),
                wrapped,
                kcv: kcv.clone(),
                created_at: crate::now(),
            })
            .await?;
        self.zones.write().map_err(|_| poisoned())?.remove(&tenant);
        Ok(ZoneKey {
            id,
            algorithm: algorithm.to_owned(),
            key: Arc::new(key),
            kcv,
        })
    }

    /// A tenant's zone key: by id, or else the newest of `algorithm`. Keys
    /// made since this node last looked (by the CLI) are found at once.
    pub async fn zone_key(
        &self,
        tenant: TenantId,
        id: Option<ZoneKeyId>,
        algorithm: &str,
    ) -> Result<Option<ZoneKey>, ServiceError> {
        let pick = |keys: &[ZoneKey]| -> Option<ZoneKey> {
            match id {
                Some(id) => keys.iter().find(|k| k.id == id).cloned(),
                None => keys.iter().rev().find(|k| k.algorithm == algorithm).cloned(),
            }
        };
        if let Some(keys) = self.zones.read().map_err(|_| poisoned())?.get(&tenant) {
            if let Some(k) = pick(keys) {
                // A cached pick by id is final; "newest" may have changed, so
                // only trust it when asking by id.
                if id.is_some() {
                    return Ok(Some(k));
                }
            }
        }
        let records = self.store.zone_keys(tenant).await?;
        let mut keys = Vec::with_capacity(records.len());
        for r in records {
            let raw = self
                .master
                .unwrap(&zone_label(tenant, r.id, &r.algorithm), &r.wrapped)
                .map_err(|_| ServiceError::internal("zone key does not open with the master key"))?;
            keys.push(ZoneKey {
                id: r.id,
                algorithm: r.algorithm,
                key: Arc::new(raw),
                kcv: r.kcv,
            });
        }
        let found = pick(&keys);
        self.zones.write().map_err(|_| poisoned())?.insert(tenant, keys);
        Ok(found)
    }
}

fn poisoned() -> ServiceError {
    ServiceError::internal("key cache lock poisoned")
}

/// What [`verify_master_key`] opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCheck {
    /// Service keys unwrapped (all of them).
    pub service_keys: usize,
    /// Whether a card's sealed PAN was opened (false: the database has no card).
    pub pan_opened: bool,
}

/// Checks, reading nothing but its arguments, that `master` is the master
/// key of a database: its check value (`meta.master_key_check`), every
/// service key, and one card's sealed PAN under the data key version it
/// records. Errors name what did not open, never a value.
pub fn verify_master_key(
    master: &MasterKey,
    check_hex: Option<&str>,
    keys: &[StoredKey],
    pan: Option<&cardcore_store::PanRow>,
) -> Result<KeyCheck, ServiceError> {
    let Some(check) = check_hex else {
        return Err(ServiceError::Startup(
            "the database has no master key check value (it was never opened by cardcore)".into(),
        ));
    };
    let wrapped =
        hex::decode(check).map_err(|_| ServiceError::Startup("the master key check value is corrupt".into()))?;
    master.unwrap(MASTER_CHECK_LABEL, &wrapped).map_err(|_| {
        ServiceError::Startup("the master key does not match this database (its check value does not open)".into())
    })?;
    let mut data_keys = HashMap::new();
    let mut opened = 0;
    for k in keys {
        let Some(purpose) = Purpose::parse(&k.purpose) else {
            continue;
        };
        let raw = master.unwrap(&label(purpose, k.version), &k.wrapped).map_err(|_| {
            ServiceError::Startup(format!(
                "service key {} v{} does not open with the master key",
                k.purpose, k.version
            ))
        })?;
        opened += 1;
        if purpose == Purpose::Data {
            data_keys.insert(
                k.version,
                DataKey::from_bytes(&raw).map_err(|e| ServiceError::caused("rewrapping a data key", e))?,
            );
        }
    }
    let pan_opened = match pan {
        None => false,
        Some(row) => {
            let key = data_keys.get(&row.data_key_version).ok_or_else(|| {
                ServiceError::Startup(format!(
                    "card {} names data key v{}, which the database does not hold",
                    row.id, row.data_key_version
                ))
            })?;
            let aad = format!("cardcore/pan/{}/{}", row.tenant_id, row.id);
            key.open(aad.as_bytes(), &row.pan_sealed)
                .map_err(|_| ServiceError::Startup(format!("the sealed PAN of card {} does not open", row.id)))?;
            true
        }
    };
    Ok(KeyCheck {
        service_keys: opened,
        pan_opened,
    })
}

/// What [`rotate_master_key`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Keys rewrapped under the new master key.
    pub rewrapped: usize,
    /// Keys found already under the new key (a rotation run again).
    pub already_new: usize,
}

fn wrapped_label(id: &cardcore_store::WrappedKeyId) -> Option<String> {
    use cardcore_store::WrappedKeyId;
    Some(match id {
        WrappedKeyId::Service { purpose, version } => label(Purpose::parse(purpose)?, *version),
        WrappedKeyId::Transport { tenant, version } => transport_label(*tenant, *version),
        WrappedKeyId::Zone { tenant, id, algorithm } => zone_label(*tenant, *id, algorithm),
    })
}

/// Rewraps every key the master key wraps from `old` to `new`, and the
/// check value, in one transaction. A key already under `new` (a previous
/// run, or a key an old node made meanwhile and a later sweep catches) is
/// left as it is; a key that opens with neither stops it, changing nothing.
pub async fn rotate_master_key(store: &dyn Store, old: &MasterKey, new: &MasterKey) -> Result<Rotation, ServiceError> {
    let check = store
        .meta(MASTER_CHECK_META)
        .await?
        .ok_or_else(|| ServiceError::Startup("the database has no master key check value".into()))?;
    let wrapped_check = hex::decode(&check).map_err(|_| ServiceError::internal("master key check value is corrupt"))?;
    if old.unwrap(MASTER_CHECK_LABEL, &wrapped_check).is_err() {
        return Err(ServiceError::Startup(
            if new.unwrap(MASTER_CHECK_LABEL, &wrapped_check).is_ok() {
                "the database is already under the new master key".into()
            } else {
                "the current master key (CARDCORE_MASTER_KEY, --master-key-file or master.key) does not open this database".into()
            },
        ));
    }
    let mut rewrapped = Vec::new();
    let mut already_new = 0;
    for key in store.wrapped_keys().await? {
        let Some(label) = wrapped_label(&key.id) else {
            continue;
        };
        if new.unwrap(&label, &key.wrapped).is_ok() {
            already_new += 1;
            continue;
        }
        let raw = old.unwrap(&label, &key.wrapped).map_err(|_| {
            ServiceError::Startup(format!(
                "{:?} opens with neither the old nor the new master key",
                key.id
            ))
        })?;
        rewrapped.push(cardcore_store::WrappedKey {
            id: key.id,
            wrapped: new.wrap(&label, &raw, &mut OsRng),
        });
    }
    let new_check = hex::encode(new.wrap(MASTER_CHECK_LABEL, &SecretBytes::from_slice(&[0u8; 32]), &mut OsRng));
    if !store.rewrap_keys(&check, &new_check, &rewrapped).await? {
        return Err(ServiceError::Conflict {
            code: "master_key_changed",
            message: "the master key check value changed meanwhile (another rotation?); nothing was changed".into(),
        });
    }
    Ok(Rotation {
        rewrapped: rewrapped.len(),
        already_new,
    })
}

/// After a rotation: rewraps keys still under `old` (made by a node that
/// had not stopped yet) to `new`; the check value is already `new`'s.
pub async fn sweep_old_master_key(store: &dyn Store, old: &MasterKey, new: &MasterKey) -> Result<usize, ServiceError> {
    let check = store
        .meta(MASTER_CHECK_META)
        .await?
        .ok_or_else(|| ServiceError::Startup("the database has no master key check value".into()))?;
    let mut rewrapped = Vec::new();
    for key in store.wrapped_keys().await? {
        let Some(label) = wrapped_label(&key.id) else {
            continue;
        };
        if new.unwrap(&label, &key.wrapped).is_ok() {
            continue;
        }
        if let Ok(raw) = old.unwrap(&label, &key.wrapped) {
            rewrapped.push(cardcore_store::WrappedKey {
                id: key.id,
                wrapped: new.wrap(&label, &raw, &mut OsRng),
            });
        }
    }
    if rewrapped.is_empty() {
        return Ok(0);
    }
    // Same check value in and out: only the keys change, still atomically.
    if !store.rewrap_keys(&check, &check, &rewrapped).await? {
        return Err(ServiceError::Conflict {
            code: "master_key_changed",
            message: "the master key check value changed during the sweep".into(),
        });
    }
    Ok(rewrapped.len())
}
