//! Reconciliation: proves that balances, the ledger, the action registry and
//! the report rollups tell one consistent story, and that the audit trail's
//! hash chain is intact.
//!
//! Every check is one set-based query that returns a line per mismatch, and
//! all of them read one snapshot (`REPEATABLE READ`), so the service may keep
//! taking bets while it runs without producing false alarms. Each check reads
//! its tables in a few sequential passes joined by hashes, so a run costs a
//! few scans of the ledger and the registry, not a lookup per row
//! (docs/BENCHMARKS.md, "Reconciliation on 10M rows").
//!
//! `wallet reconcile` runs it in the foreground (exit status 1 on any
//! mismatch). Over HTTP it takes longer than a request may, so
//! `POST /v1/admin/reconciliation` starts it as a background job ([`runs`])
//! whose report is fetched later.

pub mod runs;

use std::str::FromStr;
use std::time::Instant;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
#[allow(unused_imports)]
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Acquire, ConnectOptions, Connection, PgConnection, Postgres};

use crate::audit::{self, store::Verdict};
use crate::error::{AppError, AppResult};
use crate::http::PathParams;
use crate::staff::{BackOffice, Permission};
use crate::AppState;

use runs::Run;

/// At most this many mismatches of one check are listed (all are counted).
pub const LISTED_PER_CHECK: i64 = 20;

/// How the checks' transaction plans, after its isolation level.
///
/// - `work_mem`: the checks hash or sort whole tables. The registry hashed
///   for a join with the ledger takes 754 MB on 10M rows; split into batches
///   through temporary files at the server's default (4 MB), that check took
///   98 to 235 s, and 8 to 18 s with this. One reconciliation runs at a time,
///   on one connection, so it can afford what the hot path's connections
///   cannot (a parallel hash may take up to this times `hash_mem_multiplier`
///   times the processes that build it: three with two workers).
/// - no index or bitmap scans: every check reads whole tables, and the
///   planner, which assumes tables that fit `effective_cache_size` are
///   cached, chose to walk the ledger's primary key in player order rather
///   than scan and hash it: 3.4M random page reads, 21 to 57 s, where the
///   sequential pass takes 1 to 2 s.
const SETTINGS: &[&str] = &[
    "SET LOCAL work_mem = '256MB'",
    "SET LOCAL enable_indexscan = off",
    "SET LOCAL enable_bitmapscan = off",
];

/// One invariant and the SQL that lists its violations, one `detail` each.
struct Check {
    name: &'static str,
    description: &'static str,
    sql: &'static str,
}

