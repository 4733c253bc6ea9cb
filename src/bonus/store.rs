//! Grants, forfeits, expiry and the bonus lists, in the database.
//!
//! Every change of a player's bonus runs under the player's wallet lock and
//! goes through the ledger's rules ([`Wallet::grant_bonus`],
//! [`Wallet::end_bonus`], the expiry a [`Wallet`] applies when it is made)
//! and the ledger's one writer ([`write_effects`]): the bonus rows, the
//! active bonus on the wallet row and the player's events are written the
//! way the provider path writes them.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::audit::{self, Action, Origin};
use crate::domain::UserId;
use crate::error::{AppError, AppResult};
use crate::ledger::bonus::{ActiveBonus, Ending};
use crate::ledger::process::{lock_players, write_effects, PlayerKey};
use crate::ledger::rules::{Player, Wallet};

/// A bonus as the lists show it (API §10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BonusView {
    pub bonus_id: Uuid,
    /// The campaign's code.
    pub campaign: String,
    /// `active`, `completed`, `expired` or `forfeited`.
    pub status: String,
    pub granted: i64,
    pub balance: i64,
    pub wagered: i64,
    pub required: i64,
    pub expires_at: DateTime<Utc>,
}

/// The terms a campaign grants with, as it stands.
#[derive(Debug, Clone)]
pub struct Terms {
    pub id: i64,
    pub code: String,
    pub kind: String,
    pub active: bool,
    pub match_percent: i32,
    pub max_bonus: i64,
    pub min_deposit: i64,
    pub wagering_multiplier: i32,
    pub contributions: Json<BTreeMap<String, i64>>,
    pub max_bet: Option<i64>,
    pub max_conversion_multiplier: Option<i32>,
    pub valid_days: i32,
}

/// The campaign `code` of `operator`, if any.
pub async fn terms(conn: &mut PgConnection, operator: i16, code: &str) -> Result<Option<Terms>, sqlx::Error> {
    sqlx::query_as!(
        Terms,
        r#"SELECT id, code, kind, active, match_percent, max_bonus, min_deposit, wagering_multiplier,
                  contributions AS "contributions: Json<BTreeMap<String, i64>>", max_bet,
                  max_conversion_multiplier, valid_days
           FROM bonus_campaigns WHERE operator_id = $1 AND code = $2"#,
        operator,
        code,
    )
    .fetch_optional(conn)
    .await
}

/// Where a grant came from: the deposit that earned it, or the staff
/// request's Idempotency-Key.
pub enum Earned<'a> {
    Deposit(Uuid),
    Staff(&'a str),
}

/// What a deposit of `amount` earns with `terms`: the amount, or why nothing.
pub fn deposit_match(terms: &Terms, amount: i64) -> Result<i64, AppError> {
    let refuse = |why: &str| Err(AppError::BonusNotEligible(format!("bonus code {}: {why}", terms.code)));
    if terms.kind != "deposit_match" {
        return refuse("is not a deposit bonus");
    }
    if !terms.active {
        return refuse("the campaign is not active");
    }
    if amount < terms.min_deposit {
        return refuse(&format!("needs a deposit of at least {}", terms.min_deposit));
    }
    let matched =
        (i128::from(amount) * i128::from(terms.match_percent) / 100).min(i128::from(terms.max_bonus));
    match i64::try_from(matched) {
        Ok(bonus) if bonus > 0 => Ok(bonus),
        _ => refuse("this deposit earns no bonus"),
    }
}

/// Gives the locked `player` a bonus of `amount` on `terms`: the grant row,
/// then the grant's ledger row, the active bonus and the events. Another
/// active bonus is 409 code 122. Returns the player as it now stands.
pub async fn give(
    conn: &mut PgConnection,
    player: Player,
    now: DateTime<Utc>,
    terms: &Terms,
    amount: i64,
    earned: Earned<'_>,
) -> AppResult<(Player, BonusView)> {
    let mut wallet = Wallet::new(player, now, []);
    let bonus_id = Uuid::now_v7();
    let required = i64::from(terms.wagering_multiplier) * amount;
    let expires_at = now + TimeDelta::days(i64::from(terms.valid_days));
    let active = ActiveBonus {
        bonus_id,
        balance: amount,
        wagered: 0,
        required,
        staked: 0,
        max_bet: terms.max_bet,
        cap: terms.max_conversion_multiplier.map(|m| i64::from(m) * amount),
        expires_at,
        weights: terms.contributions.clone(),
    };
    wallet.grant_bonus(active)?;
    let (deposit_tx_id, idempotency_key) = match earned {
        Earned::Deposit(tx_id) => (Some(tx_id), None),
        Earned::Staff(key) => (None, Some(key)),
    };
    sqlx::query!(
        "INSERT INTO bonus_grants (bonus_id, player_id, campaign_id, kind, status, granted, required,
                                   contributions, max_bet, max_conversion_multiplier, expires_at,
                                   created_at, balance, wagered, staked, deposit_tx_id, idempotency_key)
         VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $9, $10, $11, $5, 0, 0, $12, $13)",
        bonus_id,
        wallet.player.id,
        terms.id,
        terms.kind,
        amount,
        required,
        &terms.contributions as _,
        terms.max_bet,
        terms.max_conversion_multiplier,
        expires_at,
        now,
        deposit_tx_id,
        idempotency_key,
    )
    .execute(&mut *conn)
    .await?;
    write_effects(conn, now, &[&wallet]).await?;
    let (status, balance, wagered) = match (&wallet.player.bonus, wallet.effects.ended.last()) {
        (Some(b), _) => ("active", b.balance, b.wagered),
        (None, Some(ended)) => (ended.status.as_str(), 0, ended.wagered),
        (None, None) => ("active", amount, 0),
    };
    let view = BonusView {
        bonus_id,
        campaign: terms.code.clone(),
        status: status.to_owned(),
        granted: amount,
        balance,
        wagered,
        required,
        expires_at,
    };
    Ok((wallet.player, view))
}

