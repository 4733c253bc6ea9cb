-- Bonuses (API §10) and the per-player event log (API §11).
-- docs/ARCHITECTURE.md, "Bonuses" and "Real-time events", says why each
-- piece lives where it does.

-- Ledger kinds of the bonus money's own movements. (A new enum value cannot
-- be used in the transaction that adds it: the checks below compare text.)
ALTER TYPE entry_kind ADD VALUE 'bonus_grant';
ALTER TYPE entry_kind ADD VALUE 'bonus_conversion';
ALTER TYPE entry_kind ADD VALUE 'bonus_forfeit';

-- The game catalog: a provider's `game` string filed under a category, per
-- operator. A game not filed here is `other`.
CREATE TABLE games (
    operator_id SMALLINT NOT NULL REFERENCES operators (id),
    game        TEXT NOT NULL CHECK (char_length(game) BETWEEN 1 AND 255),
    category    TEXT NOT NULL CHECK (category ~ '^[a-z0-9_]{1,32}$'),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (operator_id, game)
);

-- Contribution weights: an object of categories to whole percents 0..=100.
CREATE FUNCTION weights_hold(weights JSONB) RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(
        jsonb_typeof(weights) = 'object'
        AND NOT jsonb_path_exists(weights, '$.* ? (!(@.type() == "number") || @ < 0 || @ > 100 || @ != @.floor())')
        AND NOT EXISTS (SELECT 1 FROM jsonb_object_keys(weights) AS k WHERE k !~ '^[a-z0-9_]{1,32}$'),
        false)
$$;

CREATE TABLE bonus_campaigns (
    id                        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    operator_id               SMALLINT NOT NULL REFERENCES operators (id),
    code                      TEXT NOT NULL CHECK (code ~ '^[A-Za-z0-9_-]{1,64}$'),
    kind                      TEXT NOT NULL CHECK (kind IN ('deposit_match', 'manual')),
    match_percent             INTEGER NOT NULL DEFAULT 0 CHECK (match_percent BETWEEN 0 AND 1000),
    max_bonus                 BIGINT NOT NULL CHECK (max_bonus BETWEEN 0 AND 1000000000000000),
    min_deposit               BIGINT NOT NULL DEFAULT 0 CHECK (min_deposit BETWEEN 0 AND 1000000000000000),
    wagering_multiplier       INTEGER NOT NULL CHECK (wagering_multiplier BETWEEN 0 AND 1000),
    contributions             JSONB NOT NULL CHECK (weights_hold(contributions)),
    -- NULL: no cap.
    max_bet                   BIGINT CHECK (max_bet BETWEEN 1 AND 1000000000000000),
    max_conversion_multiplier INTEGER CHECK (max_conversion_multiplier BETWEEN 0 AND 1000),
    valid_days                INTEGER NOT NULL CHECK (valid_days BETWEEN 1 AND 3650),
    active                    BOOLEAN NOT NULL DEFAULT true,
    created_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (operator_id, code)
);

