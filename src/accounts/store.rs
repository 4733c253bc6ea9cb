//! Accounts, sessions, login failures and KYC tiers in SQL.
//!
//! Times come from the database clock (`now()`), the one clock every
//! instance shares: an expiry or a lockout ends at the same moment for all.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::{self, Action, Origin};
use crate::domain::{Currency, UserId};
use crate::error::{AppError, AppResult};

/// A registration, validated.
#[derive(Debug)]
pub struct NewAccount {
    pub user_id: UserId,
    pub email: String,
    pub email_key: String,
    pub password_hash: String,
    pub currency: Currency,
    pub country: String,
    pub date_of_birth: NaiveDate,
}

/// An account as the player sees it on registration.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Registered {
    pub user_id: String,
    pub email: String,
    pub currency: String,
    pub country: String,
    pub kyc_tier: i16,
    #[schema(value_type = crate::domain::PlayerStatus)]
    pub status: String,
}

/// Creates the player's wallet and account in one transaction, audited with
/// the player as actor. An email taken at the operator is a conflict (the
/// unique constraint decides, so two racing registrations cannot both win).
pub async fn register(
    pool: &PgPool,
    operator: i16,
    origin: &Origin,
    new: &NewAccount,
) -> AppResult<Registered> {
    let mut tx = pool.begin().await?;
    let player = sqlx::query!(
        r#"INSERT INTO players (operator_id, user_id, currency, country) VALUES ($1, $2, $3, $4)
           RETURNING id, kyc_tier, status"#,
        operator,
        new.user_id.as_str(),
        new.currency.as_str(),
        new.country,
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query!(
        r#"INSERT INTO accounts (player_id, operator_id, email, email_key, password_hash, date_of_birth)
           VALUES ($1, $2, $3, $4, $5, $6)"#,
        player.id,
        operator,
        new.email,
        new.email_key,
        new.password_hash,
        new.date_of_birth,
    )
    .execute(&mut *tx)
    .await?;
    let registered = Registered {
        user_id: new.user_id.as_str().to_owned(),
        email: new.email.clone(),
        currency: new.currency.as_str().to_owned(),
        country: new.country.clone(),
        kyc_tier: player.kyc_tier,
        status: player.status,
    };
    // The trail keeps the least personal data it needs: no date of birth,
    // and never the password or its hash.
    let entry = origin
        .entry(Some(operator), Action::PlayerCreate, audit::target("player", &new.user_id))
        .after(serde_json::to_value(&registered).map_err(AppError::internal)?);
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(registered)
}

/// What a login attempt finds for an email.
#[derive(Debug)]
pub struct LoginTarget {
    /// The end of a lockout in force, if any.
    pub locked_until: Option<DateTime<Utc>>,
    /// The account, if the email has one: player id, user id, password hash.
    pub account: Option<(i64, String, String)>,
}

/// The lockout and the account of `email_key` at `operator`, in one query.
pub async fn login_target(pool: &PgPool, operator: i16, email_key: &str) -> AppResult<LoginTarget> {
    let row = sqlx::query!(
        r#"SELECT (SELECT locked_until FROM login_failures
                   WHERE operator_id = $1 AND email_key = $2 AND locked_until > now()) AS locked_until,
                  a.player_id AS "player_id?", p.user_id AS "user_id?", a.password_hash AS "password_hash?"
           FROM (SELECT) AS one
           LEFT JOIN accounts a ON a.operator_id = $1 AND a.email_key = $2
           LEFT JOIN players p ON p.id = a.player_id"#,
        operator,
        email_key,
    )
    .fetch_one(pool)
    .await?;
    let account = match (row.player_id, row.user_id, row.password_hash) {
        (Some(id), Some(user_id), Some(hash)) => Some((id, user_id, hash)),
        _ => None,
    };
    Ok(LoginTarget { locked_until: row.locked_until, account })
}

