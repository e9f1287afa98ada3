-- Portfolio import: a tenant's zone keys may also be Visa PIN verification
-- keys (`pvk`, double-length TDES), so imported PVVs keep verifying until the
-- PIN's next write. SQLite cannot alter a CHECK constraint: the table is
-- rebuilt with the same columns and index.

CREATE TABLE zone_keys_0008 (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    algorithm  TEXT NOT NULL CHECK (algorithm IN ('aes', 'tdes', 'pvk')),
    wrapped    BLOB NOT NULL,
    kcv        TEXT NOT NULL,
    created_at TEXT NOT NULL
);
INSERT INTO zone_keys_0008 (id, tenant_id, algorithm, wrapped, kcv, created_at)
    SELECT id, tenant_id, algorithm, wrapped, kcv, created_at FROM zone_keys;
DROP TABLE zone_keys;
ALTER TABLE zone_keys_0008 RENAME TO zone_keys;
CREATE INDEX zone_keys_tenant ON zone_keys (tenant_id, created_at);
