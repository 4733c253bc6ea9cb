//! The back-office wallet: players, deposits, withdrawals and history.

pub mod profile;
pub mod store;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
#[allow(unused_imports)]
use serde_json::json;
use utoipa::ToSchema;

use crate::audit::Origin;
use crate::domain::{Amount, Currency, EntryKind, IdempotencyKey, PlayerStatus, UserId};
use crate::error::{AppError, AppResult};
use crate::http::{JsonBody, PathParams, QueryParams};
use crate::ledger::rules::Refusal;
pub use crate::paging::PageQuery;
use crate::staff::{BackOffice, Caller, Permission};
use crate::AppState;
use store::{BonusAsk, HistoryEntry, Requester};

pub fn routes() -> BackOffice {
    use Permission::*;
    BackOffice::default()
        .route(Method::POST, "/v1/players", CreatePlayers, create_player)
        .route(Method::GET, "/v1/players", ReadPlayers, profile::search)
        .route(Method::GET, "/v1/players/{user_id}", ReadPlayers, get_player)
        .route(Method::PATCH, "/v1/players/{user_id}", ChangeStatus, update_player)
        .route(Method::POST, "/v1/players/{user_id}/deposits", MoveMoney, deposit)
        .route(Method::POST, "/v1/players/{user_id}/withdrawals", MoveMoney, withdraw)
        .route(Method::GET, "/v1/players/{user_id}/transactions", ReadPlayers, transactions)
        .route(Method::GET, "/v1/players/{user_id}/account", ReadPlayers, profile::account)
}

fn user_id(raw: String) -> AppResult<UserId> {
    UserId::try_from(raw).map_err(|e| AppError::bad_request("user_id", e))
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"user_id": "demo", "currency": "USD"}))]
struct NewPlayer {
    #[schema(min_length = 1, max_length = 255)]
    user_id: String,
    currency: String,
}

/// A player created by the back office, as `POST /v1/players` answers.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"user_id": "demo", "currency": "USD", "balance": 0, "status": "active"}))]
struct Created {
    user_id: String,
    currency: String,
    balance: i64,
    #[schema(value_type = PlayerStatus)]
    status: String,
}

#[utoipa::path(post, path = "/v1/players", tag = "back office", operation_id = "create_player",
    request_body = NewPlayer,
    responses(
        (status = 201, description = "Created.", body = Created),
        (status = 200, description = "The player exists with this currency: the stored player.", body = Created),
        (status = 409, description = "The player exists with another currency.", body = crate::error::ErrorBody, example = json!({"code": 409, "message": "the player exists with another currency"})),
        (status = 422, description = "The currency is not one of the operator's (code 154).", body = crate::error::ErrorBody, example = json!({"code": 154, "message": "currency mismatch"})),
    ))]
async fn create_player(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<NewPlayer>,
) -> AppResult<Response> {
    let user_id = user_id(body.user_id)?;
    let currency = Currency::try_from(body.currency).map_err(|e| AppError::bad_request("currency", e))?;
    let operator = state.operators.by_id(caller.operator).ok_or(AppError::OperatorNotFound)?;
    let offered = &operator.document.currencies;
    // `default` lists no currencies until configured: it serves any.
    if !offered.is_empty() && !offered.iter().any(|c| c == currency.as_str()) {
        return Err(Refusal::CurrencyMismatch.into());
    }
    let (player, created) =
        store::create_player(&state.pool, caller.operator, &caller.origin, &user_id, &currency).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let body = Created {
        user_id: player.user_id,
        currency: player.currency,
        balance: player.balance,
        status: player.status,
    };
    Ok((status, Json(body)).into_response())
}

#[utoipa::path(get, path = "/v1/players/{user_id}", tag = "back office", operation_id = "get_player",
    params(("user_id" = String, Path, description = "The player's id, percent-encoded.", example = "demo")),
    responses((status = 200, description = "The player.", body = store::PlayerView), (status = 404, description = "No such player (code 101).", body = crate::error::ErrorBody, example = json!({"code": 101, "message": "Player is invalid"}))))]
async fn get_player(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(raw): PathParams<String>,
) -> AppResult<Json<store::PlayerView>> {
    Ok(Json(store::find_player(&state.pool, caller.operator, &user_id(raw)?).await?))
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"status": "blocked"}))]
struct StatusChange {
    /// `cooling_off` is the player's own: 400 here.
    status: PlayerStatus,
}

#[utoipa::path(patch, path = "/v1/players/{user_id}", tag = "back office", operation_id = "update_player",
    params(("user_id" = String, Path, description = "The player's id, percent-encoded.", example = "demo")), request_body = StatusChange,
    responses((status = 200, description = "The player, with the status set.", body = store::PlayerView), (status = 404, description = "No such player (code 101).", body = crate::error::ErrorBody, example = json!({"code": 101, "message": "Player is invalid"})),
        (status = 409, description = "A time-out or self-exclusion is in force (code 131): nobody may lift or replace it.", body = crate::error::ErrorBody, example = json!({"code": 131, "message": "the player is cooling_off until 2026-12-04T10:00:00+00:00; it cannot be lifted or replaced"}))))]
async fn update_player(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(raw): PathParams<String>,
    JsonBody(body): JsonBody<StatusChange>,
) -> AppResult<Json<store::PlayerView>> {
    // A time-out is the player's own, with an end (`status_until`) that
    // staff cannot set here.
    if body.status == PlayerStatus::CoolingOff {
        return Err(AppError::bad_request("status", "cooling_off is taken by the player, not set by staff"));
    }
    Ok(Json(
        store::set_status(&state.pool, caller.operator, &caller.origin, &user_id(raw)?, body.status).await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"amount": 10000}))]
struct MoneyMovement {
    /// Minor units, more than 0.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_i64)]
    amount: i64,
}

