//! The tools (`seed`, `seed-ledger`, `summarize`) open only a wallet database
//! that exists: a wrong URL is named, never silently made into a new wallet.

use sqlx::migrate::MigrateDatabase;
use sqlx::{PgPool, Postgres};
use uuid::Uuid;
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
