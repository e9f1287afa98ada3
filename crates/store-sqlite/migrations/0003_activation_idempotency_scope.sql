-- Activation-code attempts per card (3 wrong codes lock activation).

CREATE TABLE activation_states (
    card_id      TEXT    PRIMARY KEY REFERENCES cards (id),
    failures     INTEGER NOT NULL,
    locked_until TEXT
);

