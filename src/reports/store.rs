//! The report queries. Each combines three exact parts (see docs/REPORTS.md):
//!
//! 1. whole hours of the window, summed from `rtp_hourly`;
//! 2. the partial hours at its edges, read from the raw ledger, with the
//!    rolled-back state looked up per row in the small index of rolled-back
//!    actions (a join, or an EXISTS, may be planned as a hash of all of them);
//! 3. distinct rounds: `rtp_hourly.rounds` counts a round once per (hour,
//!    game) it is live in, so the excess of the few `split` rounds is taken
//!    off, and an edge round is added only if no whole hour counted it.
//!
//! Casino and games read sealed whole days from the daily summary instead
//! (`rtp_daily`, its journal `rtp_late` and the presence bitmaps
//! `rtp_daily_players`; see `summary.rs`), and the rest of the whole hours
//! from `rtp_hourly`.
//!
//! Every query reads one operator's rows only: the players it joins are that
//! operator's, and every rollup row carries its player's operator.
//!
//! Money is summed as NUMERIC and read as `i128`: one hour of one player can
//! pass BIGINT's range on legitimate play, a billion-row ledger certainly can.
//!
//! Bind order everywhere: `$1` from, `$2` to, `$3` hours_from, `$4` hours_to,
//! `$5` currency (or NULL), then for casino and games `$6` days_from, `$7`
//! days_to, and for casino `$8` the operator.

use rust_decimal::Decimal;
use sqlx::PgPool;

use super::window::Window;
use crate::error::AppResult;

/// The [`Totals`] of a query's row, whatever the row's type: every report
/// query names its sums alike.
macro_rules! totals {
    ($row:expr) => {
        Totals {
            rounds: $row.rounds,
            total_bet: minor_units($row.total_bet),
            total_win: minor_units($row.total_win),
            rolled_back_bet: minor_units($row.rolled_back_bet),
            rolled_back_win: minor_units($row.rolled_back_win),
        }
    };
}

/// A NUMERIC sum of minor units as an integer. Sums of integers have no
/// fraction; `i128` holds every value a NUMERIC decodes to here.
fn minor_units(sum: Decimal) -> i128 {
    let whole = sum.trunc();
    whole.mantissa() / 10i128.pow(whole.scale())
}

