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
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::{middleware, Extension, Json};

use crate::error::{AppResult, ErrorBody};
use crate::http::Routes;
use crate::ledger::Submission;
use crate::operators::registry::Tenant;
use crate::AppState;
use crate::{ledger, ops};
#[allow(unused_imports)]
use serde_json::json;
use wire::{BalanceResponse, ProcessResponse};

/// The provider endpoints, each behind its signature check.
pub fn routes(state: AppState) -> Routes {
    let legacy = Routes::default()
        .route(Method::POST, "/v1/process", process)
        .route(Method::POST, "/aggregator/takehome/process", process)
        .wrap(|routes| {
            routes.route_layer(middleware::from_fn_with_state(state.clone(), signature::require_signature))
        });
    let per_operator =
        Routes::default().route(Method::POST, "/v1/operators/{code}/process", process).wrap(|routes| {
            routes.route_layer(middleware::from_fn_with_state(state, signature::require_operator_signature))
        });
    legacy.merge(per_operator)
}

/// A batch of bets, wins and rollbacks for one player, signed with
/// `HMAC_SECRETS` (operator `default`).
#[utoipa::path(post, path = "/v1/process", tag = "provider", operation_id = "process",
    request_body(content = wire::WireRequest, content_type = "application/json",
        description = "Signed over the raw bytes: `Authorization: HMAC-SHA256 <hex>`."),
    responses(
        (status = 200, description = "Applied, or replayed: `{\"balance\"}` for a request without \
            actions, else the transactions in request order and the balance.", body = wire::ProcessAnswer),
        (status = 404, description = "Unknown player (code 101).", body = ErrorBody,
            example = json!({"code": 101, "message": "Player is invalid"})),
        (status = 409, description = "An action_id reused with other parameters, or a rollback of \
            another player's action.", body = ErrorBody,
            example = json!({"code": 409, "message": "action_id reused with different parameters"})),
        (status = 422, description = "Refused by the money rules, nothing kept: 100 insufficient \
            funds, 102 rollback of a rollback, 107 game forbidden in the player's country, 110 \
            player blocked or excluded (bets), 111 KYC tier forbids play, 154 currency mismatch.",
            body = ErrorBody,
            example = json!({"code": 100, "message": "Player has not enough funds to process an action"})),
    ))]
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
    // The game's category weighs its stakes toward an active bonus's wagering.
    let category = state.games.category(tenant.id, batch.game.as_deref());
    let submission = Submission { operator: tenant.id, policy: tenant.policy.clone(), category, batch };
    let receipt = state.committer.submit(submission).await?;
    Ok(Json(ProcessResponse::new(game_id, receipt)).into_response())
}
