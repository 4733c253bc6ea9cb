-- Appends a batch of sealed entries, one array per column in the order of
-- the columns, each array in chain order.
INSERT INTO audit_log (seq, at, operator_id, actor_type, actor_id, action, target,
                       before, after, request_id, hash)
SELECT seq, at, operator_id, actor_type, actor_id, action, target,
       before::jsonb, after::jsonb, request_id, hash
FROM unnest($1::int8[], $2::timestamptz[], $3::int2[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::text[], $11::bytea[])
     AS e(seq, at, operator_id, actor_type, actor_id, action, target, before, after, request_id, hash)
