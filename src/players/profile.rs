//! What the console shows of a player beyond the wallet: finding a player by
//! user id or email, and the player's account (email, country, KYC tier,
//! status, balance, live sessions) on one page.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::user_id;
use crate::domain::storable;
use crate::error::{AppError, AppResult};
use crate::http::{PathParams, QueryParams};
use crate::staff::Caller;
use crate::AppState;
#[allow(unused_imports)]
use serde_json::json;

/// The most players a search answers.
pub const SEARCH_LIMIT: i64 = 20;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// A user id (exactly) or an account email (any case).
    q: Option<String>,
}

/// A player found by a search.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Found {
    pub user_id: String,
    pub email: Option<String>,
    pub currency: String,
    pub status: String,
    pub kyc_tier: i16,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Rows<T> {
    data: Vec<T>,
}

/// `GET /v1/players?q=` → `{"data":[…]}`: the player whose `user_id` is `q`
/// exactly, and the one whose account email is `q` (case-insensitively), of
/// the operator in scope; at most [`SEARCH_LIMIT`], by `user_id`.
#[utoipa::path(get, path = "/v1/players", tag = "back office", operation_id = "search_players",
    params(SearchQuery),
    responses(
        (status = 200, description = "The players whose user id or account email is `q`, by `user_id`.", body = Rows<Found>),
        (status = 400, description = "`q` missing, empty or over 255 characters.", body = crate::error::ErrorBody, example = json!({"code": 400, "message": "q: must be a user id or an email of 1 to 255 characters"})),
    ))]
pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<SearchQuery>,
) -> AppResult<Json<Rows<Found>>> {
    let q = query.q.map(|q| q.trim().to_owned()).unwrap_or_default();
    if q.is_empty() || q.chars().count() > 255 {
        return Err(AppError::bad_request("q", "must be a user id or an email of 1 to 255 characters"));
    }
    storable(&q).map_err(|e| AppError::bad_request("q", e))?;
    Ok(Json(Rows { data: find(&state.pool, caller.operator, &q).await? }))
}

pub async fn find(pool: &PgPool, operator: i16, q: &str) -> AppResult<Vec<Found>> {
    Ok(sqlx::query_as!(
        Found,
        r#"SELECT p.user_id, a.email AS "email?", p.currency, p.kyc_tier,
                  CASE WHEN p.status_until <= clock_timestamp() THEN 'active' ELSE p.status END AS "status!"
           FROM players p LEFT JOIN accounts a ON a.player_id = p.id
           WHERE p.operator_id = $1
             AND (p.user_id = $2
                  OR p.id = (SELECT player_id FROM accounts WHERE operator_id = $1 AND email_key = lower($2)))
           ORDER BY p.user_id
           LIMIT $3"#,
        operator,
        q,
        SEARCH_LIMIT,
    )
    .fetch_all(pool)
    .await?)
}

/// `GET /v1/players/{user_id}/account`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Account {
    pub user_id: String,
    pub currency: String,
    /// `null` for players the back office created, who have no account.
    pub email: Option<String>,
    pub country: Option<String>,
    pub kyc_tier: i16,
    pub status: String,
    pub status_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub balance: Balance,
    /// Live login sessions, newest first.
    pub sessions: Vec<Session>,
}

/// Cash, the active bonus's balance and their total.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Balance {
    pub cash: i64,
    pub bonus: i64,
    pub total: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Session {
    pub session_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[utoipa::path(get, path = "/v1/players/{user_id}/account", tag = "back office", operation_id = "player_account",
    params(("user_id" = String, Path, description = "The player.", example = "demo")),
    responses(
        (status = 200, description = "The player's account, balance and live sessions.", body = Account),
        (status = 404, description = "No such player (code 101).", body = crate::error::ErrorBody, example = json!({"code": 101, "message": "Player is invalid"})),
    ))]
pub async fn account(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(raw): PathParams<String>,
) -> AppResult<Json<Account>> {
    let user_id = user_id(raw)?;
    let row = sqlx::query!(
        r#"SELECT p.id, p.user_id, p.currency, a.email AS "email?", p.country, p.kyc_tier, p.balance,
                  p.created_at,
                  CASE WHEN (p.bonus).expires_at > clock_timestamp() THEN (p.bonus).balance ELSE 0 END
                      AS "bonus!",
                  CASE WHEN p.status_until <= clock_timestamp() THEN 'active' ELSE p.status END AS "status!",
                  CASE WHEN p.status_until <= clock_timestamp() THEN NULL ELSE p.status_until END AS status_until
           FROM players p LEFT JOIN accounts a ON a.player_id = p.id
           WHERE p.operator_id = $1 AND p.user_id = $2"#,
        caller.operator,
        user_id.as_str(),
    )
    .fetch_optional(&state.pool)
    .await?
    .ok_or(AppError::PlayerNotFound)?;
    let idle = state.operators.by_id(caller.operator).map_or(30, |t| t.document.rules.session_idle_minutes);
    let sessions = sqlx::query_as!(
        Session,
        r#"SELECT session_id, created_at, last_seen_at, expires_at FROM player_sessions
           WHERE player_id = $1 AND revoked_at IS NULL
             AND expires_at > now() AND last_seen_at + make_interval(mins => $2) > now()
           ORDER BY created_at DESC, session_id"#,
        row.id,
        i32::try_from(idle).map_err(AppError::internal)?,
    )
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(Account {
        user_id: row.user_id,
        currency: row.currency,
        email: row.email,
        country: row.country,
        kyc_tier: row.kyc_tier,
        status: row.status,
        status_until: row.status_until,
        created_at: row.created_at,
        balance: Balance { cash: row.balance, bonus: row.bonus, total: row.balance + row.bonus },
        sessions,
    }))
}
