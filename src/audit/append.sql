-- Appends one entry and moves the chain head to it, in one statement: the
-- head's row lock is taken here, as the caller's last statement before its
-- commit, and the entry's number, time and hash are decided under it.
-- $1, $2, $3 are the entry's canonical text around its time and its number
-- (src/audit/chain.rs, `pieces`); the time is written as the canonical form
-- writes it. `before` and `after` arrive as JSON text.
WITH head AS (
    SELECT seq + 1 AS seq, hash AS previous, clock_timestamp() AS at FROM audit_head FOR UPDATE
),
entry AS (
    SELECT seq, at, sha256(previous || convert_to(
               $1 || to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || $2 || seq::text || $3,
               'UTF8')) AS hash
    FROM head
),
appended AS (
    INSERT INTO audit_log (seq, at, operator_id, actor_type, actor_id, action, target,
                           before, after, request_id, hash)
    SELECT seq, at, $4, $5, $6, $7, $8, $9::text::jsonb, $10::text::jsonb, $11, hash FROM entry
)
UPDATE audit_head SET seq = entry.seq, hash = entry.hash FROM entry
RETURNING entry.seq AS "seq!"
