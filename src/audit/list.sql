-- A page of the audit trail, newest first by (at, seq): operator $1's
-- entries, and the platform-wide ones (operator NULL) when $2. Each branch
-- walks an index in order and stops after $9 rows, so a page costs the same
-- on a billion entries; the rare filters (action, a time window without a
-- target) are applied while walking. Planned for its parameters on every
-- call (store::list), so an absent filter costs nothing.
(SELECT a.seq AS "seq!", a.at AS "at!", a.operator_id, o.code AS "operator_code?", a.actor_type AS "actor_type!",
        a.actor_id, a.action AS "action!", a.target AS "target!", a.before::text, a.after::text, a.request_id, a.hash AS "hash!"
 FROM audit_log a LEFT JOIN operators o ON o.id = a.operator_id
 WHERE a.operator_id = $1
   AND ($3::text IS NULL OR a.target = $3)
   AND ($4::text IS NULL OR a.action = $4)
   AND ($5::timestamptz IS NULL OR a.at >= $5)
   AND ($6::timestamptz IS NULL OR a.at < $6)
   AND ($7::timestamptz IS NULL OR (a.at, a.seq) < ($7, $8))
 ORDER BY a.at DESC, a.seq DESC
 LIMIT $9)
UNION ALL
(SELECT a.seq, a.at, a.operator_id, NULL, a.actor_type, a.actor_id, a.action,
        a.target, a.before::text, a.after::text, a.request_id, a.hash
 FROM audit_log a
 WHERE $2 AND a.operator_id IS NULL
   AND ($3::text IS NULL OR a.target = $3)
   AND ($4::text IS NULL OR a.action = $4)
   AND ($5::timestamptz IS NULL OR a.at >= $5)
   AND ($6::timestamptz IS NULL OR a.at < $6)
   AND ($7::timestamptz IS NULL OR (a.at, a.seq) < ($7, $8))
 ORDER BY a.at DESC, a.seq DESC
 LIMIT $9)
ORDER BY 2 DESC, 1 DESC
LIMIT $9
