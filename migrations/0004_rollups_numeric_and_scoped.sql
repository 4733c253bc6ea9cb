-- Report rollups that cannot overflow, and that know their operator.
--
-- 1. The money sums of the rollups become NUMERIC. One request moves at most
--    100 × 10^15 minor units, but an hour of one player's play can hold many
--    of them (bets and wins of 10^15 that net to nothing overflowed BIGINT's
--    9.2 × 10^18 after about 9,000 rounds), and a day of a whole casino more.
--    Balances stay BIGINT: the rules refuse one that would pass it. NUMERIC
--    adds a few bytes per row and nothing measurable to the hot path's
--    upsert (docs/BENCHMARKS.md).
-- 2. Every rollup row carries the operator of its player, so that reports
--    read one operator's rows and never another's. The hot path writes it;
--    there is no default, so a writer that forgets fails loudly. Existing
--    rows all belong to `default` (id 1), the only operator so far; the
--    backfill below corrects any that do not.

ALTER TABLE rtp_hourly
    ALTER COLUMN total_bet TYPE NUMERIC,
    ALTER COLUMN total_win TYPE NUMERIC,
    ALTER COLUMN rolled_back_bet TYPE NUMERIC,
    ALTER COLUMN rolled_back_win TYPE NUMERIC,
    ADD COLUMN operator_id SMALLINT NOT NULL DEFAULT 1;
ALTER TABLE rtp_hourly ALTER COLUMN operator_id DROP DEFAULT;
UPDATE rtp_hourly h SET operator_id = p.operator_id
FROM players p WHERE p.id = h.player_id AND p.operator_id <> h.operator_id;

ALTER TABLE rtp_late
    ALTER COLUMN total_bet TYPE NUMERIC,
    ALTER COLUMN total_win TYPE NUMERIC,
    ALTER COLUMN rolled_back_bet TYPE NUMERIC,
    ALTER COLUMN rolled_back_win TYPE NUMERIC,
    ADD COLUMN operator_id SMALLINT NOT NULL DEFAULT 1;
ALTER TABLE rtp_late ALTER COLUMN operator_id DROP DEFAULT;
UPDATE rtp_late l SET operator_id = p.operator_id
FROM players p WHERE p.id = l.player_id AND p.operator_id <> l.operator_id;

-- The daily summary is per operator too. Its rows so far were summed over
-- every player, all of them `default`'s.
ALTER TABLE rtp_daily
    ALTER COLUMN total_bet TYPE NUMERIC,
    ALTER COLUMN total_win TYPE NUMERIC,
    ALTER COLUMN rolled_back_bet TYPE NUMERIC,
    ALTER COLUMN rolled_back_win TYPE NUMERIC,
    ADD COLUMN operator_id SMALLINT NOT NULL DEFAULT 1;
ALTER TABLE rtp_daily ALTER COLUMN operator_id DROP DEFAULT;
ALTER TABLE rtp_daily DROP CONSTRAINT rtp_daily_pkey,
    ADD PRIMARY KEY (day, operator_id, currency, game);

ALTER TABLE rtp_daily_players ADD COLUMN operator_id SMALLINT NOT NULL DEFAULT 1;
ALTER TABLE rtp_daily_players ALTER COLUMN operator_id DROP DEFAULT;
ALTER TABLE rtp_daily_players DROP CONSTRAINT rtp_daily_players_pkey,
    ADD PRIMARY KEY (day, operator_id, currency, chunk);

-- The journal now names its columns (it was positional) and carries the
-- operator; a row may not move to another operator either.
CREATE OR REPLACE FUNCTION rtp_hourly_journal() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    today CONSTANT TIMESTAMPTZ := date_trunc('day', now(), 'UTC');
    moved BOOLEAN := TG_OP = 'DELETE'
        OR (TG_OP = 'UPDATE'
            AND (OLD.player_id, OLD.bucket, OLD.game, OLD.currency, OLD.operator_id)
                IS DISTINCT FROM (NEW.player_id, NEW.bucket, NEW.game, NEW.currency, NEW.operator_id));
BEGIN
    IF moved AND OLD.bucket < (SELECT until FROM rtp_sealed) THEN
        RAISE EXCEPTION 'rollup rows of sealed days cannot be moved or deleted (player %, bucket %)',
            OLD.player_id, OLD.bucket
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP = 'UPDATE' AND NOT moved THEN
        INSERT INTO rtp_late (day, operator_id, currency, game, player_id, total_bet, total_win,
                              rolled_back_bet, rolled_back_win, rounds)
        VALUES (date_trunc('day', NEW.bucket, 'UTC'), NEW.operator_id, NEW.currency, NEW.game,
                NEW.player_id, NEW.total_bet - OLD.total_bet, NEW.total_win - OLD.total_win,
                NEW.rolled_back_bet - OLD.rolled_back_bet, NEW.rolled_back_win - OLD.rolled_back_win,
                NEW.rounds - OLD.rounds);
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' AND OLD.bucket < today THEN
        INSERT INTO rtp_late (day, operator_id, currency, game, player_id, total_bet, total_win,
                              rolled_back_bet, rolled_back_win, rounds)
        VALUES (date_trunc('day', OLD.bucket, 'UTC'), OLD.operator_id, OLD.currency, OLD.game,
                OLD.player_id, -OLD.total_bet, -OLD.total_win, -OLD.rolled_back_bet,
                -OLD.rolled_back_win, -OLD.rounds);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.bucket < today THEN
        INSERT INTO rtp_late (day, operator_id, currency, game, player_id, total_bet, total_win,
                              rolled_back_bet, rolled_back_win, rounds)
        VALUES (date_trunc('day', NEW.bucket, 'UTC'), NEW.operator_id, NEW.currency, NEW.game,
                NEW.player_id, NEW.total_bet, NEW.total_win, NEW.rolled_back_bet,
                NEW.rolled_back_win, NEW.rounds);
    END IF;
    RETURN NULL;
END
$$;