/// The bonus a deposit `tx_id` earned, if any: what a replayed deposit answers.
pub async fn earned_by(conn: &mut PgConnection, tx_id: Uuid) -> Result<Option<BonusView>, sqlx::Error> {
    let rows = views(conn, None, Some(tx_id)).await?;
    Ok(rows.into_iter().next())
}

/// Settles what the locked `player` has to settle before its money moves
/// outside the provider path: an expired bonus ends, and `forfeit` gives up
/// the active one. Writes nothing when there is nothing to settle; returns
/// the player as it now stands.
pub async fn settle(
    conn: &mut PgConnection,
    player: Player,
    now: DateTime<Utc>,
    forfeit: bool,
) -> AppResult<Player> {
    let mut wallet = Wallet::new(player, now, []);
    if forfeit {
        wallet.end_bonus(Ending::Forfeited)?;
    }
    if !wallet.effects.is_empty() {
        write_effects(conn, now, &[&wallet]).await?;
    }
    Ok(wallet.player)
}

/// `DELETE /v1/me/bonuses/{bonus_id}`: the player gives up their active
/// bonus; its balance is forfeited. Another player's or an unknown bonus is
/// 404; one that already ended is 409.
pub async fn forfeit(
    pool: &PgPool,
    operator: i16,
    origin: &Origin,
    user_id: &UserId,
    bonus_id: Uuid,
) -> AppResult<BonusView> {
    let mut tx = pool.begin().await?;
    let key: PlayerKey = (operator, user_id.as_str().to_owned());
    let mut locked = lock_players(&mut tx, std::slice::from_ref(&key)).await?;
    let player = locked.players.remove(&key).ok_or(AppError::PlayerNotFound)?;
    let player_id = player.id;
    let owned = views(&mut tx, Some(player_id), None).await?;
    let before = owned.into_iter().find(|b| b.bonus_id == bonus_id).ok_or(AppError::BonusNotFound)?;
    // A bonus past its end expires on this touch, as on any other, whatever the answer.
    let player = settle(&mut tx, player, locked.now, false).await?;
    if player.bonus.as_ref().map(|b| b.bonus_id) != Some(bonus_id) {
        tx.commit().await?;
        return Err(AppError::Conflict(format!("the bonus is {}, not active", before.status)));
    }
    settle(&mut tx, player, locked.now, true).await?;
    let after = views(&mut tx, Some(player_id), None)
        .await?
        .into_iter()
        .find(|b| b.bonus_id == bonus_id)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("a forfeited bonus vanished")))?;
    let entry = origin
        .entry(Some(operator), Action::BonusForfeit, audit::target("player", user_id))
        .before(json!({"bonus_id": bonus_id, "status": before.status, "balance": before.balance}))
        .after(json!({"bonus_id": bonus_id, "status": after.status, "balance": after.balance}));
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(after)
}

