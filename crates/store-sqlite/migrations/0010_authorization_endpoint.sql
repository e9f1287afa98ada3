-- A tenant's authorization endpoint: its own decision service, asked after
-- cardcore's checks passed. One per tenant; the signing secret sealed under
-- the data key (AAD: the tenant).
CREATE TABLE authorization_endpoints (
    tenant_id          TEXT PRIMARY KEY REFERENCES tenants (id),
    url                TEXT    NOT NULL,
    timeout_ms         INTEGER NOT NULL CHECK (timeout_ms BETWEEN 100 AND 1500),
    on_timeout         TEXT    NOT NULL CHECK (on_timeout IN ('approve', 'decline')),
    secret_sealed      BLOB    NOT NULL,
    secret_key_version INTEGER NOT NULL,
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL
);
