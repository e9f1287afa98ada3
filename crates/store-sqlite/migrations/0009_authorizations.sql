-- Authorizations (docs/authorizations.md): the decisions with their holds,
-- the captures and refunds, and on the card row its spending controls and
-- the running totals of the current day and month per limits channel, read
-- and written with the card so a decision costs no extra statement.

ALTER TABLE cards ADD COLUMN controls TEXT;
ALTER TABLE cards ADD COLUMN spend TEXT NOT NULL DEFAULT '{}';

CREATE TABLE authorizations (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT    NOT NULL REFERENCES tenants (id),
    -- NULL: no such card for the tenant (declined CARD_NOT_FOUND).
    card_id           TEXT REFERENCES cards (id),
    status            TEXT    NOT NULL CHECK (status IN ('APPROVED', 'DECLINED', 'CLOSED', 'REVERSED', 'EXPIRED')),
    decline_reason    TEXT,
    response_code     TEXT    NOT NULL,
    decided_by        TEXT    NOT NULL,
    amount            INTEGER NOT NULL,
    currency          TEXT    NOT NULL,
    billing_amount    INTEGER NOT NULL,
    billing_currency  TEXT    NOT NULL,
    approved_amount   INTEGER NOT NULL,
    pending_amount    INTEGER NOT NULL,
    captured_amount   INTEGER NOT NULL,
    reversed_amount   INTEGER NOT NULL,
    merchant          TEXT    NOT NULL,
    channel           TEXT    NOT NULL,
    network_reference TEXT    NOT NULL,
    day_key           TEXT    NOT NULL,
    month_key         TEXT    NOT NULL,
    expires_at        TEXT,
    created_at        TEXT    NOT NULL,
    updated_at        TEXT    NOT NULL,
    UNIQUE (tenant_id, network_reference)
);
CREATE INDEX authorizations_card ON authorizations (tenant_id, card_id, id);
CREATE INDEX authorizations_due ON authorizations (expires_at) WHERE status = 'APPROVED';

CREATE TABLE card_transactions (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT    NOT NULL REFERENCES tenants (id),
    card_id           TEXT    NOT NULL REFERENCES cards (id),
    authorization_id  TEXT REFERENCES authorizations (id),
    kind              TEXT    NOT NULL CHECK (kind IN ('capture', 'refund')),
    amount            INTEGER NOT NULL,
    currency          TEXT    NOT NULL,
    merchant          TEXT,
    network_reference TEXT    NOT NULL,
    created_at        TEXT    NOT NULL,
    UNIQUE (tenant_id, network_reference)
);
CREATE INDEX card_transactions_card ON card_transactions (tenant_id, card_id, id);
