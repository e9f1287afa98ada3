-- A PAN names one card in the world: the PAN lookup hash becomes a keyed
-- hash of the PAN alone (no tenant in it) and is unique across the table.
-- The old hashes (tenant-bound) are unique already, so the index builds on
-- any existing database; the service re-hashes every PAN at its first start
-- after this migration (the key is in the key ring, which SQL cannot reach)
-- and stops, naming both cards, if two cards turn out to share a PAN.
-- The old UNIQUE (tenant_id, pan_hash) stays (SQLite cannot drop a table
-- constraint without rebuilding the table); it is implied by this one.
CREATE UNIQUE INDEX cards_pan_hash ON cards (pan_hash);

-- The CVV2 is no longer stored: it is computed from the CVK when revealed
-- (the CVK never rotates, so it is the value that was stored). The column
-- stays, empty, so that this migration does not rebuild the table.
UPDATE cards SET cvv_sealed = x'' WHERE length(cvv_sealed) > 0;
