-- Activation-code attempts per card (3 wrong codes lock activation). The same
-- logical schema as the SQLite backend's.

CREATE TABLE activation_states (
    card_id      uuid        PRIMARY KEY REFERENCES cards (id),
    failures     bigint      NOT NULL,
    locked_until timestamptz
);

