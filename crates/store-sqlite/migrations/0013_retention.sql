-- Retention (docs/DEPLOYMENT.md, "Retention"): the purge finds old rows by
-- age, oldest first, without scanning the tables.
CREATE INDEX IF NOT EXISTS events_created ON events (created_at, seq);
CREATE INDEX IF NOT EXISTS audit_log_created ON audit_log (created_at, seq);
CREATE INDEX IF NOT EXISTS webhook_deliveries_dead ON webhook_deliveries (created_at, seq) WHERE state = 'dead';

-- One holder at a time of a background job across nodes (and CLI runs):
-- a lease, taken or renewed in one statement.
CREATE TABLE job_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    lease_until TEXT NOT NULL
);
