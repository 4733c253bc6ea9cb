//! Service configuration: environment variables, each overridable by a flag
//! of the same name (`DATABASE_URL` ↔ `--database-url`).

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
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

    /// Group-commit shard loops, each committing many requests per transaction.
    /// About the database server's cores: more concurrent transactions than it
    /// can run only contend (measured in docs/BENCHMARKS.md). Defaults to this
    /// host's cores, at least 2; at most the pool size minus one, since a busy
    /// loop keeps a connection (`ledger::group::default_shards`).
    #[arg(long, env = "GROUP_COMMIT_SHARDS")]
    pub group_commit_shards: Option<usize>,

    /// The safety net behind LISTEN/NOTIFY: how often each instance compares
    /// every operator's revision with its in-memory copy.
    #[arg(long, env = "OPERATOR_REFRESH_MS", default_value_t = 5000)]
    pub operator_refresh_ms: u64,

    /// In-memory operator copies older than this are reloaded when next read.
    #[arg(long, env = "OPERATOR_MAX_AGE_SECS", default_value_t = 300)]
    pub operator_max_age_secs: u64,

    #[command(flatten)]
    pub protection: ProtectionArgs,

    #[command(flatten)]
    pub connections: ConnectionArgs,
}

/// Limits on client connections, so that idle or slow clients cannot hold
/// the service's sockets and memory.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Seconds a connection may take to send a request's headers, and may
    /// stay idle between requests; then it is closed.
    #[arg(long, env = "IDLE_TIMEOUT_SECS", default_value_t = 30)]
    pub idle_timeout_secs: u64,

    /// Client connections open at once; further ones wait in the listen
    /// backlog until one closes. Keep it below the process's open-file limit.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
}

/// How the HTTP server treats connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits { idle_timeout: Duration::from_secs(30), max_connections: 4096 }
    }
}

impl From<ConnectionArgs> for ConnectionLimits {
    fn from(args: ConnectionArgs) -> ConnectionLimits {
        ConnectionLimits {
            idle_timeout: Duration::from_secs(args.idle_timeout_secs.max(1)),
            max_connections: args.max_connections.max(1),
        }
    }
}

/// Overload protection: rate limits, the in-flight cap and the request timeout.
#[derive(Debug, Clone, clap::Args)]
pub struct ProtectionArgs {
    /// Requests per second accepted on the provider and back-office routes,
    /// all callers together; 0 turns the overall limit off.
    #[arg(long, env = "RATE_LIMIT_RPS", default_value_t = 0)]
    pub rate_limit_rps: u32,

    /// Requests the overall limit lets through at once after a quiet spell
    /// (0: one second's worth).
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 0)]
    pub rate_limit_burst: u32,

    /// Provider requests per second for one player; 0 turns it off.
    #[arg(long, env = "PLAYER_RATE_LIMIT_RPS", default_value_t = 200)]
    pub player_rate_limit_rps: u32,

    /// Provider requests one player may send at once (0: one second's worth).
    #[arg(long, env = "PLAYER_RATE_LIMIT_BURST", default_value_t = 0)]
    pub player_rate_limit_burst: u32,

    /// Requests processed at once by this instance; beyond it, 503 at once.
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,

    /// How long a request may run before it is abandoned with 503.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 5000)]
    pub request_timeout_ms: u64,
}

/// A token-bucket rate: a steady rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Rate {
    /// `None` when `per_second` is 0 (no limit); a burst of 0 means one second's worth.
    pub fn new(per_second: u32, burst: u32) -> Option<Rate> {
        let per_second = NonZeroU32::new(per_second)?;
        Some(Rate { per_second, burst: NonZeroU32::new(burst).unwrap_or(per_second) })
    }
}

/// Overload protection after defaults.
#[derive(Debug, Clone)]
pub struct Protection {
    pub overall: Option<Rate>,
    pub per_player: Option<Rate>,
    pub max_in_flight: usize,
    pub request_timeout: Duration,
}

