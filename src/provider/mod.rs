//! The provider API: HMAC-signed batches of bets, wins and rollbacks.

pub mod signature;
pub mod wire;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{middleware, Json, Router};

use crate::error::AppResult;
use crate::AppState;
use crate::{ledger, ops};
use wire::{BalanceResponse, ProcessResponse};

/// `POST /v1/process` and its alias, behind the signature check.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/process", post(process))
        .route("/aggregator/takehome/process", post(process))
        .route_layer(middleware::from_fn_with_state(state, signature::require_signature))
}

async fn process(State(state): State<AppState>, body: Bytes) -> AppResult<Response> {
    let batch = wire::parse_batch(&body)?;
    // The first point where the player is known; still before the database.
    state.limits.check_player(&batch.user_id)?;
    if batch.actions.is_empty() {
        let balance =
            ledger::balance_of(&state.pool, state.operator, &batch.user_id, &batch.currency).await?;
        return Ok(Json(BalanceResponse { balance }).into_response());
    }
    ops::metrics::record_actions(&batch);
    let game_id = batch.game_id.clone();
    let receipt = state.committer.submit(batch).await?;
    Ok(Json(ProcessResponse::new(game_id, receipt)).into_response())
}