const CHECKS: &[Check] = &[
    Check {
        name: "balance_equals_ledger_sum",
        description: "every player's balance equals the sum of their ledger movements",
        sql: r#"
            SELECT format('player %s (%s): balance %s, ledger movements sum to %s',
                          p.id, p.user_id, p.balance, coalesce(l.total, 0))
            FROM players p
            LEFT JOIN (SELECT player_id, sum(balance_after - balance_before) AS total
                       FROM ledger GROUP BY player_id) l ON l.player_id = p.id
            WHERE p.balance <> coalesce(l.total, 0)"#,
    },
    Check {
        name: "ledger_rows_have_a_player",
        description: "every ledger row belongs to an existing player",
        sql: r#"
            SELECT format('%s ledger rows for unknown player %s', count(*), l.player_id)
            FROM ledger l LEFT JOIN players p ON p.id = l.player_id
            WHERE p.id IS NULL
            GROUP BY l.player_id"#,
    },
    Check {
        name: "balance_chain_is_unbroken",
        description: "entries are numbered 1, 2, 3, … per player, the first starts from 0 \
                      and each starts where the previous one ended",
        sql: r#"
            WITH chain AS (
                SELECT player_id, seq, balance_before,
                       lag(balance_after) OVER w AS previous_after,
                       row_number() OVER w AS position
                FROM ledger
                WINDOW w AS (PARTITION BY player_id ORDER BY seq)
            )
            SELECT format('player %s seq %s: %s', player_id, seq, problem)
            FROM (SELECT player_id, seq, CASE
                    WHEN seq <> position
                        THEN format('expected seq %s (a gap or a duplicate)', position)
                    WHEN previous_after IS NULL AND balance_before <> 0
                        THEN format('the first entry starts from %s, not 0', balance_before)
                    WHEN balance_before <> previous_after
                        THEN format('balance_before %s, but the previous entry ended at %s',
                                    balance_before, previous_after)
                  END AS problem
                  FROM chain) c
            WHERE problem IS NOT NULL"#,
    },
    Check {
        name: "chain_ends_at_the_balance",
        description: "a player's last_seq is their number of entries and the last entry \
                      ends at their balance",
        // One hashed pass: arrays compare element by element, so the greatest
        // [seq, balance_after] is the last entry and what it ends at.
        sql: r#"
            SELECT format('player %s (%s): last_seq %s, %s entries, balance %s, last entry ends at %s',
                          p.id, p.user_id, p.last_seq, coalesce(c.entries, 0), p.balance,
                          coalesce(c.last[2], 0))
            FROM players p
            LEFT JOIN (SELECT player_id, count(*) AS entries, max(ARRAY[seq, balance_after]) AS last
                       FROM ledger GROUP BY player_id) c ON c.player_id = p.id
            WHERE p.last_seq <> coalesce(c.entries, 0)
               OR p.balance <> coalesce(c.last[2], 0)"#,
    },
    Check {
        name: "action_took_effect_once",
        description: "a provider action_id appears in at most one ledger row",
        sql: r#"
            SELECT format('action %s has %s ledger rows', action_id, count(*))
            FROM ledger WHERE action_id IS NOT NULL
            GROUP BY action_id HAVING count(*) > 1"#,
    },
    Check {
        name: "tx_id_is_unique",
        description: "a tx_id names exactly one ledger row",
        sql: r#"
            SELECT format('tx_id %s has %s ledger rows', tx_id, count(*))
            FROM ledger GROUP BY tx_id HAVING count(*) > 1"#,
    },
    Check {
        name: "original_reversed_at_most_once",
        description: "at most one rollback with a non-zero amount or movement per original",
        sql: r#"
            SELECT format('original %s was reversed by %s rollbacks', original_action_id, count(*))
            FROM ledger
            WHERE kind = 'rollback' AND (amount <> 0 OR balance_after <> balance_before)
            GROUP BY original_action_id HAVING count(*) > 1"#,
    },
    Check {
        name: "processed_actions_match_their_ledger_row",
        description: "every processed action has one ledger row with the same tx_id, player, \
                      kind, time, amount and original",
        sql: r#"
            SELECT format('action %s (tx %s): %s', a.action_id, a.tx_id, CASE
                     WHEN l.tx_id IS NULL THEN 'no ledger row with its tx_id'
                     ELSE format('ledger row says player %s, %s of %s at %s, original %s',
                                 l.player_id, l.kind, l.amount, l.created_at,
                                 coalesce(l.original_action_id::text, 'none'))
                   END)
            FROM actions a
            LEFT JOIN ledger l ON l.action_id = a.action_id AND l.tx_id = a.tx_id
            WHERE a.tx_id IS NOT NULL
              AND (l.tx_id IS NULL
                   OR l.player_id <> a.player_id
                   OR l.kind <> a.kind
                   OR l.created_at <> a.processed_at
                   OR (a.kind IN ('bet', 'win') AND l.amount <> a.amount)
                   OR l.original_action_id IS DISTINCT FROM a.original_action_id)"#,
    },
    Check {
        name: "ledger_actions_are_registered",
        description: "every provider ledger row is a processed action in the registry",
        sql: r#"
            SELECT format('ledger row %s (player %s, %s %s) has no processed action',
                          l.tx_id, l.player_id, l.kind, l.action_id)
            FROM ledger l LEFT JOIN actions a ON a.action_id = l.action_id AND a.tx_id = l.tx_id
            WHERE l.action_id IS NOT NULL AND a.action_id IS NULL"#,
    },
    Check {
        name: "rollbacks_name_a_known_original",
        description: "every rollback names a bet, win or placeholder of the same player",
        sql: r#"
            SELECT format('rollback %s of player %s names original %s: %s',
                          l.action_id, l.player_id, l.original_action_id, CASE
                            WHEN o.action_id IS NULL THEN 'not in the registry'
                            WHEN o.player_id <> l.player_id
                                THEN format('which belongs to player %s', o.player_id)
                            ELSE 'which is itself a rollback'
                          END)
            FROM ledger l LEFT JOIN actions o ON o.action_id = l.original_action_id
            WHERE l.kind = 'rollback'
              AND (o.action_id IS NULL OR o.player_id <> l.player_id OR o.kind = 'rollback')"#,
    },
    Check {
        name: "reversals_point_at_their_rollback",
        description: "an action marked reversed names a rollback of it, by the same player",
        sql: r#"
            SELECT format('action %s is marked reversed by %s, %s', a.action_id, a.reversed_by,
                          CASE WHEN r.action_id IS NULL THEN 'which was never processed'
                               ELSE 'which is not a rollback of it by the same player' END)
            FROM actions a LEFT JOIN actions r ON r.action_id = a.reversed_by AND r.tx_id IS NOT NULL
            WHERE a.reversed_by IS NOT NULL
              AND (r.action_id IS NULL
                   OR r.kind <> 'rollback'
                   OR r.original_action_id <> a.action_id
                   OR r.player_id <> a.player_id)"#,
    },
    Check {
        name: "net_effect_of_each_bet_and_win",
        description: "a bet or win not reversed moved its amount (cash and bonus; a win less a \
                      forfeited bonus part) once and no rollback moved it back; a reversed one and \
                      its rollbacks net to zero, but for a bonus part forfeited on the way back",
        // One hashed pass over the ledger sums, per bet or win, its own rows
        // and its rollbacks' rows apart (a rollback's row names its original),
        // then one hash join to the registry. (Written over a materialised CTE
        // of every provider row, read twice, it ran 50 s on 250,000 rows and
        // was cancelled after 5 minutes on 10M.)
        sql: r#"
            SELECT format('%s %s of %s (%s): moved %s%s, its rollbacks moved %s',
                          a.kind, a.action_id, a.amount,
                          CASE WHEN a.reversed_by IS NULL THEN 'live' ELSE 'reversed' END,
                          m.own, CASE WHEN m.own_rows > 1 THEN format(' in %s ledger rows', m.own_rows)
                                      ELSE '' END,
                          m.reversals)
            FROM (SELECT coalesce(original_action_id, action_id) AS action_id,
                         count(*) FILTER (WHERE original_action_id IS NULL) AS own_rows,
                         sum(balance_after - balance_before + bonus_change)
                             FILTER (WHERE original_action_id IS NULL) AS own,
                         coalesce(sum(balance_after - balance_before + bonus_change)
                                      FILTER (WHERE original_action_id IS NOT NULL), 0) AS reversals
                  FROM ledger WHERE action_id IS NOT NULL
                  GROUP BY 1) m
            JOIN actions a ON a.action_id = m.action_id
            WHERE a.kind IN ('bet', 'win')
              AND m.own_rows > 0
              AND CASE WHEN a.reversed_by IS NULL
                       THEN m.own <> CASE a.kind WHEN 'bet' THEN -1 ELSE 1 END
                                     * coalesce(a.cash_part + a.bonus_part, a.amount)
                            OR m.reversals <> 0
                       ELSE abs(m.own + m.reversals) > coalesce(a.bonus_part, 0)
                  END"#,
    },
    Check {
        name: "back_office_movements_match_their_keys",
        description: "every deposit and withdrawal has its idempotency key and every key its \
                      ledger row, with the same balance",
        sql: r#"
            SELECT format('player %s: %s', coalesce(l.player_id, k.player_id), CASE
                     WHEN k.tx_id IS NULL THEN format('%s %s has no idempotency key', l.kind, l.tx_id)
                     WHEN l.tx_id IS NULL THEN format('key %L names missing tx %s',
                                                      k.idempotency_key, k.tx_id)
                     ELSE format('key %L stores balance %s, ledger row %s ends at %s',
                                 k.idempotency_key, k.balance_after, l.tx_id, l.balance_after)
                   END)
            FROM (SELECT * FROM ledger WHERE kind IN ('deposit', 'withdrawal')) l
            FULL JOIN idempotency_keys k ON k.tx_id = l.tx_id AND k.player_id = l.player_id
            WHERE k.tx_id IS NULL OR l.tx_id IS NULL OR k.balance_after <> l.balance_after"#,
    },
    Check {
        name: "rtp_rollups_match_the_actions",
        description: "rtp_hourly equals the bets and wins summed per player, hour and game, \
                      live and reversed apart, in the player's currency and operator",
        sql: r#"
            WITH expected AS (
                SELECT a.player_id, date_trunc('hour', a.processed_at, 'UTC') AS bucket,
                       coalesce(a.game, '') AS game,
                       coalesce(sum(a.amount) FILTER (WHERE a.kind = 'bet' AND a.reversed_by IS NULL), 0) AS total_bet,
                       coalesce(sum(a.amount) FILTER (WHERE a.kind = 'win' AND a.reversed_by IS NULL), 0) AS total_win,
                       coalesce(sum(a.amount) FILTER (WHERE a.kind = 'bet' AND a.reversed_by IS NOT NULL), 0) AS rolled_back_bet,
                       coalesce(sum(a.amount) FILTER (WHERE a.kind = 'win' AND a.reversed_by IS NOT NULL), 0) AS rolled_back_win
                FROM actions a
                WHERE a.kind IN ('bet', 'win')
                GROUP BY 1, 2, 3
            )
            SELECT format('player %s, hour %s, game %L: rollup bet/win/rolled back %s/%s/%s/%s %s of operator %s, actions say %s/%s/%s/%s %s of operator %s',
                          player_id, bucket, game,
                          h.total_bet, h.total_win, h.rolled_back_bet, h.rolled_back_win, h.currency, h.operator_id,
                          e.total_bet, e.total_win, e.rolled_back_bet, e.rolled_back_win, p.currency, p.operator_id)
            FROM expected e
            FULL JOIN rtp_hourly h USING (player_id, bucket, game)
            LEFT JOIN players p ON p.id = player_id
            WHERE coalesce(e.total_bet, 0) <> coalesce(h.total_bet, 0)
               OR coalesce(e.total_win, 0) <> coalesce(h.total_win, 0)
               OR coalesce(e.rolled_back_bet, 0) <> coalesce(h.rolled_back_bet, 0)
               OR coalesce(e.rolled_back_win, 0) <> coalesce(h.rolled_back_win, 0)
               OR (h.currency, h.operator_id) IS DISTINCT FROM (p.currency, p.operator_id)
                  AND h.player_id IS NOT NULL"#,
    },
    Check {
        name: "round_buckets_match_the_live_bets",
        description: "round_buckets counts the bets not rolled back per player, hour, game \
                      and round",
        sql: r#"
            WITH expected AS (
                SELECT player_id, date_trunc('hour', processed_at, 'UTC') AS bucket,
                       coalesce(game, '') AS game, game_id, count(*) AS live_bets
                FROM actions
                WHERE kind = 'bet' AND reversed_by IS NULL AND game_id IS NOT NULL
                GROUP BY 1, 2, 3, 4
            )
            SELECT format('player %s, hour %s, game %L, round %L: %s live bets recorded, %s in the actions',
                          player_id, bucket, game, game_id,
                          coalesce(b.live_bets, 0), coalesce(e.live_bets, 0))
            FROM expected e
            FULL JOIN round_buckets b USING (player_id, bucket, game, game_id)
            WHERE coalesce(e.live_bets, 0) <> coalesce(b.live_bets, 0)"#,
    },
    Check {
        name: "daily_summary_matches_the_rollups",
        description: "for every sealed day, rtp_daily plus the journal rtp_late equals its \
                      rtp_hourly rows summed per operator, currency and game",
        sql: r#"
            WITH sealed AS (SELECT coalesce(until, '-infinity') AS until FROM rtp_sealed),
            expected AS (
                SELECT date_trunc('day', bucket, 'UTC') AS day, operator_id, currency, game,
                       sum(total_bet) AS total_bet, sum(total_win) AS total_win,
                       sum(rolled_back_bet) AS rolled_back_bet, sum(rolled_back_win) AS rolled_back_win,
                       sum(rounds) AS rounds
                FROM rtp_hourly WHERE bucket < (SELECT until FROM sealed)
                GROUP BY 1, 2, 3, 4
            ),
            summarised AS (
                SELECT day, operator_id, currency, game, sum(total_bet) AS total_bet,
                       sum(total_win) AS total_win, sum(rolled_back_bet) AS rolled_back_bet,
                       sum(rolled_back_win) AS rolled_back_win, sum(rounds) AS rounds
                FROM (SELECT day, operator_id, currency, game, total_bet, total_win, rolled_back_bet,
                             rolled_back_win, rounds FROM rtp_daily
                      UNION ALL
                      SELECT day, operator_id, currency, game, total_bet, total_win, rolled_back_bet,
                             rolled_back_win, rounds FROM rtp_late
                      WHERE day < (SELECT until FROM sealed)) AS parts
                GROUP BY 1, 2, 3, 4
            )
            SELECT format('day %s, operator %s, %s, game %L: summary bet/win/rolled back/rounds %s/%s/%s/%s/%s, hourly rollups say %s/%s/%s/%s/%s',
                          day, operator_id, currency, game,
                          s.total_bet, s.total_win, s.rolled_back_bet, s.rolled_back_win, s.rounds,
                          e.total_bet, e.total_win, e.rolled_back_bet, e.rolled_back_win, e.rounds)
            FROM expected e
            FULL JOIN summarised s USING (day, operator_id, currency, game)
            WHERE (e.total_bet, e.total_win, e.rolled_back_bet, e.rolled_back_win, e.rounds)
                  IS DISTINCT FROM (s.total_bet, s.total_win, s.rolled_back_bet, s.rolled_back_win, s.rounds)"#,
    },
    Check {
        name: "daily_players_match_the_rollups",
        description: "for every sealed day, operator and currency, the players in its bitmaps \
                      and journal are the players of its rtp_hourly rows",
        sql: r#"
            WITH sealed AS (SELECT coalesce(until, '-infinity') AS until FROM rtp_sealed),
            expected AS (
                SELECT DISTINCT date_trunc('day', bucket, 'UTC') AS day, operator_id, currency, player_id
                FROM rtp_hourly WHERE bucket < (SELECT until FROM sealed)
            ),
            summarised AS (
                SELECT p.day, p.operator_id, p.currency, (p.chunk::int8 << 13) + i AS player_id
                FROM rtp_daily_players p, generate_series(0, 8191) AS i
                WHERE get_bit(p.players, i) = 1
                UNION
                SELECT day, operator_id, currency, player_id FROM rtp_late
                WHERE day < (SELECT until FROM sealed)
            )
            SELECT format('day %s, operator %s, %s: player %s is %s', day, operator_id, currency, player_id,
                          CASE WHEN e.player_id IS NULL THEN 'in the summary but has no rollups'
                               ELSE 'missing from the summary' END)
            FROM expected e
            FULL JOIN summarised s USING (day, operator_id, currency, player_id)
            WHERE e.player_id IS NULL OR s.player_id IS NULL"#,
    },
    Check {
        name: "bonus_balance_equals_ledger_sum",
        description: "every player holds, as the active bonus's balance (0 with none), the sum \
                      of their ledger rows' bonus changes",
        // One pass over the ledger's bonus rows, summed per player (a lookup
        // per player probes every monthly partition: 15 s for 10,000 players).
        sql: r#"
            WITH sums AS (
                SELECT player_id, sum(bonus_change) AS bonus
                FROM ledger WHERE bonus_change <> 0 GROUP BY player_id
            )
            SELECT format('player %s: bonus balance %s, its ledger rows sum to %s',
                          p.id, coalesce((p.bonus).balance, 0), coalesce(l.bonus, 0))
            FROM players p
            LEFT JOIN sums l ON l.player_id = p.id
            WHERE coalesce((p.bonus).balance, 0) <> coalesce(l.bonus, 0)"#,
    },
    Check {
        name: "active_bonus_is_its_grant",
        description: "a wallet's active bonus is an active grant of the player, and every active \
                      grant is its player's active bonus",
        sql: r#"
            SELECT format('player %s holds bonus %s, which is not an active grant of theirs',
                          p.id, (p.bonus).bonus_id)
            FROM players p
            LEFT JOIN bonus_grants g ON g.bonus_id = (p.bonus).bonus_id AND g.player_id = p.id
                                    AND g.status = 'active'
            WHERE (p.bonus).bonus_id IS NOT NULL AND g.bonus_id IS NULL
            UNION ALL
            SELECT format('grant %s is active but player %s holds %s', g.bonus_id, g.player_id,
                          coalesce((p.bonus).bonus_id::text, 'none'))
            FROM bonus_grants g JOIN players p ON p.id = g.player_id
            WHERE g.status = 'active' AND (p.bonus).bonus_id IS DISTINCT FROM g.bonus_id"#,
    },
    Check {
        name: "bonus_wagering_recomputes",
        description: "every bonus's wagered and staked equal its bets' contributions and stakes, \
                      less those rolled back while it was active",
        // A rollback whose ledger row comes after the bonus's end took
        // nothing back (`ended_seq`: where in the player's ledger it ended).
        sql: r#"
            WITH recomputed AS (
                SELECT a.bonus_id, sum(a.wagering) AS wagered, sum(a.amount) AS staked
                FROM actions a
                JOIN bonus_grants g ON g.bonus_id = a.bonus_id
                LEFT JOIN actions r ON r.action_id = a.reversed_by AND r.tx_id IS NOT NULL
                LEFT JOIN ledger rl ON rl.player_id = r.player_id AND rl.created_at = r.processed_at
                                   AND rl.tx_id = r.tx_id
                WHERE a.kind = 'bet' AND a.bonus_id IS NOT NULL
                  AND (r.action_id IS NULL OR rl.seq > g.ended_seq)
                GROUP BY a.bonus_id
            )
            SELECT format('bonus %s (%s): wagered %s of staked %s, its bets say %s of %s',
                          g.bonus_id, g.status, w.wagered, w.staked,
                          coalesce(r.wagered, 0), coalesce(r.staked, 0))
            FROM bonus_grants g
            JOIN players p ON p.id = g.player_id
            CROSS JOIN LATERAL (
                SELECT CASE WHEN g.status = 'active' THEN (p.bonus).wagered ELSE g.wagered END AS wagered,
                       CASE WHEN g.status = 'active' THEN (p.bonus).staked ELSE g.staked END AS staked) w
            LEFT JOIN recomputed r ON r.bonus_id = g.bonus_id
            WHERE (w.wagered, w.staked) IS DISTINCT FROM (coalesce(r.wagered, 0), coalesce(r.staked, 0))"#,
    },
    Check {
        name: "limit_counters_match_the_ledger",
        description: "every limited player's counters equal, for their period, the player's own \
                      deposits and the stakes and wins not rolled back, summed from the ledger",
        sql: r#"
            WITH usage AS (
                SELECT p.id AS player_id, u.period, (u.sums).*
                FROM players p,
                     LATERAL (VALUES ('day', p.day_sums), ('week', p.week_sums), ('month', p.month_sums))
                         AS u (period, sums)
                WHERE num_nulls(u.sums) = 0
            ),
            recomputed AS (
                SELECT u.player_id, u.period,
                       sum(l.amount) FILTER (WHERE l.kind = 'deposit'
                                               AND k.request_fingerprint LIKE 'player:%') AS deposited,
                       sum(l.amount) FILTER (WHERE l.kind = 'bet' AND a.reversed_by IS NULL) AS staked,
                       sum(l.amount) FILTER (WHERE l.kind = 'win' AND a.reversed_by IS NULL) AS won
                FROM usage u
                JOIN ledger l ON l.player_id = u.player_id
                             AND l.created_at >= u.period_start AND l.created_at < u.period_end
                LEFT JOIN actions a ON a.action_id = l.action_id
                LEFT JOIN idempotency_keys k ON k.player_id = l.player_id AND k.tx_id = l.tx_id
                GROUP BY u.player_id, u.period
            )
            SELECT format('player %s, %s from %s: counters deposited %s, staked %s, won %s; \
                           the ledger says %s, %s, %s', u.player_id, u.period, u.period_start,
                          u.deposited, u.staked, u.won,
                          coalesce(r.deposited, 0), coalesce(r.staked, 0), coalesce(r.won, 0))
            FROM usage u
            LEFT JOIN recomputed r USING (player_id, period)
            WHERE (u.deposited, u.staked, u.won)
                  <> (coalesce(r.deposited, 0), coalesce(r.staked, 0), coalesce(r.won, 0))"#,
    },
];
/// What one check found.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckResult {
    pub name: String,
    pub description: String,
    pub mismatches: i64,
    /// The first [`LISTED_PER_CHECK`] mismatches.
    pub examples: Vec<String>,
    /// How long the check's query took.
    pub duration_ms: u64,
}

