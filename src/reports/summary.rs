//! Daily summaries of the hourly rollups (migrations/0003_rtp_daily.sql).
//!
//! [`summarize`] seals every complete day that no running transaction can
//! still write without journaling, and folds the journal of late changes
//! into the sealed days. It runs on a timer in the service and as
//! `wallet summarize`; any number of instances may call it, one works at a
//! time.
//!
//! Why sealing is exact. A transaction journals its changes to the rollups
//! of any day before its own start day (the trigger compares with `now()`,
//! the transaction's start). So the only unjournaled writes to day D come
//! from transactions that started before D ended. The summariser first reads
//! the earliest start of the transactions running now, and seals only days
//! that ended before it; then it takes its snapshot. Every transaction that
//! could still write day D unjournaled has finished by then, so the snapshot
//! sees all of D's unjournaled writes, and the summary plus whatever the
//! journal gains later always equals the hourly rows.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::error::AppResult;

/// Key of the advisory lock that lets one summariser work at a time.
const LOCK_KEY: i64 = 0x7274_705f_6461_696c; // "rtp_dail"

/// What one call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summarized {
    /// Days before this are sealed (`None`: nothing sealed yet).
    pub sealed_until: Option<DateTime<Utc>>,
    /// Days sealed by this call.
    pub days_sealed: i64,
    /// Journal rows folded into the summary by this call.
    pub late_folded: i64,
    /// Another summariser held the lock: this call did nothing.
    pub busy: bool,
}

/// Seals what can be sealed and folds the journal; see the module docs.
pub async fn summarize(pool: &PgPool) -> AppResult<Summarized> {
    let mut conn = pool.acquire().await?;
    // Before the snapshot: days up to the earliest start of a running
    // transaction (or today) can be sealed. Sessions of other roles show no
    // transaction start without pg_read_all_stats: while any is connected,
    // nothing is sealed.
    let activity = sqlx::query!(
        r#"SELECT least(date_trunc('day', now(), 'UTC'),
                        date_trunc('day', min(xact_start), 'UTC')) AS "horizon!",
                  count(*) FILTER (WHERE state IS NULL) AS "hidden!"
           FROM pg_stat_activity
           WHERE datname = current_database() AND pid <> pg_backend_pid()
             AND backend_type = 'client backend'"#,
    )
    .fetch_one(&mut *conn)
    .await?;
    if activity.hidden > 0 {
        tracing::warn!(
            sessions = activity.hidden,
            "cannot see when other roles' transactions started; sealing no days \
             (grant pg_read_all_stats to the service's role)"
        );
    }
    let horizon = activity.horizon;

    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
    let locked = sqlx::query_scalar!(r#"SELECT pg_try_advisory_xact_lock($1) AS "locked!""#, LOCK_KEY)
        .fetch_one(&mut *tx)
        .await?;
    let until = sqlx::query_scalar!("SELECT until FROM rtp_sealed").fetch_one(&mut *tx).await?;
    if !locked {
        return Ok(Summarized { sealed_until: until, days_sealed: 0, late_folded: 0, busy: true });
    }

    let seal = activity.hidden == 0 && until.is_none_or(|until| horizon > until);
    let mut days_sealed = 0;
    if seal {
        // Sealed days' journal rows visible now are already in the hourly
        // rows read here, so they go; any that commit later stay.
        days_sealed = sqlx::query_scalar!(
            r#"WITH hourly AS (
                   SELECT * FROM rtp_hourly WHERE ($1::timestamptz IS NULL OR bucket >= $1) AND bucket < $2
               ),
               sums AS (
                   INSERT INTO rtp_daily (day, operator_id, currency, game, total_bet, total_win,
                                          rolled_back_bet, rolled_back_win, rounds)
                   SELECT date_trunc('day', bucket, 'UTC'), operator_id, currency, game, sum(total_bet),
                          sum(total_win), sum(rolled_back_bet), sum(rolled_back_win), sum(rounds)
                   FROM hourly GROUP BY 1, 2, 3, 4
               ),
               presence AS (
                   INSERT INTO rtp_daily_players (day, operator_id, currency, chunk, players)
                   SELECT day, operator_id, currency, (player_id >> 13)::int, rtp_presence(player_id)
                   FROM (SELECT DISTINCT date_trunc('day', bucket, 'UTC') AS day, operator_id, currency,
                                player_id
                         FROM hourly) AS p
                   GROUP BY day, operator_id, currency, (player_id >> 13)::int
               ),
               journal AS (
                   DELETE FROM rtp_late WHERE ($1::timestamptz IS NULL OR day >= $1) AND day < $2
               )
               SELECT count(DISTINCT date_trunc('day', bucket, 'UTC')) AS "days!" FROM hourly"#,
            until,
            horizon,
        )
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query!("UPDATE rtp_sealed SET until = $1", horizon).execute(&mut *tx).await?;
    }
    let sealed = if seal { Some(horizon) } else { until };

    let late_folded = sqlx::query_scalar!(
        r#"WITH folded AS (
               DELETE FROM rtp_late WHERE day < $1 RETURNING *
           ),
           sums AS (
               INSERT INTO rtp_daily AS d (day, operator_id, currency, game, total_bet, total_win,
                                           rolled_back_bet, rolled_back_win, rounds)
               SELECT day, operator_id, currency, game, sum(total_bet), sum(total_win),
                      sum(rolled_back_bet), sum(rolled_back_win), sum(rounds)
               FROM folded GROUP BY day, operator_id, currency, game
               ON CONFLICT (day, operator_id, currency, game) DO UPDATE
               SET total_bet = d.total_bet + excluded.total_bet,
                   total_win = d.total_win + excluded.total_win,
                   rolled_back_bet = d.rolled_back_bet + excluded.rolled_back_bet,
                   rolled_back_win = d.rolled_back_win + excluded.rolled_back_win,
                   rounds = d.rounds + excluded.rounds
           ),
           presence AS (
               INSERT INTO rtp_daily_players AS p (day, operator_id, currency, chunk, players)
               SELECT day, operator_id, currency, (player_id >> 13)::int, rtp_presence(player_id)
               FROM folded GROUP BY day, operator_id, currency, (player_id >> 13)::int
               ON CONFLICT (day, operator_id, currency, chunk) DO UPDATE
               SET players = p.players | excluded.players
           )
           SELECT count(*) AS "n!" FROM folded"#,
        sealed,
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;

    if days_sealed > 0 || late_folded > 0 {
        tracing::info!(days_sealed, late_folded, sealed_until = ?sealed, "summarised RTP rollups");
    }
    Ok(Summarized { sealed_until: sealed, days_sealed, late_folded, busy: false })
}

/// Runs [`summarize`] every minute until the process ends.
pub fn spawn_maintenance(pool: PgPool) {
    crate::ops::spawn_every(Duration::from_secs(60), "summarise RTP rollups", move || {
        let pool = pool.clone();
        async move { summarize(&pool).await }
    });
}