#[utoipa::path(post, path = "/v1/players/{user_id}/deposits", tag = "back office", operation_id = "deposit",
    params(("user_id" = String, Path, description = "The player's id, percent-encoded.", example = "demo"), ("Idempotency-Key" = String, Header, description = "1 to 255 characters; a repeat with the same key and amount answers the first time's answer.", example = "first-deposit")), request_body = MoneyMovement,
    responses(
        (status = 201, description = "Deposited.", body = store::Payment),
        (status = 200, description = "A replay: the first answer.", body = store::Payment),
        (status = 404, description = "No such player (code 101).", body = crate::error::ErrorBody, example = json!({"code": 101, "message": "Player is invalid"})),
        (status = 409, description = "The key was used with another amount or kind, or by the player.", body = crate::error::ErrorBody, example = json!({"code": 409, "message": "Idempotency-Key was used for another request"})),
    ))]
async fn deposit(
    state: State<AppState>,
    caller: Caller,
    path: PathParams<String>,
    headers: HeaderMap,
    body: JsonBody<MoneyMovement>,
) -> AppResult<Response> {
    move_money(state, caller, path, headers, body, EntryKind::Deposit).await
}

#[utoipa::path(post, path = "/v1/players/{user_id}/withdrawals", tag = "back office", operation_id = "withdraw",
    params(("user_id" = String, Path, description = "The player's id, percent-encoded.", example = "demo"), ("Idempotency-Key" = String, Header, description = "1 to 255 characters; a repeat with the same key and amount answers the first time's answer.", example = "first-deposit")), request_body = MoneyMovement,
    responses(
        (status = 201, description = "Withdrawn.", body = store::Payment),
        (status = 200, description = "A replay: the first answer.", body = store::Payment),
        (status = 404, description = "No such player (code 101).", body = crate::error::ErrorBody, example = json!({"code": 101, "message": "Player is invalid"})),
        (status = 409, description = "The key was used with another amount or kind, or by the player.", body = crate::error::ErrorBody, example = json!({"code": 409, "message": "Idempotency-Key was used for another request"})),
        (status = 422, description = "More than the balance (code 100).", body = crate::error::ErrorBody, example = json!({"code": 100, "message": "Player has not enough funds to process an action"})),
    ))]
async fn withdraw(
    state: State<AppState>,
    caller: Caller,
    path: PathParams<String>,
    headers: HeaderMap,
    body: JsonBody<MoneyMovement>,
) -> AppResult<Response> {
    move_money(state, caller, path, headers, body, EntryKind::Withdrawal).await
}

async fn move_money(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(raw): PathParams<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<MoneyMovement>,
    kind: EntryKind,
) -> AppResult<Response> {
    let user_id = user_id(raw)?;
    let movement =
        Movement { operator: caller.operator, origin: &caller.origin, requester: Requester::Staff };
    movement.answer(&state.pool, &user_id, &headers, kind, body.amount, BonusAsk::Nothing).await
}

/// A deposit or withdrawal as HTTP asks for it, by the back office or by the
/// player's cashier: who asks, for which operator.
pub struct Movement<'a> {
    pub operator: i16,
    pub origin: &'a Origin,
    pub requester: Requester<'a>,
}

impl Movement<'_> {
    /// Checks the `Idempotency-Key` header and the `amount`, moves the money
    /// and answers `{"tx_id","balance"}`: 201, or 200 for a replay, which
    /// answers what the first request answered.
    pub async fn answer(
        &self,
        pool: &sqlx::PgPool,
        user_id: &UserId,
        headers: &HeaderMap,
        kind: EntryKind,
        amount: i64,
        ask: BonusAsk<'_>,
    ) -> AppResult<Response> {
        let key = IdempotencyKey::from_header(headers.get("idempotency-key").map(|v| v.as_bytes()))
            .map_err(|e| AppError::bad_request("Idempotency-Key", e))?;
        let amount = Amount::positive(amount).map_err(|e| AppError::bad_request("amount", e))?;
        let (payment, replayed) = store::move_money(
            pool,
            self.operator,
            self.origin,
            self.requester,
            user_id,
            kind,
            amount,
            key.as_str(),
            ask,
        )
        .await?;
        let status = if replayed { StatusCode::OK } else { StatusCode::CREATED };
        Ok((status, Json(payment)).into_response())
    }
}

/// A page of a player's history, newest first, as §2 shows it.
#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    data: Vec<HistoryEntry>,
    next_cursor: Option<String>,
}

/// The page of `user_id`'s history that `query` asks for: the back office's
/// and the player's own history answer alike.
pub async fn history_page(
    pool: &sqlx::PgPool,
    operator: i16,
    user_id: &UserId,
    query: &PageQuery,
) -> AppResult<Json<HistoryPage>> {
    let (limit, cursor) = (query.limit()?, query.history_cursor()?);
    let (data, next) = store::history(pool, operator, user_id, limit, cursor).await?;
    Ok(Json(HistoryPage { data, next_cursor: next.map(|c| c.encode()) }))
}

#[utoipa::path(get, path = "/v1/players/{user_id}/transactions", tag = "back office", operation_id = "transactions",
    params(("user_id" = String, Path, description = "The player's id, percent-encoded.", example = "demo"), PageQuery),
    responses((status = 200, description = "A page of the player's ledger, newest first.", body = HistoryPage), (status = 404, description = "No such player (code 101).", body = crate::error::ErrorBody, example = json!({"code": 101, "message": "Player is invalid"}))))]
async fn transactions(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(raw): PathParams<String>,
    QueryParams(query): QueryParams<PageQuery>,
) -> AppResult<Json<HistoryPage>> {
    history_page(&state.pool, caller.operator, &user_id(raw)?, &query).await
}
