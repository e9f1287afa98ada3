-- API keys as things an operator manages: a label and the last use (the
-- column revoked_at exists since 0001).
ALTER TABLE api_keys ADD COLUMN name TEXT;
ALTER TABLE api_keys ADD COLUMN last_used_at TEXT;
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

-- Each tenant's RSA PIN transport key, by version, wrapped by the master
-- key. The primary key makes two nodes creating the same version end with one.
CREATE TABLE tenant_transport_keys (
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    version    INTEGER NOT NULL,
    wrapped    BLOB    NOT NULL,
    created_at TEXT    NOT NULL,
    retires_at TEXT,
    PRIMARY KEY (tenant_id, version)
);
