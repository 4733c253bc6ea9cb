//! `wallet seed-ledger`: months of realistic history written straight into
//! the ledger, the action registry and the rollups, for report benchmarks.
//!
//! Players play sessions: one game, 10 to 70 rounds twenty-odd seconds apart,
//! each a bet, a win in 30% of rounds (about 95% RTP), and a rollback of the
//! bet in 2%. Popular players play far more often than the rest. Everything
//! is generated and written by a handful of set-based statements; the result
//! is what the hot path would have written for the same actions: balance
//! chains with per-player `seq`, `actions` with `reversed_by`, and
//! `rtp_hourly`/`round_buckets` equal to the raw ledger.

use std::time::Instant;

use anyhow::{bail, Context};
use chrono::{Months, TimeDelta, Utc};
use sqlx::Connection;

use crate::config::DatabaseArgs;

/// Ledger rows per round on average: a bet, 0.3 wins, 0.02 rollbacks.
const ROWS_PER_ROUND: f64 = 1.32;
/// Rounds per session on average (10 to 70).
const ROUNDS_PER_SESSION: f64 = 40.0;

#[derive(Debug, Clone, clap::Args)]
pub struct SeedLedgerArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Roughly how many bets, wins and rollbacks to write (10,000,000 take
    /// minutes and 5 GB).
    #[arg(long, default_value_t = 1_000_000)]
    pub actions: u64,
    /// Months of history, ending now.
    #[arg(long, default_value_t = 3)]
    pub months: u32,
    /// Players to spread the history over (created as `<prefix>1` …).
    #[arg(long, default_value_t = 10_000)]
    pub players: u64,
    /// Prefix of the new players' user ids; must not be in use yet.
    #[arg(long, default_value = "hist")]
    pub prefix: String,
}

