-- Webhook endpoints and deliveries, the fan-out cursor, idempotency keys.
-- The same logical schema as the SQLite backend's.

CREATE TABLE webhook_endpoints (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid        NOT NULL REFERENCES tenants (id),
    url                text        NOT NULL,
    -- NULL: every event type.
    event_types        text[],
    -- The signing key, sealed under the data key (AAD: tenant and endpoint).
    secret_sealed      bytea       NOT NULL,
    secret_key_version integer     NOT NULL,
    created_at         timestamptz NOT NULL,
    deleted_at         timestamptz
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at) WHERE deleted_at IS NULL;

-- One row per (event, endpoint) delivery, and per redelivery. `seq` is the
-- queue order: deliveries of one card to one endpoint go out one at a time
-- in `seq` order. Fan-out runs one node at a time (the cursor row lock), so
-- its deliveries' seqs follow outbox order.
CREATE TABLE webhook_deliveries (
    seq             bigserial PRIMARY KEY,
    id              uuid        NOT NULL UNIQUE,
    tenant_id       uuid        NOT NULL,
    event_id        uuid        NOT NULL,
    endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints (id),
    card_id         uuid,
    state           text        NOT NULL CHECK (state IN ('pending', 'retrying', 'succeeded', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    lease_until     timestamptz,
    lease_token     uuid,
    last_status     integer,
    last_error      text,
    attempts_log    jsonb       NOT NULL DEFAULT '[]',
    created_at      timestamptz NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, seq)
    WHERE state IN ('pending', 'retrying');
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (endpoint_id, card_id, seq)
    WHERE state IN ('pending', 'retrying');
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (tenant_id, event_id, seq);

-- The fan-out reads the whole outbox in (tx_id, seq) order, like `events`.
CREATE INDEX events_outbox ON events (tx_id, seq);

-- The last outbox position fanned out into deliveries; its row lock makes
-- one node at a time fan out. Starts at the end of the outbox: events older
-- than every endpoint have nobody to go to.
CREATE TABLE webhook_cursor (
    id    integer PRIMARY KEY CHECK (id = 1),
    tx_id xid8    NOT NULL,
    seq   bigint  NOT NULL
);
INSERT INTO webhook_cursor (id, tx_id, seq)
SELECT 1,
       COALESCE((SELECT tx_id FROM events ORDER BY tx_id DESC, seq DESC LIMIT 1), '0'::xid8),
       COALESCE((SELECT seq FROM events ORDER BY tx_id DESC, seq DESC LIMIT 1), 0);

-- Idempotency-Key: one row per (tenant, key), kept 24 hours.
CREATE TABLE idempotency_keys (
    tenant_id        uuid        NOT NULL REFERENCES tenants (id),
    key              text        NOT NULL,
    fingerprint      bytea       NOT NULL,
    token            uuid        NOT NULL,
    state            text        NOT NULL CHECK (state IN ('in_flight', 'completed')),
    status           integer,
    content_type     text,
    body_sealed      bytea,
    body_key_version integer,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz NOT NULL,
    completed_at     timestamptz,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