-- One bonus given to one player, with the terms it was made with. While it
-- is active, its moving parts (balance, wagered, staked) live on the
-- player's wallet row (`players.bonus` below), read and written under the
-- wallet lock by the statements that move the player's money; this row
-- holds them as they were when the bonus ended.
CREATE TABLE bonus_grants (
    bonus_id                  UUID PRIMARY KEY,
    player_id                 BIGINT NOT NULL REFERENCES players (id),
    campaign_id               BIGINT NOT NULL REFERENCES bonus_campaigns (id),
    kind                      TEXT NOT NULL CHECK (kind IN ('deposit_match', 'manual')),
    status                    TEXT NOT NULL CHECK (status IN ('active', 'completed', 'expired', 'forfeited')),
    granted                   BIGINT NOT NULL CHECK (granted BETWEEN 1 AND 1000000000000000),
    required                  BIGINT NOT NULL CHECK (required >= 0),
    contributions             JSONB NOT NULL CHECK (weights_hold(contributions)),
    max_bet                   BIGINT CHECK (max_bet >= 1),
    max_conversion_multiplier INTEGER CHECK (max_conversion_multiplier >= 0),
    expires_at                TIMESTAMPTZ NOT NULL,
    created_at                TIMESTAMPTZ NOT NULL,
    ended_at                  TIMESTAMPTZ,
    -- As the bonus ended (while active: as granted).
    balance                   BIGINT NOT NULL CHECK (balance >= 0),
    wagered                   BIGINT NOT NULL CHECK (wagered >= 0),
    staked                    BIGINT NOT NULL CHECK (staked >= 0),
    converted                 BIGINT NOT NULL DEFAULT 0 CHECK (converted >= 0),
    forfeited                 BIGINT NOT NULL DEFAULT 0 CHECK (forfeited >= 0),
    -- The deposit that earned it, or the staff request's Idempotency-Key.
    deposit_tx_id             UUID,
    idempotency_key           TEXT CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
    CONSTRAINT bonus_grants_wagered_staked_check CHECK (wagered <= staked),
    CONSTRAINT bonus_grants_ended_check CHECK ((status = 'active') = (ended_at IS NULL)),
    CONSTRAINT bonus_grants_origin_check CHECK (
        (kind = 'deposit_match') = (deposit_tx_id IS NOT NULL)
        AND (kind = 'manual') = (idempotency_key IS NOT NULL)
    )
);
-- At most one active bonus per player.
CREATE UNIQUE INDEX bonus_grants_one_active ON bonus_grants (player_id) WHERE status = 'active';
-- A deposit-match campaign grants a player once.
CREATE UNIQUE INDEX bonus_grants_once_per_campaign ON bonus_grants (player_id, campaign_id)
    WHERE kind = 'deposit_match';
CREATE UNIQUE INDEX bonus_grants_idempotency ON bonus_grants (player_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- The expiry sweeper's work list.
CREATE INDEX bonus_grants_expiry ON bonus_grants (expires_at) WHERE status = 'active';

-- The active bonus as the hot path needs it, on the wallet row so that the
-- lock statement returns it fresh with the balance.
-- `cap`: the most its balance may convert to cash (NULL: no cap);
-- `weights`: the contribution of each game category, in percent.
CREATE TYPE active_bonus AS (
    bonus_id   UUID,
    balance    BIGINT,
    wagered    BIGINT,
    required   BIGINT,
    staked     BIGINT,
    max_bet    BIGINT,
    cap        BIGINT,
    expires_at TIMESTAMPTZ,
    weights    JSONB
);

-- NULL, or every field but max_bet and cap set, a balance at or above zero
-- and no more wagered than staked. (Inlined into the check, so no call.)
CREATE FUNCTION active_bonus_holds(b active_bonus) RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE AS $$
    SELECT b IS NULL
        OR coalesce((b).bonus_id IS NOT NULL AND (b).expires_at IS NOT NULL AND (b).weights IS NOT NULL
                    AND (b).balance >= 0 AND (b).wagered >= 0 AND (b).required >= 0
                    AND (b).wagered <= (b).staked
                    AND ((b).max_bet IS NULL OR (b).max_bet >= 1)
                    AND ((b).cap IS NULL OR (b).cap >= 0), false)
$$;

ALTER TABLE players
    ADD COLUMN bonus active_bonus,
    -- Set with the player's first bonus, and kept: from then on their bets'
    -- rounds are tracked in bonus_rounds, so that a win can be split.
    ADD COLUMN bonus_rounds BOOLEAN NOT NULL DEFAULT false,
    ADD CONSTRAINT players_bonus_check CHECK (active_bonus_holds(bonus) AND (bonus IS NULL OR bonus_rounds));

-- What the bets of a round (player, game_id; '' for bets sent without one)
-- staked in all and from the bonus, for the players who ever had a bonus.
-- A win of the round goes to the bonus in the proportion bonus_staked /
-- staked, if `bonus_id` is still the active bonus; else that part is forfeited.
CREATE TABLE bonus_rounds (
    player_id    BIGINT NOT NULL,
    game_id      TEXT NOT NULL,
    bonus_id     UUID,
    staked       BIGINT NOT NULL,
    bonus_staked BIGINT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (player_id, game_id),
    CONSTRAINT bonus_rounds_staked_check CHECK (bonus_staked BETWEEN 0 AND staked)
) WITH (fillfactor = 70);

-- Each provider action's split, when a bonus was involved (NULL otherwise:
-- all of it was cash): what cash and the bonus paid (a bet) or received (a
-- win; the rest of its amount was a forfeited bonus part), the wagering a bet
-- added, and to which bonus. A rollback returns and takes back exactly these.
ALTER TABLE actions
    ADD COLUMN cash_part BIGINT,
    ADD COLUMN bonus_part BIGINT,
    ADD COLUMN wagering BIGINT,
    ADD COLUMN bonus_id UUID,
    ADD CONSTRAINT actions_bonus_check CHECK (
        (bonus_id IS NULL) = (bonus_part IS NULL)
        AND (bonus_id IS NULL) = (cash_part IS NULL)
        AND (bonus_id IS NULL OR (kind IN ('bet', 'win') AND cash_part >= 0 AND bonus_part >= 0
                                  AND cash_part + bonus_part <= amount))
        AND (wagering IS NULL OR (bonus_id IS NOT NULL AND kind = 'bet' AND wagering BETWEEN 0 AND amount))
    );

