-- Where in the player's ledger a bonus ended: the player's last ledger seq
-- once its end was written. A rollback of one of its bets took the bet's
-- wagering back only if the rollback's ledger row comes before it, which
-- processing times cannot tell when both happened in one transaction.
-- `wallet reconcile` recomputes every grant's wagering by it.
ALTER TABLE bonus_grants
    ADD COLUMN ended_seq BIGINT,
    ADD CONSTRAINT bonus_grants_ended_seq_check CHECK (ended_seq IS NULL OR status <> 'active');
