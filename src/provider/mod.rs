//! The provider API: HMAC-signed batches of bets, wins and rollbacks.
//!
//! `/v1/process` (and its alias) is operator `default`, signed with
//! `HMAC_SECRETS`; `/v1/operators/{code}/process` is that operator's, signed
//! with any of its active provider keys. Both resolve the operator and its
//! keys from memory: a request costs no query before the ledger's own.

pub mod signature;
pub mod wire;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{middleware, Extension, Json, Router};

use crate::error::AppResult;
use crate::ledger::Submission;
use crate::operators::registry::Tenant;
use crate::AppState;
use crate::{ledger, ops};
use wire::{BalanceResponse, ProcessResponse};

/// The provider endpoints, each behind its signature check.
pub fn routes(state: AppState) -> Router<AppState> {
    let legacy = Router::new()
        .route("/v1/process", post(process))
        .route("/aggregator/takehome/process", post(process))
        .route_layer(middleware::from_fn_with_state(state.clone(), signature::require_signature));
    let per_operator = Router::new()
        .route("/v1/operators/{code}/process", post(process))
        .route_layer(middleware::from_fn_with_state(state, signature::require_operator_signature));
    legacy.merge(per_operator)
}

async fn process(
    State(state): State<AppState>,
    Extension(tenant): Extension<Arc<Tenant>>,
    body: Bytes,
) -> AppResult<Response> {
    let batch = wire::parse_batch(&body)?;
    // The first point where the player is known; still before the database.
    state.limits.check_player(&batch.user_id)?;
    if batch.actions.is_empty() {
        let balance = ledger::balance_of(&state.pool, tenant.id, &batch.user_id, &batch.currency).await?;
        return Ok(Json(BalanceResponse { balance }).into_response());
    }
    ops::metrics::record_actions(&batch);
    let game_id = batch.game_id.clone();
    let submission = Submission { operator: tenant.id, policy: tenant.policy.clone(), batch };
    let receipt = state.committer.submit(submission).await?;
    Ok(Json(ProcessResponse::new(game_id, receipt)).into_response())
}
