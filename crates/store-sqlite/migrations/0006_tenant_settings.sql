-- Tenant settings (weak-PIN rules, M2P's required PIN-change fields) as a
-- JSON object; `{}` reads as every default. Cards issued without a name are
-- called by their type, as new cards are.
ALTER TABLE tenants ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
UPDATE cards SET card_name = type WHERE card_name IS NULL;