/// Each step of the load, in order; `$…` placeholders are filled by [`run`].
const STEPS: &[(&str, &str)] = &[
    (
        "players",
        "INSERT INTO players (operator_id, user_id, currency)
         SELECT 1, '{prefix}' || g, (ARRAY['EUR', 'USD', 'BTC'])[1 + g % 3]
         FROM generate_series(1, {players}) AS g",
    ),
    (
        "seed players",
        "CREATE TEMP TABLE seed_players AS
         SELECT g AS n, p.id AS player_id, p.currency
         FROM generate_series(1, {players}) AS g
         JOIN players p ON p.operator_id = 1 AND p.user_id = '{prefix}' || g",
    ),
    (
        "sessions",
        "CREATE TEMP TABLE seed_sessions AS
         SELECT s.s, p.player_id, s.game, s.started_at, s.rounds
         FROM (SELECT s, (1 + floor(power(random(), 2) * {players}))::int8 AS n,
                      'game-' || (floor(power(random(), 1.5) * 40))::int AS game,
                      timestamptz '{start}' + random() * (timestamptz '{end}' - timestamptz '{start}'
                                                           - interval '1 hour') AS started_at,
                      (10 + floor(random() * 61))::int AS rounds
               FROM generate_series(1, {sessions}) AS s) AS s
         JOIN seed_players p ON p.n = s.n",
    ),
    (
        "rounds",
        "CREATE TEMP TABLE seed_rounds AS
         SELECT r.*, CASE WHEN NOT r.rolled_back AND random() < 0.3
                          THEN round(r.bet * random() * 6.333)::int8 END AS win
         FROM (SELECT s.player_id, s.game, s.s || '-' || i AS game_id,
                      s.started_at + i * interval '20 seconds' + random() * interval '8 seconds' AS bet_at,
                      (10 * (1 + floor(random() * 100)))::int8 AS bet,
                      random() < 0.02 AS rolled_back
               FROM seed_sessions s, generate_series(0, s.rounds - 1) AS i) AS r",
    ),
    (
        "entries",
        "CREATE TEMP TABLE seed_entries AS
         SELECT e.*, gen_random_uuid() AS tx_id
         FROM (SELECT player_id, bet_at AS created_at, 'bet'::entry_kind AS kind, bet AS amount,
                      -bet AS change, gen_random_uuid() AS action_id, NULL::uuid AS original,
                      game, game_id, rolled_back
               FROM seed_rounds
               UNION ALL
               SELECT player_id, bet_at + interval '2 seconds', 'win', win, win,
                      gen_random_uuid(), NULL, game, game_id, false
               FROM seed_rounds WHERE win IS NOT NULL) AS e",
    ),
    (
        "rollbacks",
        "INSERT INTO seed_entries
         SELECT player_id, created_at + interval '5 seconds', 'rollback', amount, amount,
                gen_random_uuid(), action_id, game, game_id, false, gen_random_uuid()
         FROM seed_entries WHERE rolled_back",
    ),
    (
        "deposits",
        "CREATE TEMP TABLE seed_deposits AS
         SELECT p.player_id, 100000 + coalesce(b.bets, 0) AS amount
         FROM seed_players p
         LEFT JOIN (SELECT player_id, sum(amount) AS bets FROM seed_entries
                    WHERE kind = 'bet' GROUP BY player_id) AS b ON b.player_id = p.player_id",
    ),
    (
        "ledger deposits",
        // Ordinary back-office deposits: a ledger row and its idempotency key.
        "WITH funded AS (SELECT player_id, amount, gen_random_uuid() AS tx_id FROM seed_deposits),
              keys AS (
                INSERT INTO idempotency_keys (player_id, idempotency_key, request_fingerprint,
                                              tx_id, balance_after)
                SELECT player_id, 'seed', 'deposit:' || amount, tx_id, amount FROM funded)
         INSERT INTO ledger (player_id, seq, created_at, tx_id, kind, amount, balance_before,
                             balance_after)
         SELECT player_id, 1, timestamptz '{start}' - interval '1 hour', tx_id,
                'deposit', amount, 0, amount
         FROM funded",
    ),
    (
        "ledger",
        // In time order, as the service appends it (the BRIN index relies on it).
        "INSERT INTO ledger (player_id, seq, created_at, tx_id, kind, amount, balance_before,
                             balance_after, action_id, original_action_id, game, game_id)
         SELECT x.player_id, x.seq, x.created_at, x.tx_id, x.kind, x.amount,
                d.amount + x.running - x.change, d.amount + x.running,
                x.action_id, x.original, x.game, x.game_id
         FROM (SELECT e.*, 1 + row_number() OVER w AS seq, sum(e.change) OVER w AS running
               FROM seed_entries e
               WINDOW w AS (PARTITION BY e.player_id ORDER BY e.created_at, e.kind
                            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) AS x
         JOIN seed_deposits d ON d.player_id = x.player_id
         ORDER BY x.created_at",
    ),
    (
        "actions",
        "INSERT INTO actions (action_id, player_id, kind, amount, original_action_id, tx_id,
                              processed_at, game, game_id, reversed_by)
         SELECT e.action_id, e.player_id, e.kind,
                CASE WHEN e.kind = 'rollback' THEN NULL ELSE e.amount END,
                e.original, e.tx_id, e.created_at, e.game, e.game_id, r.action_id
         FROM seed_entries e
         LEFT JOIN seed_entries r ON r.original = e.action_id",
    ),
    (
        "rtp_hourly",
        "INSERT INTO rtp_hourly (player_id, bucket, game, currency, operator_id, total_bet,
                                 total_win, rolled_back_bet, rolled_back_win, rounds)
         SELECT e.player_id, date_trunc('hour', e.created_at, 'UTC'), e.game, p.currency, p.operator_id,
                coalesce(sum(e.amount) FILTER (WHERE e.kind = 'bet' AND NOT e.rolled_back), 0),
                coalesce(sum(e.amount) FILTER (WHERE e.kind = 'win'), 0),
                coalesce(sum(e.amount) FILTER (WHERE e.kind = 'bet' AND e.rolled_back), 0),
                0,
                count(DISTINCT e.game_id) FILTER (WHERE e.kind = 'bet' AND NOT e.rolled_back)
         FROM seed_entries e
         JOIN players p ON p.id = e.player_id
         WHERE e.kind IN ('bet', 'win')
         GROUP BY 1, 2, 3, 4, 5",
    ),
    (
        "round_buckets",
        "INSERT INTO round_buckets (player_id, bucket, game, game_id, live_bets, split)
         SELECT player_id, bucket, game, game_id, live_bets,
                count(*) OVER (PARTITION BY player_id, game_id) > 1
         FROM (SELECT player_id, date_trunc('hour', created_at, 'UTC') AS bucket, game, game_id,
                      count(*) FILTER (WHERE NOT rolled_back) AS live_bets
               FROM seed_entries WHERE kind = 'bet'
               GROUP BY 1, 2, 3, 4) AS b",
    ),
    (
        "balances",
        "UPDATE players p
         SET balance = d.amount + coalesce(t.change, 0), last_seq = 1 + coalesce(t.entries, 0)
         FROM seed_deposits d
         LEFT JOIN (SELECT player_id, sum(change) AS change, count(*) AS entries
                    FROM seed_entries GROUP BY player_id) AS t ON t.player_id = d.player_id
         WHERE p.id = d.player_id",
    ),
];