impl Protection {
    /// No limits at all: what tests and embedded uses get unless they ask.
    pub fn unlimited() -> Protection {
        Protection {
            overall: None,
            per_player: None,
            max_in_flight: usize::MAX >> 3,
            request_timeout: Duration::from_secs(3600),
        }
    }
}

impl From<ProtectionArgs> for Protection {
    fn from(args: ProtectionArgs) -> Protection {
        Protection {
            overall: Rate::new(args.rate_limit_rps, args.rate_limit_burst),
            per_player: Rate::new(args.player_rate_limit_rps, args.player_rate_limit_burst),
            max_in_flight: args.max_in_flight.max(1),
            request_timeout: Duration::from_millis(args.request_timeout_ms.max(1)),
        }
    }
}

/// Settings after defaults and safety checks.
#[derive(Clone)]
pub struct Settings {
    pub database_url: String,
    pub addr: SocketAddr,
    pub hmac_secrets: Vec<String>,
    pub admin_token: String,
    pub pool_size: u32,
    pub acquire_timeout: Duration,
    /// `None`: [`crate::ledger::group::default_shards`].
    pub group_commit_shards: Option<usize>,
    pub protection: Protection,
    pub connections: ConnectionLimits,
    /// How this instance keeps its in-memory operators fresh.
    pub freshness: crate::operators::registry::Freshness,
}

/// Secrets stay out of `Debug`, so settings can be logged safely.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("database_url", &redact_password(&self.database_url))
            .field("addr", &self.addr)
            .field("hmac_secrets", &format_args!("[{} redacted]", self.hmac_secrets.len()))
            .field("admin_token", &"[redacted]")
            .field("pool_size", &self.pool_size)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("group_commit_shards", &self.group_commit_shards)
            .field("protection", &self.protection)
            .field("connections", &self.connections)
            .field("freshness", &self.freshness)
            .finish()
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn redact_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
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
            // A busy loop holds a connection: leave at least one for everything else.
            group_commit_shards: self
                .group_commit_shards
                .map(|shards| shards.clamp(1, (self.db_pool_size as usize).saturating_sub(1).max(1))),
            protection: self.protection.into(),
            connections: self.connections.into(),
            freshness: crate::operators::registry::Freshness {
                refresh_every: Duration::from_millis(self.operator_refresh_ms.max(100)),
                max_age: Duration::from_secs(self.operator_max_age_secs.max(1)),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_debug_output_hides_secrets() {
        let settings = Settings {
            database_url: "postgres://wallet:hunter2@db/wallet".into(),
            addr: "127.0.0.1:0".parse().unwrap(),
            hmac_secrets: vec!["provider-secret".into()],
            admin_token: "admin-token".into(),
            pool_size: 1,
            acquire_timeout: Duration::from_secs(1),
            group_commit_shards: Some(4),
            protection: Protection::unlimited(),
            connections: ConnectionLimits::default(),
            freshness: Default::default(),
        };
        let shown = format!("{settings:?}");
        for secret in ["hunter2", "provider-secret", "admin-token"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("postgres://wallet:***@db/wallet"));
    }

    #[test]
    fn group_commit_loops_leave_a_connection_for_the_rest() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let shards = |args: &[&str]| {
            let cli = <Cli as clap::Parser>::try_parse_from([&["wallet"], args].concat()).unwrap();
            cli.serve.settings().unwrap().group_commit_shards
        };
        assert_eq!(shards(&["--db-pool-size", "4", "--group-commit-shards", "8"]), Some(3));
        assert_eq!(shards(&["--db-pool-size", "1", "--group-commit-shards", "8"]), Some(1));
        assert_eq!(shards(&["--db-pool-size", "16", "--group-commit-shards", "3"]), Some(3));
        assert_eq!(shards(&["--db-pool-size", "16"]), None, "one default, applied where the state is built");
    }

    #[test]
    fn a_zero_rate_means_no_limit_and_a_zero_burst_one_seconds_worth() {
        assert_eq!(Rate::new(0, 10), None);
        let rate = Rate::new(50, 0).unwrap();
        assert_eq!((rate.per_second.get(), rate.burst.get()), (50, 50));
    }
}