/// Sums of one report row, before the ratio is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub rounds: i64,
    pub total_bet: i128,
    pub total_win: i128,
    pub rolled_back_bet: i128,
    pub rolled_back_win: i128,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserTotals {
    pub user_id: String,
    pub currency: String,
    pub totals: Totals,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasinoTotals {
    pub currency: String,
    pub users: i64,
    pub totals: Totals,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GameTotals {
    /// '' when the provider sent no game.
    pub game: String,
    pub currency: String,
    pub totals: Totals,
}

/// One page of the per-player report, ordered by `user_id` (one currency per
/// player), starting after `after`. Fetches up to `limit` rows.
///
/// The page walks players in `user_id` order and stops after `limit` with
/// activity, so its cost is the rollup rows of those players, not of the
/// window.
pub async fn users(
    pool: &PgPool,
    operator: i16,
    window: &Window,
    currency: Option<&str>,
    user_id: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> AppResult<Vec<UserTotals>> {
    let rows = sqlx::query!(
        r#"
        WITH page AS (
            SELECT p.id, p.user_id, p.currency
            FROM players p
            WHERE p.operator_id = $6
              AND ($7::text IS NULL OR p.user_id = $7)
              AND ($5::text IS NULL OR p.currency = $5)
              AND ($8::text IS NULL OR p.user_id > $8)
              -- Probed per player, in user_id order, until the page is full.
              -- OFFSET 0 keeps the planner from turning each test into a hash
              -- of every player active in the window, which would make a page
              -- cost as much as the whole window.
              AND (EXISTS (SELECT 1 FROM rtp_hourly h
                           WHERE h.player_id = p.id AND h.bucket >= $3 AND h.bucket < $4
                           OFFSET 0)
                   OR EXISTS (SELECT 1 FROM ledger l
                              WHERE l.player_id = p.id AND l.kind IN ('bet', 'win')
                                AND l.created_at >= $1 AND l.created_at < $3
                              OFFSET 0)
                   OR EXISTS (SELECT 1 FROM ledger l
                              WHERE l.player_id = p.id AND l.kind IN ('bet', 'win')
                                AND l.created_at >= $4 AND l.created_at < $2
                              OFFSET 0))
            ORDER BY p.user_id
            LIMIT $9
        )
        SELECT page.user_id, page.currency,
               (hourly.rounds - split.extra + edge.rounds)::int8 AS "rounds!",
               (hourly.bet + edge.bet) AS "total_bet!",
               (hourly.win + edge.win) AS "total_win!",
               (hourly.rb_bet + edge.rb_bet) AS "rolled_back_bet!",
               (hourly.rb_win + edge.rb_win) AS "rolled_back_win!"
        FROM page
        CROSS JOIN LATERAL (
            SELECT coalesce(sum(h.total_bet), 0) AS bet, coalesce(sum(h.total_win), 0) AS win,
                   coalesce(sum(h.rolled_back_bet), 0) AS rb_bet,
                   coalesce(sum(h.rolled_back_win), 0) AS rb_win,
                   coalesce(sum(h.rounds), 0) AS rounds
            FROM rtp_hourly h
            WHERE h.player_id = page.id AND h.bucket >= $3 AND h.bucket < $4
        ) AS hourly
        -- A round live in n (hour, game) rows of the window was counted n times.
        CROSS JOIN LATERAL (
            SELECT count(*) - count(DISTINCT b.game_id) AS extra
            FROM round_buckets b
            WHERE b.player_id = page.id AND b.bucket >= $3 AND b.bucket < $4
              AND b.split AND b.live_bets > 0
        ) AS split
        CROSS JOIN LATERAL (
            SELECT coalesce(sum(e.amount) FILTER (WHERE e.kind = 'bet' AND NOT e.rolled_back), 0) AS bet,
                   coalesce(sum(e.amount) FILTER (WHERE e.kind = 'win' AND NOT e.rolled_back), 0) AS win,
                   coalesce(sum(e.amount) FILTER (WHERE e.kind = 'bet' AND e.rolled_back), 0) AS rb_bet,
                   coalesce(sum(e.amount) FILTER (WHERE e.kind = 'win' AND e.rolled_back), 0) AS rb_win,
                   -- Edge rounds that no whole hour of the window has a live bet of.
                   count(DISTINCT CASE
                       WHEN e.kind = 'bet' AND NOT e.rolled_back AND e.game_id IS NOT NULL
                        AND NOT EXISTS (SELECT 1 FROM round_buckets b
                                        WHERE b.player_id = page.id AND b.game_id = e.game_id
                                          AND b.bucket >= $3 AND b.bucket < $4
                                          AND b.live_bets > 0)
                       THEN e.game_id END) AS rounds
            FROM (SELECT l.kind, l.amount, l.game_id,
                         coalesce((SELECT true FROM actions a
                                   WHERE a.action_id = l.action_id AND a.reversed_by IS NOT NULL),
                                  false) AS rolled_back
                  FROM ledger l
                  WHERE l.player_id = page.id AND l.kind IN ('bet', 'win')
                    AND ((l.created_at >= $1 AND l.created_at < $3)
                         OR (l.created_at >= $4 AND l.created_at < $2))) AS e
        ) AS edge
        ORDER BY page.user_id
        "#,
        window.from,
        window.to,
        window.hours_from,
        window.hours_to,
        currency,
        operator,
        user_id,
        after,
        limit,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| UserTotals { user_id: r.user_id, currency: r.currency, totals: totals!(r) })
        .collect())
}

/// One row per currency of `operator`.
pub async fn casino(
    pool: &PgPool,
    operator: i16,
    window: &Window,
    currency: Option<&str>,
) -> AppResult<Vec<CasinoTotals>> {
    let rows = sqlx::query!(
        r#"
        WITH span AS (
            -- The sealed whole days, [$6, sealed), are read from the daily summary.
            SELECT greatest($6::timestamptz, least($7::timestamptz, coalesce(s.until, '-infinity')))
                       AS sealed
            FROM rtp_sealed s
        ),
        hourly AS (
            SELECT h.player_id, h.currency, h.total_bet, h.total_win, h.rolled_back_bet,
                   h.rolled_back_win, h.rounds
            FROM rtp_hourly h
            WHERE h.operator_id = $8
              AND ((h.bucket >= $3 AND h.bucket < $6)
                   OR (h.bucket >= (SELECT sealed FROM span) AND h.bucket < $4))
              AND ($5::text IS NULL OR h.currency = $5)
        ),
        late AS (
            SELECT l.* FROM rtp_late l
            WHERE l.operator_id = $8 AND l.day >= $6 AND l.day < (SELECT sealed FROM span)
              AND ($5::text IS NULL OR l.currency = $5)
        ),
        stored_players AS (
            SELECT p.currency, p.chunk, bit_or(p.players) AS players
            FROM rtp_daily_players p
            WHERE p.operator_id = $8 AND p.day >= $6 AND p.day < (SELECT sealed FROM span)
              AND ($5::text IS NULL OR p.currency = $5)
            GROUP BY p.currency, p.chunk
        ),
        edge AS MATERIALIZED (
            SELECT l.player_id, l.kind, l.amount, l.game_id,
                   -- A scalar subquery is probed row by row; an EXISTS may be
                   -- turned into a hash of every rolled-back action there is.
                   coalesce((SELECT true FROM actions a
                             WHERE a.action_id = l.action_id AND a.reversed_by IS NOT NULL),
                            false) AS rolled_back
            FROM ledger l
            WHERE l.kind IN ('bet', 'win')
              AND ((l.created_at >= $1 AND l.created_at < $3)
                   OR (l.created_at >= $4 AND l.created_at < $2))
        ),
        edge_players AS (
            SELECT p.id AS player_id, p.currency FROM players p
            WHERE p.id = ANY (ARRAY(SELECT DISTINCT player_id FROM edge))
              AND p.operator_id = $8 AND ($5::text IS NULL OR p.currency = $5)
        ),
        -- Each part: currency, users, bet, win, rolled back bet and win, rounds.
        parts AS (
            SELECT currency, 0::int8 AS users, sum(total_bet) AS bet, sum(total_win) AS win,
                   sum(rolled_back_bet) AS rb_bet, sum(rolled_back_win) AS rb_win,
                   sum(rounds) AS rounds
            FROM hourly GROUP BY currency
            UNION ALL
            SELECT d.currency, 0, sum(d.total_bet), sum(d.total_win), sum(d.rolled_back_bet),
                   sum(d.rolled_back_win), sum(d.rounds)
            FROM rtp_daily d
            WHERE d.operator_id = $8 AND d.day >= $6 AND d.day < (SELECT sealed FROM span)
              AND ($5::text IS NULL OR d.currency = $5)
            GROUP BY d.currency
            UNION ALL
            SELECT currency, 0, sum(total_bet), sum(total_win), sum(rolled_back_bet),
                   sum(rolled_back_win), sum(rounds)
            FROM late GROUP BY currency
            UNION ALL
            -- Players of the sealed days.
            SELECT currency, sum(bit_count(players)), 0, 0, 0, 0, 0
            FROM stored_players GROUP BY currency
            UNION ALL
            -- Players of the other parts that the sealed days' bitmaps do not hold.
            SELECT o.currency, count(*), 0, 0, 0, 0, 0
            FROM (SELECT currency, player_id FROM hourly
                  UNION SELECT currency, player_id FROM late
                  UNION SELECT currency, player_id FROM edge_players) AS o
            LEFT JOIN stored_players s ON s.currency = o.currency AND s.chunk = (o.player_id >> 13)::int
            WHERE s.players IS NULL OR get_bit(s.players, (o.player_id & 8191)::int) = 0
            GROUP BY o.currency
            UNION ALL
            -- A round live in n (hour, game) rows of the window was counted n times.
            SELECT p.currency, 0, 0, 0, 0, 0,
                   -(count(*) - count(DISTINCT (b.player_id, b.game_id)))
            FROM round_buckets b
            JOIN players p ON p.id = b.player_id
            WHERE b.split AND b.live_bets > 0 AND b.bucket >= $3 AND b.bucket < $4
              AND p.operator_id = $8 AND ($5::text IS NULL OR p.currency = $5)
            GROUP BY p.currency
            UNION ALL
            SELECT p.currency, 0,
                   coalesce(sum(e.amount) FILTER (WHERE e.kind = 'bet' AND NOT e.rolled_back), 0),
                   coalesce(sum(e.amount) FILTER (WHERE e.kind = 'win' AND NOT e.rolled_back), 0),
                   coalesce(sum(e.amount) FILTER (WHERE e.kind = 'bet' AND e.rolled_back), 0),
                   coalesce(sum(e.amount) FILTER (WHERE e.kind = 'win' AND e.rolled_back), 0),
                   0
            FROM edge e JOIN edge_players p USING (player_id)
            GROUP BY p.currency
            UNION ALL
            -- Edge rounds that no whole hour of the window has a live bet of.
            SELECT r.currency, 0, 0, 0, 0, 0, count(*)
            FROM (SELECT DISTINCT p.currency, e.player_id, e.game_id
                  FROM edge e JOIN edge_players p USING (player_id)
                  WHERE e.kind = 'bet' AND NOT e.rolled_back AND e.game_id IS NOT NULL) AS r
            WHERE NOT EXISTS (SELECT 1 FROM round_buckets b
                              WHERE b.player_id = r.player_id AND b.game_id = r.game_id
                                AND b.bucket >= $3 AND b.bucket < $4 AND b.live_bets > 0)
            GROUP BY r.currency
        )
        SELECT currency AS "currency!", sum(users)::int8 AS "users!",
               sum(rounds)::int8 AS "rounds!",
               sum(bet) AS "total_bet!", sum(win) AS "total_win!",
               sum(rb_bet) AS "rolled_back_bet!", sum(rb_win) AS "rolled_back_win!"
        FROM parts
        GROUP BY currency
        ORDER BY currency
        "#,
        window.from,
        window.to,
        window.hours_from,
        window.hours_to,
        currency,
        window.days_from,
        window.days_to,
        operator,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| CasinoTotals { currency: r.currency, users: r.users, totals: totals!(r) })
        .collect())
}

/// One page of `operator`'s per-game report, ordered by (game, currency),
/// starting after `after`. Fetches up to `limit` rows.
pub async fn games(
    pool: &PgPool,
    operator: i16,
    window: &Window,
    currency: Option<&str>,
    after: Option<(&str, &str)>,
    limit: i64,
) -> AppResult<Vec<GameTotals>> {
    let rows = sqlx::query!(
        r#"
        WITH span AS (
            -- The sealed whole days, [$6, sealed), are read from the daily summary.
            SELECT greatest($6::timestamptz, least($7::timestamptz, coalesce(s.until, '-infinity')))
                       AS sealed
            FROM rtp_sealed s
        ),
        edge AS MATERIALIZED (
            SELECT l.player_id, coalesce(l.game, '') AS game, l.kind, l.amount, l.game_id,
                   -- A scalar subquery is probed row by row; an EXISTS may be
                   -- turned into a hash of every rolled-back action there is.
                   coalesce((SELECT true FROM actions a
                             WHERE a.action_id = l.action_id AND a.reversed_by IS NOT NULL),
                            false) AS rolled_back
            FROM ledger l
            WHERE l.kind IN ('bet', 'win')
              AND ((l.created_at >= $1 AND l.created_at < $3)
                   OR (l.created_at >= $4 AND l.created_at < $2))
        ),
        edge_players AS (
            SELECT p.id AS player_id, p.currency FROM players p
            WHERE p.id = ANY (ARRAY(SELECT DISTINCT player_id FROM edge))
              AND p.operator_id = $11 AND ($5::text IS NULL OR p.currency = $5)
        ),
        parts AS (
            SELECT h.game, h.currency, sum(h.total_bet) AS bet, sum(h.total_win) AS win,
                   sum(h.rolled_back_bet) AS rb_bet, sum(h.rolled_back_win) AS rb_win,
                   sum(h.rounds) AS rounds
            FROM rtp_hourly h
            WHERE h.operator_id = $11
              AND ((h.bucket >= $3 AND h.bucket < $6)
                   OR (h.bucket >= (SELECT sealed FROM span) AND h.bucket < $4))
              AND ($5::text IS NULL OR h.currency = $5)
            GROUP BY h.game, h.currency
            UNION ALL
            SELECT d.game, d.currency, sum(d.total_bet), sum(d.total_win), sum(d.rolled_back_bet),
                   sum(d.rolled_back_win), sum(d.rounds)
            FROM (SELECT game, currency, total_bet, total_win, rolled_back_bet, rolled_back_win, rounds
                  FROM rtp_daily
                  WHERE operator_id = $11 AND day >= $6 AND day < (SELECT sealed FROM span)
                  UNION ALL
                  SELECT game, currency, total_bet, total_win, rolled_back_bet, rolled_back_win, rounds
                  FROM rtp_late
                  WHERE operator_id = $11 AND day >= $6 AND day < (SELECT sealed FROM span)) AS d
            WHERE $5::text IS NULL OR d.currency = $5
            GROUP BY d.game, d.currency
            UNION ALL
            -- A round live in n hours of the window was counted n times.
            SELECT b.game, p.currency, 0, 0, 0, 0,
                   -(count(*) - count(DISTINCT (b.player_id, b.game_id)))
            FROM round_buckets b
            JOIN players p ON p.id = b.player_id
            WHERE b.split AND b.live_bets > 0 AND b.bucket >= $3 AND b.bucket < $4
              AND p.operator_id = $11 AND ($5::text IS NULL OR p.currency = $5)
            GROUP BY b.game, p.currency
            UNION ALL
            SELECT e.game, p.currency,
                   coalesce(sum(e.amount) FILTER (WHERE e.kind = 'bet' AND NOT e.rolled_back), 0),
                   coalesce(sum(e.amount) FILTER (WHERE e.kind = 'win' AND NOT e.rolled_back), 0),
                   coalesce(sum(e.amount) FILTER (WHERE e.kind = 'bet' AND e.rolled_back), 0),
                   coalesce(sum(e.amount) FILTER (WHERE e.kind = 'win' AND e.rolled_back), 0),
                   0
            FROM edge e JOIN edge_players p USING (player_id)
            GROUP BY e.game, p.currency
            UNION ALL
            -- Edge rounds that no whole hour of the window has a live bet of in this game.
            SELECT r.game, r.currency, 0, 0, 0, 0, count(*)
            FROM (SELECT DISTINCT e.game, p.currency, e.player_id, e.game_id
                  FROM edge e JOIN edge_players p USING (player_id)
                  WHERE e.kind = 'bet' AND NOT e.rolled_back AND e.game_id IS NOT NULL) AS r
            WHERE NOT EXISTS (SELECT 1 FROM round_buckets b
                              WHERE b.player_id = r.player_id AND b.game_id = r.game_id
                                AND b.game = r.game
                                AND b.bucket >= $3 AND b.bucket < $4 AND b.live_bets > 0)
            GROUP BY r.game, r.currency
        )
        SELECT game AS "game!", currency AS "currency!",
               sum(rounds)::int8 AS "rounds!",
               sum(bet) AS "total_bet!", sum(win) AS "total_win!",
               sum(rb_bet) AS "rolled_back_bet!", sum(rb_win) AS "rolled_back_win!"
        FROM parts
        WHERE $8::text IS NULL OR (game, currency) > ($8, $9::text)
        GROUP BY game, currency
        ORDER BY game, currency
        LIMIT $10
        "#,
        window.from,
        window.to,
        window.hours_from,
        window.hours_to,
        currency,
        window.days_from,
        window.days_to,
        after.map(|a| a.0),
        after.map(|a| a.1),
        limit,
        operator,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| GameTotals { game: r.game, currency: r.currency, totals: totals!(r) })
        .collect())
}

