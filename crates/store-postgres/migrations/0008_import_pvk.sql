-- Portfolio import: a tenant's zone keys may also be Visa PIN verification
-- keys (`pvk`, double-length TDES), so imported PVVs keep verifying until the
-- PIN's next write.

ALTER TABLE zone_keys DROP CONSTRAINT zone_keys_algorithm_check;
ALTER TABLE zone_keys ADD CONSTRAINT zone_keys_algorithm_check CHECK (algorithm IN ('aes', 'tdes', 'pvk'));
