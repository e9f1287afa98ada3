-- Webhook endpoints and deliveries, the fan-out cursor, idempotency keys.

CREATE TABLE webhook_endpoints (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT    NOT NULL REFERENCES tenants (id),
    url                TEXT    NOT NULL,
    -- JSON array of event types; NULL: every type.
    event_types        TEXT,
    -- The signing key, sealed under the data key (AAD: tenant and endpoint).
    secret_sealed      BLOB    NOT NULL,
    secret_key_version INTEGER NOT NULL,
    created_at         TEXT    NOT NULL,
    deleted_at         TEXT
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at);

-- One row per (event, endpoint) delivery, and per redelivery. `seq` is the
-- queue order: deliveries of one card to one endpoint go out one at a time
-- in `seq` order.
CREATE TABLE webhook_deliveries (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL UNIQUE,
    tenant_id       TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    endpoint_id     TEXT    NOT NULL REFERENCES webhook_endpoints (id),
    card_id         TEXT,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'retrying', 'succeeded', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    lease_until     TEXT,
    lease_token     TEXT,
    last_status     INTEGER,
    last_error      TEXT,
    attempts_log    TEXT    NOT NULL DEFAULT '[]',
    created_at      TEXT    NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state IN ('pending', 'retrying');
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (endpoint_id, card_id, seq)
    WHERE state IN ('pending', 'retrying');
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (tenant_id, event_id, seq);

-- The last outbox position fanned out into deliveries. Starts at the end of
-- the outbox: events older than every endpoint have nobody to go to.
CREATE TABLE webhook_cursor (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO webhook_cursor (id, seq) SELECT 1, COALESCE(MAX(seq), 0) FROM events;

-- Idempotency-Key: one row per (tenant, key), kept 24 hours.
CREATE TABLE idempotency_keys (
    tenant_id        TEXT    NOT NULL REFERENCES tenants (id),
    key              TEXT    NOT NULL,
    fingerprint      BLOB    NOT NULL,
    token            TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('in_flight', 'completed')),
    status           INTEGER,
    content_type     TEXT,
    body_sealed      BLOB,
    body_key_version INTEGER,
    created_at       TEXT    NOT NULL,
    started_at       TEXT    NOT NULL,
    completed_at     TEXT,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