-- The ledger's balance columns are the cash balance; `bonus_change` is what
-- the row did to the bonus balance. Every kind moves both only its own way.
ALTER TABLE ledger ADD COLUMN bonus_change BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger DROP CONSTRAINT ledger_movement_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_movement_check CHECK (
    CASE kind::text
        -- A stake from cash first, the rest from the bonus (or nothing, reversed already).
        WHEN 'bet' THEN balance_after - balance_before <= 0 AND bonus_change <= 0
                        AND balance_after - balance_before + bonus_change IN (-amount, 0)
        -- Up to the amount: a bonus part of a bonus no longer active is forfeited.
        WHEN 'win' THEN balance_after - balance_before >= 0 AND bonus_change >= 0
                        AND balance_after - balance_before + bonus_change <= amount
        WHEN 'rollback' THEN (balance_after - balance_before >= 0 AND bonus_change >= 0
                              AND balance_after - balance_before + bonus_change <= amount)
                          OR (balance_after - balance_before <= 0 AND bonus_change <= 0
                              AND balance_after - balance_before + bonus_change >= -amount)
        WHEN 'deposit' THEN balance_after - balance_before = amount AND bonus_change = 0
        WHEN 'withdrawal' THEN balance_after - balance_before = -amount AND bonus_change = 0
        WHEN 'bonus_grant' THEN balance_after = balance_before AND bonus_change = amount
        WHEN 'bonus_conversion' THEN balance_after - balance_before = amount AND bonus_change = -amount
        WHEN 'bonus_forfeit' THEN balance_after = balance_before AND bonus_change = -amount
    END
);

-- The per-player event log (API §11): what a player's streams send, kept
-- for replay by Last-Event-ID. Written in the transaction of the change it
-- reports, under the player's wallet lock, so a player's events are numbered
-- in commit order. Rows older than a day are deleted by the service.
CREATE TABLE player_events (
    id        BIGINT GENERATED ALWAYS AS IDENTITY,
    player_id BIGINT NOT NULL,
    at        TIMESTAMPTZ NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('balance', 'bonus', 'status', 'limits')),
    body      JSONB NOT NULL,
    PRIMARY KEY (player_id, id)
);
CREATE INDEX player_events_at ON player_events USING brin (at);

-- Every statement that logs events tells every instance, at commit, which
-- ones: "player_id:id,…" (ids, never documents; a group of the hot path is
-- far below NOTIFY's 8000 bytes, and a larger statement is split).
CREATE FUNCTION notify_player_events() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('player_events', string_agg(n.player_id || ':' || n.id, ',' ORDER BY n.id))
    FROM (SELECT player_id, id, (row_number() OVER (ORDER BY id) - 1) / 300 AS part FROM new_events) AS n
    GROUP BY n.part;
    RETURN NULL;
END
$$;
CREATE TRIGGER player_events_notify AFTER INSERT ON player_events
    REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION notify_player_events();