/// A session just opened: the token is shown only this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NewSession {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// Opens a session for a player whose password matched: clears the email's
/// failures and audits the login, in one transaction.
#[allow(clippy::too_many_arguments)]
pub async fn open_session(
    pool: &PgPool,
    operator: i16,
    origin: &Origin,
    player_id: i64,
    user_id: &str,
    email_key: &str,
    token: String,
    max_hours: u32,
) -> AppResult<NewSession> {
    let session_id = Uuid::new_v4();
    let mut tx = pool.begin().await?;
    sqlx::query!("DELETE FROM login_failures WHERE operator_id = $1 AND email_key = $2", operator, email_key)
        .execute(&mut *tx)
        .await?;
    let expires_at = sqlx::query_scalar!(
        r#"INSERT INTO player_sessions (session_id, player_id, operator_id, token_hash, expires_at)
           VALUES ($1, $2, $3, $4, now() + make_interval(hours => $5))
           RETURNING expires_at"#,
        session_id,
        player_id,
        operator,
        crate::staff::token_hash(&token),
        i32::try_from(max_hours).map_err(AppError::internal)?,
    )
    .fetch_one(&mut *tx)
    .await?;
    let entry = origin
        .entry(Some(operator), Action::AuthLogin, audit::target("player", user_id))
        .after(json!({"session_id": session_id, "expires_at": expires_at}));
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(NewSession { token, expires_at })
}

/// What a presented token turned out to be.
#[derive(Debug)]
pub enum Presented {
    /// A live session of this operator, now marked as seen.
    Live { session_id: Uuid, player_id: i64, user_id: String },
    /// A session of this operator that ran past its idle or absolute end.
    Expired,
    /// No such token, a revoked one, or one of another operator.
    Refused,
}

/// How stale `last_seen_at` may get before a request moves it: a player's
/// requests then write the session row at most once a minute rather than
/// each time, and idle expiry is exact to within this.
pub const SEEN_EVERY_SECONDS: f64 = 60.0;

/// Looks up a session by its token's hash and, if it is live, marks it seen
/// (see [`SEEN_EVERY_SECONDS`]): one statement. `idle_minutes` is the
/// operator's current rule.
pub async fn authenticate(
    pool: &PgPool,
    operator: i16,
    token_hash: &[u8],
    idle_minutes: u32,
) -> AppResult<Presented> {
    let idle = i32::try_from(idle_minutes).map_err(AppError::internal)?;
    let row = sqlx::query!(
        r#"WITH found AS (
               SELECT session_id, player_id, operator_id, revoked_at IS NOT NULL AS revoked,
                      expires_at > now() AND last_seen_at + make_interval(mins => $3) > now() AS fresh
               FROM player_sessions WHERE token_hash = $1
           ),
           seen AS (
               UPDATE player_sessions s SET last_seen_at = now()
               FROM found f
               WHERE s.session_id = f.session_id AND f.operator_id = $2 AND NOT f.revoked AND f.fresh
                 AND s.last_seen_at < now() - make_interval(secs => $4)
           )
           SELECT f.session_id, f.player_id, f.operator_id, f.revoked AS "revoked!", f.fresh AS "fresh!",
                  p.user_id
           FROM found f JOIN players p ON p.id = f.player_id"#,
        token_hash,
        operator,
        idle,
        SEEN_EVERY_SECONDS,
    )
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some(row) if row.operator_id == operator && !row.revoked => {
            if row.fresh {
                Presented::Live { session_id: row.session_id, player_id: row.player_id, user_id: row.user_id }
            } else {
                Presented::Expired
            }
        }
        _ => Presented::Refused,
    })
}

/// One of the player's live sessions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub session_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// The session of the request that asked.
    pub current: bool,
}

