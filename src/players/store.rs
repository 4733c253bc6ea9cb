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
use crate::bonus::store::{self as bonuses, BonusView, Earned};
use crate::domain::{Amount, Currency, EntryKind, PlayerStatus, UserId};
use crate::error::{AppError, AppResult};
use crate::events::{self, BalanceEvent, Event, StatusEvent};
use crate::ledger::limits::Counted;
use crate::ledger::process::lock_players;
use crate::ledger::rules::{apply_change, Refusal};
use crate::operators::document::{Document, KycTier};
pub use crate::paging::{page, HistoryCursor};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PlayerView {
    pub user_id: String,
    pub currency: String,
    pub balance: i64,
    #[schema(value_type = crate::domain::PlayerStatus)]
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

/// A player as the back office shows it, with the status in force now (a
/// time-out or self-exclusion past its end is over).
pub async fn find_player<'c>(
    conn: impl sqlx::PgExecutor<'c>,
    operator: i16,
    user_id: &UserId,
) -> AppResult<PlayerView> {
    sqlx::query_as!(
        PlayerView,
        r#"SELECT user_id, currency, balance, created_at,
                  CASE WHEN status_until <= clock_timestamp() THEN 'active' ELSE status END AS "status!"
           FROM players WHERE operator_id = $1 AND user_id = $2"#,
        operator,
        user_id.as_str(),
    )
    .fetch_optional(conn)
    .await?
    .ok_or(AppError::PlayerNotFound)
}

/// Blocks, self-excludes or reactivates a player. Bets are refused (code 110)
/// unless the player is active; wins and rollbacks are always accepted. A
/// time-out or self-exclusion in force cannot be lifted or replaced: any
/// other status is 409 code 131. A change of status is audited with the
/// status before and after; setting the status the player already has
/// changes nothing and writes no entry.
pub async fn set_status(
    pool: &PgPool,
    operator: i16,
    origin: &Origin,
    user_id: &UserId,
    status: PlayerStatus,
) -> AppResult<PlayerView> {
    let mut tx = pool.begin().await?;
    let old = sqlx::query!(
        r#"SELECT id, status, status_until, clock_timestamp() AS "now!"
           FROM players WHERE operator_id = $1 AND user_id = $2 FOR UPDATE"#,
        operator,
        user_id.as_str(),
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(AppError::PlayerNotFound)?;
    let previous: PlayerStatus = old.status.parse().map_err(AppError::internal)?;
    let in_force = previous.in_force(old.status_until, old.now);
    if in_force.is_exclusion() && in_force != status {
        let end = old.status_until.map_or("permanently".to_string(), |t| format!("until {}", t.to_rfc3339()));
        return Err(AppError::ExclusionInForce(format!(
            "the player is {} {end}; it cannot be lifted or replaced",
            in_force.as_str()
        )));
    }
    if in_force != status {
        sqlx::query!(
            "UPDATE players SET status = $2, status_until = NULL, updated_at = $3 WHERE id = $1",
            old.id,
            status.as_str(),
            old.now,
        )
        .execute(&mut *tx)
        .await?;
        let entry = origin
            .entry(Some(operator), Action::PlayerStatus, audit::target("player", user_id))
            .before(json!({"status": in_force.as_str()}))
            .after(json!({"status": status.as_str()}));
        audit::record(&mut tx, &entry).await?;
        let event = Event::Status(StatusEvent { status, status_until: None });
        events::log(&mut tx, old.id, old.now, &event).await?;
    }
    let view = find_player(&mut *tx, operator, user_id).await?;
    tx.commit().await?;
    Ok(view)
}

/// The answer to a deposit or withdrawal, stored with its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Payment {
    pub tx_id: Uuid,
    /// The cash balance after it.
    pub balance: i64,
    /// A deposit with a `bonus_code`: the bonus it earned, or why none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bonus: Option<BonusOutcome>,
}

/// What a deposit's `bonus_code` came to: the bonus, or the error that says
/// why there is none (the deposit itself succeeded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum BonusOutcome {
    Granted(BonusView),
    NotGranted { code: u16, message: String },
}

/// What the player's cashier asks of their bonus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BonusAsk<'a> {
    Nothing,
    /// A deposit naming a deposit-match campaign.
    Code(&'a str),
    /// A withdrawal that gives up the active bonus.
    Forfeit,
}

