-- The operator console and the PIN widget (docs/CONSOLE.md). Sessions live
-- in the database, so every node behind a load balancer knows them; only
-- the SHA-256 of a session token is stored.

CREATE TABLE console_sessions (
    token_hash bytea       PRIMARY KEY,
    tenant_id  uuid        NOT NULL REFERENCES tenants (id),
    api_key_id uuid        NOT NULL REFERENCES api_keys (id),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

CREATE TABLE pin_sessions (
    token_hash     bytea       PRIMARY KEY,
    tenant_id      uuid        NOT NULL REFERENCES tenants (id),
    card_id        uuid        NOT NULL REFERENCES cards (id),
    api_key_id     uuid        NOT NULL REFERENCES api_keys (id),
    purpose        text        NOT NULL CHECK (purpose IN ('set', 'change', 'verify')),
    allowed_origin text        NOT NULL,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz
);
CREATE INDEX pin_sessions_expiry ON pin_sessions (expires_at);

-- The console's search: last four digits (and expiry), and phone.
CREATE INDEX cards_last_four ON cards (tenant_id, last_four);
CREATE INDEX cardholders_phone ON cardholders (tenant_id, phone_number);
