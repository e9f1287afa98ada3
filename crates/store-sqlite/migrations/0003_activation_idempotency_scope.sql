-- Activation-code attempts per card (3 wrong codes lock activation), and
-- idempotency keys scoped per API key with keyed fingerprints.

CREATE TABLE activation_states (
    card_id      TEXT    PRIMARY KEY REFERENCES cards (id),
    failures     INTEGER NOT NULL,
    locked_until TEXT
);

-- Rows made before this migration hold an unkeyed SHA-256 of the request
-- body (a PIN or OTP body is recovered from it by a dictionary) and are
-- scoped per tenant rather than per API key: they are dropped. A retry of
-- a request made before the upgrade runs again (see docs/native-api.md).
DELETE FROM idempotency_keys;
