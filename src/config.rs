//! Service configuration: environment variables, each overridable by a flag
//! of the same name (`DATABASE_URL` ↔ `--database-url`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;

/// Where the database is; shared by every subcommand that needs one.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Postgres connection URL.
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@localhost:5432/wallet")]
    pub database_url: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Address to listen on; port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "WALLET_ADDR", default_value = "127.0.0.1:8080")]
    pub wallet_addr: SocketAddr,

    /// Comma-separated active provider secrets (defaults to `test` on loopback only).
    #[arg(long, env = "HMAC_SECRETS", value_delimiter = ',', hide_env_values = true)]
    pub hmac_secrets: Option<Vec<String>>,

    /// Back-office bearer token (defaults to `admin` on loopback only).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Database connections in the pool.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: u32,

    /// How long a request waits for a database connection before answering 503.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT_MS", default_value_t = 2000)]
    pub db_acquire_timeout_ms: u64,
}

/// Settings after defaults and safety checks.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub addr: SocketAddr,
    pub hmac_secrets: Vec<String>,
    pub admin_token: String,
    pub pool_size: u32,
    pub acquire_timeout: Duration,
}

impl ServeArgs {
    /// Applies the development defaults, which are allowed only on a loopback
    /// address: a service reachable from elsewhere must be given real secrets.
    pub fn settings(self) -> anyhow::Result<Settings> {
        let loopback = self.wallet_addr.ip().is_loopback();
        let secrets: Vec<String> =
            self.hmac_secrets.unwrap_or_default().into_iter().filter(|s| !s.is_empty()).collect();
        let hmac_secrets = match (secrets.is_empty(), loopback) {
            (false, _) => secrets,
            (true, true) => vec!["test".to_string()],
            (true, false) => bail!(
                "HMAC_SECRETS must be set when listening on {} (a non-loopback address); \
                 the development secret is only allowed on loopback",
                self.wallet_addr
            ),
        };
        let admin_token = match (self.admin_token.filter(|t| !t.is_empty()), loopback) {
            (Some(token), _) => token,
            (None, true) => "admin".to_string(),
            (None, false) => bail!(
                "ADMIN_TOKEN must be set when listening on {} (a non-loopback address); \
                 the development token is only allowed on loopback",
                self.wallet_addr
            ),
        };
        Ok(Settings {
            database_url: self.database.database_url,
            addr: self.wallet_addr,
            hmac_secrets,
            admin_token,
            pool_size: self.db_pool_size.max(1),
            acquire_timeout: Duration::from_millis(self.db_acquire_timeout_ms),
        })
    }
}
