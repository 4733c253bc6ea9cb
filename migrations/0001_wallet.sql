-- The wallet schema: operators, players, the provider action registry, the
-- ledger, back-office idempotency keys and the RTP rollups.
--
-- Money is always BIGINT minor units. Every invariant the code relies on is
-- also a constraint here, so a bug in the service fails loudly instead of
-- corrupting a balance.

-- Operators (tenants). Only `default` exists for now; the player key is
-- (operator_id, user_id) from the start so tenants need no data migration.
CREATE TABLE operators (
    id         SMALLINT PRIMARY KEY,
    code       TEXT NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9_-]{1,64}$'),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO operators (id, code) VALUES (1, 'default');

CREATE TABLE players (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    operator_id SMALLINT NOT NULL REFERENCES operators (id),
    user_id     TEXT NOT NULL CHECK (char_length(user_id) BETWEEN 1 AND 255),
    currency    TEXT NOT NULL CHECK (currency ~ '^[A-Z0-9]{3,10}$'),
    balance     BIGINT NOT NULL DEFAULT 0,
    status      TEXT NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'blocked', 'self_excluded')),
    -- Sequence number of the player's last ledger entry: entries are numbered
    -- 1, 2, 3, … per player, which orders the balance chain exactly even when
    -- several entries share one timestamp.
    last_seq    BIGINT NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT players_balance_check CHECK (balance >= 0),
    CONSTRAINT players_operator_user_key UNIQUE (operator_id, user_id)
) WITH (fillfactor = 70);  -- every request updates its player in place: room for HOT updates

-- What a ledger entry is. Provider actions are bet/win/rollback; the
-- back office moves money with deposit/withdrawal.
CREATE TYPE entry_kind AS ENUM ('bet', 'win', 'rollback', 'deposit', 'withdrawal');

-- The ledger: one immutable row per balance movement (including movements of
-- zero: pre-rollbacks, late originals, repeated reversals), range-partitioned
-- by month on the time it was processed so old months can be detached and
-- archived without touching the hot ones. Partitions are created ahead of
-- time by the service (`ensure_ledger_partitions`), never by hand.
--
-- No foreign key to players: a per-row RI check on a billion-row table costs
-- more than it protects, since every writer already holds the player's row
-- lock; `wallet reconcile` checks for orphans instead.
CREATE TABLE ledger (
    player_id          BIGINT NOT NULL,
    seq                BIGINT NOT NULL CHECK (seq > 0),
    created_at         TIMESTAMPTZ NOT NULL,
    tx_id              UUID NOT NULL,
    kind               entry_kind NOT NULL,
    amount             BIGINT NOT NULL CHECK (amount >= 0),
    balance_before     BIGINT NOT NULL CHECK (balance_before >= 0),
    balance_after      BIGINT NOT NULL CHECK (balance_after >= 0),
    action_id          UUID,
    original_action_id UUID,
    game               TEXT,
    game_id            TEXT,
    PRIMARY KEY (player_id, created_at, seq),
    -- Each kind may move the balance only in its own direction, and only by
    -- its own amount (or not at all, for entries that were already reversed).
    CONSTRAINT ledger_movement_check CHECK (
        CASE kind
            WHEN 'bet'        THEN balance_after - balance_before IN (-amount, 0)
            WHEN 'win'        THEN balance_after - balance_before IN (amount, 0)
            WHEN 'rollback'   THEN balance_after - balance_before IN (amount, -amount)
            WHEN 'deposit'    THEN balance_after - balance_before = amount
            WHEN 'withdrawal' THEN balance_after - balance_before = -amount
        END
    ),
    CONSTRAINT ledger_provider_fields_check CHECK (
        (kind IN ('bet', 'win', 'rollback')) = (action_id IS NOT NULL)
        AND (kind = 'rollback') = (original_action_id IS NOT NULL)
    )
) PARTITION BY RANGE (created_at);