/// `POST /v1/players/{user_id}/bonuses`: staff give a `manual` campaign's
/// bonus. A repeat of the Idempotency-Key with the same campaign and amount
/// answers the first grant (`true`: a replay); with others, 409.
pub async fn grant_manual(
    pool: &PgPool,
    operator: i16,
    origin: &Origin,
    user_id: &UserId,
    campaign: &str,
    amount: i64,
    idempotency_key: &str,
) -> AppResult<(BonusView, bool)> {
    let mut tx = pool.begin().await?;
    let key: PlayerKey = (operator, user_id.as_str().to_owned());
    let mut locked = lock_players(&mut tx, std::slice::from_ref(&key)).await?;
    let (player, now) = (locked.players.remove(&key).ok_or(AppError::PlayerNotFound)?, locked.now);
    let earlier = sqlx::query!(
        "SELECT bonus_id FROM bonus_grants WHERE player_id = $1 AND idempotency_key = $2",
        player.id,
        idempotency_key,
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(earlier) = earlier {
        let first = views(&mut tx, Some(player.id), None)
            .await?
            .into_iter()
            .find(|b| b.bonus_id == earlier.bonus_id)
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("a granted bonus vanished")))?;
        if first.campaign != campaign || first.granted != amount {
            return Err(AppError::Conflict("Idempotency-Key was already used for another grant".into()));
        }
        return Ok((first, true));
    }
    let terms = terms(&mut tx, operator, campaign)
        .await?
        .ok_or_else(|| AppError::BonusNotEligible(format!("campaign {campaign}: no such campaign")))?;
    let refuse = |why: &str| Err(AppError::BonusNotEligible(format!("campaign {campaign}: {why}")));
    if terms.kind != "manual" {
        return refuse("is not a manual campaign");
    }
    if !terms.active {
        return refuse("the campaign is not active");
    }
    if terms.max_bonus > 0 && amount > terms.max_bonus {
        return refuse(&format!("the amount is over the campaign's max_bonus of {}", terms.max_bonus));
    }
    let player = settle(&mut tx, player, now, false).await?;
    let (_, view) = give(&mut tx, player, now, &terms, amount, Earned::Staff(idempotency_key)).await?;
    let entry = origin.entry(Some(operator), Action::BonusGrant, audit::target("player", user_id)).after(
        json!({"bonus_id": view.bonus_id, "campaign": campaign, "granted": amount,
                      "required": view.required, "expires_at": view.expires_at,
                      "idempotency_key": idempotency_key}),
    );
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok((view, false))
}

/// Every bonus of the player `user_id` of `operator`, newest first; 404
/// code 101 for no such player.
pub async fn list(pool: &PgPool, operator: i16, user_id: &UserId) -> AppResult<Vec<BonusView>> {
    let mut conn = pool.acquire().await?;
    let player = sqlx::query_scalar!(
        "SELECT id FROM players WHERE operator_id = $1 AND user_id = $2",
        operator,
        user_id.as_str()
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(AppError::PlayerNotFound)?;
    Ok(views(&mut conn, Some(player), None).await?)
}

/// Bonuses of a player, or the one a deposit earned. An active bonus shows
/// its live parts from the wallet row; one past its end shows as expired
/// with nothing left, whether or not the sweeper got to it yet.
async fn views(
    conn: &mut PgConnection,
    player_id: Option<i64>,
    deposit_tx_id: Option<Uuid>,
) -> Result<Vec<BonusView>, sqlx::Error> {
    sqlx::query_as!(
        BonusView,
        r#"SELECT g.bonus_id, c.code AS campaign, g.granted, g.required, g.expires_at,
                  CASE WHEN g.status = 'active' AND g.expires_at <= clock_timestamp() THEN 'expired'
                       ELSE g.status END AS "status!",
                  CASE WHEN g.status <> 'active' THEN g.balance
                       WHEN g.expires_at <= clock_timestamp() THEN 0
                       ELSE coalesce((p.bonus).balance, g.balance) END AS "balance!",
                  CASE WHEN g.status = 'active' THEN coalesce((p.bonus).wagered, g.wagered)
                       ELSE g.wagered END AS "wagered!"
           FROM bonus_grants g
           JOIN bonus_campaigns c ON c.id = g.campaign_id
           JOIN players p ON p.id = g.player_id
           WHERE (g.player_id = $1 OR $1 IS NULL) AND (g.deposit_tx_id = $2 OR $2 IS NULL)
             AND ($1 IS NOT NULL OR $2 IS NOT NULL)
           ORDER BY g.created_at DESC, g.bonus_id DESC"#,
        player_id,
        deposit_tx_id,
    )
    .fetch_all(conn)
    .await
}

/// Ends every active bonus past its end, a batch at a time, each under its
/// player's lock: what the sweeper runs. (Whatever touches a wallet first
/// ends it anyway; this keeps the lists and the reports in step for players
/// who do not come back.) Returns how many ended.
pub async fn expire_due(pool: &PgPool, batch: i64) -> AppResult<usize> {
    let due = sqlx::query!(
        "SELECT p.operator_id, p.user_id FROM bonus_grants g JOIN players p ON p.id = g.player_id
         WHERE g.status = 'active' AND g.expires_at <= now()
         ORDER BY g.expires_at LIMIT $1",
        batch,
    )
    .fetch_all(pool)
    .await?;
    let mut ended = 0;
    for row in due {
        let mut tx = pool.begin().await?;
        let key: PlayerKey = (row.operator_id, row.user_id);
        let mut locked = lock_players(&mut tx, std::slice::from_ref(&key)).await?;
        let Some(player) = locked.players.remove(&key) else { continue };
        let wallet = Wallet::new(player, locked.now, []);
        if !wallet.effects.is_empty() {
            write_effects(&mut tx, locked.now, &[&wallet]).await?;
            ended += wallet.effects.ended.len();
        }
        tx.commit().await?;
    }
    Ok(ended)
}
