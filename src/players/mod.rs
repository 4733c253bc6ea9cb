//! The back-office wallet: players, deposits, withdrawals and history.

pub mod store;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, Origin};
use crate::domain::{Amount, Currency, EntryKind, IdempotencyKey, PlayerStatus, UserId};
use crate::error::{AppError, AppResult};
use crate::http::{JsonBody, PathParams, QueryParams};
use crate::ops::observe::RequestId;
use crate::AppState;
use store::{HistoryCursor, HistoryEntry};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/players", post(create_player))
        .route("/v1/players/{user_id}", get(get_player).patch(update_player))
        .route("/v1/players/{user_id}/deposits", post(deposit))
        .route("/v1/players/{user_id}/withdrawals", post(withdraw))
        .route("/v1/players/{user_id}/transactions", get(transactions))
}

fn user_id(raw: String) -> AppResult<UserId> {
    UserId::try_from(raw).map_err(|e| AppError::bad_request("user_id", e))
}

#[derive(Deserialize)]
struct NewPlayer {
    user_id: String,
    currency: String,
}

async fn create_player(
    State(state): State<AppState>,
    request_id: RequestId,
    JsonBody(body): JsonBody<NewPlayer>,
) -> AppResult<Response> {
    let origin = Origin::new(Actor::Platform, request_id);
    let user_id = user_id(body.user_id)?;
    let currency = Currency::try_from(body.currency).map_err(|e| AppError::bad_request("currency", e))?;
    let (player, created) =
        store::create_player(&state.pool, state.operator, &origin, &user_id, &currency).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    #[derive(Serialize)]
    struct Created {
        user_id: String,
        currency: String,
        balance: i64,
        status: String,
    }
    let body = Created {
        user_id: player.user_id,
        currency: player.currency,
        balance: player.balance,
        status: player.status,
    };
    Ok((status, Json(body)).into_response())
}

async fn get_player(
    State(state): State<AppState>,
    PathParams(raw): PathParams<String>,
) -> AppResult<Json<store::PlayerView>> {
    Ok(Json(store::find_player(&state.pool, state.operator, &user_id(raw)?).await?))
}

#[derive(Deserialize)]
struct StatusChange {
    status: PlayerStatus,
}

async fn update_player(
    State(state): State<AppState>,
    request_id: RequestId,
    PathParams(raw): PathParams<String>,
    JsonBody(body): JsonBody<StatusChange>,
) -> AppResult<Json<store::PlayerView>> {
    let origin = Origin::new(Actor::Platform, request_id);
    Ok(Json(store::set_status(&state.pool, state.operator, &origin, &user_id(raw)?, body.status).await?))
}

#[derive(Deserialize)]
struct MoneyMovement {
    amount: i64,
}

async fn deposit(
    state: State<AppState>,
    request_id: RequestId,
    path: PathParams<String>,
    headers: HeaderMap,
    body: JsonBody<MoneyMovement>,
) -> AppResult<Response> {
    let origin = Origin::new(Actor::Platform, request_id);
    move_money(state, origin, path, headers, body, EntryKind::Deposit).await
}

async fn withdraw(
    state: State<AppState>,
    request_id: RequestId,
    path: PathParams<String>,
    headers: HeaderMap,
    body: JsonBody<MoneyMovement>,
) -> AppResult<Response> {
    let origin = Origin::new(Actor::Platform, request_id);
    move_money(state, origin, path, headers, body, EntryKind::Withdrawal).await
}

async fn move_money(
    State(state): State<AppState>,
    origin: Origin,
    PathParams(raw): PathParams<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<MoneyMovement>,
    kind: EntryKind,
) -> AppResult<Response> {
    let user_id = user_id(raw)?;
    let key = IdempotencyKey::from_header(headers.get("idempotency-key").map(|v| v.as_bytes()))
        .map_err(|e| AppError::bad_request("Idempotency-Key", e))?;
    let amount = Amount::positive(body.amount).map_err(|e| AppError::bad_request("amount", e))?;
    let (payment, replayed) =
        store::move_money(&state.pool, state.operator, &origin, &user_id, kind, amount, key.as_str()).await?;
    // A replay answers what the first request answered; 200 tells it apart.
    let status = if replayed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(payment)).into_response())
}

/// `limit` (default 100, at most 1000) and `cursor`, shared by every paginated listing.
#[derive(Deserialize)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> AppResult<i64> {
        match self.limit.as_deref() {
            None => Ok(100),
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| AppError::bad_request("limit", "must be an integer from 1 to 1000")),
        }
    }

    /// The cursor of a listing newest first by (time, number), if one was given.
    pub fn history_cursor(&self) -> AppResult<Option<HistoryCursor>> {
        self.cursor
            .as_deref()
            .map(|c| {
                HistoryCursor::decode(c)
                    .ok_or_else(|| AppError::bad_request("cursor", "is not a cursor this service issued"))
            })
            .transpose()
    }
}

#[derive(Serialize)]
struct HistoryPage {
    data: Vec<HistoryEntry>,
    next_cursor: Option<String>,
}

async fn transactions(
    State(state): State<AppState>,
    PathParams(raw): PathParams<String>,
    QueryParams(query): QueryParams<PageQuery>,
) -> AppResult<Json<HistoryPage>> {
    let (limit, cursor) = (query.limit()?, query.history_cursor()?);
    let (data, next) = store::history(&state.pool, state.operator, &user_id(raw)?, limit, cursor).await?;
    Ok(Json(HistoryPage { data, next_cursor: next.map(|c| c.encode()) }))
}
