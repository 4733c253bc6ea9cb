-- Operators as live configuration, their provider keys, and back-office staff.
--
-- An operator's document (name, currencies, timezone, domains, theme, flags,
-- rules) is validated by the service and stored whole in `config`; the parts
-- other rows depend on get constraints of their own. Existing databases keep
-- working: `default` (id 1) owns all existing data and gets a document that
-- allows everything it allowed before.

ALTER TABLE operators
    ADD COLUMN config     JSONB NOT NULL DEFAULT '{"name": "Default", "currencies": []}',
    -- The document's version, for If-Match: bumped by every change of it.
    ADD COLUMN version    INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
    -- Bumped by every change of the document or of the operator's keys:
    -- what every instance compares with the copy it holds in memory.
    ADD COLUMN revision   BIGINT NOT NULL DEFAULT 1 CHECK (revision >= 1),
    ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD CONSTRAINT operators_config_shape CHECK (
        jsonb_typeof(config) = 'object'
        AND jsonb_typeof(config -> 'name') = 'string'
        AND jsonb_typeof(config -> 'currencies') = 'array');
ALTER TABLE operators ALTER COLUMN config DROP DEFAULT;

-- New operators take the next id; `default` keeps 1.
CREATE SEQUENCE operators_id_seq AS SMALLINT START 2 OWNED BY operators.id;
ALTER TABLE operators ALTER COLUMN id SET DEFAULT nextval('operators_id_seq');

-- A domain names one operator: the database refuses a second claim on it.
CREATE TABLE operator_domains (
    domain      TEXT PRIMARY KEY CHECK (domain = lower(domain) AND char_length(domain) BETWEEN 1 AND 253),
    operator_id SMALLINT NOT NULL REFERENCES operators (id)
);
CREATE INDEX operator_domains_operator ON operator_domains (operator_id);

-- Provider signing keys per operator. The secret must be usable for HMAC, so
-- it is kept as it is (not hashed): the table is readable by its owner, the
-- service's role, only; the service never logs it nor returns it again.
CREATE TABLE provider_keys (
    key_id      UUID PRIMARY KEY,
    operator_id SMALLINT NOT NULL REFERENCES operators (id),
    secret      TEXT NOT NULL CHECK (char_length(secret) >= 32),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ,
    CHECK (revoked_at IS NULL OR revoked_at >= created_at)
);
CREATE INDEX provider_keys_operator ON provider_keys (operator_id, created_at);
REVOKE ALL ON provider_keys FROM PUBLIC;

-- Back-office staff: platform-wide (no operator) or bound to one operator.
-- Bearer tokens are random 256-bit values, stored only as their SHA-256.
CREATE TABLE staff (
    staff_id    UUID PRIMARY KEY,
    operator_id SMALLINT REFERENCES operators (id),
    email       TEXT NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254 AND email LIKE '%_@_%'),
    role        TEXT NOT NULL CHECK (role IN ('admin', 'finance', 'support', 'compliance', 'analyst')),
    token_hash  BYTEA NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at  TIMESTAMPTZ
);
-- One live account per email within an operator (and among platform staff).
CREATE UNIQUE INDEX staff_email_live ON staff (coalesce(operator_id, 0), lower(email))
    WHERE deleted_at IS NULL;
REVOKE ALL ON staff FROM PUBLIC;

-- The player's country (ISO 3166-1 alpha-2), which per-country flags are
-- evaluated for; unknown for players created by the back office.
ALTER TABLE players ADD COLUMN country TEXT CHECK (country ~ '^[A-Z]{2}$');

-- Every change of an operator reaches every instance at commit: the instances
-- LISTEN on this channel and reload the operator named by the payload.
CREATE FUNCTION operators_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wallet_operators', NEW.code);
    RETURN NULL;
END $$;
CREATE TRIGGER operators_notify AFTER INSERT OR UPDATE ON operators
    FOR EACH ROW EXECUTE FUNCTION operators_notify();
