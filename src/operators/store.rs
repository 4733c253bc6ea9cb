//! Operators and their provider keys in PostgreSQL.
//!
//! Every change bumps the operator's `revision` in the same transaction; a
//! trigger turns that into a `NOTIFY wallet_operators` at commit, which is how
//! every instance learns of it (`registry.rs`).

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::document::Document;
use crate::error::{AppError, AppResult};

/// An operator row: its document and where it stands.
#[derive(Debug, Clone)]
pub struct StoredOperator {
    pub id: i16,
    pub code: String,
    pub document: Document,
    pub version: i32,
    pub revision: i64,
    /// The secrets of its active provider keys.
    pub secrets: Vec<String>,
}

struct Row {
    id: i16,
    code: String,
    config: Value,
    version: i32,
    revision: i64,
    secrets: Vec<String>,
}

impl Row {
    fn into_stored(self) -> AppResult<StoredOperator> {
        let document = Document::parse(&self.code, self.config).map_err(|error| {
            AppError::internal(anyhow::anyhow!(
                "operator {} has a stored document the service refuses: {error}",
                self.code
            ))
        })?;
        Ok(StoredOperator {
            id: self.id,
            code: self.code,
            document,
            version: self.version,
            revision: self.revision,
            secrets: self.secrets,
        })
    }
}

/// Every operator, with its active keys: what an instance starts from.
pub async fn load_all(pool: &PgPool) -> AppResult<Vec<StoredOperator>> {
    let rows = sqlx::query_as!(
        Row,
        r#"SELECT o.id, o.code, o.config, o.version, o.revision,
                  ARRAY(SELECT k.secret FROM provider_keys k
                        WHERE k.operator_id = o.id AND k.revoked_at IS NULL
                        ORDER BY k.created_at) AS "secrets!"
           FROM operators o ORDER BY o.id"#
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(Row::into_stored).collect()
}

/// One operator with its active keys, in one round trip.
pub async fn load(pool: &PgPool, code: &str) -> AppResult<Option<StoredOperator>> {
    let row = sqlx::query_as!(
        Row,
        r#"SELECT o.id, o.code, o.config, o.version, o.revision,
                  ARRAY(SELECT k.secret FROM provider_keys k
                        WHERE k.operator_id = o.id AND k.revoked_at IS NULL
                        ORDER BY k.created_at) AS "secrets!"
           FROM operators o WHERE o.code = $1"#,
        code,
    )
    .fetch_optional(pool)
    .await?;
    row.map(Row::into_stored).transpose()
}

/// Each operator's code and revision: the safety net's cheap comparison.
pub async fn revisions(pool: &PgPool) -> sqlx::Result<Vec<(String, i64)>> {
    let rows = sqlx::query!("SELECT code, revision FROM operators").fetch_all(pool).await?;
    Ok(rows.into_iter().map(|r| (r.code, r.revision)).collect())
}

/// Creates an operator; an existing code is 409.
pub async fn create(conn: &mut PgConnection, code: &str, document: &Document) -> AppResult<(i16, i32)> {
    let config = serde_json::to_value(document).map_err(AppError::internal)?;
    let created = sqlx::query!(
        r#"INSERT INTO operators (code, config) VALUES ($1, $2)
           ON CONFLICT (code) DO NOTHING
           RETURNING id, version"#,
        code,
        config,
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| AppError::Conflict(format!("operator {code} exists already")))?;
    claim_domains(conn, created.id, &document.domains).await?;
    Ok((created.id, created.version))
}

/// The id of operator `code`.
pub async fn id_of(pool: &PgPool, code: &str) -> sqlx::Result<Option<i16>> {
    sqlx::query_scalar!("SELECT id FROM operators WHERE code = $1", code).fetch_optional(pool).await
}

/// The operator `code` locked for a change: its id, document and version.
pub async fn lock(conn: &mut PgConnection, code: &str) -> AppResult<(i16, Value, i32)> {
    let row = sqlx::query!("SELECT id, config, version FROM operators WHERE code = $1 FOR UPDATE", code)
        .fetch_optional(conn)
        .await?
        .ok_or(AppError::OperatorNotFound)?;
    Ok((row.id, row.config, row.version))
}

/// Stores a changed document with the next version.
pub async fn update(conn: &mut PgConnection, id: i16, document: &Document) -> AppResult<i32> {
    let config = serde_json::to_value(document).map_err(AppError::internal)?;
    let version = sqlx::query_scalar!(
        r#"UPDATE operators SET config = $2, version = version + 1, revision = revision + 1, updated_at = now()
           WHERE id = $1 RETURNING version"#,
        id,
        config,
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query!("DELETE FROM operator_domains WHERE operator_id = $1", id).execute(&mut *conn).await?;
    claim_domains(conn, id, &document.domains).await?;
    Ok(version)
}

/// Records that `id` serves `domains`; a domain another operator holds is 409.
async fn claim_domains(conn: &mut PgConnection, id: i16, domains: &[String]) -> AppResult<()> {
    let claimed = sqlx::query_scalar!(
        r#"INSERT INTO operator_domains (domain, operator_id) SELECT unnest($2::text[]), $1
           ON CONFLICT (domain) DO NOTHING RETURNING domain"#,
        id,
        domains,
    )
    .fetch_all(conn)
    .await?;
    match domains.iter().find(|d| !claimed.contains(d)) {
        Some(taken) => Err(AppError::Conflict(format!("domains: {taken} belongs to another operator"))),
        None => Ok(()),
    }
}

/// A provider key as listed: never its secret.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub key_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A new key for operator `id`: 32 random bytes, hex. The secret is returned
/// here and never again.
pub async fn create_key(conn: &mut PgConnection, id: i16) -> AppResult<(Uuid, String)> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let (key_id, secret) = (Uuid::now_v7(), hex::encode(bytes));
    sqlx::query!(
        "INSERT INTO provider_keys (key_id, operator_id, secret) VALUES ($1, $2, $3)",
        key_id,
        id,
        secret
    )
    .execute(&mut *conn)
    .await?;
    touch(conn, id).await?;
    Ok((key_id, secret))
}

pub async fn list_keys(pool: &PgPool, id: i16) -> sqlx::Result<Vec<KeyView>> {
    sqlx::query_as!(
        KeyView,
        "SELECT key_id, created_at, revoked_at FROM provider_keys WHERE operator_id = $1 ORDER BY created_at, key_id",
        id,
    )
    .fetch_all(pool)
    .await
}

/// Revokes a key of operator `id`; the key as it was before, `None` if the
/// operator has no such key. Revoking a revoked key changes nothing.
pub async fn revoke_key(conn: &mut PgConnection, id: i16, key_id: Uuid) -> AppResult<Option<KeyView>> {
    let before = sqlx::query_as!(
        KeyView,
        r#"SELECT key_id, created_at, revoked_at FROM provider_keys
           WHERE operator_id = $1 AND key_id = $2 FOR UPDATE"#,
        id,
        key_id,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if before.as_ref().is_some_and(|key| key.revoked_at.is_none()) {
        sqlx::query!("UPDATE provider_keys SET revoked_at = now() WHERE key_id = $1", key_id)
            .execute(&mut *conn)
            .await?;
        touch(conn, id).await?;
    }
    Ok(before)
}

/// Bumps the operator's revision, so that every instance reloads it.
async fn touch(conn: &mut PgConnection, id: i16) -> sqlx::Result<()> {
    sqlx::query!("UPDATE operators SET revision = revision + 1, updated_at = now() WHERE id = $1", id)
        .execute(conn)
        .await?;
    Ok(())
}
