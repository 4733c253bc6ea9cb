//! Bonuses (API §10): grants, forfeits, expiry and the bonus lists.
//!
//! - `store`: every change under the player's wallet lock, through the
//!   ledger's rules and its one writer; audited.
//!
//! The money rules themselves live with the money: `ledger::bonus` and
//! `ledger::rules` split every stake, win and rollback between cash and the
//! active bonus, count wagering and complete or expire a bonus, in the
//! group-commit path. Campaigns and the game catalog are `catalog`'s.

pub mod store;

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::accounts::PlayerSession;
use crate::domain::{Amount, IdempotencyKey, UserId};
use crate::error::{AppError, AppResult};
use crate::http::{JsonBody, PathParams, Routes};
use crate::operators::document::Document;
use crate::staff::{BackOffice, Caller, Permission};
use crate::AppState;
use store::BonusView;

/// The player's own routes.
pub fn routes() -> Routes {
    Routes::default().route(Method::GET, "/v1/me/bonuses", my_bonuses).route(
        Method::DELETE,
        "/v1/me/bonuses/{bonus_id}",
        forfeit_mine,
    )
}

/// The back office's routes: list a player's bonuses, grant a manual one.
pub fn back_office() -> BackOffice {
    BackOffice::default()
        .route(Method::GET, "/v1/players/{user_id}/bonuses", Permission::ReadPlayers, player_bonuses)
        .route(Method::POST, "/v1/players/{user_id}/bonuses", Permission::ManageBonuses, grant)
}

/// §10's endpoints answer 403 code 121 while the operator's `bonuses` flag is off.
pub fn require_bonuses(document: &Document) -> AppResult<()> {
    if document.flag("bonuses", None) {
        Ok(())
    } else {
        Err(AppError::FeatureDisabled("bonuses"))
    }
}

fn require_bonuses_for(state: &AppState, operator: i16) -> AppResult<()> {
    match state.operators.by_id(operator) {
        Some(tenant) => require_bonuses(&tenant.document),
        None => Err(AppError::OperatorNotFound),
    }
}

#[utoipa::path(get, path = "/v1/me/bonuses", tag = "player", operation_id = "my_bonuses",
    responses(
        (status = 200, description = "The player's bonuses, newest first.", body = Vec<BonusView>),
        (status = 403, description = "Bonuses are off for the operator (code 121).", body = crate::error::ErrorBody,
            example = json!({"code": 121, "message": "bonuses is disabled for this operator"})),
    ))]
async fn my_bonuses(
    State(state): State<AppState>,
    session: PlayerSession,
) -> AppResult<Json<Vec<BonusView>>> {
    require_bonuses(&session.tenant.document)?;
    Ok(Json(store::list(&state.pool, session.tenant.id, &session.user_id).await?))
}

#[utoipa::path(delete, path = "/v1/me/bonuses/{bonus_id}", tag = "player", operation_id = "forfeit_my_bonus",
    params(("bonus_id" = Uuid, Path, description = "The active bonus to give up.")),
    responses(
        (status = 200, description = "Forfeited: its balance is gone.", body = BonusView),
        (status = 400, description = "`bonus_id` is not a UUID.", body = crate::error::ErrorBody),
        (status = 403, description = "Bonuses are off for the operator (code 121).", body = crate::error::ErrorBody),
        (status = 404, description = "No such bonus of the player.", body = crate::error::ErrorBody,
            example = json!({"code": 404, "message": "no such bonus"})),
        (status = 409, description = "The bonus is no longer active.", body = crate::error::ErrorBody,
            example = json!({"code": 409, "message": "the bonus is completed, not active"})),
    ))]
async fn forfeit_mine(
    State(state): State<AppState>,
    session: PlayerSession,
    PathParams(raw): PathParams<String>,
) -> AppResult<Json<BonusView>> {
    require_bonuses(&session.tenant.document)?;
    let bonus_id = Uuid::parse_str(&raw).map_err(|_| AppError::bad_request("bonus_id", "must be a UUID"))?;
    let view =
        store::forfeit(&state.pool, session.tenant.id, &session.origin, &session.user_id, bonus_id).await?;
    Ok(Json(view))
}

