//! Commands that fill a wallet with data and exercise it, for load tests,
//! benchmarks and end-to-end checks of the reports.
//!
//! - `seed`: many funded players in one statement (and, with `--bonuses`,
//!   an active bonus for each in another).
//! - `simulate`: a provider playing rounds over signed HTTP, reconciled
//!   against the RTP reports; with `--bonuses`, players who sign up, deposit
//!   with a bonus code and play it through, checked against their balances.
//! - `seed_ledger`: months of history written in bulk, for report benchmarks.
//! - `bench`: the load generator (signed provider traffic, HDR latencies,
//!   money conservation).
//! - `bench_events`: many players' event streams held open while bets run:
//!   the service's memory, and each bet's event delay.
//!
//! Here too: [`connect_existing`], how a tool opens the wallet database it
//! works on, and the errors a person meets doing so.

use std::str::FromStr;

use anyhow::Context;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool, Postgres};

pub mod bench;
pub mod bench_events;
pub mod seed;
pub mod seed_ledger;
pub mod simulate;

/// No PostgreSQL answered where the URL points: the one database error a
/// person fixes by starting it or by pointing `DATABASE_URL` elsewhere.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach PostgreSQL at {server} — is it running? set DATABASE_URL")]
pub struct DatabaseUnreachable {
    /// `host:port` or the socket directory; never the credentials.
    pub server: String,
}

/// The server answered, but the named database is not there.
#[derive(Debug, thiserror::Error)]
#[error(
    "database `{database}` does not exist at {server}; start the service once (`wallet serve`) \
     or run `wallet migrate`, or check DATABASE_URL"
)]
pub struct DatabaseMissing {
    pub database: String,
    pub server: String,
}

/// The database exists but no migration was ever applied to it: another
/// application's database, or an empty one.
#[derive(Debug, thiserror::Error)]
#[error(
    "database `{database}` at {server} is not a wallet database (no migrations were ever applied \
     to it); run `wallet migrate` for it, or check DATABASE_URL"
)]
pub struct NotAWalletDatabase {
    pub database: String,
    pub server: String,
}

/// The secret a tool signs with, read as the service reads `HMAC_SECRETS`:
/// comma-separated, empty entries ignored, none at all meaning the
/// development secret `test`. Any of them is accepted, so the first will do.
pub(crate) fn first_secret(secrets: &str) -> Result<String, std::convert::Infallible> {
    Ok(secrets.split(',').find(|s| !s.is_empty()).unwrap_or("test").to_string())
}

/// Where a database URL points, for messages: `host:port`, or the socket
/// directory; never the user's password.
pub fn server_of(database_url: &str) -> String {
    match PgConnectOptions::from_str(database_url) {
        Ok(options) => match options.get_socket() {
            Some(socket) => format!("the socket in {}", socket.display()),
            None => format!("{}:{}", options.get_host(), options.get_port()),
        },
        Err(_) => "the server named in DATABASE_URL".to_string(),
    }
}

/// Whether an error means that no PostgreSQL answered at all (refused,
/// unreachable, unknown host), as opposed to one that answered with a refusal.
pub fn is_unreachable(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Io(_))
}

/// Connects to an existing wallet database and applies its pending
/// migrations, for the tools that work on one (`seed`, `seed-ledger`,
/// `summarize`).
///
/// Unlike `wallet serve` and `wallet migrate`, it never creates the
/// database: a mistyped `DATABASE_URL` would otherwise give a new, empty
/// wallet and a puzzling result instead of an error. Statement logging is
/// off: bulk statements take seconds by design, and the tools print their
/// own timings instead of sqlx's slow-statement warnings.
pub async fn connect_existing(database_url: &str) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(database_url)
        .context("DATABASE_URL is not a valid PostgreSQL URL")?
        .disable_statement_logging();
    let server = server_of(database_url);
    let database = options.get_database().unwrap_or(options.get_username()).to_string();
    let exists = Postgres::database_exists(database_url).await.map_err(|error| {
        if is_unreachable(&error) {
            anyhow::Error::new(error).context(DatabaseUnreachable { server: server.clone() })
        } else {
            anyhow::Error::new(error).context(format!("cannot look up database `{database}` at {server}"))
        }
    })?;
    if !exists {
        return Err(DatabaseMissing { database, server }.into());
    }
    // Two connections: `seed-ledger` summarises on one while it holds the other.
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .with_context(|| format!("cannot connect to database `{database}` at {server}"))?;
    let migrated =
        sqlx::query_scalar!(r#"SELECT to_regclass('_sqlx_migrations') IS NOT NULL AS "migrated!""#)
            .fetch_one(&pool)
            .await?;
    if !migrated {
        pool.close().await;
        return Err(NotAWalletDatabase { database, server }.into());
    }
    sqlx::migrate!().run(&pool).await.context("migrations failed")?;
    Ok(pool)
}
