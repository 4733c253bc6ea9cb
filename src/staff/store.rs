//! Staff accounts in PostgreSQL. Tokens are stored only as their SHA-256:
//! they are 256 random bits, so a fast hash is enough to make a stolen table
//! useless, and a lookup is one index probe.

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::{token_hash, Identity, Role};
use crate::audit::{self, Action, Origin};
use crate::error::{AppError, AppResult};
use crate::operators::registry::Registry;

/// The live staff member holding the token with this hash.
pub async fn find_by_token(pool: &PgPool, hash: &[u8]) -> AppResult<Option<Identity>> {
    let row = sqlx::query!(
        "SELECT staff_id, role, operator_id FROM staff WHERE token_hash = $1 AND deleted_at IS NULL",
        hash,
    )
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        let role =
            r.role.parse().map_err(|()| AppError::internal(anyhow::anyhow!("staff role {}", r.role)))?;
        Ok(Identity { staff_id: Some(r.staff_id), role, operator: r.operator_id })
    })
    .transpose()
}

/// A staff member as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StaffView {
    pub staff_id: Uuid,
    pub email: String,
    pub role: Role,
    pub operator: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(skip)]
    #[schema(ignore)]
    operator_id: Option<i16>,
}

impl StaffView {
    pub fn with_operator_code(mut self, registry: &std::sync::Arc<Registry>) -> StaffView {
        self.operator = self.operator_id.and_then(|id| registry.by_id(id)).map(|t| t.code.clone());
        self
    }
}

/// A staff member just created, with the token shown only this once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NewStaffView {
    #[serde(flatten)]
    pub staff: StaffView,
    /// `stf_` and 64 hex digits; shown only this once.
    pub token: String,
}

impl NewStaffView {
    pub fn with_operator_code(mut self, registry: &std::sync::Arc<Registry>) -> NewStaffView {
        self.staff = self.staff.with_operator_code(registry);
        self
    }
}

/// Creates a staff member; a live one with the same email in the same scope is
/// 409. Audited (without the token) in the same transaction.
pub async fn create(
    pool: &PgPool,
    operator: Option<i16>,
    email: &str,
    role: Role,
    password_hash: Option<&str>,
    origin: &Origin,
) -> AppResult<NewStaffView> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("stf_{}", hex::encode(bytes));
    let staff_id = Uuid::now_v7();
    let mut tx = pool.begin().await?;
    let created_at = sqlx::query_scalar!(
        r#"INSERT INTO staff (staff_id, operator_id, email, role, token_hash, password_hash)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (coalesce(operator_id, 0), lower(email)) WHERE deleted_at IS NULL DO NOTHING
           RETURNING created_at"#,
        staff_id,
        operator,
        email,
        role.as_str(),
        token_hash(&token),
        password_hash,
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(crate::console::session::email_taken)?
    .ok_or_else(|| AppError::Conflict("email: a staff member with this email exists already".into()))?;
    let after = json!({"staff_id": staff_id, "email": email, "role": role, "operator_id": operator,
                       "sign_in": password_hash.is_some()});
    let entry = origin.entry(operator, Action::StaffCreate, audit::target("staff", staff_id));
    audit::record(&mut tx, &entry.after(after)).await?;
    tx.commit().await?;
    let staff = StaffView {
        staff_id,
        email: email.to_owned(),
        role,
        operator: None,
        created_at,
        operator_id: operator,
    };
    Ok(NewStaffView { staff, token })
}

/// Live staff: of one operator, or everyone's for platform callers (`None`).
pub async fn list(pool: &PgPool, operator: Option<i16>) -> AppResult<Vec<StaffView>> {
    let rows = sqlx::query!(
        r#"SELECT staff_id, email, role, operator_id, created_at FROM staff
           WHERE deleted_at IS NULL AND ($1::int2 IS NULL OR operator_id = $1)
           ORDER BY created_at, staff_id"#,
        operator,
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            let role =
                r.role.parse().map_err(|()| AppError::internal(anyhow::anyhow!("staff role {}", r.role)))?;
            Ok(StaffView {
                staff_id: r.staff_id,
                email: r.email,
                role,
                operator: None,
                created_at: r.created_at,
                operator_id: r.operator_id,
            })
        })
        .collect()
}

/// Deletes a live staff member visible to the caller's scope; `false` if none.
/// Its token is refused from the next request on. Audited.
pub async fn delete(
    pool: &PgPool,
    staff_id: Uuid,
    operator: Option<i16>,
    origin: &Origin,
) -> AppResult<bool> {
    let mut tx = pool.begin().await?;
    let deleted = sqlx::query!(
        r#"UPDATE staff SET deleted_at = now()
           WHERE staff_id = $1 AND deleted_at IS NULL AND ($2::int2 IS NULL OR operator_id = $2)
           RETURNING email, role, operator_id"#,
        staff_id,
        operator,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(deleted) = deleted else { return Ok(false) };
    let before = json!({"staff_id": staff_id, "email": deleted.email, "role": deleted.role,
                        "operator_id": deleted.operator_id});
    let entry = origin.entry(deleted.operator_id, Action::StaffDelete, audit::target("staff", staff_id));
    audit::record(&mut tx, &entry.before(before)).await?;
    tx.commit().await?;
    Ok(true)
}
