//! The per-player event log in SQL: writing an event in the transaction of
//! the change it reports, reading events back by id for the hub, the replay
//! of a reconnecting stream, and the purge of old rows.
//!
//! Events live in two tables, read together through the view
//! `player_event_log` (migrations/0017): the `balance` event of a hot-path
//! commit is the player's last ledger row of it, which takes an id from the
//! events' sequence; `player_events` holds every other event, written by
//! [`log`], the cashier and the hot path's `bonus` events. Every read names
//! a player and a time range, which both tables index.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::{Event, Logged};

/// How long the log keeps events for replay (API §11: the last 24 hours).
/// The purge deletes an hour later, so that a replay of the full day never
/// races it.
pub const RETENTION_HOURS: i32 = 24;
const PURGE_AFTER_HOURS: i32 = RETENTION_HOURS + 1;

/// Writes `event` for `player_id` at `at`, in the caller's transaction, and
/// notifies its id: every instance is told at commit.
///
/// The caller must hold the player's wallet row lock (`players … FOR
/// UPDATE`) from before this insert until its commit: ids come from one
/// sequence, and only the lock makes a player's ids follow commit order,
/// which is what lets a stream resume from the last id it received.
pub async fn log(
    conn: &mut PgConnection,
    player_id: i64,
    at: DateTime<Utc>,
    event: &Event,
) -> Result<(), sqlx::Error> {
    let body = event.body().map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query_scalar!(
        r#"WITH logged AS (
               INSERT INTO player_events (player_id, at, kind, body) VALUES ($1, $2, $3, $4)
               RETURNING player_id, id)
           SELECT notify_player_events($2, ARRAY[player_id], ARRAY[id]) FROM logged"#,
        player_id,
        at,
        event.kind(),
        body,
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}

/// The newest id of `player_id`'s events within the retention window, or 0:
/// where a stream that asked for no replay starts.
pub async fn latest_id(pool: &PgPool, player_id: i64) -> sqlx::Result<i64> {
    let latest = sqlx::query_scalar!(
        r#"SELECT max(id) FROM player_event_log
           WHERE player_id = $1 AND at > now() - make_interval(hours => $2)"#,
        player_id,
        RETENTION_HOURS,
    )
    .fetch_one(pool)
    .await?;
    Ok(latest.unwrap_or(0))
}

/// Up to `limit` of `player_id`'s events after `after` from the retention
/// window, oldest first: one page of a replay.
pub async fn after(pool: &PgPool, player_id: i64, after: i64, limit: i64) -> sqlx::Result<Vec<Logged>> {
    sqlx::query_as!(
        Logged,
        r#"SELECT player_id AS "player_id!", id AS "id!", kind AS "kind!", body AS "body!"
           FROM player_event_log
           WHERE player_id = $1 AND id > $2 AND at > now() - make_interval(hours => $3)
           ORDER BY id LIMIT $4"#,
        player_id,
        after,
        RETENTION_HOURS,
        limit,
    )
    .fetch_all(pool)
    .await
}

/// The events named by `(player_id, id, at)`, in id order: what a batch of
/// notifications announced, in one query.
///
/// Here and in [`since`], the view is read in a `LATERAL` subquery that the
/// planner cannot merge into the join (`LIMIT`, `OFFSET 0`): each key then
/// probes both tables by index. Joined plainly, the view may be hashed
/// whole, a scan of the ledger's every event row per notification.
pub async fn by_ids(
    pool: &PgPool,
    players: &[i64],
    ids: &[i64],
    ats: &[DateTime<Utc>],
) -> sqlx::Result<Vec<Logged>> {
    sqlx::query_as!(
        Logged,
        r#"SELECT e.player_id AS "player_id!", e.id AS "id!", e.kind AS "kind!", e.body AS "body!"
           FROM unnest($1::int8[], $2::int8[], $3::timestamptz[]) AS k (player_id, id, at)
           CROSS JOIN LATERAL (
               SELECT * FROM player_event_log e
               WHERE e.player_id = k.player_id AND e.at = k.at AND e.id = k.id
               LIMIT 1) AS e
           ORDER BY e.id"#,
        players,
        ids,
        ats,
    )
    .fetch_all(pool)
    .await
}

/// Every event of each of `players` after its cursor, within the retention
/// window, in id order: the catch-up after notifications may have been lost.
pub async fn since(pool: &PgPool, players: &[i64], cursors: &[i64]) -> sqlx::Result<Vec<Logged>> {
    sqlx::query_as!(
        Logged,
        r#"SELECT e.player_id AS "player_id!", e.id AS "id!", e.kind AS "kind!", e.body AS "body!"
           FROM unnest($1::int8[], $2::int8[]) AS c (player_id, after)
           CROSS JOIN LATERAL (
               SELECT * FROM player_event_log e
               WHERE e.player_id = c.player_id AND e.id > c.after
                 AND e.at > now() - make_interval(hours => $3)
               OFFSET 0) AS e
           ORDER BY e.id"#,
        players,
        cursors,
        RETENTION_HOURS,
    )
    .fetch_all(pool)
    .await
}

/// Deletes up to `batch` rows of `player_events` older than the retention
/// window and an hour; answers how many. Short batches keep each delete's
/// locks and WAL small. (Ledger rows stay: past the window, their event ids
/// are no longer read.)
pub async fn purge_batch(pool: &PgPool, batch: i64) -> sqlx::Result<u64> {
    let deleted = sqlx::query!(
        r#"DELETE FROM player_events WHERE (player_id, id) IN (
               SELECT player_id, id FROM player_events
               WHERE at < now() - make_interval(hours => $1)
               LIMIT $2 FOR UPDATE SKIP LOCKED)"#,
        PURGE_AFTER_HOURS,
        batch,
    )
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}