/// The player's live sessions, newest first.
pub async fn sessions(
    pool: &PgPool,
    player_id: i64,
    current: Uuid,
    idle_minutes: u32,
) -> AppResult<Vec<SessionView>> {
    let idle = i32::try_from(idle_minutes).map_err(AppError::internal)?;
    Ok(sqlx::query_as!(
        SessionView,
        r#"SELECT session_id, created_at, last_seen_at, session_id = $2 AS "current!"
           FROM player_sessions
           WHERE player_id = $1 AND revoked_at IS NULL
             AND expires_at > now() AND last_seen_at + make_interval(mins => $3) > now()
           ORDER BY created_at DESC, session_id"#,
        player_id,
        current,
        idle,
    )
    .fetch_all(pool)
    .await?)
}

/// Ends one of the player's sessions; `false` if the player has none by that
/// id. Ending an ended session changes nothing and is not an error.
pub async fn revoke(pool: &PgPool, player_id: i64, session_id: Uuid) -> AppResult<bool> {
    let ended = sqlx::query!(
        r#"UPDATE player_sessions SET revoked_at = coalesce(revoked_at, now())
           WHERE session_id = $1 AND player_id = $2"#,
        session_id,
        player_id,
    )
    .execute(pool)
    .await?;
    Ok(ended.rows_affected() == 1)
}

/// The account as `GET /v1/me` shows it.
#[derive(Debug)]
pub struct Me {
    pub user_id: String,
    pub email: String,
    pub currency: String,
    pub country: Option<String>,
    pub kyc_tier: i16,
    pub status: String,
    pub status_until: Option<DateTime<Utc>>,
    /// Cash.
    pub balance: i64,
    /// The active bonus's balance.
    pub bonus: i64,
}

pub async fn me(pool: &PgPool, player_id: i64) -> AppResult<Me> {
    sqlx::query_as!(
        Me,
        r#"SELECT p.user_id, a.email, p.currency, p.country, p.kyc_tier, p.balance,
                  -- An expired bonus's balance is never shown, swept or not.
                  CASE WHEN (p.bonus).expires_at > clock_timestamp() THEN (p.bonus).balance ELSE 0 END
                      AS "bonus!",
                  -- A time-out or self-exclusion past its end is over.
                  CASE WHEN p.status_until <= clock_timestamp() THEN 'active' ELSE p.status END AS "status!",
                  CASE WHEN p.status_until <= clock_timestamp() THEN NULL ELSE p.status_until END AS status_until
           FROM players p JOIN accounts a ON a.player_id = p.id
           WHERE p.id = $1"#,
        player_id,
    )
    .fetch_optional(pool)
    .await?
    .ok_or(AppError::PlayerNotFound)
}

/// A player's tier after a change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KycView {
    pub user_id: String,
    pub kyc_tier: i16,
}

/// Sets a player's KYC tier under its row lock, so that no bet or payment
/// in flight is judged by a tier half-changed. A change is audited with the
/// tier before and after and the note; setting the tier the player has
/// changes nothing and writes no entry.
pub async fn set_kyc_tier(
    pool: &PgPool,
    operator: i16,
    origin: &Origin,
    user_id: &UserId,
    tier: i16,
    note: &str,
) -> AppResult<KycView> {
    let mut tx = pool.begin().await?;
    let changed = sqlx::query!(
        r#"UPDATE players p SET kyc_tier = $3, updated_at = now()
           FROM (SELECT id, kyc_tier FROM players WHERE operator_id = $1 AND user_id = $2 FOR UPDATE) old
           WHERE p.id = old.id
           RETURNING p.user_id, p.kyc_tier, old.kyc_tier AS previous"#,
        operator,
        user_id.as_str(),
        tier,
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(AppError::PlayerNotFound)?;
    if changed.previous != changed.kyc_tier {
        let entry = origin
            .entry(Some(operator), Action::PlayerKyc, audit::target("player", user_id))
            .before(json!({"kyc_tier": changed.previous}))
            .after(json!({"kyc_tier": changed.kyc_tier, "note": note}));
        audit::record(&mut tx, &entry).await?;
    }
    tx.commit().await?;
    Ok(KycView { user_id: changed.user_id, kyc_tier: changed.kyc_tier })
}
