-- Authorizations (docs/authorizations.md): the decisions with their holds,
-- the captures and refunds, and on the card row its spending controls and
-- the running totals of the current day and month per limits channel, read
-- and written with the card so a decision costs no extra statement.

ALTER TABLE cards ADD COLUMN controls jsonb;
ALTER TABLE cards ADD COLUMN spend jsonb NOT NULL DEFAULT '{}';

CREATE TABLE authorizations (
    id                uuid PRIMARY KEY,
    tenant_id         uuid        NOT NULL REFERENCES tenants (id),
    -- NULL: no such card for the tenant (declined CARD_NOT_FOUND).
    card_id           uuid REFERENCES cards (id),
    status            text        NOT NULL CHECK (status IN ('APPROVED', 'DECLINED', 'CLOSED', 'REVERSED', 'EXPIRED')),
    decline_reason    text,
    response_code     text        NOT NULL,
    decided_by        text        NOT NULL,
    amount            bigint      NOT NULL,
    currency          text        NOT NULL,
    billing_amount    bigint      NOT NULL,
    billing_currency  text        NOT NULL,
    approved_amount   bigint      NOT NULL,
    pending_amount    bigint      NOT NULL,
    captured_amount   bigint      NOT NULL,
    reversed_amount   bigint      NOT NULL,
    merchant          jsonb       NOT NULL,
    channel           text        NOT NULL,
    network_reference text        NOT NULL,
    day_key           text        NOT NULL,
    month_key         text        NOT NULL,
    expires_at        timestamptz,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    UNIQUE (tenant_id, network_reference)
);
CREATE INDEX authorizations_card ON authorizations (tenant_id, card_id, id);
CREATE INDEX authorizations_due ON authorizations (expires_at) WHERE status = 'APPROVED';

CREATE TABLE card_transactions (
    id                uuid PRIMARY KEY,
    tenant_id         uuid        NOT NULL REFERENCES tenants (id),
    card_id           uuid        NOT NULL REFERENCES cards (id),
    authorization_id  uuid REFERENCES authorizations (id),
    kind              text        NOT NULL CHECK (kind IN ('capture', 'refund')),
    amount            bigint      NOT NULL,
    currency          text        NOT NULL,
    merchant          jsonb,
    network_reference text        NOT NULL,
    created_at        timestamptz NOT NULL,
    UNIQUE (tenant_id, network_reference)
);
CREATE INDEX card_transactions_card ON card_transactions (tenant_id, card_id, id);
