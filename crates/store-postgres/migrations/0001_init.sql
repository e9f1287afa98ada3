-- cardcore schema, PostgreSQL: the same logical schema as the SQLite
-- backend's, in native types (uuid, timestamptz, bytea, jsonb). Secrets are
-- ciphertext or keyed hashes only. Every write path uses ON CONFLICT DO
-- NOTHING where a duplicate is an expected answer, because in PostgreSQL an
-- error aborts the whole transaction.

CREATE TABLE meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- Service keys (data, PIN verification, OTP, CVK, PAN lookup, RSA transport,
-- JWT), wrapped by the master key.
CREATE TABLE service_keys (
    purpose    text        NOT NULL,
    version    integer     NOT NULL,
    wrapped    bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (purpose, version)
);

CREATE TABLE tenants (
    id                 uuid PRIMARY KEY,
    name               text        NOT NULL UNIQUE,
    default_program_id uuid        NOT NULL,
    created_at         timestamptz NOT NULL
);

CREATE TABLE api_keys (
    id         uuid PRIMARY KEY,
    tenant_id  uuid        NOT NULL REFERENCES tenants (id),
    key_hash   bytea       NOT NULL UNIQUE,
    prefix     text        NOT NULL,
    can_reveal boolean     NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE zone_keys (
    id         uuid PRIMARY KEY,
    tenant_id  uuid        NOT NULL REFERENCES tenants (id),
    algorithm  text        NOT NULL CHECK (algorithm IN ('aes', 'tdes')),
    wrapped    bytea       NOT NULL,
    kcv        text        NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX zone_keys_tenant ON zone_keys (tenant_id, created_at);

CREATE TABLE cardholders (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid        NOT NULL REFERENCES tenants (id),
    external_id        text        NOT NULL,
    name               text        NOT NULL,
    phone_country_code text        NOT NULL,
    phone_number       text        NOT NULL,
    email              text,
    date_of_birth      date,
    default_account_id uuid        NOT NULL,
    created_at         timestamptz NOT NULL,
    UNIQUE (tenant_id, external_id)
);

CREATE TABLE cards (
    id                     uuid PRIMARY KEY,
    tenant_id              uuid        NOT NULL REFERENCES tenants (id),
    cardholder_id          uuid        NOT NULL REFERENCES cardholders (id),
    account_id             uuid        NOT NULL,
    program_id             uuid        NOT NULL,
    type                   text        NOT NULL CHECK (type IN ('virtual', 'physical')),
    status                 text        NOT NULL CHECK (status IN ('INACTIVE', 'ACTIVE', 'LOCKED', 'BLOCKED', 'CLOSED')),
    reason_code            text,
    reason_message         text,
    pin_status             text        NOT NULL CHECK (pin_status IN ('NOT_SET', 'SET', 'BLOCKED')),
    brand                  text        NOT NULL,
    last_four              text        NOT NULL,
    expiry_month           integer     NOT NULL,
    expiry_year            integer     NOT NULL,
    card_name              text,
    printed_name           text,
    kit_number             text        NOT NULL,
    replacement_for        uuid REFERENCES cards (id),
    limits                 jsonb       NOT NULL,
    pan_hash               bytea       NOT NULL,
    pan_sealed             bytea       NOT NULL,
    cvv_sealed             bytea       NOT NULL,
    data_key_version       integer     NOT NULL,
    activation_verifier    bytea,
    activation_key_version integer,
    pin_verifier           bytea,
    pin_key_version        integer,
    -- bigint: the domain counts in u32, which does not fit an integer.
    pin_failures           bigint      NOT NULL DEFAULT 0,
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL,
    UNIQUE (tenant_id, pan_hash),
    UNIQUE (tenant_id, kit_number)
);
CREATE INDEX cards_cardholder ON cards (tenant_id, cardholder_id, id);
CREATE INDEX cards_replacement ON cards (replacement_for);

CREATE TABLE otp_states (
    card_id      uuid        NOT NULL REFERENCES cards (id),
    purpose      text        NOT NULL,
    failures     bigint      NOT NULL,
    locked_until timestamptz,
    codes        jsonb       NOT NULL,
    PRIMARY KEY (card_id, purpose)
);

CREATE TABLE audit_log (
    seq        bigserial PRIMARY KEY,
    id         uuid        NOT NULL UNIQUE,
    tenant_id  uuid        NOT NULL,
    card_id    uuid,
    type       text        NOT NULL,
    actor      jsonb       NOT NULL,
    request_id text,
    reason     jsonb,
    before     jsonb,
    after      jsonb,
    created_at timestamptz NOT NULL
);
CREATE INDEX audit_log_card ON audit_log (tenant_id, card_id, seq);

-- The transactional outbox: written in the same transaction as the change.
--
-- `seq` alone cannot order a reader's pages: sequence values are handed out
-- at insert time but become visible at commit, so with concurrent writers a
-- row can appear below a seq a reader has already paged past. `tx_id` is the
-- 64-bit id of the writing transaction; readers list only rows whose writer
-- finished before every transaction still running (tx_id below the
-- snapshot's xmin) and page by (tx_id, seq). See `events` in src/lib.rs.
CREATE TABLE events (
    seq                bigserial PRIMARY KEY,
    tx_id              xid8        NOT NULL DEFAULT pg_current_xact_id(),
    id                 uuid        NOT NULL UNIQUE,
    tenant_id          uuid        NOT NULL,
    card_id            uuid,
    type               text        NOT NULL,
    data               jsonb,
    sealed_data        bytea,
    sealed_key_version integer,
    created_at         timestamptz NOT NULL
);
CREATE INDEX events_tenant ON events (tenant_id, tx_id, seq);
CREATE INDEX events_tenant_type ON events (tenant_id, type, tx_id, seq);
CREATE INDEX events_card ON events (card_id, tx_id, seq);
