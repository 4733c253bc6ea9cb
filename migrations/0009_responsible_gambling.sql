-- Responsible gambling: deposit, loss and wager limits per calendar day,
-- week and month, and the counters that enforce them (docs/ARCHITECTURE.md,
-- "Responsible gambling").
--
-- A player's limits and counters are one document on the wallet row, `guard`,
-- NULL for every player who never set a limit. The hot path reads and writes
-- it with the row lock it already holds, so checking limits costs no query,
-- no round trip and no other row, and players without limits pay for a NULL.
--
--   {"limits": [{"kind": "loss", "period": "day", "amount": 500,
--                "pending_amount": 800, "pending_at": "2026-11-28T10:00:00Z"}, …],
--    "usage":  [{"period": "day", "period_start": "…", "period_end": "…",
--                "deposited": 0, "staked": 1200, "won": 900}, …]}
--
-- `limits`: at most one per kind and period; `amount` is in force until
-- `pending_at`, then `pending_amount` (absent: the limit is removed), a raise
-- or removal waiting out the operator's `limit_increase_delay_hours`.
-- `usage`: the latest period of each length, [period_start, period_end) in
-- the operator's time zone, and its sums: own deposits (not staff
-- adjustments), stakes of bets not rolled back, wins not rolled back.

ALTER TABLE players ADD COLUMN guard JSONB;

-- What the service relies on, checked by the database on every write: every
-- limit of a known kind and period with an amount in range, a waiting change
-- only above the amount in force and with its time; every period of a known
-- length with sums at or above zero. A missing or mistyped field fails. Each
-- limited player's row is rewritten by every bet, so the check is jsonpath,
-- evaluated in C: a few tens of microseconds (docs/BENCHMARKS.md).
CREATE FUNCTION guard_is_valid(guard JSONB) RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(
        jsonb_typeof(guard->'limits') = 'array'
        AND jsonb_typeof(guard->'usage') = 'array'
        AND NOT jsonb_path_exists(guard, '$.limits[*] ? (
                !(@.kind == "deposit" || @.kind == "loss" || @.kind == "wager")
             || !(@.period == "day" || @.period == "week" || @.period == "month")
             || !exists(@.amount ? (@ >= 0 && @ <= 1000000000000000))
             || (exists(@.pending_amount)
                 && !exists(@.pending_amount ? (@ <= 1000000000000000)))
             || (exists(@.pending_amount) && !exists(@.pending_at)))')
        AND NOT jsonb_path_exists(guard, '$.limits[*] ? (@.pending_amount <= @.amount)')
        AND NOT jsonb_path_exists(guard, '$.usage[*] ? (
                !(@.period == "day" || @.period == "week" || @.period == "month")
             || !exists(@.deposited ? (@ >= 0))
             || !exists(@.staked ? (@ >= 0))
             || !exists(@.won ? (@ >= 0)))'),
        false)
$$;

ALTER TABLE players ADD CONSTRAINT players_guard_check CHECK (guard IS NULL OR guard_is_valid(guard));

-- What a player's ledger says the sums of [period_from, period_to) are: how
-- the counters of the periods in progress are made when a player sets a
-- first limit. (`wallet reconcile` recomputes every counter independently.)
-- Own deposits are those of the player's cashier, whose idempotency keys'
-- fingerprints say `player:`; bets and wins count unless rolled back.
CREATE FUNCTION limit_sums(p_player BIGINT, period_from TIMESTAMPTZ, period_to TIMESTAMPTZ)
RETURNS TABLE (deposited BIGINT, staked BIGINT, won BIGINT)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(l.amount) FILTER (WHERE l.kind = 'deposit' AND k.request_fingerprint LIKE 'player:%'), 0)::int8,
           coalesce(sum(l.amount) FILTER (WHERE l.kind = 'bet' AND a.reversed_by IS NULL), 0)::int8,
           coalesce(sum(l.amount) FILTER (WHERE l.kind = 'win' AND a.reversed_by IS NULL), 0)::int8
    FROM ledger l
    LEFT JOIN actions a ON a.action_id = l.action_id
    LEFT JOIN idempotency_keys k ON k.player_id = l.player_id AND k.tx_id = l.tx_id
    WHERE l.player_id = p_player AND l.created_at >= period_from AND l.created_at < period_to
      AND l.kind IN ('deposit', 'bet', 'win')
$$;