/// One bucket of one currency in [`series`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketTotals {
    pub start: chrono::DateTime<chrono::Utc>,
    pub currency: String,
    /// `rounds` stays 0: a series counts money, not rounds.
    pub totals: Totals,
}

/// `operator`'s bets and wins in `window`, summed per `bucket` (an hour or a
/// UTC day, binned from 2000-01-01T00:00Z) and currency, optionally of one
/// `game` ('' for actions sent without one). Whole hours come from the
/// rollups, the partial hours at the edges from the ledger, as in [`users`].
/// Buckets without bets or wins are absent. Ordered by start, currency.
pub async fn series(
    pool: &PgPool,
    operator: i16,
    window: &Window,
    bucket_seconds: i32,
    currency: Option<&str>,
    game: Option<&str>,
) -> AppResult<Vec<BucketTotals>> {
    let rows = sqlx::query!(
        r#"
        WITH parts AS (
            SELECT date_bin(make_interval(secs => $6), h.bucket, '2000-01-01T00:00:00Z') AS start,
                   h.currency, sum(h.total_bet) AS bet, sum(h.total_win) AS win,
                   sum(h.rolled_back_bet) AS rb_bet, sum(h.rolled_back_win) AS rb_win
            FROM rtp_hourly h
            WHERE h.operator_id = $7 AND h.bucket >= $3 AND h.bucket < $4
              AND ($5::text IS NULL OR h.currency = $5)
              AND ($8::text IS NULL OR h.game = $8)
            GROUP BY 1, 2
            UNION ALL
            SELECT date_bin(make_interval(secs => $6), e.created_at, '2000-01-01T00:00:00Z'), p.currency,
                   coalesce(sum(e.amount) FILTER (WHERE e.kind = 'bet' AND NOT e.rolled_back), 0),
                   coalesce(sum(e.amount) FILTER (WHERE e.kind = 'win' AND NOT e.rolled_back), 0),
                   coalesce(sum(e.amount) FILTER (WHERE e.kind = 'bet' AND e.rolled_back), 0),
                   coalesce(sum(e.amount) FILTER (WHERE e.kind = 'win' AND e.rolled_back), 0)
            FROM (SELECT l.player_id, l.kind, l.amount, l.created_at,
                         coalesce((SELECT true FROM actions a
                                   WHERE a.action_id = l.action_id AND a.reversed_by IS NOT NULL),
                                  false) AS rolled_back
                  FROM ledger l
                  WHERE l.kind IN ('bet', 'win')
                    AND ($8::text IS NULL OR coalesce(l.game, '') = $8)
                    AND ((l.created_at >= $1 AND l.created_at < $3)
                         OR (l.created_at >= $4 AND l.created_at < $2))) AS e
            JOIN players p ON p.id = e.player_id
            WHERE p.operator_id = $7 AND ($5::text IS NULL OR p.currency = $5)
            GROUP BY 1, 2
        )
        SELECT start AS "start!", currency AS "currency!",
               0::int8 AS "rounds!",
               sum(bet) AS "total_bet!", sum(win) AS "total_win!",
               sum(rb_bet) AS "rolled_back_bet!", sum(rb_win) AS "rolled_back_win!"
        FROM parts
        GROUP BY start, currency
        ORDER BY start, currency
        "#,
        window.from,
        window.to,
        window.hours_from,
        window.hours_to,
        currency,
        f64::from(bucket_seconds),
        operator,
        game,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| BucketTotals { start: r.start, currency: r.currency, totals: totals!(r) })
        .collect())
}