/// What was checked and what disagreed.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    pub ok: bool,
    pub players: i64,
    pub ledger_rows: i64,
    pub actions: i64,
    /// The sum of all balances: each fits in an `i64`, their sum need not.
    pub total_balance: i128,
    /// How long the whole reconciliation took.
    pub duration_ms: u64,
    pub checks: Vec<CheckResult>,
}

impl Report {
    pub fn mismatches(&self) -> i64 {
        self.checks.iter().map(|c| c.mismatches).sum()
    }
}

/// Runs every check against one consistent snapshot of the database, on one
/// connection (`&PgPool` or `&mut PgConnection`).
pub async fn reconcile<'c>(db: impl Acquire<'c, Database = Postgres>) -> sqlx::Result<Report> {
    let started = Instant::now();
    let mut tx = db.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    for setting in SETTINGS {
        sqlx::query(setting).execute(&mut *tx).await?;
    }
    // Summed as NUMERIC and read as text: the total of millions of balances
    // can exceed an int8.
    let (players, total_balance): (i64, String) =
        sqlx::query_as("SELECT count(*), coalesce(sum(balance), 0)::text FROM players")
            .fetch_one(&mut *tx)
            .await?;
    let total_balance = i128::from_str(&total_balance)
        .map_err(|error| sqlx::Error::Decode(format!("total balance {total_balance}: {error}").into()))?;
    let (ledger_rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM ledger").fetch_one(&mut *tx).await?;
    let (actions,): (i64,) = sqlx::query_as("SELECT count(*) FROM actions").fetch_one(&mut *tx).await?;
    let mut checks = Vec::with_capacity(CHECKS.len());
    for check in CHECKS {
        let check_started = Instant::now();
        // The check lists its mismatches; this counts them all and keeps a few.
        let listed = format!(
            "SELECT m.detail, count(*) OVER () FROM ({}) AS m(detail) LIMIT {LISTED_PER_CHECK}",
            check.sql
        );
        let rows: Vec<(String, i64)> = sqlx::query_as(&listed).fetch_all(&mut *tx).await?;
        checks.push(CheckResult {
            name: check.name.to_string(),
            description: check.description.to_string(),
            mismatches: rows.first().map_or(0, |(_, total)| *total),
            examples: rows.into_iter().map(|(detail, _)| detail).collect(),
            duration_ms: millis(check_started),
        });
    }
    // The audit chain is recomputed in Rust, entry after entry in number
    // order, which is what its primary key is for.
    sqlx::query("SET LOCAL enable_indexscan = on").execute(&mut *tx).await?;
    checks.push(audit_chain(&mut tx).await?);
    tx.commit().await?;
    Ok(Report {
        ok: checks.iter().all(|c| c.mismatches == 0),
        players,
        ledger_rows,
        actions,
        total_balance,
        duration_ms: millis(started),
        checks,
    })
}

/// The audit trail's hash chain, walked from the first entry on the same
/// snapshot as the other checks.
async fn audit_chain(conn: &mut PgConnection) -> sqlx::Result<CheckResult> {
    let started = Instant::now();
    let examples = match audit::store::verify_snapshot(conn).await? {
        Verdict::Intact { .. } => vec![],
        Verdict::Broken { first_bad_seq } => vec![format!(
            "audit entry {first_bad_seq} breaks the hash chain: it, or the chain head, was altered, \
             inserted or removed"
        )],
    };
    Ok(CheckResult {
        name: "audit_chain_verifies".to_string(),
        description: "every audit entry's hash is SHA-256 over the previous hash and its own content, \
                      numbered without gaps up to the chain head"
            .to_string(),
        mismatches: examples.len() as i64,
        examples,
        duration_ms: millis(started),
    })
}

fn millis(since: Instant) -> u64 {
    since.elapsed().as_millis().try_into().unwrap_or(u64::MAX)
}

/// The report as people read it: a summary, then each check, its time and
/// its mismatches.
pub fn render_text(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "reconciled {} players, {} ledger rows, {} actions; balances total {}",
        report.players, report.ledger_rows, report.actions, report.total_balance
    );
    for check in &report.checks {
        let verdict =
            if check.mismatches == 0 { "ok".to_string() } else { format!("{} MISMATCHES", check.mismatches) };
        let seconds = check.duration_ms as f64 / 1000.0;
        let _ = writeln!(out, "  {:<42} {verdict:<16} {seconds:>8.3} s", check.name);
        for example in &check.examples {
            let _ = writeln!(out, "      {example}");
        }
        if check.mismatches > check.examples.len() as i64 {
            let _ = writeln!(out, "      … and {} more", check.mismatches - check.examples.len() as i64);
        }
    }
    let seconds = report.duration_ms as f64 / 1000.0;
    let _ = writeln!(
        out,
        "{} in {seconds:.3} s",
        if report.ok {
            "reconciliation clean".to_string()
        } else {
            format!("reconciliation FAILED: {} mismatches", report.mismatches())
        }
    );
    out
}