pub async fn run(args: SeedLedgerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.players > 0, "--players must be at least 1");
    anyhow::ensure!(args.months > 0, "--months must be at least 1");
    anyhow::ensure!(
        args.prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "--prefix may hold letters, digits, '-' and '_' only"
    );
    let pool = super::connect_existing(&args.database.database_url).await?;
    let end = Utc::now();
    let start = end.checked_sub_months(Months::new(args.months)).context("--months is too far back")?;
    crate::ledger::partitions::ensure_range(&pool, start - TimeDelta::days(1), end).await?;
    crate::ledger::partitions::ensure_ahead(&pool).await?;
    let taken = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM players WHERE operator_id = 1 AND user_id = $1 || '1'"#,
        args.prefix
    )
    .fetch_one(&pool)
    .await?;
    if taken > 0 {
        bail!("players with prefix {:?} exist already; choose another --prefix", args.prefix);
    }

    let rounds = (args.actions as f64 / ROWS_PER_ROUND).ceil();
    let sessions = (rounds / ROUNDS_PER_SESSION).ceil().max(1.0) as u64;
    let fill = |sql: &str| {
        sql.replace("{prefix}", &args.prefix)
            .replace("{players}", &args.players.to_string())
            .replace("{sessions}", &sessions.to_string())
            .replace("{start}", &start.to_rfc3339())
            .replace("{end}", &end.to_rfc3339())
    };

    let mut conn = pool.acquire().await?;
    // A bulk load of derived data: losing it in a crash only means loading
    // it again, so it need not wait for each WAL flush.
    sqlx::raw_sql("SET synchronous_commit = off; SET work_mem = '256MB'; SET maintenance_work_mem = '512MB'")
        .execute(&mut *conn)
        .await?;
    let started = Instant::now();
    let mut written = 0;
    let mut tx = conn.begin().await?;
    for (name, sql) in STEPS {
        let step = Instant::now();
        let sql = fill(sql);
        let rows = sqlx::raw_sql(&sql)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("step {name}"))?
            .rows_affected();
        println!("{name:<16} {rows:>12} rows {:>10.1?}", step.elapsed());
        if *name == "ledger" {
            written = rows;
        }
    }
    tx.commit().await?;
    // The history is in the past: seal its days into the daily summary.
    let step = Instant::now();
    let summarized = crate::reports::summary::summarize(&pool).await.context("step summarize")?;
    println!("{:<16} {:>12} days {:>10.1?}", "summarize", summarized.days_sealed, step.elapsed());
    // What autovacuum would do next, done now so that benchmarks see a settled
    // table: statistics, the visibility map, and summarised BRIN ranges.
    let step = Instant::now();
    sqlx::raw_sql("VACUUM (ANALYZE) ledger, actions, rtp_hourly, round_buckets, players, rtp_daily, rtp_daily_players, rtp_late")
        .execute(&mut *conn)
        .await
        .context("step vacuum")?;
    println!("{:<16} {:>12}      {:>10.1?}", "vacuum", "", step.elapsed());
    drop(conn);
    println!(
        "wrote {written} bets, wins and rollbacks for {} players over {} month{} in {:.1?}",
        args.players,
        args.months,
        if args.months == 1 { "" } else { "s" },
        started.elapsed()
    );
    pool.close().await;
    Ok(())
}
