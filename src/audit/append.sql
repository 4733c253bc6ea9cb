-- Appends entry $1 and moves the chain head to it, in one statement: the
-- caller holds the head's row lock (taken by the SELECT … FOR UPDATE just
-- before), so nothing else can append in between. `before` and `after`
-- arrive as JSON text.
WITH entry AS (
    INSERT INTO audit_log (seq, at, operator_id, actor_type, actor_id, action, target,
                           before, after, request_id, hash)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb, $9::text::jsonb, $10, $11)
)
UPDATE audit_head SET seq = $1, hash = $11
