//! A real-money wallet and player-account service for online casinos.
//!
//! - [`provider`]: the HMAC-signed provider API (bets, wins, rollbacks).
//! - [`ledger`]: the money rules and the hot path that applies them.
//! - [`operators`]: operators (whitelabel tenants) as live configuration.
//! - [`staff`]: back-office staff, roles and permissions.
//! - [`players`]: the back office: players, deposits, withdrawals, history.
//! - [`accounts`]: player accounts: registration, login sessions, the
//!   player's own API and cashier, KYC tiers.
//! - [`catalog`]: the game catalog and bonus campaigns.
//! - [`reports`]: return-to-player reports over the RTP rollups.
//! - [`events`]: the per-player event log and its live streams (SSE, WebSocket).
//! - [`audit`]: the tamper-evident trail of every change, hash-chained.
//! - [`openapi`]: the OpenAPI document of every route, and its reference page.
//! - [`console`]: the back-office web console at `/console/`.
//! - [`ops`]: health, metrics, request ids, overload protection, reconciliation.
//! - [`tools`]: seeding, simulation and load-generation commands.

pub mod accounts;
pub mod audit;
pub mod bonus;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod console;
pub mod domain;
pub mod error;
pub mod events;
pub mod http;
pub mod ledger;
pub mod openapi;
pub mod operators;
pub mod ops;
pub mod paging;
pub mod players;
pub mod provider;
pub mod reports;
pub mod responsible;
pub mod server;
pub mod staff;
pub mod tools;

use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::{middleware, Router};
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use tokio::net::TcpListener;

use config::{Protection, Settings};
use operators::registry::Freshness;
use ops::limits::Limits;
use provider::signature::{SigningKeys, MAX_BODY_BYTES};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// `HMAC_SECRETS`: the keys of `/v1/process`.
    pub signing: Arc<SigningKeys>,
    pub admin_token: Arc<str>,
    /// Every operator, in memory, kept fresh by LISTEN/NOTIFY.
    pub operators: Arc<operators::registry::Registry>,
    /// Every operator's game catalog, in memory, kept fresh by LISTEN/NOTIFY.
    pub games: Arc<catalog::Games>,
    /// Where provider requests with actions go to be committed.
    pub committer: Arc<ledger::group::GroupCommitter>,
    /// Rate limits, in-flight cap and request timeout of this instance.
    pub limits: Arc<Limits>,
    /// The bounded workers that hash and verify player passwords.
    pub passwords: accounts::password::Passwords,
    /// The player event streams of this instance, fed by one LISTEN.
    pub events: Arc<events::Hub>,
}

impl AppState {
    /// State with the default number of group-commit loops for `pool` and
    /// no overload protection: what tests and embedded uses start from.
    /// Starts the loops, so it must be called inside the Tokio runtime.
    pub async fn new(pool: PgPool, hmac_secrets: &[String], admin_token: &str) -> AppState {
        AppState::build(pool, hmac_secrets, admin_token, None, &Protection::unlimited(), Freshness::default())
            .await
    }

    /// The state `wallet serve` runs with.
    pub async fn from_settings(pool: PgPool, settings: &Settings) -> AppState {
        AppState::build(
            pool,
            &settings.hmac_secrets,
            &settings.admin_token,
            settings.group_commit_shards,
            &settings.protection,
            settings.freshness,
        )
        .await
    }

    /// The one place the state is put together and the group-commit loops
    /// started: `shards` of them, or [`ledger::group::default_shards`].
    /// Also loads every operator and game catalog and starts listening for
    /// their changes.
    pub async fn build(
        pool: PgPool,
        hmac_secrets: &[String],
        admin_token: &str,
        shards: Option<usize>,
        protection: &Protection,
        freshness: Freshness,
    ) -> AppState {
        let operators = operators::registry::Registry::start(pool.clone(), hmac_secrets, freshness).await;
        let games = catalog::Games::start(pool.clone(), freshness.refresh_every).await;
        let shards =
            shards.unwrap_or_else(|| ledger::group::default_shards(pool.options().get_max_connections()));
        let committer =
            Arc::new(ledger::group::GroupCommitter::start(pool.clone(), shards, ledger::group::MAX_GROUP));
        let events = events::Hub::start(pool.clone(), events::hub::BUFFER).await;
        AppState {
            events,
            committer,
            pool,
            signing: Arc::new(SigningKeys::new(hmac_secrets)),
            admin_token: admin_token.into(),
            operators,
            games,
            limits: Arc::new(Limits::new(protection)),
            passwords: accounts::password::Passwords::new(accounts::password::Passwords::default_workers()),
        }
    }

    /// The same state under the given overload protection (none by default).
    pub fn with_protection(self, protection: &Protection) -> AppState {
        AppState { limits: Arc::new(Limits::new(protection)), ..self }
    }
}

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    ops::metrics::handle();
    let back_office = back_office().into_router(state.clone());
    // Rate limits, the in-flight cap and the timeout guard the routes that do
    // work; health, metrics and the API document stay reachable under overload.
    let protected = Router::new()
        .merge(public_routes(&state).into_router())
        .merge(back_office)
        // The console's page, assets and sign-in: HTML, not JSON API routes.
        .merge(console::routes())
        .layer(middleware::from_fn_with_state(state.clone(), ops::limits::protect));
    Router::new()
        .merge(protected)
        .merge(unprotected_routes().into_router())
        // Streams last as long as their clients stay: outside the request
        // timeout and the in-flight cap, bounded by the connection cap.
        .merge(accounts::streams::routes().into_router())
        .fallback(http::route_not_found)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // A panic is a bug, fixed where it happens; this only keeps it from
        // dropping the connection without an answer.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(answer_panic))
        .layer(middleware::from_fn(ops::observe::observe))
        .with_state(state)
}

