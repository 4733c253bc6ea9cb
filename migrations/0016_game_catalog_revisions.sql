-- How every instance keeps its in-memory game catalog fresh (docs/ARCHITECTURE.md,
-- "Game catalog"): each change of an operator's games bumps that operator's
-- catalog revision and notifies `wallet_games` with the operator's id, in the
-- transaction of the change, whoever makes it. A notification lost while an
-- instance was not listening is found by comparing revisions.

CREATE TABLE game_catalog_revisions (
    operator_id SMALLINT PRIMARY KEY REFERENCES operators (id),
    revision    BIGINT NOT NULL
);

INSERT INTO game_catalog_revisions (operator_id, revision)
SELECT DISTINCT operator_id, 1 FROM games;

CREATE FUNCTION games_changed() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
DECLARE
    operator SMALLINT := coalesce(NEW.operator_id, OLD.operator_id);
BEGIN
    INSERT INTO game_catalog_revisions AS r (operator_id, revision) VALUES (operator, 1)
    ON CONFLICT (operator_id) DO UPDATE SET revision = r.revision + 1;
    -- Identical notifications of one transaction are delivered once.
    PERFORM pg_notify('wallet_games', operator::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER games_notify AFTER INSERT OR UPDATE OR DELETE ON games
    FOR EACH ROW EXECUTE FUNCTION games_changed();