#[utoipa::path(get, path = "/v1/players/{user_id}/bonuses", tag = "back office", operation_id = "player_bonuses",
    params(("user_id" = String, Path, description = "The player's id, percent-encoded.", example = "demo")),
    responses(
        (status = 200, description = "The player's bonuses, newest first.", body = Vec<BonusView>),
        (status = 403, description = "The role may not, or bonuses are off for the operator (code 121).", body = crate::error::ErrorBody),
        (status = 404, description = "No such player (code 101).", body = crate::error::ErrorBody,
            example = json!({"code": 101, "message": "Player is invalid"})),
    ))]
async fn player_bonuses(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(raw): PathParams<String>,
) -> AppResult<Json<Vec<BonusView>>> {
    require_bonuses_for(&state, caller.operator)?;
    let user_id = UserId::try_from(raw).map_err(|e| AppError::bad_request("user_id", e))?;
    Ok(Json(store::list(&state.pool, caller.operator, &user_id).await?))
}

/// A staff grant of a `manual` campaign's bonus.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"campaign": "VIP-REWARD", "amount": 2500}))]
struct Grant {
    /// The code of a `manual` campaign of the operator.
    campaign: String,
    /// Minor units, more than 0.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_i64)]
    amount: i64,
}

#[utoipa::path(post, path = "/v1/players/{user_id}/bonuses", tag = "back office", operation_id = "grant_bonus",
    params(("user_id" = String, Path, description = "The player's id, percent-encoded.", example = "demo"),
           ("Idempotency-Key" = String, Header, description = "1 to 255 characters; a repeat with the same campaign and amount answers the first grant.", example = "grant-1")),
    request_body = Grant,
    responses(
        (status = 201, description = "Granted.", body = BonusView),
        (status = 200, description = "A replay: the first grant.", body = BonusView),
        (status = 400, description = "A bad field or a missing Idempotency-Key.", body = crate::error::ErrorBody),
        (status = 403, description = "The role may not, or bonuses are off for the operator (code 121).", body = crate::error::ErrorBody),
        (status = 404, description = "No such player (code 101).", body = crate::error::ErrorBody),
        (status = 409, description = "Another bonus is active (code 122), or the key was used for another grant.", body = crate::error::ErrorBody,
            example = json!({"code": 122, "message": "a bonus is already active"})),
        (status = 422, description = "The campaign cannot grant it (code 124): unknown, not manual, inactive, or over its max_bonus.", body = crate::error::ErrorBody,
            example = json!({"code": 124, "message": "campaign WELCOME: is not a manual campaign"})),
    ))]
async fn grant(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(raw): PathParams<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Grant>,
) -> AppResult<Response> {
    require_bonuses_for(&state, caller.operator)?;
    let user_id = UserId::try_from(raw).map_err(|e| AppError::bad_request("user_id", e))?;
    let key = IdempotencyKey::from_header(headers.get("idempotency-key").map(|v| v.as_bytes()))
        .map_err(|e| AppError::bad_request("Idempotency-Key", e))?;
    let amount = Amount::positive(body.amount).map_err(|e| AppError::bad_request("amount", e))?;
    if body.campaign.is_empty() || body.campaign.len() > 64 {
        return Err(AppError::bad_request("campaign", "must be a campaign code of 1 to 64 characters"));
    }
    let (view, replayed) = store::grant_manual(
        &state.pool,
        caller.operator,
        &caller.origin,
        &user_id,
        &body.campaign,
        amount.minor_units(),
        key.as_str(),
    )
    .await?;
    let status = if replayed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(view)).into_response())
}

/// How often the sweeper looks for bonuses past their end.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Ends bonuses past their end every [`SWEEP_EVERY`], on every instance
/// (each end runs under its player's lock, so instances never double one).
pub fn start_sweeper(pool: sqlx::PgPool) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match store::expire_due(&pool, 500).await {
                Ok(0) => {}
                Ok(ended) => tracing::info!(ended, "expired bonuses ended"),
                Err(error) => tracing::warn!(%error, "the bonus sweeper failed; it runs again shortly"),
            }
        }
    });
}
