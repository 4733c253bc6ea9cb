-- Daily summaries of the RTP rollups, so that long report windows read one
-- row per (day, currency, game) instead of one per (player, hour, game), and
-- count distinct players from bitmaps instead of hashing player ids.
--
-- The hourly rollups stay the source of truth. A day is summarised ("sealed")
-- off the hot path, by `wallet summarize` or the service's timer, once no
-- transaction that started before the day ended is still running. Later
-- changes to a sealed day (a rollback of one of its bets, say) are journaled
-- in rtp_late by a trigger in the same transaction as the change, so at any
-- snapshot, for every sealed day:
--
--   rtp_daily + rtp_late                     = the sum of its rtp_hourly rows
--   rtp_daily_players ∪ players of rtp_late  = the players of its rtp_hourly rows
--
-- and reports stay exact. The summariser folds the journal into the summary
-- from time to time. docs/REPORTS.md explains why this holds.

-- Days before `until` are sealed (NULL: none yet). One row.
CREATE TABLE rtp_sealed (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    until     TIMESTAMPTZ CHECK (until = date_trunc('day', until, 'UTC'))
);
INSERT INTO rtp_sealed (until) VALUES (NULL);

CREATE TABLE rtp_daily (
    day             TIMESTAMPTZ NOT NULL CHECK (day = date_trunc('day', day, 'UTC')),
    currency        TEXT NOT NULL,
    game            TEXT NOT NULL,
    total_bet       BIGINT NOT NULL,
    total_win       BIGINT NOT NULL,
    rolled_back_bet BIGINT NOT NULL,
    rolled_back_win BIGINT NOT NULL,
    rounds          BIGINT NOT NULL,
    PRIMARY KEY (day, currency, game)
);

-- The players with rollup rows on a day, as bitmaps of 8,192 player ids:
-- player p is bit (p & 8191) of chunk (p >> 13).
CREATE TABLE rtp_daily_players (
    day      TIMESTAMPTZ NOT NULL CHECK (day = date_trunc('day', day, 'UTC')),
    currency TEXT NOT NULL,
    chunk    INTEGER NOT NULL CHECK (chunk >= 0),
    players  BIT(8192) NOT NULL,
    PRIMARY KEY (day, currency, chunk)
);

-- Changes to rollup rows of past days, as signed deltas.
CREATE TABLE rtp_late (
    day             TIMESTAMPTZ NOT NULL,
    currency        TEXT NOT NULL,
    game            TEXT NOT NULL,
    player_id       BIGINT NOT NULL,
    total_bet       BIGINT NOT NULL,
    total_win       BIGINT NOT NULL,
    rolled_back_bet BIGINT NOT NULL,
    rolled_back_win BIGINT NOT NULL,
    rounds          BIGINT NOT NULL
);
CREATE INDEX rtp_late_day_idx ON rtp_late (day);

-- Builds a presence bitmap chunk from player ids (all of one chunk).
CREATE FUNCTION rtp_presence_add(bits BIT VARYING, player_id BIGINT) RETURNS BIT VARYING
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT set_bit(coalesce(bits, repeat('0', 8192)::bit varying), (player_id & 8191)::int, 1) $$;
CREATE AGGREGATE rtp_presence(BIGINT) (SFUNC = rtp_presence_add, STYPE = BIT VARYING);

-- Journals a change to a rollup row of a day before the transaction's own
-- day. A row of a sealed day may change its sums, never move or disappear:
-- its player is already in that day's bitmap, which cannot forget anyone.
CREATE FUNCTION rtp_hourly_journal() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    today CONSTANT TIMESTAMPTZ := date_trunc('day', now(), 'UTC');
    moved BOOLEAN := TG_OP = 'DELETE'
        OR (TG_OP = 'UPDATE' AND (OLD.player_id, OLD.bucket, OLD.game, OLD.currency)
                             IS DISTINCT FROM (NEW.player_id, NEW.bucket, NEW.game, NEW.currency));
BEGIN
    IF moved AND OLD.bucket < (SELECT until FROM rtp_sealed) THEN
        RAISE EXCEPTION 'rollup rows of sealed days cannot be moved or deleted (player %, bucket %)',
            OLD.player_id, OLD.bucket
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP = 'UPDATE' AND NOT moved THEN
        INSERT INTO rtp_late VALUES (
            date_trunc('day', NEW.bucket, 'UTC'), NEW.currency, NEW.game, NEW.player_id,
            NEW.total_bet - OLD.total_bet, NEW.total_win - OLD.total_win,
            NEW.rolled_back_bet - OLD.rolled_back_bet, NEW.rolled_back_win - OLD.rolled_back_win,
            NEW.rounds - OLD.rounds);
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' AND OLD.bucket < today THEN
        INSERT INTO rtp_late VALUES (
            date_trunc('day', OLD.bucket, 'UTC'), OLD.currency, OLD.game, OLD.player_id,
            -OLD.total_bet, -OLD.total_win, -OLD.rolled_back_bet, -OLD.rolled_back_win, -OLD.rounds);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.bucket < today THEN
        INSERT INTO rtp_late VALUES (
            date_trunc('day', NEW.bucket, 'UTC'), NEW.currency, NEW.game, NEW.player_id,
            NEW.total_bet, NEW.total_win, NEW.rolled_back_bet, NEW.rolled_back_win, NEW.rounds);
    END IF;
    RETURN NULL;
END
$$;

-- The hot path writes the current hour, so the conditions are false for all
-- but rollbacks of earlier days' bets, and the function is not even called.
CREATE TRIGGER rtp_hourly_journal_insert
    AFTER INSERT ON rtp_hourly FOR EACH ROW
    WHEN (NEW.bucket < date_trunc('day', now(), 'UTC'))
    EXECUTE FUNCTION rtp_hourly_journal();
CREATE TRIGGER rtp_hourly_journal_update
    AFTER UPDATE ON rtp_hourly FOR EACH ROW
    WHEN (OLD.bucket < date_trunc('day', now(), 'UTC') OR NEW.bucket < date_trunc('day', now(), 'UTC'))
    EXECUTE FUNCTION rtp_hourly_journal();
CREATE TRIGGER rtp_hourly_journal_delete
    AFTER DELETE ON rtp_hourly FOR EACH ROW
    WHEN (OLD.bucket < date_trunc('day', now(), 'UTC'))
    EXECUTE FUNCTION rtp_hourly_journal();

-- The rolled-back actions alone, for reports: an edge row's rolled-back
-- state is a probe into this small index instead of the whole registry's.
-- Only rollbacks and pre-rollback placeholders add entries.
CREATE INDEX actions_reversed_idx ON actions (action_id) WHERE reversed_by IS NOT NULL;
