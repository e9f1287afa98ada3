-- A tenant's authorization endpoint: its own decision service, asked after
-- cardcore's checks passed. One per tenant; the signing secret sealed under
-- the data key (AAD: the tenant). The same logical schema as SQLite's.
CREATE TABLE authorization_endpoints (
    tenant_id          uuid PRIMARY KEY REFERENCES tenants (id),
    url                text        NOT NULL,
    timeout_ms         integer     NOT NULL CHECK (timeout_ms BETWEEN 100 AND 1500),
    on_timeout         text        NOT NULL CHECK (on_timeout IN ('approve', 'decline')),
    secret_sealed      bytea       NOT NULL,
    secret_key_version integer     NOT NULL,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);
