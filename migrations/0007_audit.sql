-- The audit trail: one append-only, hash-chained entry per change made
-- through the back office and the operator, staff and player APIs.
--
-- A change writes its entry to `audit_pending`, in its own transaction and
-- without waiting for anyone; the sealer (src/audit/store.rs, `seal`) moves
-- pending entries into `audit_log` in batches, numbering and hash-chaining
-- them under the chain head's lock. Each entry's `hash` is SHA-256 over the
-- previous entry's hash and the entry's own canonical content
-- (src/audit/chain.rs gives the exact form; docs/ARCHITECTURE.md, "Audit
-- trail", says why it is done this way, with the numbers). Entries are
-- numbered 1, 2, 3, … with no gap: the number is given by the sealer, not a
-- sequence, which would skip the numbers of rolled-back transactions and
-- make a deleted entry look like one of them.

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

-- Entries written but not yet chained: the sealer's queue, in the order
-- their `id`s were taken. The same checks as `audit_log`, so that an entry
-- the log would refuse fails the change that wrote it, not the sealer.
CREATE TABLE audit_pending (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    operator_id SMALLINT REFERENCES operators (id),
    actor_type  TEXT NOT NULL CHECK (actor_type IN ('platform', 'staff', 'player', 'system')),
    actor_id    TEXT CHECK (char_length(actor_id) BETWEEN 1 AND 255),
    action      TEXT NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
    target      TEXT NOT NULL CHECK (char_length(target) BETWEEN 1 AND 512),
    before      JSONB CHECK (jsonb_typeof(before) = 'object'),
    after       JSONB CHECK (jsonb_typeof(after) = 'object'),
    request_id  TEXT CHECK (char_length(request_id) BETWEEN 1 AND 128),
    CONSTRAINT audit_pending_actor_check CHECK ((actor_type IN ('staff', 'player')) = (actor_id IS NOT NULL))
);

-- The chain head: the last entry's number and hash, in one row. The sealer
-- locks it, which makes it the only one, across instances.
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
-- Pending entries leave the queue only by being sealed (a DELETE): they are
-- never changed, nor truncated away.
CREATE TRIGGER audit_pending_no_update BEFORE UPDATE ON audit_pending
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_pending_no_truncate BEFORE TRUNCATE ON audit_pending
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- The head only moves forward, to an entry that exists.
CREATE FUNCTION audit_head_advance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq <= OLD.seq OR NOT EXISTS (SELECT FROM audit_log WHERE seq = NEW.seq AND hash = NEW.hash) THEN
        RAISE EXCEPTION 'the audit chain head only moves forward to a stored entry: % to % is refused',
            OLD.seq, NEW.seq
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
ALTER TABLE audit_pending ENABLE ALWAYS TRIGGER audit_pending_no_update;
ALTER TABLE audit_pending ENABLE ALWAYS TRIGGER audit_pending_no_truncate;