-- The provider action registry: one row per action_id ever seen, which is
-- what makes "applied at most once, forever" hold. Postgres cannot enforce a
-- unique index across the ledger's time partitions without the partition key,
-- so uniqueness lives here instead, in a narrow table whose primary key is the
-- action_id itself. (Hash-partitioning it by action_id would keep the key
-- global too, but a lookup of `action_id = ANY($1)` through a prepared,
-- generic plan then probes every partition: measured 1.7x slower end to end.)
--
-- A row with tx_id NULL is a placeholder left by a pre-rollback: the
-- original has not been seen, but it is already reversed (reversed_by), so
-- when it arrives it is recorded without moving money.
CREATE TABLE actions (
    action_id          UUID NOT NULL,
    player_id          BIGINT NOT NULL,
    kind               entry_kind CHECK (kind IN ('bet', 'win', 'rollback')),
    amount             BIGINT CHECK (amount >= 0),
    original_action_id UUID,
    tx_id              UUID,
    -- When the action was processed: its ledger row's partition key and its
    -- RTP rollup bucket, both needed when it is rolled back later.
    processed_at       TIMESTAMPTZ,
    game               TEXT,
    game_id            TEXT,
    -- The rollback that reversed this action, if any. Set at most once.
    reversed_by        UUID,
    PRIMARY KEY (action_id),
    CONSTRAINT actions_placeholder_check CHECK (
        (tx_id IS NULL) = (kind IS NULL)
        AND (tx_id IS NULL) = (processed_at IS NULL)
        AND (tx_id IS NOT NULL OR reversed_by IS NOT NULL)
    ),
    CONSTRAINT actions_shape_check CHECK (
        kind IS NULL
        OR (kind = 'rollback' AND amount IS NULL AND original_action_id IS NOT NULL AND reversed_by IS NULL)
        OR (kind IN ('bet', 'win') AND amount IS NOT NULL AND original_action_id IS NULL)
    )
);

-- Back-office idempotency: the key, a fingerprint of the request and the
-- response, stored in the same transaction as the money movement.
CREATE TABLE idempotency_keys (
    player_id           BIGINT NOT NULL REFERENCES players (id),
    idempotency_key     TEXT NOT NULL CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
    request_fingerprint TEXT NOT NULL,
    tx_id               UUID NOT NULL,
    balance_after       BIGINT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (player_id, idempotency_key)
);

-- RTP rollups, exact and written in the same transaction as the ledger rows
-- they summarise: per player × game × hour of processing time. Amounts that a
-- rollback takes out of the totals move into rolled_back_* of the bucket the
-- original was processed in.
--
-- Rollups are written as signed deltas through INSERT … ON CONFLICT DO
-- UPDATE, and Postgres checks CHECK constraints on the proposed row before it
-- detects the conflict, so the sums carry no sign check here: a reversal's
-- negative delta must be able to reach its existing row. They are derived
-- data; `wallet reconcile` proves them equal to the raw ledger.
CREATE TABLE rtp_hourly (
    player_id       BIGINT NOT NULL,
    bucket          TIMESTAMPTZ NOT NULL,
    game            TEXT NOT NULL,      -- '' when the provider sent none
    currency        TEXT NOT NULL,      -- the player's; copied so reports need no join
    total_bet       BIGINT NOT NULL DEFAULT 0,
    total_win       BIGINT NOT NULL DEFAULT 0,
    rolled_back_bet BIGINT NOT NULL DEFAULT 0,
    rolled_back_win BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (player_id, bucket, game)
) WITH (fillfactor = 70);  -- updated in place by every request in the hour
CREATE INDEX rtp_hourly_bucket_idx ON rtp_hourly (bucket);

-- Live (not rolled back) bets per round and hour, for exact distinct-round
-- counts: a round is counted in a window when it has a live bet in it.
CREATE TABLE round_buckets (
    player_id BIGINT NOT NULL,
    bucket    TIMESTAMPTZ NOT NULL,
    game      TEXT NOT NULL,
    game_id   TEXT NOT NULL,
    live_bets INTEGER NOT NULL,
    PRIMARY KEY (player_id, bucket, game, game_id)
) WITH (fillfactor = 70);
CREATE INDEX round_buckets_bucket_idx ON round_buckets (bucket) WHERE live_bets > 0;

-- Creates the monthly ledger partitions covering [from_month, to_month].
-- Idempotent; called by the service at start and on a timer.
CREATE FUNCTION ensure_ledger_partitions(from_ts TIMESTAMPTZ, to_ts TIMESTAMPTZ)
RETURNS INTEGER
LANGUAGE plpgsql AS $$
DECLARE
    month   DATE := date_trunc('month', from_ts AT TIME ZONE 'UTC')::date;
    last    DATE := date_trunc('month', to_ts AT TIME ZONE 'UTC')::date;
    name    TEXT;
    created INTEGER := 0;
BEGIN
    -- Several instances may start at once; serialise creators.
    PERFORM pg_advisory_xact_lock(hashtext('ensure_ledger_partitions'));
    WHILE month <= last LOOP
        name := format('ledger_y%sm%s', to_char(month, 'YYYY'), to_char(month, 'MM'));
        IF to_regclass(name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF ledger FOR VALUES FROM (%L) TO (%L)',
                name,
                (month::timestamp AT TIME ZONE 'UTC'),
                ((month + INTERVAL '1 month')::timestamp AT TIME ZONE 'UTC'));
            created := created + 1;
        END IF;
        month := (month + INTERVAL '1 month')::date;
    END LOOP;
    RETURN created;
END
$$;

SELECT ensure_ledger_partitions(now() - INTERVAL '1 month', now() + INTERVAL '3 months');