/// Who asks for a deposit or withdrawal, which decides the rules it passes.
#[derive(Debug, Clone, Copy)]
pub enum Requester<'a> {
    /// A staff adjustment (§2): audited, never gated by KYC.
    Staff,
    /// The player's own cashier, or the operator's payment provider confirming
    /// one of the player's payments: gated by the player's status, KYC tier
    /// and deposit limits under the rules of the player's operator, and
    /// counted in the player's lifetime deposits and limit counters.
    Player(&'a Document),
}

impl Requester<'_> {
    /// Part of the request's fingerprint: a key the staff used does not
    /// replay for the player, nor the other way round (it is a conflict).
    fn label(&self) -> &'static str {
        match self {
            Requester::Staff => "",
            Requester::Player(_) => "player:",
        }
    }
}

/// Whether `tier` lets a player make their own `kind` of `amount`, having
/// deposited `own_deposits` before: deposits need `deposit` and stay within
/// `deposit_lifetime_max`, withdrawals need `withdraw`.
pub fn kyc_allows(tier: &KycTier, kind: EntryKind, amount: Amount, own_deposits: i64) -> Result<(), Refusal> {
    let allowed = match kind {
        EntryKind::Deposit => {
            let total = own_deposits.checked_add(amount.minor_units());
            tier.deposit && tier.deposit_lifetime_max.is_none_or(|max| total.is_some_and(|t| t <= max))
        }
        EntryKind::Withdrawal => tier.withdraw,
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Refusal::KycTierForbids)
    }
}

