//! `wallet seed`: many funded players at once, for load tests.

use std::time::Instant;

use anyhow::Context;

use crate::config::DatabaseArgs;
use crate::domain::{Amount, Currency};

#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// How many players: `<prefix>1` … `<prefix>N`.
    #[arg(long, default_value_t = 10_000)]
    pub players: i64,
    /// Starting balance of each player, in minor units (the default lasts
    /// `wallet bench` for hours).
    #[arg(long, default_value_t = 1_000_000_000_000)]
    pub balance: i64,
    /// Currency of every player: 3 to 10 characters of A-Z and 0-9.
    #[arg(long, default_value = "USD")]
    pub currency: String,
    /// Prefix of the user ids. The defaults are the players `wallet bench` plays with.
    #[arg(long, default_value = "P")]
    pub prefix: String,
    /// The operator (code) the players belong to.
    #[arg(long, default_value = "default")]
    pub operator: String,
    /// Give every player deposit, loss and wager limits on the day, week and
    /// month, each of AMOUNT (the largest amount by default, which no bench
    /// reaches): how `scripts/bench-ab` measures what limits cost a bet.
    #[arg(long, value_name = "AMOUNT", num_args = 0..=1, default_missing_value = "1000000000000000")]
    pub limits: Option<i64>,
    /// Give every player an active bonus of AMOUNT (a manual grant of the
    /// campaign `SEED`, made if missing: every category weighs, no max bet,
    /// 1,000× wagering so that no bench completes it, 30 days): how
    /// `scripts/bench-ab` measures what an active bonus costs a bet.
    #[arg(long, value_name = "AMOUNT")]
    pub bonuses: Option<i64>,
}

/// The campaign `wallet seed --bonuses` grants from.
pub const SEED_CAMPAIGN: &str = "SEED";

pub async fn run(args: SeedArgs) -> anyhow::Result<()> {
    let currency = Currency::try_from(args.currency).context("--currency")?;
    let balance = Amount::try_from(args.balance).context("--balance")?;
    anyhow::ensure!(args.players >= 0, "--players must not be negative");
    let pool = super::connect_existing(&args.database.database_url).await?;
    crate::ledger::partitions::ensure_ahead(&pool).await?;
    let operator = sqlx::query_scalar!("SELECT id FROM operators WHERE code = $1", args.operator)
        .fetch_optional(&pool)
        .await?
        .with_context(|| format!("--operator: there is no operator {}", args.operator))?;
    let started = Instant::now();
    let created =
        seed_players(&pool, operator, &args.prefix, args.players, balance.minor_units(), &currency).await?;
    println!(
        "created {created} players ({} existed already) in {:.2?}",
        args.players - created,
        started.elapsed()
    );
    if let Some(amount) = args.limits {
        let amount = Amount::try_from(amount).context("--limits")?;
        let started = Instant::now();
        let limited = seed_limits(&pool, operator, &args.prefix, args.players, amount.minor_units()).await?;
        println!("set 9 limits of {amount} on each of {limited} players in {:.2?}", started.elapsed());
    }
    if let Some(amount) = args.bonuses {
        let amount = Amount::try_from(amount).context("--bonuses")?;
        anyhow::ensure!(amount.minor_units() > 0, "--bonuses must be at least 1");
        let started = Instant::now();
        let granted = seed_bonuses(&pool, operator, &args.prefix, args.players, amount.minor_units()).await?;
        println!(
            "granted a bonus of {amount} ({SEED_CAMPAIGN}) to {granted} players in {:.2?}",
            started.elapsed()
        );
    }
    pool.close().await;
    Ok(())
}

/// Creates players `<prefix>1 … <prefix>n` holding `balance`, each funded by a
/// recorded deposit (seq 1) so the ledger explains every balance. Existing
/// players are left untouched. One statement, so 100,000 players take seconds.
pub async fn seed_players(
    pool: &sqlx::PgPool,
    operator: i16,
    prefix: &str,
    n: i64,
    balance: i64,
    currency: &Currency,
) -> sqlx::Result<i64> {
    let created = sqlx::query_scalar!(
        r#"
        WITH created AS (
            INSERT INTO players (operator_id, user_id, currency, balance, last_seq)
            SELECT $1, $2 || g, $3, $4::int8, CASE WHEN $4::int8 > 0 THEN 1 ELSE 0 END
            FROM generate_series(1, $5::int8) AS g
            ON CONFLICT (operator_id, user_id) DO NOTHING
            RETURNING id, created_at
        ),
        -- Each player is funded by an ordinary back-office deposit: a ledger
        -- row and its idempotency key `seed`, as `POST …/deposits` records it.
        funded AS (
            SELECT id, created_at, gen_random_uuid() AS tx_id FROM created WHERE $4::int8 > 0
        ),
        deposits AS (
            INSERT INTO ledger (player_id, seq, created_at, tx_id, kind, amount,
                                balance_before, balance_after)
            SELECT id, 1, created_at, tx_id, 'deposit', $4::int8, 0, $4::int8
            FROM funded
        ),
        keys AS (
            INSERT INTO idempotency_keys (player_id, idempotency_key, request_fingerprint, tx_id, balance_after)
            SELECT id, 'seed', 'deposit:' || $4::int8, tx_id, $4::int8
            FROM funded
        )
        SELECT count(*) AS "created!" FROM created
        "#,
        operator,
        prefix,
        currency.as_str(),
        balance,
        n,
    )
    .fetch_one(pool)
    .await?;
    Ok(created)
}