/// The back-office endpoints (bearer-protected with the rest of the back office):
///
/// - `POST /v1/admin/reconciliation`: 202 with the run just started, or with
///   the run already going (one at a time, across instances);
/// - `GET /v1/admin/reconciliation/{run_id}`: that run, with its report once
///   it has succeeded (`report.ok` says whether everything agreed);
/// - `GET /v1/admin/reconciliation`: the latest run.
pub fn routes() -> BackOffice {
    use Permission::Reconcile;
    BackOffice::default()
        .route(Method::GET, "/v1/admin/reconciliation", Reconcile, latest_run)
        .route(Method::POST, "/v1/admin/reconciliation", Reconcile, start_run)
        .route(Method::GET, "/v1/admin/reconciliation/{run_id}", Reconcile, one_run)
}

#[utoipa::path(post, path = "/v1/admin/reconciliation", tag = "back office", operation_id = "start_reconciliation",
    responses(
        (status = 202, description = "The run just started, or the one already going.", body = runs::Run),
        (status = 409, description = "A run is starting or finishing; try again.", body = crate::error::ErrorBody, example = json!({"code": 409, "message": "a reconciliation run is starting or finishing; try again"})),
    ))]
async fn start_run(State(state): State<AppState>) -> AppResult<(StatusCode, Json<Run>)> {
    match runs::start(&state.pool).await? {
        Some(run) => Ok((StatusCode::ACCEPTED, Json(run))),
        None => Err(AppError::Conflict("a reconciliation run is starting or finishing; try again".into())),
    }
}

