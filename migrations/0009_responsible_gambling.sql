-- Responsible gambling: deposit, loss and wager limits per calendar day,
-- week and month, and the counters that enforce them (docs/ARCHITECTURE.md,
-- "Responsible gambling").
--
-- Only players who have set a limit pay for them: `players.limited` turns on
-- with the first limit and stays on, and the hot path reads limits and
-- counters, and writes counters, only for such players. The counters are kept
-- from that moment on; the ones of the periods in progress then are
-- recomputed from the ledger when the first limit is set.

ALTER TABLE players ADD COLUMN limited BOOLEAN NOT NULL DEFAULT false;

-- One limit per player, kind and period. `amount` is the limit in force
-- until `pending_at`; a raise or a removal waits out the operator's
-- `limit_increase_delay_hours` as `pending_amount` (NULL: the removal) and
-- takes over by itself at `pending_at`, whoever reads the row then.
CREATE TABLE player_limits (
    player_id      BIGINT NOT NULL REFERENCES players (id),
    kind           TEXT NOT NULL CHECK (kind IN ('deposit', 'loss', 'wager')),
    period         TEXT NOT NULL CHECK (period IN ('day', 'week', 'month')),
    amount         BIGINT NOT NULL CHECK (amount BETWEEN 0 AND 1000000000000000),
    pending_amount BIGINT CHECK (pending_amount BETWEEN 0 AND 1000000000000000),
    pending_at     TIMESTAMPTZ,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (player_id, kind, period),
    -- Only a raise waits: a lower amount applies at once.
    CHECK (pending_amount IS NULL OR (pending_at IS NOT NULL AND pending_amount > amount))
);
REVOKE ALL ON player_limits FROM PUBLIC;

-- What a limited player did in the latest period of each length: the sums a
-- limit is checked against, for the period [period_start, period_end) in the
-- operator's time zone. `staked` counts bets not rolled back, `won` wins not
-- rolled back, `deposited` the player's own deposits (not staff adjustments).
-- A new period replaces the row; a rollback changes it only while the row is
-- still the period its original belongs to.
CREATE TABLE limit_usage (
    player_id    BIGINT NOT NULL REFERENCES players (id),
    period       TEXT NOT NULL CHECK (period IN ('day', 'week', 'month')),
    period_start TIMESTAMPTZ NOT NULL,
    period_end   TIMESTAMPTZ NOT NULL,
    deposited    BIGINT NOT NULL CHECK (deposited >= 0),
    staked       BIGINT NOT NULL CHECK (staked >= 0),
    won          BIGINT NOT NULL CHECK (won >= 0),
    PRIMARY KEY (player_id, period),
    CHECK (period_end > period_start)
);
REVOKE ALL ON limit_usage FROM PUBLIC;

-- A limit belongs to a limited player: the flag is what makes the hot path
-- read it.
CREATE FUNCTION player_limits_mark_limited() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (SELECT limited FROM players WHERE id = NEW.player_id) THEN
        RAISE EXCEPTION 'player % has a limit but is not marked limited', NEW.player_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'player_limits_limited';
    END IF;
    RETURN NEW;
END $$;
CREATE CONSTRAINT TRIGGER player_limits_limited
    AFTER INSERT OR UPDATE ON player_limits
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION player_limits_mark_limited();

-- What a player's ledger says the counters of [period_from, period_to) are:
-- how the counters of the periods in progress are made when a player sets a
-- first limit. (`wallet reconcile` recomputes every row independently.)
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