/// The routes outside the back office that do work: the provider API, the
/// tenant and the player's own API.
fn public_routes(state: &AppState) -> http::Routes {
    provider::routes(state.clone())
        .merge(operators::routes())
        .merge(accounts::routes())
        .merge(responsible::routes())
        .merge(bonus::routes())
}

/// Health, metrics and the API document: outside the overload protection.
pub fn unprotected_routes() -> http::Routes {
    ops::routes().merge(openapi::routes())
}

/// Every route the service serves, as [`app`] declares them: what the API
/// document must describe (`tests/openapi.rs`).
pub fn endpoints(state: &AppState) -> Vec<http::Endpoint> {
    let mut all = public_routes(state).endpoints().to_vec();
    all.extend(accounts::streams::routes().endpoints().iter().cloned());
    all.extend(back_office().endpoints());
    all.extend(unprotected_routes().endpoints().iter().cloned());
    all
}

/// Every back-office route, each with the permission it needs.
pub fn back_office() -> staff::BackOffice {
    players::routes()
        .merge(accounts::back_office())
        .merge(responsible::back_office())
        .merge(bonus::back_office())
        .merge(reports::routes())
        .merge(ops::reconcile::routes())
        .merge(operators::back_office())
        .merge(staff::routes())
        .merge(audit::routes())
        .merge(catalog::routes())
}

/// A handler panicked: 500 in the contract's shape; the cause goes to the log.
fn answer_panic(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let cause = error::panic_message(&*panic);
    error::AppError::internal(anyhow::anyhow!("a handler panicked: {cause}")).into_response()
}

/// Creates the database if it does not exist and applies the migrations.
pub async fn prepare_database(database_url: &str) -> anyhow::Result<()> {
    if !Postgres::database_exists(database_url).await.context("cannot reach Postgres")? {
        Postgres::create_database(database_url).await.context("cannot create the database")?;
        tracing::info!("created the database");
    }
    let pool = PgPoolOptions::new().max_connections(1).connect(database_url).await?;
    sqlx::migrate!().run(&pool).await.context("migrations failed")?;
    pool.close().await;
    Ok(())
}

/// A pool of one connection of its own for a `LISTEN`: a listener holds its
/// connection for as long as it listens, and three of them (operators, the
/// game catalog, player events) would otherwise take three connections of
/// `pool` away from requests for good. Connects when first used, and gives
/// up as soon as `pool` would.
///
/// It closes when `pool` closes, as a listener on `pool` itself would stop:
/// a listening connection left open would keep its database from being
/// dropped (the tests drop theirs).
pub fn listening_pool(pool: &PgPool) -> PgPool {
    let listening = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(pool.options().get_acquire_timeout())
        .connect_lazy_with((*pool.connect_options()).clone());
    let (closed, own) = (pool.close_event(), listening.clone());
    tokio::spawn(async move {
        closed.await;
        own.close().await;
    });
    listening
}

/// Connects the pool the service runs on.
///
/// JIT compilation is off for its sessions: every statement here is short,
/// and compiling a report query once its cost estimate crosses the JIT
/// threshold would take longer than running it.
pub async fn connect(settings: &Settings) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(&settings.database_url)
        .context("DATABASE_URL is not a valid Postgres URL")?
        .options([("jit", "off")]);
    PgPoolOptions::new()
        .max_connections(settings.pool_size)
        .min_connections(settings.pool_size.min(4))
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(options)
        .await
        .context("cannot connect to the database")
}

/// Prepares the database, then serves until SIGTERM or SIGINT, finishing the
/// requests in flight before closing the pool.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    prepare_database(&settings.database_url).await?;
    let pool = connect(&settings).await?;
    ledger::partitions::ensure_ahead(&pool).await.context("cannot create ledger partitions")?;
    ledger::partitions::spawn_maintenance(pool.clone());
    bonus::start_sweeper(pool.clone());
    reports::summary::spawn_maintenance(pool.clone());
    audit::store::spawn_sealer(pool.clone());
    events::hub::spawn_purge(pool.clone());

    let listener = TcpListener::bind(settings.addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.addr))?;
    let state = AppState::from_settings(pool.clone(), &settings).await;
    ops::limits::spawn_maintenance(state.limits.clone());
    tracing::info!(addr = %listener.local_addr()?, pool_size = settings.pool_size, "wallet listening");
    // At the signal, the event streams end too, so that their connections
    // can close instead of holding the shutdown for the drain timeout.
    let streams = state.events.clone();
    let shutdown = async move {
        shutdown_signal().await;
        streams.close();
    };
    server::serve(listener, app(state), settings.connections, shutdown).await?;
    // Every request answered 200 committed before it was answered; the ones
    // still running when the signal came have now finished too.
    tracing::info!("stopped accepting; requests in flight finished; closing the pool");
    pool.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        term.recv().await;
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received, shutting down"),
        _ = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
