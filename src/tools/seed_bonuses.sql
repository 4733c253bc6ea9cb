-- `wallet seed --bonuses`: gives players $2 || 1 … $2 || $3 of operator $1
-- an active bonus of $5 on campaign $4, in one statement, leaving the same
-- rows a staff grant (`POST /v1/players/{user_id}/bonuses`) leaves: the
-- grant, its ledger row after the player's last one, the active bonus on
-- the wallet row and the player's two events. The audit entry a staff grant
-- writes is left out, as `wallet seed` audits none of its deposits.
-- Players that hold a bonus, or already had their seeded one, are skipped,
-- so seeding again changes nothing.
WITH campaign AS (
    SELECT id, kind, wagering_multiplier::int8 * $5::int8 AS required, contributions, max_bet,
           max_conversion_multiplier, max_conversion_multiplier::int8 * $5::int8 AS cap,
           now() + make_interval(days => valid_days) AS expires_at
    FROM bonus_campaigns WHERE id = $4
),
-- Locked like the wallet lock does, so last_seq is the one a concurrent bet left.
chosen AS (
    SELECT p.id, p.balance, p.last_seq + 1 AS seq, gen_random_uuid() AS bonus_id,
           gen_random_uuid() AS tx_id
    FROM players p
    JOIN generate_series(1, $3::int8) AS g ON p.user_id = $2 || g
    WHERE p.operator_id = $1 AND p.bonus IS NULL
      AND NOT EXISTS (SELECT 1 FROM bonus_grants b WHERE b.player_id = p.id AND b.idempotency_key = 'seed')
    ORDER BY p.id
    FOR UPDATE OF p
),
grants AS (
    INSERT INTO bonus_grants (bonus_id, player_id, campaign_id, kind, status, granted, required,
                              contributions, max_bet, max_conversion_multiplier, expires_at,
                              created_at, balance, wagered, staked, idempotency_key)
    SELECT c.bonus_id, c.id, k.id, k.kind, 'active', $5, k.required, k.contributions, k.max_bet,
           k.max_conversion_multiplier, k.expires_at, now(), $5, 0, 0, 'seed'
    FROM chosen c CROSS JOIN campaign k
),
entries AS (
    INSERT INTO ledger (player_id, seq, created_at, tx_id, kind, amount, balance_before,
                        balance_after, bonus_change)
    SELECT id, seq, now(), tx_id, 'bonus_grant', $5, balance, balance, $5 FROM chosen
),
-- A `balance` event, then a `bonus` event, per player (API §11).
events AS (
    INSERT INTO player_events (player_id, at, kind, body)
    SELECT e.player_id, now(), e.kind, e.body
    FROM (SELECT c.id AS player_id, 1 AS nth, 'balance' AS kind,
                 jsonb_build_object('cash', c.balance, 'bonus', $5::int8, 'total', c.balance + $5::int8,
                                    'tx_id', c.tx_id) AS body
          FROM chosen c
          UNION ALL
          SELECT c.id, 2, 'bonus',
                 jsonb_build_object('bonus_id', c.bonus_id, 'status', 'active', 'balance', $5::int8,
                                    'wagered', 0, 'required', k.required)
          FROM chosen c CROSS JOIN campaign k) AS e
    ORDER BY e.player_id, e.nth
),
seeded AS (
    UPDATE players p
    SET last_seq = c.seq, updated_at = now(), bonus_rounds = true,
        bonus = ROW(c.bonus_id, $5::int8, 0, k.required, 0, k.max_bet, k.cap, k.expires_at,
                    k.contributions)::active_bonus
    FROM chosen c CROSS JOIN campaign k
    WHERE p.id = c.id
    RETURNING p.id
)
SELECT count(*) AS "seeded!" FROM seeded
