//! The `wallet` command line: parses the command, writes logs for whoever
//! reads them (a person at a terminal, or a log collector), runs the command
//! and reports its failure, with what to do about it where that is known.

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{DatabaseArgs, ServeArgs};
use crate::tools::seed::SeedArgs;
use crate::tools::seed_ledger::SeedLedgerArgs;
use crate::tools::simulate::SimulateArgs;
use crate::tools::DatabaseUnreachable;

#[derive(clap::Args)]
struct ReconcileArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct HealthcheckArgs {
    /// URL to probe; by default `/health/ready` of the service at WALLET_ADDR
    /// (on loopback when that is an unspecified address such as 0.0.0.0).
    #[arg(long)]
    url: Option<String>,
    /// Address `wallet serve` listens on (the same variable it reads).
    #[arg(long, env = "WALLET_ADDR", default_value = "127.0.0.1:8080")]
    wallet_addr: SocketAddr,
}

#[derive(Parser)]
#[command(name = "wallet", version, about = "Real-money wallet and player-account service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the database if missing, apply migrations, and serve.
    Serve(ServeArgs),
    /// Create the database if missing and apply migrations.
    Migrate(DatabaseArgs),
    /// Check balances, the ledger chain, the action registry and the report
    /// rollups against each other; exits 1 on any mismatch. Read-only: never
    /// creates or migrates a database.
    Reconcile(ReconcileArgs),
    /// Drive a running service with signed provider load and check that money is conserved.
    Bench(crate::tools::bench::BenchArgs),
    /// Hold many players' event streams open on a running service while bets run, and measure
    /// its memory and each bet's event delay.
    BenchEvents(crate::tools::bench_events::BenchEventsArgs),
    /// Create funded players `<prefix>1` … `<prefix>N` in bulk (idempotent).
    Seed(SeedArgs),
    /// Play rounds over signed HTTP and check the RTP reports to the cent.
    Simulate(SimulateArgs),
    /// Write months of realistic history straight into the ledger and rollups.
    SeedLedger(SeedLedgerArgs),
    /// Seal complete days into the daily RTP summary and fold late changes
    /// into it (the service also does this every minute).
    Summarize(DatabaseArgs),
    /// GET a URL (by default this host's `/health/ready`); exit 0 on a 2xx answer
    /// within 2 s, else 1. For container health checks, where no curl is installed.
    Healthcheck(HealthcheckArgs),
}

/// The command line: [`Cli`], with the value DATABASE_URL has in the
/// environment kept out of `--help` like the other secrets' (it may carry a
/// password).
fn command_line() -> clap::Command {
    let mut command = Cli::command();
    let names: Vec<String> = command.get_subcommands().map(|sub| sub.get_name().to_string()).collect();
    for name in names {
        command = command.mut_subcommand(name, |sub| {
            if sub.get_arguments().any(|arg| arg.get_id() == "database_url") {
                sub.mut_arg("database_url", |arg| arg.hide_env_values(true))
            } else {
                sub
            }
        });
    }
    command
}

pub fn main() -> ExitCode {
    let cli = Cli::from_arg_matches(&command_line().get_matches()).unwrap_or_else(|error| error.exit());
    let format = init_tracing();
    let database_url = cli.command.database_url().map(str::to_owned);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => crate::serve(args.settings()?).await.map(|()| true),
            Command::Migrate(args) => crate::prepare_database(&args.database_url).await.map(|()| true),
            Command::Reconcile(args) => {
                crate::ops::reconcile::run(&args.database.database_url, args.json).await
            }
            Command::Bench(args) => crate::tools::bench::run(args).await,
            Command::BenchEvents(args) => crate::tools::bench_events::run(args).await,
            Command::Seed(args) => crate::tools::seed::run(args).await.map(|()| true),
            Command::Simulate(args) => crate::tools::simulate::run(args).await.map(|()| true),
            Command::SeedLedger(args) => crate::tools::seed_ledger::run(args).await.map(|()| true),
            Command::Summarize(args) => summarize(&args).await.map(|()| true),
            Command::Healthcheck(args) => {
                probe(&args.url.unwrap_or_else(|| ready_url(args.wallet_addr))).await
            }
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            let error = with_hint(error, database_url.as_deref());
            match format {
                LogFormat::Text => eprintln!("{}", plain_error(&error)),
                LogFormat::Json => tracing::error!(error = format!("{error:#}"), "wallet failed"),
            }
            ExitCode::FAILURE
        }
    }
}

impl Command {
    /// The database the command works on, if it works on one.
    fn database_url(&self) -> Option<&str> {
        match self {
            Command::Serve(args) => Some(&args.database.database_url),
            Command::Migrate(args) | Command::Summarize(args) => Some(&args.database_url),
            Command::Reconcile(args) => Some(&args.database.database_url),
            Command::Seed(args) => Some(&args.database.database_url),
            Command::BenchEvents(args) => Some(&args.database.database_url),
            Command::SeedLedger(args) => Some(&args.database.database_url),
            Command::Bench(_) | Command::Simulate(_) | Command::Healthcheck(_) => None,
        }
    }
}

