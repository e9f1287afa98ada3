-- cardcore schema, SQLite. Ids are UUID text, timestamps RFC 3339 UTC text
-- with microseconds (they sort as text), secrets are ciphertext or keyed
-- hashes only.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Service keys (data, PIN verification, OTP, CVK, PAN lookup, RSA transport,
-- JWT), wrapped by the master key.
CREATE TABLE service_keys (
    purpose    TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    wrapped    BLOB    NOT NULL,
    created_at TEXT    NOT NULL,
    PRIMARY KEY (purpose, version)
);

CREATE TABLE tenants (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE,
    default_program_id TEXT NOT NULL,
    created_at         TEXT NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    key_hash   BLOB    NOT NULL UNIQUE,
    prefix     TEXT    NOT NULL,
    can_reveal INTEGER NOT NULL,
    created_at TEXT    NOT NULL,
    revoked_at TEXT
);

CREATE TABLE zone_keys (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    algorithm  TEXT NOT NULL CHECK (algorithm IN ('aes', 'tdes')),
    wrapped    BLOB NOT NULL,
    kcv        TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX zone_keys_tenant ON zone_keys (tenant_id, created_at);

CREATE TABLE cardholders (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants (id),
    external_id        TEXT NOT NULL,
    name               TEXT NOT NULL,
    phone_country_code TEXT NOT NULL,
    phone_number       TEXT NOT NULL,
    email              TEXT,
    date_of_birth      TEXT,
    default_account_id TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    UNIQUE (tenant_id, external_id)
);

CREATE TABLE cards (
    id                     TEXT PRIMARY KEY,
    tenant_id              TEXT    NOT NULL REFERENCES tenants (id),
    cardholder_id          TEXT    NOT NULL REFERENCES cardholders (id),
    account_id             TEXT    NOT NULL,
    program_id             TEXT    NOT NULL,
    type                   TEXT    NOT NULL CHECK (type IN ('virtual', 'physical')),
    status                 TEXT    NOT NULL CHECK (status IN ('INACTIVE', 'ACTIVE', 'LOCKED', 'BLOCKED', 'CLOSED')),
    reason_code            TEXT,
    reason_message         TEXT,
    pin_status             TEXT    NOT NULL CHECK (pin_status IN ('NOT_SET', 'SET', 'BLOCKED')),
    brand                  TEXT    NOT NULL,
    last_four              TEXT    NOT NULL,
    expiry_month           INTEGER NOT NULL,
    expiry_year            INTEGER NOT NULL,
    card_name              TEXT,
    printed_name           TEXT,
    kit_number             TEXT    NOT NULL,
    replacement_for        TEXT REFERENCES cards (id),
    limits                 TEXT    NOT NULL,
    pan_hash               BLOB    NOT NULL,
    pan_sealed             BLOB    NOT NULL,
    cvv_sealed             BLOB    NOT NULL,
    data_key_version       INTEGER NOT NULL,
    activation_verifier    BLOB,
    activation_key_version INTEGER,
    pin_verifier           BLOB,
    pin_key_version        INTEGER,
    pin_failures           INTEGER NOT NULL DEFAULT 0,
    created_at             TEXT    NOT NULL,
    updated_at             TEXT    NOT NULL,
    UNIQUE (tenant_id, pan_hash),
    UNIQUE (tenant_id, kit_number)
);
CREATE INDEX cards_cardholder ON cards (tenant_id, cardholder_id, id);
CREATE INDEX cards_replacement ON cards (replacement_for);

CREATE TABLE otp_states (
    card_id      TEXT    NOT NULL REFERENCES cards (id),
    purpose      TEXT    NOT NULL,
    failures     INTEGER NOT NULL,
    locked_until TEXT,
    codes        TEXT    NOT NULL,
    PRIMARY KEY (card_id, purpose)
);

CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    tenant_id  TEXT NOT NULL,
    card_id    TEXT,
    type       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    request_id TEXT,
    reason     TEXT,
    before     TEXT,
    after      TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX audit_log_card ON audit_log (tenant_id, card_id, seq);

-- The transactional outbox: written in the same transaction as the change.
CREATE TABLE events (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    id                 TEXT NOT NULL UNIQUE,
    tenant_id          TEXT NOT NULL,
    card_id            TEXT,
    type               TEXT NOT NULL,
    data               TEXT,
    sealed_data        BLOB,
    sealed_key_version INTEGER,
    created_at         TEXT NOT NULL
);
CREATE INDEX events_tenant ON events (tenant_id, seq);
CREATE INDEX events_tenant_type ON events (tenant_id, type, seq);
CREATE INDEX events_card ON events (card_id, seq);