/// A deposit or withdrawal, applied at most once per idempotency key: the
/// one function every way money enters or leaves a wallet goes through
/// (the back office, the player's cashier, a payment provider's callback).
///
/// The key, a fingerprint of the request and the response are written in the
/// same transaction as the money movement, under the player's row lock, so a
/// repeat either sees all of it or none of it; so is the audit entry, which a
/// replay does not write again. A replay answers the first result even if
/// the rules have changed since. Returns the payment and whether it is a
/// replay of an earlier request.
#[allow(clippy::too_many_arguments)]
pub async fn move_money(
    pool: &PgPool,
    operator: i16,
    origin: &Origin,
    requester: Requester<'_>,
    user_id: &UserId,
    kind: EntryKind,
    amount: Amount,
    idempotency_key: &str,
    ask: BonusAsk<'_>,
) -> AppResult<(Payment, bool)> {
    let change = match kind {
        EntryKind::Deposit => amount.minor_units(),
        EntryKind::Withdrawal => -amount.minor_units(),
        other => return Err(AppError::internal(anyhow::anyhow!("{other:?} is not a money movement"))),
    };
    let fingerprint = format!("{}{}:{}", requester.label(), kind.as_str(), amount);

    let mut tx = pool.begin().await?;
    let key = (operator, user_id.as_str().to_owned());
    let mut locked = lock_players(&mut tx, std::slice::from_ref(&key)).await?;
    let (player, now) = (locked.players.remove(&key).ok_or(AppError::PlayerNotFound)?, locked.now);
    // The player's lifetime deposits come with the key's lookup: no extra round trip.
    let earlier = sqlx::query!(
        r#"SELECT p.own_deposits, k.request_fingerprint AS "request_fingerprint?", k.tx_id AS "tx_id?",
                  k.balance_after AS "balance_after?"
           FROM players p
           LEFT JOIN idempotency_keys k ON k.player_id = p.id AND k.idempotency_key = $2
           WHERE p.id = $1"#,
        player.id,
        idempotency_key,
    )
    .fetch_one(&mut *tx)
    .await?;
    if let (Some(first), Some(tx_id), Some(balance)) =
        (earlier.request_fingerprint, earlier.tx_id, earlier.balance_after)
    {
        if first != fingerprint {
            return Err(AppError::Conflict("Idempotency-Key was already used for another request".into()));
        }
        let bonus = bonuses::earned_by(&mut tx, tx_id).await?.map(BonusOutcome::Granted);
        return Ok((Payment { tx_id, balance, bonus }, true));
    }
    // A player's withdrawal takes cash only, and not while a bonus is
    // active unless it gives the bonus up (API §10).
    let own_withdrawal = kind == EntryKind::Withdrawal && matches!(requester, Requester::Player(_));
    let forfeit = own_withdrawal && ask == BonusAsk::Forfeit;
    if own_withdrawal && !forfeit && player.bonus.as_ref().is_some_and(|b| !b.expired_at(now)) {
        return Err(AppError::BonusBlocksWithdrawal);
    }
    let given_up =
        player.bonus.as_ref().filter(|b| forfeit && !b.expired_at(now)).map(|b| (b.bonus_id, b.balance));
    let mut player = bonuses::settle(&mut tx, player, now, forfeit).await?;
    let cash_before = player.balance;
    let own_deposit = match requester {
        Requester::Staff => 0,
        // Cash can always be taken out, excluded or not.
        Requester::Player(document) if kind == EntryKind::Withdrawal => {
            kyc_allows(&document.rules.kyc_tier(player.kyc_tier), kind, amount, earlier.own_deposits)?;
            0
        }
        Requester::Player(document) => {
            if !player.status_at(now).may_bet() {
                return Err(Refusal::PlayerBlocked.into());
            }
            kyc_allows(&document.rules.kyc_tier(player.kyc_tier), kind, amount, earlier.own_deposits)?;
            if let Some(guard) = &mut player.guard {
                let counted = Counted { deposited: amount.minor_units(), ..Counted::default() };
                guard.check(document.zone(), now, counted)?;
                guard.count(document.zone(), now, counted);
            }
            amount.minor_units()
        }
    };

    let balance_after = apply_change(player.balance, change)?;
    let mut payment = Payment { tx_id: Uuid::now_v7(), balance: balance_after, bonus: None };
    let seq = player.last_seq + 1;
    let bonus_balance = player.bonus.as_ref().map_or(0, |b| b.balance);
    let event = Event::Balance(BalanceEvent {
        cash: balance_after,
        bonus: bonus_balance,
        total: balance_after + bonus_balance,
        tx_id: payment.tx_id,
    })
    .body()
    .map_err(AppError::internal)?;
    // A limited player's counters as they now stand (changed only by an own
    // deposit, and written back whole: they were read under this lock).
    let counters = player.guard.as_ref().map_or([None; 3], |g| g.usage);
    sqlx::query!(
        r#"
        WITH entry AS (
            INSERT INTO ledger (player_id, seq, created_at, tx_id, kind, amount, balance_before, balance_after)
            VALUES ($1, $2, $11, $3, $4::text::entry_kind, $5, $6, $7)
        ),
        key AS (
            INSERT INTO idempotency_keys (player_id, idempotency_key, request_fingerprint, tx_id, balance_after)
            VALUES ($1, $8, $9, $3, $7)
        ),
        event AS (
            INSERT INTO player_events (player_id, at, kind, body) VALUES ($1, $11, 'balance', $15)
            RETURNING player_id, id
        ),
        notified AS (SELECT notify_player_events($11, ARRAY[player_id], ARRAY[id]) FROM event)
        UPDATE players SET balance = $7, last_seq = $2, own_deposits = own_deposits + $10, updated_at = $11,
                           day_sums = coalesce($12, day_sums), week_sums = coalesce($13, week_sums),
                           month_sums = coalesce($14, month_sums)
        FROM notified
        WHERE id = $1
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
        own_deposit,
        now,
        counters[0] as _,
        counters[1] as _,
        counters[2] as _,
        event,
    )
    .execute(&mut *tx)
    .await?;
    if let (Requester::Player(document), BonusAsk::Code(code)) = (requester, ask) {
        if kind == EntryKind::Deposit {
            player.balance = balance_after;
            player.last_seq = seq;
            let offered = offer(&mut tx, operator, document, player, now, code, amount, payment.tx_id).await;
            payment.bonus = Some(match offered {
                Ok(view) => {
                    let entry = origin
                        .entry(Some(operator), Action::BonusGrant, audit::target("player", user_id))
                        .after(json!({"bonus_id": view.bonus_id, "campaign": view.campaign,
                                      "granted": view.granted, "required": view.required,
                                      "expires_at": view.expires_at, "deposit_tx_id": payment.tx_id}));
                    audit::record(&mut tx, &entry).await?;
                    BonusOutcome::Granted(view)
                }
                Err(
                    refused @ (AppError::BonusNotEligible(_)
                    | AppError::Refused(Refusal::BonusActive)
                    | AppError::FeatureDisabled(_)),
                ) => BonusOutcome::NotGranted { code: refused.code(), message: refused.to_string() },
                Err(other) => return Err(other),
            });
        }
    }
    let action = if kind == EntryKind::Deposit { Action::PlayerDeposit } else { Action::PlayerWithdrawal };
    let entry = origin
        .entry(Some(operator), action, audit::target("player", user_id))
        .before(json!({"balance": cash_before}))
        .after(json!({"amount": amount, "tx_id": payment.tx_id, "balance": balance_after,
                      "idempotency_key": idempotency_key}));
    audit::record(&mut tx, &entry).await?;
    if let Some((bonus_id, balance)) = given_up {
        let entry = origin
            .entry(Some(operator), Action::BonusForfeit, audit::target("player", user_id))
            .before(json!({"bonus_id": bonus_id, "status": "active", "balance": balance}))
            .after(json!({"bonus_id": bonus_id, "status": "forfeited", "balance": 0,
                          "withdrawal_tx_id": payment.tx_id}));
        audit::record(&mut tx, &entry).await?;
    }
    tx.commit().await?;
    Ok((payment, false))
}

