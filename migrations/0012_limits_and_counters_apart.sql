-- A player's limits apart from their counters (docs/ARCHITECTURE.md,
-- "Responsible gambling").
--
-- Migration 0009 kept both in one JSONB document on the wallet row. Every bet
-- of a limited player sent, parsed, validated and rewrote that whole
-- document, limits included, although limits change only when someone changes
-- them: most of what limits cost a bet (docs/BENCHMARKS.md). Now, still on
-- the wallet row, so that the hot path's lock returns both fresh:
-- - the limits are a JSONB column the hot path only reads, validated when
--   it is written;
-- - the counters are three typed values, one per period length, held by
--   plain checks, written by the statement that writes the money.
-- Both are NULL until the player sets a first limit.

-- The sums of one period, [period_start, period_end) in the operator's time
-- zone: own deposits (not staff adjustments), stakes of bets not rolled
-- back, wins not rolled back.
CREATE TYPE period_sums AS (
    period_start TIMESTAMPTZ,
    period_end   TIMESTAMPTZ,
    deposited    BIGINT,
    staked       BIGINT,
    won          BIGINT
);

-- NULL, or every field set, a period that ends after it starts and sums at
-- or above zero. (`num_nulls` sees the value itself, not its fields, so a
-- value with every field NULL is refused too.) Evaluated with every write of
-- a wallet row, so it is one expression PostgreSQL inlines, not a call.
CREATE FUNCTION period_sums_hold(s period_sums) RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE AS $$
    SELECT num_nulls(s) = 1
        OR coalesce((s).period_start < (s).period_end
                    AND (s).deposited >= 0 AND (s).staked >= 0 AND (s).won >= 0, false)
$$;

ALTER TABLE players
    ADD COLUMN day_sums period_sums,
    ADD COLUMN week_sums period_sums,
    ADD COLUMN month_sums period_sums,
    ADD CONSTRAINT players_sums_check
        CHECK (period_sums_hold(day_sums) AND period_sums_hold(week_sums) AND period_sums_hold(month_sums));

-- A player's limits, e.g.
--   [{"kind": "loss", "period": "day", "amount": 500,
--     "pending_amount": 800, "pending_at": "2026-11-28T10:00:00Z"}, …]
-- at most one per kind and period; `amount` is in force until `pending_at`,
-- then `pending_amount` (absent: the limit is removed), a raise or removal
-- waiting out the operator's `limit_increase_delay_hours`. Valid limits have
-- known kinds and periods, amounts in range, a waiting change only above the
-- amount in force and with its time, and no kind and period twice.
CREATE FUNCTION limits_hold(limits JSONB) RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(
        jsonb_typeof(limits) = 'array'
        AND NOT jsonb_path_exists(limits, '$[*] ? (
                !(@.kind == "deposit" || @.kind == "loss" || @.kind == "wager")
             || !(@.period == "day" || @.period == "week" || @.period == "month")
             || !exists(@.amount ? (@ >= 0 && @ <= 1000000000000000))
             || (exists(@.pending_amount)
                 && !exists(@.pending_amount ? (@ <= 1000000000000000)))
             || (exists(@.pending_amount) && !exists(@.pending_at)))')
        AND NOT jsonb_path_exists(limits, '$[*] ? (@.pending_amount <= @.amount)')
        AND (SELECT count(DISTINCT (l->>'kind', l->>'period')) = count(*)
             FROM jsonb_array_elements(limits) AS l),
        false)
$$;

ALTER TABLE players ADD COLUMN limits JSONB;

-- A CHECK would validate the limits again with every bet of the player,
-- although bets never write them; this trigger validates them only when a
-- statement writes them, and fails as the CHECK would.
CREATE FUNCTION players_limits_check() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT limits_hold(NEW.limits) THEN
        RAISE EXCEPTION 'new row for relation "players" violates check constraint "players_limits_check"'
            USING ERRCODE = 'check_violation', TABLE = 'players', COLUMN = 'limits',
                  CONSTRAINT = 'players_limits_check';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER players_limits_check
    BEFORE INSERT OR UPDATE OF limits ON players
    FOR EACH ROW WHEN (NEW.limits IS NOT NULL)
    EXECUTE FUNCTION players_limits_check();

UPDATE players p
SET limits = p.guard->'limits',
    day_sums = (SELECT ROW(u.period_start, u.period_end, u.deposited, u.staked, u.won)::period_sums
                FROM jsonb_to_recordset(p.guard->'usage') AS u (period text, period_start timestamptz,
                     period_end timestamptz, deposited int8, staked int8, won int8)
                WHERE u.period = 'day'),
    week_sums = (SELECT ROW(u.period_start, u.period_end, u.deposited, u.staked, u.won)::period_sums
                 FROM jsonb_to_recordset(p.guard->'usage') AS u (period text, period_start timestamptz,
                      period_end timestamptz, deposited int8, staked int8, won int8)
                 WHERE u.period = 'week'),
    month_sums = (SELECT ROW(u.period_start, u.period_end, u.deposited, u.staked, u.won)::period_sums
                  FROM jsonb_to_recordset(p.guard->'usage') AS u (period text, period_start timestamptz,
                       period_end timestamptz, deposited int8, staked int8, won int8)
                  WHERE u.period = 'month')
WHERE p.guard IS NOT NULL;

ALTER TABLE players DROP COLUMN guard;
DROP FUNCTION guard_is_valid(JSONB);
