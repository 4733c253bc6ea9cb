-- The SQL work of one single-bet request, done directly: lock the player row,
-- insert the ledger row, update the balance. Five round trips, as pgbench
-- sends them: BEGIN, SELECT … FOR UPDATE, INSERT, UPDATE, END.
-- Players 1..:players must exist (wallet seed); `-D players=N` sets N.
\set pid random(1, :players)
BEGIN;
SELECT balance, last_seq FROM players WHERE id = :pid FOR UPDATE \gset
INSERT INTO ledger (player_id, seq, created_at, tx_id, kind, amount, balance_before, balance_after, action_id, game, game_id)
VALUES (:pid, :last_seq + 1, clock_timestamp(), gen_random_uuid(), 'bet', 100, :balance, :balance - 100, gen_random_uuid(), 'bench:slots', 'r');
UPDATE players SET balance = :balance - 100, last_seq = :last_seq + 1, updated_at = clock_timestamp() WHERE id = :pid;
END;
