-- Endpoint formats (cardcore's own, P100's, the tenant's SMS sender) and the
-- tenants' SMS settings.

-- 'standard': Standard Webhooks, cardcore's payload; 'p100': P100's
-- `{"event_type", "data"}` with the secret token in `Authorization`; 'sms':
-- the tenant's OTPs sent by the node's SMS provider (no URL of its own).
ALTER TABLE webhook_endpoints ADD COLUMN format TEXT NOT NULL DEFAULT 'standard'
    CHECK (format IN ('standard', 'p100', 'sms'));

-- One row per tenant that changed a setting; no row: the defaults.
CREATE TABLE tenant_sms (
    tenant_id     TEXT    PRIMARY KEY REFERENCES tenants (id),
    -- The SMS text template; NULL: the default.
    text          TEXT,
    -- Whether `otp.created` events carry the code.
    otp_in_events INTEGER NOT NULL DEFAULT 1,
    updated_at    TEXT    NOT NULL
);