#[utoipa::path(get, path = "/v1/admin/reconciliation", tag = "back office", operation_id = "latest_reconciliation",
    responses((status = 200, description = "The latest run.", body = runs::Run), (status = 404, description = "No such run, or none yet.", body = crate::error::ErrorBody, example = json!({"code": 404, "message": "no such reconciliation run"}))))]
async fn latest_run(State(state): State<AppState>) -> AppResult<Json<Run>> {
    runs::latest(&state.pool).await?.map(Json).ok_or(AppError::ReconciliationRunNotFound)
}

#[utoipa::path(get, path = "/v1/admin/reconciliation/{run_id}", tag = "back office", operation_id = "reconciliation_run",
    params(("run_id" = String, Path, description = "A run's id.")),
    responses((status = 200, description = "The run, with its report once it succeeded.", body = runs::Run), (status = 404, description = "No such run, or none yet.", body = crate::error::ErrorBody, example = json!({"code": 404, "message": "no such reconciliation run"}))))]
async fn one_run(State(state): State<AppState>, PathParams(raw): PathParams<String>) -> AppResult<Json<Run>> {
    // A path that is not a run id names no run, like an id never issued.
    let id = raw.parse::<i64>().map_err(|_| AppError::ReconciliationRunNotFound)?;
    runs::find(&state.pool, id).await?.map(Json).ok_or(AppError::ReconciliationRunNotFound)
}