/// How log lines, and a command's final error, are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Lines for a person to read.
    Text,
}

impl LogFormat {
    /// `LOG_FORMAT=json|text` decides; without it (or with anything else), a
    /// person at a terminal reads text, and services and pipes get JSON.
    fn choose(setting: Option<&str>, terminal: bool) -> LogFormat {
        match setting {
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            _ if terminal => LogFormat::Text,
            _ => LogFormat::Json,
        }
    }
}

fn init_tracing() -> LogFormat {
    use tracing_subscriber::EnvFilter;
    let setting = std::env::var("LOG_FORMAT").ok();
    let terminal = std::io::stderr().is_terminal();
    let format = LogFormat::choose(setting.as_deref(), terminal);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(terminal).init(),
        // The request span's fields (request_id, method, route) go on every
        // line logged while handling that request.
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init()
        }
    }
    if let Some(value) = setting.filter(|value| !matches!(value.as_str(), "json" | "text")) {
        tracing::warn!(value, "LOG_FORMAT is neither `json` nor `text`; ignored");
    }
    format
}

/// Adds what to do about it to an error a person can fix: no PostgreSQL
/// where `database_url` points (named by its server, never by the URL,
/// which may hold a password), a database migrated by another version of
/// the service, or a listen address already taken.
fn with_hint(error: anyhow::Error, database_url: Option<&str>) -> anyhow::Error {
    let unreachable = error
        .chain()
        .any(|cause| cause.downcast_ref::<sqlx::Error>().is_some_and(crate::tools::is_unreachable));
    let unknown_migration = error.chain().find_map(|cause| match cause.downcast_ref() {
        Some(sqlx::migrate::MigrateError::VersionMissing(version)) => Some(*version),
        _ => None,
    });
    let address_taken = error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
    });
    match (database_url, unknown_migration) {
        (Some(url), _) if unreachable && error.downcast_ref::<DatabaseUnreachable>().is_none() => {
            error.context(DatabaseUnreachable { server: crate::tools::server_of(url) })
        }
        (Some(url), Some(version)) => {
            let database = url.rsplit('/').next().and_then(|name| name.split('?').next()).unwrap_or(url);
            error.context(format!(
                "database `{database}` at {} was migrated by another version of wallet (its migration \
                 {version} is not in this one): point DATABASE_URL at another database, or drop this one",
                crate::tools::server_of(url)
            ))
        }
        _ if address_taken => error.context(
            "the address is taken: stop what listens there, or set WALLET_ADDR (port 0 picks a free port)",
        ),
        _ => error,
    }
}

/// `error: …`, then each cause on a line of its own (a cause that only
/// repeats the one before it is left out).
fn plain_error(error: &anyhow::Error) -> String {
    let mut text = format!("error: {error}");
    let mut previous = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !previous.contains(&cause) {
            text.push_str(&format!("\n  caused by: {cause}"));
        }
        previous = cause;
    }
    text
}

/// `/health/ready` of a service listening on `addr`, reached from this host:
/// a service listening on every address (0.0.0.0, ::) is asked on loopback.
fn ready_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/health/ready", SocketAddr::new(ip, addr.port()))
}

/// GETs `url`: true on a 2xx answer, false (the status and body printed) on
/// another; an error if nothing answers within 2 s.
async fn probe(url: &str) -> anyhow::Result<bool> {
    use anyhow::Context;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let response = client.get(url).send().await.with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status.is_success() {
        println!("{url}: {status}");
    } else {
        println!("{url}: {status} {body}");
    }
    Ok(status.is_success())
}

