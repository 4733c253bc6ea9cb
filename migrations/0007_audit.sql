-- The audit trail: one append-only, hash-chained entry per change made
-- through the back office and the operator, staff and player APIs.
--
-- Each entry's `hash` is SHA-256 over the previous entry's hash and the
-- entry's own canonical content (src/audit/chain.rs gives the exact form;
-- docs/ARCHITECTURE.md, "Audit trail", says why). Entries are numbered
-- 1, 2, 3, … with no gap: the number is taken from the chain head under its
-- row lock, not from a sequence, which would skip the numbers of rolled-back
-- transactions and make a deleted entry look like one of them.

CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY CHECK (seq > 0),
    at          TIMESTAMPTZ NOT NULL,
    -- NULL: a platform-wide entry (platform staff, a new operator).
    operator_id SMALLINT REFERENCES operators (id),
    actor_type  TEXT NOT NULL CHECK (actor_type IN ('platform', 'staff', 'player', 'system')),
    actor_id    TEXT CHECK (char_length(actor_id) BETWEEN 1 AND 255),
    action      TEXT NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
    target      TEXT NOT NULL CHECK (char_length(target) BETWEEN 1 AND 512),
    before      JSONB CHECK (jsonb_typeof(before) = 'object'),
    after       JSONB CHECK (jsonb_typeof(after) = 'object'),
    request_id  TEXT CHECK (char_length(request_id) BETWEEN 1 AND 128),
    hash        BYTEA NOT NULL CHECK (octet_length(hash) = 32),
    -- Staff and players are named; the platform token and the service are not.
    CONSTRAINT audit_log_actor_check CHECK ((actor_type IN ('staff', 'player')) = (actor_id IS NOT NULL))
);

-- `GET /v1/audit`: one operator's entries newest first, optionally of one target.
CREATE INDEX audit_log_operator_at ON audit_log (operator_id, at, seq);
CREATE INDEX audit_log_operator_target_at ON audit_log (operator_id, target, at, seq);

-- The chain head: the last entry's number and hash, in one row. Writers lock
-- it as the last statement of their transaction, which orders the entries.
CREATE TABLE audit_head (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    seq       BIGINT NOT NULL CHECK (seq >= 0),
    hash      BYTEA NOT NULL CHECK (octet_length(hash) = 32)
);
-- Before the first entry, the "previous hash" is 32 zero bytes.
INSERT INTO audit_head (seq, hash) VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000');

-- Append-only. Triggers bind every role, superusers included, unless they are
-- disabled (ALTER TABLE … DISABLE TRIGGER, which needs the table's owner):
-- that much is what the hash chain is for, since it detects the change.
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'entries are never changed or removed; a correction is a new entry';
END
$$;

CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- The head only moves forward, one entry at a time.
CREATE FUNCTION audit_head_advance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq <> OLD.seq + 1 THEN
        RAISE EXCEPTION 'the audit chain head moves one entry at a time: % to % is refused', OLD.seq, NEW.seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_head_advances BEFORE UPDATE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_head_advance();

-- `session_replication_role = replica` (settable by a superuser) silences
-- ordinary triggers; ENABLE ALWAYS keeps these firing under it too.
ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_no_update_or_delete;
ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_no_truncate;
ALTER TABLE audit_head ENABLE ALWAYS TRIGGER audit_head_no_delete;
ALTER TABLE audit_head ENABLE ALWAYS TRIGGER audit_head_no_truncate;
ALTER TABLE audit_head ENABLE ALWAYS TRIGGER audit_head_advances;