/// `wallet reconcile`: prints the report; `Ok(false)` when anything disagreed.
///
/// Read-only: it connects to the database named and nothing else, and never
/// creates or migrates one, so a mistyped URL is an error, not a new empty
/// (and vacuously consistent) database.
pub async fn run(database_url: &str, json: bool) -> anyhow::Result<bool> {
    use anyhow::Context;
    let mut conn = connect_existing(database_url).await?;
    let report = reconcile(&mut conn).await.context("reconciliation query failed")?;
    conn.close().await.ok();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_text(&report));
    }
    Ok(report.ok)
}

/// One connection to the database `database_url` names, which must exist.
pub async fn connect_existing(database_url: &str) -> anyhow::Result<PgConnection> {
    use anyhow::Context;
    // Each check takes seconds on a large ledger: the report times them, so
    // sqlx's slow-statement warnings would only repeat the SQL.
    let options = PgConnectOptions::from_str(database_url)
        .context("DATABASE_URL is not a valid Postgres URL")?
        .disable_statement_logging();
    match PgConnection::connect_with(&options).await {
        Ok(conn) => Ok(conn),
        // invalid_catalog_name: the server is there, the database is not.
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("3D000") => {
            let name = options.get_database().unwrap_or(options.get_username());
            anyhow::bail!("database {name:?} does not exist; check DATABASE_URL")
        }
        Err(error) => Err(error).context("cannot connect to the database"),
    }
}
