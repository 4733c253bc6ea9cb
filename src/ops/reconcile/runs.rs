//! Reconciliation runs: the checks as a background job, its outcome stored in
//! `reconciliation_runs` and fetched later.
//!
//! One run at a time per database, whatever the instances: the job's session
//! takes an advisory lock before it inserts its row and writes the outcome
//! before it lets go, so a row is `running` only while some session holds the
//! lock. If the instance stops mid-run, PostgreSQL drops its session and the
//! lock with it; the row, still `running` with nobody holding the lock, is
//! answered as failed, and the next run records it so.
//!
//! The job runs on a connection of its own, outside the pool: a lock held by
//! a pooled connection would outlive the job on the next request that got it.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use super::Report;

/// Key of the advisory lock held by the session running a reconciliation.
const LOCK_KEY: i64 = 0x7265_636f_6e63_696c; // "reconcil"

/// Why a run that nobody runs any more failed.
pub const ABANDONED: &str = "abandoned: the instance running it stopped before it finished";

/// How often, and how far apart, a start retries while another run's session
/// holds the lock but its row is not `running` (just before it inserts it, or
/// just after it wrote its outcome): a window of one statement.
const START_ATTEMPTS: usize = 50;
const START_RETRY: Duration = Duration::from_millis(20);

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    /// The checks ran; the report says whether everything agreed.
    Succeeded,
    /// The checks could not run to the end; `error` says why.
    Failed,
}

impl Status {
    fn parse(stored: &str) -> Status {
        match stored {
            "running" => Status::Running,
            "succeeded" => Status::Succeeded,
            // The table's CHECK allows nothing else.
            _ => Status::Failed,
        }
    }
}

/// A run as the back office sees it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Run {
    pub run_id: i64,
    pub status: Status,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Once it succeeded.
    pub report: Option<Report>,
    /// Once it failed.
    pub error: Option<String>,
}

/// Starts a run on a session of its own and answers it, still `running`; or
/// answers the run already going, here or on another instance. `None` when
/// another run kept starting or finishing through every retry.
pub async fn start(pool: &PgPool) -> sqlx::Result<Option<Run>> {
    for _ in 0..START_ATTEMPTS {
        let mut conn = PgConnection::connect_with(&session_options(pool)).await?;
        let locked = sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock($1) AS "locked!""#, LOCK_KEY)
            .fetch_one(&mut conn)
            .await?;
        if locked {
            let run = insert_running(&mut conn).await?;
            tokio::spawn(execute(conn, run.run_id));
            return Ok(Some(run));
        }
        conn.close().await?;
        if let Some(run) = running(pool).await? {
            return Ok(Some(run));
        }
        tokio::time::sleep(START_RETRY).await;
    }
    Ok(None)
}

/// The pool's connection settings, without statement logging: every check
/// takes seconds, and a warning with its SQL for each would read as an alarm
/// (the job logs its start and end, and the report times each check).
fn session_options(pool: &PgPool) -> PgConnectOptions {
    pool.connect_options().as_ref().clone().disable_statement_logging()
}

/// With the lock held: records runs that lost their session as failed, and
/// inserts the new one.
async fn insert_running(conn: &mut PgConnection) -> sqlx::Result<Run> {
    let mut tx = conn.begin().await?;
    sqlx::query!(
        "UPDATE reconciliation_runs SET status = 'failed', finished_at = now(), error = $1
         WHERE status = 'running'",
        ABANDONED
    )
    .execute(&mut *tx)
    .await?;
    let row = sqlx::query!("INSERT INTO reconciliation_runs DEFAULT VALUES RETURNING id, started_at")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Run {
        run_id: row.id,
        status: Status::Running,
        started_at: row.started_at,
        finished_at: None,
        report: None,
        error: None,
    })
}

/// The job: runs the checks in the session that holds the lock, stores the
/// outcome, then closes the session, which lets go of the lock.
async fn execute(mut conn: PgConnection, run_id: i64) {
    let started = Instant::now();
    tracing::info!(run_id, "reconciliation started");
    let outcome = super::reconcile(&mut conn).await;
    let duration_ms = super::millis(started);
    let stored = match outcome {
        Ok(report) => {
            tracing::info!(
                run_id,
                duration_ms,
                ok = report.ok,
                mismatches = report.mismatches(),
                "reconciliation finished"
            );
            finish(&mut conn, run_id, Ok(&report)).await
        }
        Err(error) => {
            tracing::error!(run_id, duration_ms, error = %error, "reconciliation failed");
            finish(&mut conn, run_id, Err(&error.to_string())).await
        }
    };
    if let Err(error) = stored {
        // The row stays `running` until the session closes below; after that
        // it reads as abandoned.
        tracing::error!(run_id, error = %error, "could not store the reconciliation outcome");
    }
    let _ = conn.close().await;
}