/// Sets deposit, loss and wager limits of `amount` on every period for
/// players `<prefix>1 … <prefix>n`, counting what each did so far, in one
/// transaction.
async fn seed_limits(
    pool: &sqlx::PgPool,
    operator: i16,
    prefix: &str,
    n: i64,
    amount: i64,
) -> anyhow::Result<usize> {
    use crate::ledger::limits::{Limit, LimitKind, Period, Usage};

    let mut tx = pool.begin().await?;
    let zone = sqlx::query_scalar!("SELECT config->>'timezone' FROM operators WHERE id = $1", operator)
        .fetch_one(&mut *tx)
        .await?
        .and_then(|zone| zone.parse().ok())
        .unwrap_or(chrono_tz::Tz::UTC);
    let ids = sqlx::query_scalar!(
        r#"SELECT p.id FROM players p JOIN generate_series(1, $3::int8) AS g ON p.user_id = $2 || g
           WHERE p.operator_id = $1 ORDER BY p.id FOR UPDATE"#,
        operator,
        prefix,
        n,
    )
    .fetch_all(&mut *tx)
    .await?;
    let usage = crate::responsible::store::usage_from_ledger(&mut tx, &ids, zone, chrono::Utc::now()).await?;
    let limits: Vec<Limit> = LimitKind::ALL
        .into_iter()
        .flat_map(|kind| Period::ALL.map(|period| (kind, period)))
        .map(|(kind, period)| Limit { kind, period, amount, pending_amount: None, pending_at: None })
        .collect();
    let sums: [Vec<Option<Usage>>; 3] =
        std::array::from_fn(|i| ids.iter().map(|id| usage.get(id).and_then(|u| u[i])).collect());
    sqlx::query!(
        r#"UPDATE players p
           SET limits = $2, day_sums = s.day_sums, week_sums = s.week_sums, month_sums = s.month_sums
           FROM (SELECT unnest($1::int8[]) AS id, unnest($3::period_sums[]) AS day_sums,
                        unnest($4::period_sums[]) AS week_sums, unnest($5::period_sums[]) AS month_sums) AS s
           WHERE p.id = s.id"#,
        &ids,
        sqlx::types::Json(&limits) as _,
        &sums[0] as _,
        &sums[1] as _,
        &sums[2] as _,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ids.len())
}

/// Gives players `<prefix>1 … <prefix>n` who hold no bonus an active bonus
/// of `amount` from the campaign [`SEED_CAMPAIGN`] (made if missing), as a
/// staff grant would, in one statement; answers how many got one.
pub async fn seed_bonuses(
    pool: &sqlx::PgPool,
    operator: i16,
    prefix: &str,
    n: i64,
    amount: i64,
) -> sqlx::Result<i64> {
    let mut tx = pool.begin().await?;
    // An existing SEED campaign keeps its terms: a grant is made with the
    // terms as they stand, as `POST …/bonuses` does.
    let campaign = sqlx::query_scalar!(
        r#"INSERT INTO bonus_campaigns (operator_id, code, kind, match_percent, max_bonus, min_deposit,
                                        wagering_multiplier, contributions, max_bet,
                                        max_conversion_multiplier, valid_days)
           VALUES ($1, $2, 'manual', 0, 0, 0, 1000, '{"other": 100, "slots": 100, "table": 10}',
                   NULL, NULL, 30)
           ON CONFLICT (operator_id, code) DO UPDATE SET code = excluded.code
           RETURNING id"#,
        operator,
        SEED_CAMPAIGN,
    )
    .fetch_one(&mut *tx)
    .await?;
    let granted =
        sqlx::query_file_scalar!("src/tools/seed_bonuses.sql", operator, prefix, n, campaign, amount)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(granted)
}