async fn summarize(args: &DatabaseArgs) -> anyhow::Result<()> {
    let pool = crate::tools::connect_existing(&args.database_url).await?;
    let done = crate::reports::summary::summarize(&pool).await?;
    match done.sealed_until {
        _ if done.busy => println!("another summariser is running; nothing done"),
        Some(until) => println!(
            "days before {until} sealed ({} now); {} late changes folded",
            done.days_sealed, done.late_folded
        ),
        None => println!("nothing to seal yet"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn logs_are_text_at_a_terminal_and_json_elsewhere_unless_log_format_says() {
        assert_eq!(LogFormat::choose(None, true), LogFormat::Text);
        assert_eq!(LogFormat::choose(None, false), LogFormat::Json);
        assert_eq!(LogFormat::choose(Some("json"), true), LogFormat::Json);
        assert_eq!(LogFormat::choose(Some("text"), false), LogFormat::Text);
        assert_eq!(LogFormat::choose(Some("yaml"), false), LogFormat::Json);
        assert_eq!(LogFormat::choose(Some("yaml"), true), LogFormat::Text);
    }

    #[test]
    fn every_flag_of_every_command_says_what_it_is_for() {
        let cli = Cli::command();
        let mut unexplained = Vec::new();
        for command in cli.get_subcommands() {
            assert!(command.get_about().is_some(), "`wallet {}` has no description", command.get_name());
            for arg in command.get_arguments() {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                if help.trim().is_empty() && arg.get_id() != "help" {
                    unexplained.push(format!("wallet {} --{}", command.get_name(), arg.get_id()));
                }
            }
        }
        assert!(unexplained.is_empty(), "flags without help text: {unexplained:?}");
    }

    #[test]
    fn secrets_given_in_the_environment_stay_out_of_help() {
        let cli = command_line();
        for command in cli.get_subcommands() {
            for arg in command.get_arguments() {
                let secret = matches!(
                    arg.get_env().and_then(|e| e.to_str()),
                    Some("HMAC_SECRETS" | "ADMIN_TOKEN" | "DATABASE_URL")
                );
                assert!(
                    !secret || arg.is_hide_env_values_set(),
                    "wallet {} --{} shows its secret's value",
                    command.get_name(),
                    arg.get_id()
                );
            }
        }
    }

    #[tokio::test]
    async fn an_unreachable_database_is_named_by_server_with_a_hint_and_without_its_password() {
        let url = "postgres://wallet:hunter2@127.0.0.1:1/wallet";
        let error = crate::prepare_database(url).await.expect_err("nothing listens on port 1");
        let shown = plain_error(&with_hint(error, Some(url)));
        assert!(
            shown.starts_with(
                "error: cannot reach PostgreSQL at 127.0.0.1:1 — is it running? set DATABASE_URL"
            ),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[tokio::test]
    async fn a_database_migrated_by_another_version_says_so_and_what_to_do() {
        use sqlx::migrate::MigrateDatabase;
        let base = std::env::var("DATABASE_URL").expect("DATABASE_URL (.cargo/config.toml sets one)");
        let name = format!("wallet_cli_{}", uuid::Uuid::new_v4().simple());
        let url = format!("{}/{name}", base.rsplit_once('/').expect("a database name").0);
        crate::prepare_database(&url).await.unwrap();
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (999999, 'from a later version', true, '\\x00', 0)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let error = crate::prepare_database(&url).await.expect_err("migration 999999 is unknown here");
        let shown = plain_error(&with_hint(error, Some(&url)));

        assert!(
            shown.starts_with(&format!(
                "error: database `{name}` at {} was migrated by another version of wallet \
                 (its migration 999999 is not in this one): point DATABASE_URL at another database",
                crate::tools::server_of(&url)
            )),
            "{shown}"
        );
        sqlx::Postgres::force_drop_database(&url).await.unwrap();
    }

    #[test]
    fn a_taken_listen_address_says_how_to_choose_another() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let error = std::net::TcpListener::bind(addr).expect_err("the port is taken");
        let error = anyhow::Error::new(error).context(format!("cannot listen on {addr}"));

        let shown = plain_error(&with_hint(error, Some("postgres://postgres@localhost/wallet")));

        assert!(
            shown.starts_with("error: the address is taken: stop what listens there, or set WALLET_ADDR"),
            "{shown}"
        );
        assert!(shown.contains(&format!("caused by: cannot listen on {addr}")), "{shown}");
    }

    #[test]
    fn the_health_check_asks_a_service_listening_everywhere_on_loopback() {
        let url = |addr: &str| ready_url(addr.parse().unwrap());
        assert_eq!(url("0.0.0.0:8080"), "http://127.0.0.1:8080/health/ready");
        assert_eq!(url("[::]:9000"), "http://[::1]:9000/health/ready");
        assert_eq!(url("127.0.0.1:8080"), "http://127.0.0.1:8080/health/ready");
        assert_eq!(url("10.1.2.3:80"), "http://10.1.2.3:80/health/ready");
    }

    #[tokio::test]
    async fn the_health_check_passes_on_2xx_fails_on_503_and_errs_when_nothing_answers() {
        use axum::http::StatusCode;
        use axum::routing::get;
        let app = axum::Router::new()
            .route("/health/ready", get(|| async { "ok" }))
            .route("/down", get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "database unreachable") }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        assert!(probe(&ready_url(addr)).await.unwrap());
        assert!(!probe(&format!("http://{addr}/down")).await.unwrap());
        assert!(!probe(&format!("http://{addr}/nowhere")).await.unwrap());

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let error = probe(&format!("http://{closed}/health/ready")).await.expect_err("nothing listens");
        assert!(format!("{error:#}").starts_with(&format!("GET http://{closed}/health/ready")), "{error:#}");
    }

    #[test]
    fn a_plain_error_gives_each_cause_once_on_a_line_of_its_own() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let error = anyhow::Error::new(sqlx::Error::Io(io)).context("cannot reach Postgres");
        assert_eq!(
            plain_error(&error),
            "error: cannot reach Postgres\n  caused by: error communicating with database: connection refused"
        );
    }
}
