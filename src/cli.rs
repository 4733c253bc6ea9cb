//! The `wallet` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{DatabaseArgs, ServeArgs};
use crate::tools::seed::SeedArgs;
use crate::tools::seed_ledger::SeedLedgerArgs;
use crate::tools::simulate::SimulateArgs;

#[derive(clap::Args)]
struct ReconcileArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
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
    /// Create funded players `<prefix>1` … `<prefix>N` in bulk (idempotent).
    Seed(SeedArgs),
    /// Play rounds over signed HTTP and check the RTP reports to the cent.
    Simulate(SimulateArgs),
    /// Write months of realistic history straight into the ledger and rollups.
    SeedLedger(SeedLedgerArgs),
    /// Seal complete days into the daily RTP summary and fold late changes
    /// into it (the service also does this every minute).
    Summarize(DatabaseArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => crate::serve(args.settings()?).await.map(|()| true),
            Command::Migrate(args) => crate::prepare_database(&args.database_url).await.map(|()| true),
            Command::Reconcile(args) => {
                crate::ops::reconcile::run(&args.database.database_url, args.json).await
            }
            Command::Bench(args) => crate::tools::bench::run(args).await,
            Command::Seed(args) => crate::tools::seed::run(args).await.map(|()| true),
            Command::Simulate(args) => crate::tools::simulate::run(args).await.map(|()| true),
            Command::SeedLedger(args) => crate::tools::seed_ledger::run(args).await.map(|()| true),
            Command::Summarize(args) => summarize(&args).await.map(|()| true),
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "wallet failed");
            ExitCode::FAILURE
        }
    }
}

/// JSON logs by default; `LOG_FORMAT=text` for people at a terminal.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f == "text") {
        builder.init();
    } else {
        // The request span's fields (request_id, method, route) go on every
        // line logged while handling that request.
        builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init();
    }
}

async fn summarize(args: &DatabaseArgs) -> anyhow::Result<()> {
    crate::prepare_database(&args.database_url).await?;
    let pool = sqlx::PgPool::connect(&args.database_url).await?;
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
