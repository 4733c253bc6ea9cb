-- A provider bet writes one row again: its ledger row is its `balance`
-- event (API §11). The ledger already holds every change of a cash balance
-- with its tx_id; the last row a commit of the hot path writes for a player
-- takes an id from the events' sequence, in the same statement and under
-- the same player lock as `player_events` ids, so a player's ids still
-- follow commit order whichever table holds them. A player with a bonus
-- has the bonus balance after the commit on that row too (`bonus_after`;
-- NULL is 0). The cashier and every other event keep writing `player_events`.
ALTER TABLE ledger
    ADD COLUMN event_id BIGINT,
    ADD COLUMN bonus_after BIGINT,
    ADD CONSTRAINT ledger_event_check CHECK (bonus_after IS NULL OR (event_id IS NOT NULL AND bonus_after >= 0));

-- Every event a player's streams are sent, whichever table holds it.
-- Queries name a player and a time range, which both branches index
-- (`player_events` by (player_id, id), the ledger by (player_id, created_at)).
CREATE VIEW player_event_log AS
    SELECT player_id, id, at, kind, body FROM player_events
    UNION ALL
    SELECT player_id, event_id, created_at, 'balance',
           jsonb_build_object('cash', balance_after, 'bonus', coalesce(bonus_after, 0),
                              'total', balance_after + coalesce(bonus_after, 0), 'tx_id', tx_id)
    FROM ledger
    WHERE event_id IS NOT NULL;

-- The statement that writes events notifies them itself, once per
-- statement: "at/player_id:id,…", where `at` (microseconds since the epoch)
-- is the events' time, which finds a ledger row by its primary key. A
-- statement trigger did this before; it cost a transition table and a call
-- on every insert, and saw only `player_events`.
DROP TRIGGER player_events_notify ON player_events;
DROP FUNCTION notify_player_events();

CREATE FUNCTION notify_player_events(event_at TIMESTAMPTZ, player_ids BIGINT[], ids BIGINT[]) RETURNS INT
LANGUAGE plpgsql AS $$
BEGIN
    -- Far below NOTIFY's 8000 bytes: a larger set is split.
    PERFORM pg_notify('player_events', (extract(epoch FROM event_at) * 1000000)::bigint || '/'
                      || string_agg(n.player_id || ':' || n.id, ',' ORDER BY n.id))
    FROM (SELECT e.player_id, e.id, (row_number() OVER (ORDER BY e.id) - 1) / 300 AS part
          FROM unnest(player_ids, ids) AS e (player_id, id)) AS n
    GROUP BY n.part;
    RETURN cardinality(ids);
END
$$;
