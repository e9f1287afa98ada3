-- API keys as things an operator manages: a label and the last use (the
-- column revoked_at exists since 0001).
ALTER TABLE api_keys ADD COLUMN name text;
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;

-- Each tenant's RSA PIN transport key, by version, wrapped by the master
-- key. The primary key makes two nodes creating the same version end with one.
CREATE TABLE tenant_transport_keys (
    tenant_id  uuid        NOT NULL REFERENCES tenants (id),
    version    integer     NOT NULL,
    wrapped    bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    retires_at timestamptz,
    PRIMARY KEY (tenant_id, version)
);