async fn finish(conn: &mut PgConnection, run_id: i64, outcome: Result<&Report, &str>) -> sqlx::Result<()> {
    let (status, report, error) = match outcome {
        Ok(report) => {
            // i128 totals serialise as plain numbers; JSONB keeps them exact.
            let json = serde_json::to_string(report).map_err(|e| sqlx::Error::Encode(e.into()))?;
            ("succeeded", Some(json), None)
        }
        Err(error) => ("failed", None, Some(error)),
    };
    sqlx::query!(
        "UPDATE reconciliation_runs
         SET status = $2, finished_at = now(), report = $3::text::jsonb, error = $4
         WHERE id = $1",
        run_id,
        status,
        report,
        error,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The run `run_id`, if there is one.
pub async fn find(pool: &PgPool, run_id: i64) -> sqlx::Result<Option<Run>> {
    match fetch(pool, run_id).await? {
        Some(run) => judge_running(pool, run).await.map(Some),
        None => Ok(None),
    }
}

/// The latest run, if any.
pub async fn latest(pool: &PgPool) -> sqlx::Result<Option<Run>> {
    let row = sqlx::query_as!(
        Stored,
        "SELECT id, status, started_at, finished_at, report::text AS report, error
         FROM reconciliation_runs ORDER BY id DESC LIMIT 1"
    )
    .fetch_optional(pool)
    .await?;
    match row.map(Stored::into_run).transpose()? {
        Some(run) => judge_running(pool, run).await.map(Some),
        None => Ok(None),
    }
}

/// The run going now, if any (at most one: a unique index sees to it).
async fn running(pool: &PgPool) -> sqlx::Result<Option<Run>> {
    let row = sqlx::query_as!(
        Stored,
        "SELECT id, status, started_at, finished_at, report::text AS report, error
         FROM reconciliation_runs WHERE status = 'running'"
    )
    .fetch_optional(pool)
    .await?;
    row.map(Stored::into_run).transpose()
}

async fn fetch(pool: &PgPool, run_id: i64) -> sqlx::Result<Option<Run>> {
    let row = sqlx::query_as!(
        Stored,
        "SELECT id, status, started_at, finished_at, report::text AS report, error
         FROM reconciliation_runs WHERE id = $1",
        run_id
    )
    .fetch_optional(pool)
    .await?;
    row.map(Stored::into_run).transpose()
}

/// A run read as `running` is answered as failed if its session is gone.
async fn judge_running(pool: &PgPool, run: Run) -> sqlx::Result<Run> {
    if run.status != Status::Running || lock_held(pool).await? {
        return Ok(run);
    }
    // Nobody holds the lock: either the run wrote its outcome and let go
    // since it was read, or its session is gone. Its session held the lock
    // from before the row existed until after the outcome was written, so a
    // row still `running` now was abandoned.
    match fetch(pool, run.run_id).await? {
        Some(again) if again.status == Status::Running => {
            Ok(Run { status: Status::Failed, error: Some(ABANDONED.to_string()), ..again })
        }
        Some(again) => Ok(again),
        None => Ok(run),
    }
}

/// Whether some session of this database holds the reconciliation lock.
async fn lock_held(pool: &PgPool) -> sqlx::Result<bool> {
    // A bigint advisory key shows in pg_locks as its high and low halves.
    sqlx::query_scalar!(
        r#"SELECT EXISTS (
               SELECT FROM pg_locks
               WHERE locktype = 'advisory' AND granted AND objsubid = 1
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND (classid::int8 << 32) | objid::int8 = $1
           ) AS "held!""#,
        LOCK_KEY
    )
    .fetch_one(pool)
    .await
}

/// A row of `reconciliation_runs`.
struct Stored {
    id: i64,
    status: String,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    report: Option<String>,
    error: Option<String>,
}

impl Stored {
    fn into_run(self) -> sqlx::Result<Run> {
        let report = match self.report {
            Some(json) => {
                Some(serde_json::from_str(&json).map_err(|error| sqlx::Error::Decode(error.into()))?)
            }
            None => None,
        };
        Ok(Run {
            run_id: self.id,
            status: Status::parse(&self.status),
            started_at: self.started_at,
            finished_at: self.finished_at,
            report,
            error: self.error,
        })
    }
}
