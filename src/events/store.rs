//! The per-player event log in SQL: writing an event in the transaction of
//! the change it reports, reading events back by id for the hub, the replay
//! of a reconnecting stream, and the purge of old rows.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::{Event, Logged};

/// How long the log keeps events for replay (API §11: the last 24 hours).
/// The purge deletes an hour later, so that a replay of the full day never
/// races it.
pub const RETENTION_HOURS: i32 = 24;
const PURGE_AFTER_HOURS: i32 = RETENTION_HOURS + 1;

/// Writes `event` for `player_id` at `at`, in the caller's transaction: the
/// `player_events_notify` trigger tells every instance its id at commit.
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
    sqlx::query!(
        "INSERT INTO player_events (player_id, at, kind, body) VALUES ($1, $2, $3, $4)",
        player_id,
        at,
        event.kind(),
        body,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The newest id of `player_id`'s events, or 0: where a stream that asked
/// for no replay starts.
pub async fn latest_id(pool: &PgPool, player_id: i64) -> sqlx::Result<i64> {
    let latest = sqlx::query_scalar!("SELECT max(id) FROM player_events WHERE player_id = $1", player_id)
        .fetch_one(pool)
        .await?;
    Ok(latest.unwrap_or(0))
}

/// Up to `limit` of `player_id`'s events after `after` from the retention
/// window, oldest first: one page of a replay.
pub async fn after(pool: &PgPool, player_id: i64, after: i64, limit: i64) -> sqlx::Result<Vec<Logged>> {
    sqlx::query_as!(
        Logged,
        r#"SELECT player_id, id, kind, body FROM player_events
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

/// The events named by `(player_id, id)` pairs, in id order: what a batch
/// of notifications announced, in one query.
pub async fn by_ids(pool: &PgPool, players: &[i64], ids: &[i64]) -> sqlx::Result<Vec<Logged>> {
    sqlx::query_as!(
        Logged,
        r#"SELECT e.player_id, e.id, e.kind, e.body
           FROM unnest($1::int8[], $2::int8[]) AS k (player_id, id)
           JOIN player_events e ON e.player_id = k.player_id AND e.id = k.id
           ORDER BY e.id"#,
        players,
        ids,
    )
    .fetch_all(pool)
    .await
}

/// Every event of each of `players` after its cursor, within the retention
/// window, in id order: the catch-up after notifications may have been lost.
pub async fn since(pool: &PgPool, players: &[i64], cursors: &[i64]) -> sqlx::Result<Vec<Logged>> {
    sqlx::query_as!(
        Logged,
        r#"SELECT e.player_id, e.id, e.kind, e.body
           FROM unnest($1::int8[], $2::int8[]) AS c (player_id, after)
           JOIN player_events e ON e.player_id = c.player_id AND e.id > c.after
           WHERE e.at > now() - make_interval(hours => $3)
           ORDER BY e.id"#,
        players,
        cursors,
        RETENTION_HOURS,
    )
    .fetch_all(pool)
    .await
}

/// Deletes up to `batch` events older than the retention window and an hour;
/// answers how many. Short batches keep each delete's locks and WAL small.
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
