-- Activation-code attempts per card (3 wrong codes lock activation), and
-- idempotency keys scoped per API key with keyed fingerprints. The same
-- logical schema as the SQLite backend's.

CREATE TABLE activation_states (
    card_id      uuid        PRIMARY KEY REFERENCES cards (id),
    failures     bigint      NOT NULL,
    locked_until timestamptz
);

-- Rows made before this migration hold an unkeyed SHA-256 of the request
-- body (a PIN or OTP body is recovered from it by a dictionary) and are
-- scoped per tenant rather than per API key: they are dropped. A retry of
-- a request made before the upgrade runs again (see docs/native-api.md).
DELETE FROM idempotency_keys;
