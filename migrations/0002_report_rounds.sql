-- Exact, additive round counts for the RTP reports, and a cheap time index on
-- the ledger for the partial hours at the edges of a report window.
--
-- A report counts the distinct rounds (game_ids) with a live bet in its
-- window. Counting distinct round_buckets rows over a month is too slow, so:
--
-- * rtp_hourly.rounds holds, per player × hour × game, how many round_buckets
--   rows of that hour and game have live bets. Summing it counts a round once
--   per (hour, game) it has live bets in, which is exact for every round that
--   lives in a single (hour, game).
-- * round_buckets.split marks every row of a round (player, game_id) that has
--   rows in more than one (hour, game). Only those rounds can be counted more
--   than once by the sum, and a report subtracts the excess from them alone,
--   through the small partial index below.
--
-- Both are written by the hot path in the same statement as the rest of the
-- request. The backfill below makes existing data agree with them.

ALTER TABLE rtp_hourly ADD COLUMN rounds BIGINT NOT NULL DEFAULT 0;
ALTER TABLE round_buckets ADD COLUMN split BOOLEAN NOT NULL DEFAULT false;

-- All rows of one round, for the hot path (is the round split?) and for the
-- reports (was this edge round already counted in a whole hour?).
CREATE INDEX round_buckets_round_idx ON round_buckets (player_id, game_id, bucket);
CREATE INDEX round_buckets_split_idx ON round_buckets (bucket) WHERE split;

UPDATE round_buckets b SET split = true
FROM (SELECT player_id, game_id FROM round_buckets
      GROUP BY player_id, game_id HAVING count(*) > 1) s
WHERE b.player_id = s.player_id AND b.game_id = s.game_id;

UPDATE rtp_hourly h SET rounds = c.rounds
FROM (SELECT player_id, bucket, game, count(*) AS rounds FROM round_buckets
      WHERE live_bets > 0 GROUP BY player_id, bucket, game) c
WHERE h.player_id = c.player_id AND h.bucket = c.bucket AND h.game = c.game;

-- The ledger is appended in time order, so a BRIN index finds the rows of
-- an hour for the cost of a few kilobytes per month of data and almost
-- nothing on insert (a B-tree on created_at would add a write per entry).
-- Ranges of 32 pages (~1,500 rows) keep an hour's lookup tight; without
-- autosummarize, freshly filled ranges stay unsummarised (and are always
-- scanned) until the next VACUUM. Partitions inherit both settings.
CREATE INDEX ledger_created_at_brin ON ledger USING brin (created_at)
    WITH (pages_per_range = 32, autosummarize = on);
