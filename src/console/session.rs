//! Console sign-in: staff passwords, the lockout after failed sign-ins, and
//! the console's sessions, in PostgreSQL.
//!
//! A session is a cookie holding 256 random bits (`csn_` and hex), stored only
//! as its SHA-256. It ends [`IDLE_MINUTES`] after its last request or
//! [`MAX_HOURS`] after sign-in, whichever comes first, at sign-out, and when
//! its staff member is deleted. Its CSRF token is derived from the cookie's
//! value ([`csrf_token`]): only a page that was given it by the service can
//! send it, and it needs no storage of its own.

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::{self, Action, Actor, Origin};
use crate::error::{AppError, AppResult};
use crate::staff::{token_hash, Identity};

/// Minutes without a request after which a session ends.
pub const IDLE_MINUTES: i32 = 30;
/// Hours after sign-in after which a session ends, however busy.
pub const MAX_HOURS: i32 = 12;
/// The failures within [`LOCKOUT_MINUTES`](crate::accounts::lockout::LOCKOUT_MINUTES)
/// that lock an email for the console.
pub const MAX_FAILURES: u32 = 5;

/// A new session's cookie value.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("csn_{}", hex::encode(bytes))
}

/// The CSRF token of the session whose cookie is `token`: a hash under its
/// own label, so it is not the cookie, nor what the cookie is stored as.
pub fn csrf_token(token: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"wallet console csrf\0");
    hasher.update(token.as_bytes());
    hex::encode(hasher.finalize())
}

/// A staff member who may sign in with this email, if any.
pub struct SignInTarget {
    pub locked_until: Option<DateTime<Utc>>,
    /// Staff id, operator and password hash of the live staff member whose
    /// password this email holds.
    pub staff: Option<(Uuid, Option<i16>, String)>,
}

/// The lockout of `email_key` and the staff member it signs in as, in one query.
pub async fn sign_in_target(pool: &PgPool, email_key: &str) -> AppResult<SignInTarget> {
    let row = sqlx::query!(
        r#"SELECT (SELECT locked_until FROM staff_login_failures
                   WHERE email_key = $1 AND locked_until > now()) AS locked_until,
                  s.staff_id AS "staff_id?", s.operator_id, s.password_hash
           FROM (SELECT) AS one
           LEFT JOIN staff s ON lower(s.email) = $1 AND s.deleted_at IS NULL
                            AND s.password_hash IS NOT NULL"#,
        email_key,
    )
    .fetch_one(pool)
    .await?;
    let staff = match (row.staff_id, row.password_hash) {
        (Some(id), Some(hash)) => Some((id, row.operator_id, hash)),
        _ => None,
    };
    Ok(SignInTarget { locked_until: row.locked_until, staff })
}

/// Opens a session for a staff member whose password matched: clears the
/// email's failures and audits the sign-in (`auth.login`, target
/// `staff:<id>`), in one transaction. Answers when it ends at the latest.
pub async fn open(
    pool: &PgPool,
    staff_id: Uuid,
    operator: Option<i16>,
    email_key: &str,
    token: &str,
    request_id: Option<String>,
) -> AppResult<DateTime<Utc>> {
    let mut tx = pool.begin().await?;
    sqlx::query!("DELETE FROM staff_login_failures WHERE email_key = $1", email_key)
        .execute(&mut *tx)
        .await?;
    // Sessions that ended more than a day ago are of no further use.
    sqlx::query!(
        "DELETE FROM console_sessions WHERE staff_id = $1 AND expires_at < now() - interval '1 day'",
        staff_id,
    )
    .execute(&mut *tx)
    .await?;
    let expires_at = sqlx::query_scalar!(
        r#"INSERT INTO console_sessions (token_hash, staff_id, expires_at)
           VALUES ($1, $2, now() + make_interval(hours => $3))
           RETURNING expires_at"#,
        token_hash(token),
        staff_id,
        MAX_HOURS,
    )
    .fetch_one(&mut *tx)
    .await?;
    let origin = Origin { actor: Actor::Staff(staff_id.to_string()), request_id };
    let entry = origin
        .entry(operator, Action::AuthLogin, audit::target("staff", staff_id))
        .after(json!({"via": "console", "expires_at": expires_at}));
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(expires_at)
}

/// A live session's staff member, from the session's cookie value; marks the
/// session used. `None` for an unknown, ended or idle session, or one whose
/// staff member was deleted.
pub async fn identity(pool: &PgPool, token: &str) -> AppResult<Option<(Identity, String)>> {
    let row = sqlx::query!(
        r#"UPDATE console_sessions c SET last_seen_at = now()
           FROM staff s
           WHERE c.token_hash = $1 AND c.revoked_at IS NULL AND c.expires_at > now()
             AND c.last_seen_at > now() - make_interval(mins => $2)
             AND s.staff_id = c.staff_id AND s.deleted_at IS NULL
           RETURNING s.staff_id, s.role, s.operator_id, s.email"#,
        token_hash(token),
        IDLE_MINUTES,
    )
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        let role =
            r.role.parse().map_err(|()| AppError::internal(anyhow::anyhow!("staff role {}", r.role)))?;
        Ok((Identity { staff_id: Some(r.staff_id), role, operator: r.operator_id }, r.email))
    })
    .transpose()
}

/// Ends the session whose cookie value is `token` (sign-out).
pub async fn end(pool: &PgPool, token: &str) -> AppResult<()> {
    sqlx::query!(
        "UPDATE console_sessions SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL",
        token_hash(token),
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Sets (or replaces) the password of a live staff member visible to
/// `scope` (`None`: platform, every staff member), and ends the member's
/// console sessions. `false` if there is no such member. A password held by
/// another live member with the same email is 409. Audited as
/// `staff.password`, without the password.
pub async fn set_password(
    pool: &PgPool,
    staff_id: Uuid,
    scope: Option<i16>,
    password_hash: &str,
    origin: &Origin,
) -> AppResult<bool> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query!(
        r#"UPDATE staff SET password_hash = $3
           WHERE staff_id = $1 AND deleted_at IS NULL AND ($2::int2 IS NULL OR operator_id = $2)
           RETURNING operator_id"#,
        staff_id,
        scope,
        password_hash,
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(email_taken)?;
    let Some(updated) = updated else { return Ok(false) };
    sqlx::query!(
        "UPDATE console_sessions SET revoked_at = now() WHERE staff_id = $1 AND revoked_at IS NULL",
        staff_id,
    )
    .execute(&mut *tx)
    .await?;
    let entry = origin.entry(updated.operator_id, Action::StaffPassword, audit::target("staff", staff_id));
    audit::record(&mut tx, &entry.after(json!({"staff_id": staff_id, "sign_in": "set"}))).await?;
    tx.commit().await?;
    Ok(true)
}

/// The unique index of sign-in emails, as a 409.
pub fn email_taken(error: sqlx::Error) -> AppError {
    match &error {
        sqlx::Error::Database(db) if db.constraint() == Some("staff_email_signin") => AppError::Conflict(
            "email: another staff member signs in with this email; delete it or give this one no password"
                .into(),
        ),
        _ => error.into(),
    }
}
