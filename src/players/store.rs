//! Player accounts, back-office money movements and the transaction history,
//! in SQL. Deposits and withdrawals take the same player row lock as the
//! provider hot path, so every balance change is serialised per player.
//! Every change writes its audit entry in its own transaction.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::{self, Action, Origin};
use crate::domain::{Amount, Currency, EntryKind, PlayerStatus, UserId};
use crate::error::{AppError, AppResult};
use crate::ledger::process::lock_player;
use crate::ledger::rules::apply_change;
pub use crate::paging::{page, HistoryCursor};

#[derive(Debug, Clone, Serialize)]
pub struct PlayerView {
    pub user_id: String,
    pub currency: String,
    pub balance: i64,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// Creates a player; an existing one with the same currency is returned as it
/// is (`created == false`), one with another currency is a conflict. Only a
/// creation is audited.
pub async fn create_player(
    pool: &PgPool,
    operator: i16,
    origin: &Origin,
    user_id: &UserId,
    currency: &Currency,
) -> AppResult<(PlayerView, bool)> {
    let mut tx = pool.begin().await?;
    let created = sqlx::query_as!(
        PlayerView,
        r#"INSERT INTO players (operator_id, user_id, currency) VALUES ($1, $2, $3)
           ON CONFLICT (operator_id, user_id) DO NOTHING
           RETURNING user_id, currency, balance, status, created_at"#,
        operator,
        user_id.as_str(),
        currency.as_str(),
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(player) = created {
        let entry = origin
            .entry(Some(operator), Action::PlayerCreate, audit::target("player", user_id))
            .after(json!({"user_id": player.user_id, "currency": player.currency, "balance": player.balance,
                   "status": player.status}));
        audit::record(&mut tx, &entry).await?;
        tx.commit().await?;
        return Ok((player, true));
    }
    tx.rollback().await?;
    let existing = find_player(pool, operator, user_id).await?;
    if existing.currency != currency.as_str() {
        return Err(AppError::Conflict(format!("player exists with currency {}", existing.currency)));
    }
    Ok((existing, false))
}

pub async fn find_player(pool: &PgPool, operator: i16, user_id: &UserId) -> AppResult<PlayerView> {
    sqlx::query_as!(
        PlayerView,
        r#"SELECT user_id, currency, balance, status, created_at
           FROM players WHERE operator_id = $1 AND user_id = $2"#,
        operator,
        user_id.as_str(),
    )
    .fetch_optional(pool)
    .await?
    .ok_or(AppError::PlayerNotFound)
}

/// Blocks, self-excludes or reactivates a player. Bets are refused (code 110)
/// unless the player is active; wins and rollbacks are always accepted. A
/// change of status is audited with the status before and after; setting
/// the status the player already has changes nothing and writes no entry.
pub async fn set_status(
    pool: &PgPool,
    operator: i16,
    origin: &Origin,
    user_id: &UserId,
    status: PlayerStatus,
) -> AppResult<PlayerView> {
    let mut tx = pool.begin().await?;
    // The old status comes from the row locked by the subquery, so it is the
    // one this update replaced.
    let changed = sqlx::query!(
        r#"UPDATE players p SET status = $3, updated_at = now()
           FROM (SELECT id, status FROM players WHERE operator_id = $1 AND user_id = $2 FOR UPDATE) old
           WHERE p.id = old.id
           RETURNING p.user_id, p.currency, p.balance, p.status, p.created_at, old.status AS previous"#,
        operator,
        user_id.as_str(),
        status.as_str(),
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(AppError::PlayerNotFound)?;
    if changed.previous != changed.status {
        let entry = origin
            .entry(Some(operator), Action::PlayerStatus, audit::target("player", user_id))
            .before(json!({"status": changed.previous}))
            .after(json!({"status": changed.status}));
        audit::record(&mut tx, &entry).await?;
    }
    tx.commit().await?;
    Ok(PlayerView {
        user_id: changed.user_id,
        currency: changed.currency,
        balance: changed.balance,
        status: changed.status,
        created_at: changed.created_at,
    })
}

/// The answer to a deposit or withdrawal, stored with its idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Payment {
    pub tx_id: Uuid,
    pub balance: i64,
}

/// A deposit or withdrawal, applied at most once per idempotency key.
///
/// The key, a fingerprint of the request and the response are written in the
/// same transaction as the money movement, under the player's row lock, so a
/// repeat either sees all of it or none of it; so is the audit entry, which a
/// replay does not write again. Returns the payment and whether it is a
/// replay of an earlier request.
pub async fn move_money(
    pool: &PgPool,
    operator: i16,
    origin: &Origin,
    user_id: &UserId,
    kind: EntryKind,
    amount: Amount,
    idempotency_key: &str,
) -> AppResult<(Payment, bool)> {
    let change = match kind {
        EntryKind::Deposit => amount.minor_units(),
        EntryKind::Withdrawal => -amount.minor_units(),
        other => return Err(AppError::internal(anyhow::anyhow!("{other:?} is not a back-office movement"))),
    };
    let fingerprint = format!("{}:{}", kind.as_str(), amount);

    let mut tx = pool.begin().await?;
    let player = lock_player(&mut tx, operator, user_id).await?.ok_or(AppError::PlayerNotFound)?;
    let earlier = sqlx::query!(
        r#"SELECT request_fingerprint, tx_id, balance_after
           FROM idempotency_keys WHERE player_id = $1 AND idempotency_key = $2"#,
        player.id,
        idempotency_key,
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(earlier) = earlier {
        if earlier.request_fingerprint != fingerprint {
            return Err(AppError::Conflict("Idempotency-Key was already used for another request".into()));
        }
        return Ok((Payment { tx_id: earlier.tx_id, balance: earlier.balance_after }, true));
    }

    let balance_after = apply_change(player.balance, change)?;
    let payment = Payment { tx_id: Uuid::now_v7(), balance: balance_after };
    let seq = player.last_seq + 1;
    sqlx::query!(
        r#"
        WITH entry AS (
            INSERT INTO ledger (player_id, seq, created_at, tx_id, kind, amount, balance_before, balance_after)
            VALUES ($1, $2, clock_timestamp(), $3, $4::text::entry_kind, $5, $6, $7)
        ),
        key AS (
            INSERT INTO idempotency_keys (player_id, idempotency_key, request_fingerprint, tx_id, balance_after)
            VALUES ($1, $8, $9, $3, $7)
        )
        UPDATE players SET balance = $7, last_seq = $2, updated_at = clock_timestamp() WHERE id = $1
        "#,
        player.id,
        seq,
        payment.tx_id,
        kind.as_str(),
        amount.minor_units(),
        player.balance,
        balance_after,
        idempotency_key,
        fingerprint,
    )
    .execute(&mut *tx)
    .await?;
    let action = if kind == EntryKind::Deposit { Action::PlayerDeposit } else { Action::PlayerWithdrawal };
    let entry = origin
        .entry(Some(operator), action, audit::target("player", user_id))
        .before(json!({"balance": player.balance}))
        .after(json!({"amount": amount, "tx_id": payment.tx_id, "balance": balance_after,
                      "idempotency_key": idempotency_key}));
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok((payment, false))
}

/// One row of a player's transaction history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub tx_id: Uuid,
    pub kind: EntryKind,
    pub amount: i64,
    pub balance_change: i64,
    pub balance_after: i64,
    pub action_id: Option<Uuid>,
    pub game_id: Option<String>,
    pub rolled_back: bool,
    pub created_at: DateTime<Utc>,
    #[serde(skip)]
    seq: i64,
}

/// A page of a player's ledger, newest first, by keyset on the ledger's
/// primary key `(player_id, created_at, seq)`.
pub async fn history(
    pool: &PgPool,
    operator: i16,
    user_id: &UserId,
    limit: i64,
    after: Option<HistoryCursor>,
) -> AppResult<(Vec<HistoryEntry>, Option<HistoryCursor>)> {
    let player_id = sqlx::query_scalar!(
        "SELECT id FROM players WHERE operator_id = $1 AND user_id = $2",
        operator,
        user_id.as_str()
    )
    .fetch_optional(pool)
    .await?
    .ok_or(AppError::PlayerNotFound)?;
    let rows = sqlx::query_as!(
        HistoryEntry,
        r#"SELECT l.tx_id, l.kind AS "kind: EntryKind", l.amount,
                  l.balance_after - l.balance_before AS "balance_change!",
                  l.balance_after, l.action_id, l.game_id,
                  (l.kind IN ('bet', 'win') AND a.reversed_by IS NOT NULL) AS "rolled_back!",
                  l.created_at, l.seq
           FROM ledger l
           LEFT JOIN actions a ON a.action_id = l.action_id
           WHERE l.player_id = $1
             AND ($2::timestamptz IS NULL OR (l.created_at, l.seq) < ($2, $3))
           ORDER BY l.created_at DESC, l.seq DESC
           LIMIT $4"#,
        player_id,
        after.map(|c| c.at()),
        after.map(|c| c.seq()).unwrap_or(0),
        limit + 1,
    )
    .fetch_all(pool)
    .await?;
    Ok(page(rows, limit, |last| HistoryCursor::new(last.created_at, last.seq)))
}
