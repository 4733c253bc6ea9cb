//! The tools (`seed`, `seed-ledger`, `summarize`) open only a wallet database
//! that exists: a wrong URL is named, never silently made into a new wallet.
//! `seed --bonuses` and `simulate --bonuses` leave a wallet that reconciles.

mod common;

use common::*;
use serde_json::json;
use sqlx::migrate::MigrateDatabase;
use sqlx::{PgPool, Postgres};
use uuid::Uuid;
use wallet::domain::{Currency, DEFAULT_OPERATOR};
use wallet::ops::reconcile::reconcile;
use wallet::tools::seed::{seed_bonuses, seed_players};
use wallet::tools::simulate::SimulateArgs;
use wallet::tools::{connect_existing, DatabaseMissing, DatabaseUnreachable, NotAWalletDatabase};

/// A URL on the test server naming a database that does not exist yet.
fn unused_database_url() -> (String, String) {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL (.cargo/config.toml sets one)");
    let (server, _) = base.rsplit_once('/').expect("DATABASE_URL ends in a database name");
    let name = format!("wallet_tools_{}", Uuid::new_v4().simple());
    (format!("{server}/{name}"), name)
}

async fn tables_in(url: &str) -> i64 {
    let pool = PgPool::connect(url).await.unwrap();
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    tables
}

#[tokio::test]
async fn a_missing_database_is_named_and_not_created() {
    let (url, name) = unused_database_url();

    let error = connect_existing(&url).await.expect_err("the database does not exist");

    let missing = error.downcast_ref::<DatabaseMissing>().unwrap_or_else(|| panic!("{error:#}"));
    assert_eq!(missing.database, name);
    let message = error.to_string();
    assert!(message.contains(&format!("database `{name}` does not exist at ")), "{message}");
    assert!(message.contains("wallet migrate"), "{message}");
    assert!(!Postgres::database_exists(&url).await.unwrap(), "{name} was created");
}

#[tokio::test]
async fn a_database_no_migration_was_applied_to_is_refused_and_left_empty() {
    let (url, name) = unused_database_url();
    Postgres::create_database(&url).await.unwrap();

    let error = connect_existing(&url).await.expect_err("not a wallet database");

    assert!(error.downcast_ref::<NotAWalletDatabase>().is_some(), "{error:#}");
    assert!(error.to_string().contains(&format!("`{name}`")), "{error}");
    assert_eq!(tables_in(&url).await, 0, "tables were created in {name}");
    Postgres::force_drop_database(&url).await.unwrap();
}

#[tokio::test]
async fn a_wallet_database_is_opened_with_its_pending_migrations_applied() {
    let (url, _) = unused_database_url();
    Postgres::create_database(&url).await.unwrap();
    let all = sqlx::migrate!();
    let mut first_only = sqlx::migrate!();
    first_only.migrations = all.migrations[..1].to_vec().into();
    let pool = PgPool::connect(&url).await.unwrap();
    first_only.run(&pool).await.unwrap();
    pool.close().await;

    let pool = connect_existing(&url).await.unwrap();

    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, all.migrations.len());
    pool.close().await;
    Postgres::force_drop_database(&url).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_server_is_named_by_host_and_port_without_the_password() {
    let url = "postgres://wallet:hunter2@127.0.0.1:1/wallet";

    let error = connect_existing(url).await.expect_err("nothing listens on port 1");

    let unreachable = error.downcast_ref::<DatabaseUnreachable>().unwrap_or_else(|| panic!("{error:#}"));
    assert_eq!(unreachable.server, "127.0.0.1:1");
    assert_eq!(error.to_string(), "cannot reach PostgreSQL at 127.0.0.1:1 — is it running? set DATABASE_URL");
    assert!(!format!("{error:#} {error:?}").contains("hunter2"), "{error:?}");
}

#[sqlx::test]
async fn seeded_bonuses_are_active_grants_that_reconcile_and_a_bet_plays_with_them(pool: PgPool) {
    let usd = Currency::try_from("USD".to_string()).unwrap();
    assert_eq!(seed_players(&pool, DEFAULT_OPERATOR, "P", 50, 1_000, &usd).await.unwrap(), 50);

    assert_eq!(seed_bonuses(&pool, DEFAULT_OPERATOR, "P", 50, 5_000).await.unwrap(), 50);
    assert_eq!(
        seed_bonuses(&pool, DEFAULT_OPERATOR, "P", 50, 5_000).await.unwrap(),
        0,
        "seeding again gives no second bonus"
    );

    let report = reconcile(&pool).await.unwrap();
    assert!(report.ok, "{report:?}");
    let (active, on_wallets, grants): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM players WHERE (bonus).balance = 5000 AND bonus_rounds AND last_seq = 2),
                (SELECT count(*) FROM players p JOIN bonus_grants g ON g.bonus_id = (p.bonus).bonus_id
                 WHERE g.status = 'active' AND g.kind = 'manual' AND g.idempotency_key = 'seed'),
                (SELECT count(*) FROM ledger WHERE kind = 'bonus_grant' AND bonus_change = 5000 AND seq = 2
                 AND balance_before = 1000 AND balance_after = 1000)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((active, on_wallets, grants), (50, 50, 50));

    // The provider sees cash + bonus; a stake past the cash takes the rest
    // from the bonus and counts toward its wagering.
    let server = TestServer::start(pool.clone()).await;
    let (status, body) =
        server.process(&json!({"user_id": "P7", "currency": "USD", "actions": [bet(id(), 1_500)]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["balance"], 1_000 + 5_000 - 1_500);
    let (cash, bonus, wagered): (i64, i64, i64) =
        sqlx::query_as("SELECT balance, (bonus).balance, (bonus).wagered FROM players WHERE user_id = 'P7'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((cash, bonus, wagered), (0, 4_500, 1_500));
    let report = reconcile(&pool).await.unwrap();
    assert!(report.ok, "{report:?}");
}

#[sqlx::test]
async fn simulated_players_with_bonuses_match_the_service_and_reconcile(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let args = SimulateArgs {
        players: 3,
        rounds: 450,
        concurrency: 3,
        rtp: 0.95,
        url: server.url(""),
        secret: SECRET.to_string(),
        admin_token: ADMIN_TOKEN.to_string(),
        prefix: "sim".to_string(),
        bonuses: true,
    };

    wallet::tools::simulate::run(args).await.unwrap();

    let grants: Vec<(String, String)> =
        sqlx::query_as("SELECT g.kind, g.status FROM bonus_grants g ORDER BY g.created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(grants.len(), 3, "{grants:?}");
    assert!(
        grants.iter().all(
            |(kind, status)| kind == "deposit_match" && matches!(status.as_str(), "active" | "completed")
        ),
        "{grants:?}"
    );
    let report = reconcile(&pool).await.unwrap();
    assert!(report.ok, "{report:?}");
}