/// What a deposit of `amount` with `code` earns the locked `player`, under
/// §10's eligibility: bonuses on, a deposit-match campaign that is active,
/// a deposit of at least its `min_deposit`, once per player and campaign,
/// and no other active bonus. A refusal has written nothing.
#[allow(clippy::too_many_arguments)]
async fn offer(
    conn: &mut sqlx::PgConnection,
    operator: i16,
    document: &Document,
    player: crate::ledger::rules::Player,
    now: DateTime<Utc>,
    code: &str,
    amount: Amount,
    deposit_tx_id: Uuid,
) -> AppResult<BonusView> {
    crate::bonus::require_bonuses(document)?;
    let terms = bonuses::terms(&mut *conn, operator, code)
        .await?
        .ok_or_else(|| AppError::BonusNotEligible(format!("bonus code {code}: no such code")))?;
    let granted = bonuses::deposit_match(&terms, amount.minor_units())?;
    let before = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM bonus_grants WHERE player_id = $1 AND campaign_id = $2) AS "before!""#,
        player.id,
        terms.id,
    )
    .fetch_one(&mut *conn)
    .await?;
    if before {
        return Err(AppError::BonusNotEligible(format!("bonus code {code}: already used by this player")));
    }
    if player.bonus.is_some() {
        return Err(Refusal::BonusActive.into());
    }
    let (_, view) = bonuses::give(conn, player, now, &terms, granted, Earned::Deposit(deposit_tx_id)).await?;
    Ok(view)
}

/// One row of a player's transaction history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub tx_id: Uuid,
    pub kind: EntryKind,
    pub amount: i64,
    /// The row's change to cash and bonus together.
    pub balance_change: i64,
    pub cash_change: i64,
    pub bonus_change: i64,
    /// The cash balance after the row.
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
                  l.balance_after - l.balance_before + l.bonus_change AS "balance_change!",
                  l.balance_after - l.balance_before AS "cash_change!", l.bonus_change,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tier_gates_the_players_own_deposits_withdrawals_and_lifetime_total() {
        let amount = |n| Amount::positive(n).unwrap();
        let tier =
            |deposit, withdraw, max| KycTier { deposit, play: true, withdraw, deposit_lifetime_max: max };
        let refused = Err(Refusal::KycTierForbids);
        assert_eq!(kyc_allows(&tier(false, true, None), EntryKind::Deposit, amount(1), 0), refused);
        assert_eq!(kyc_allows(&tier(true, false, None), EntryKind::Withdrawal, amount(1), 0), refused);
        assert_eq!(kyc_allows(&tier(true, false, None), EntryKind::Deposit, amount(1), i64::MAX), Ok(()));
        assert_eq!(kyc_allows(&tier(false, true, None), EntryKind::Withdrawal, amount(1), 0), Ok(()));
        let capped = tier(true, true, Some(1_000));
        assert_eq!(kyc_allows(&capped, EntryKind::Deposit, amount(400), 600), Ok(()), "up to the max");
        assert_eq!(kyc_allows(&capped, EntryKind::Deposit, amount(401), 600), refused, "past the max");
        assert_eq!(kyc_allows(&capped, EntryKind::Deposit, amount(1), i64::MAX), refused, "no overflow");
        assert_eq!(kyc_allows(&capped, EntryKind::Withdrawal, amount(5_000), 5_000), Ok(()));
        assert_eq!(kyc_allows(&capped, EntryKind::Bet, amount(1), 0), refused);
    }
}
