-- Reconciliation runs started over HTTP. On a large ledger the checks take
-- longer than any request may, so a run is a background job whose result is
-- stored here and fetched later.
--
-- A run is 'running' only while the session that runs it holds the
-- reconciliation advisory lock: it takes the lock before inserting the row
-- and writes the outcome before letting go. A row still 'running' while
-- nobody holds the lock was abandoned (its instance stopped or lost its
-- connection), and the next run marks it failed.
CREATE TABLE reconciliation_runs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ,
    status      TEXT NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'succeeded', 'failed')),
    -- The report of a run that succeeded (whatever its verdict, `report->'ok'`).
    report      JSONB,
    -- Why a run failed.
    error       TEXT,
    CONSTRAINT reconciliation_runs_outcome_check CHECK (
        (status = 'running') = (finished_at IS NULL)
        AND (status = 'succeeded') = (report IS NOT NULL)
        AND (status = 'failed') = (error IS NOT NULL)
    )
);

-- At most one run at a time per database, whatever the instances do.
CREATE UNIQUE INDEX reconciliation_runs_one_running_idx ON reconciliation_runs ((true))
    WHERE status = 'running';
