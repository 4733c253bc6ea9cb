//! The wallet's money rules, evaluated in memory.
//!
//! A [`Wallet`] holds one locked player's balance and every stored action the
//! requests in hand refer to. [`Wallet::apply`] runs one request's actions in
//! order and either keeps all of their effects or none; what was kept is later
//! turned into a single batched write by the store. No I/O happens here, which
//! is what lets the same rules serve one request or a coalesced group of them.

use std::collections::HashMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use uuid::Uuid;

use super::{Action, Batch};
use crate::domain::{EntryKind, PlayerStatus};
use crate::error::AppError;

/// The locked player row as the rules need it.
#[derive(Debug, Clone)]
pub struct Player {
    pub id: i64,
    pub currency: String,
    pub balance: i64,
    pub status: PlayerStatus,
    pub last_seq: i64,
}

/// A stored action, or the placeholder a pre-rollback left for an unseen original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRecord {
    pub action_id: Uuid,
    pub player_id: i64,
    /// `None` for a placeholder: the original has not arrived yet.
    pub kind: Option<EntryKind>,
    pub amount: Option<i64>,
    pub original_action_id: Option<Uuid>,
    pub tx_id: Option<Uuid>,
    pub processed_at: Option<DateTime<Utc>>,
    pub game: Option<String>,
    pub game_id: Option<String>,
    pub reversed_by: Option<Uuid>,
}

impl ActionRecord {
    pub fn is_placeholder(&self) -> bool {
        self.tx_id.is_none()
    }

    /// Whether `action` by `player_id` repeats this stored action exactly.
    fn same_as(&self, player_id: i64, action: &Action) -> bool {
        let (kind, amount, original) = action.parts();
        self.player_id == player_id
            && self.kind == Some(kind)
            && self.amount == amount
            && self.original_action_id == original
    }
}

/// One row for the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    pub tx_id: Uuid,
    pub kind: EntryKind,
    pub amount: i64,
    pub balance_before: i64,
    pub balance_after: i64,
    pub action_id: Uuid,
    pub original_action_id: Option<Uuid>,
    pub game: Option<String>,
    pub game_id: Option<String>,
}

/// Signed changes to one RTP rollup bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupDelta {
    pub total_bet: i64,
    pub total_win: i64,
    pub rolled_back_bet: i64,
    pub rolled_back_win: i64,
}

/// Rollup key: hour bucket and game ('' when none was sent).
pub type RollupKey = (DateTime<Utc>, String);
/// Round key: hour bucket, game and game_id.
pub type RoundKey = (DateTime<Utc>, String, String);

/// What one accepted request answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// `(action_id, tx_id)` in request order.
    pub transactions: Vec<(Uuid, Uuid)>,
    pub balance: i64,
}

/// Effects of accepted requests, not yet written.
#[derive(Debug, Clone, Default)]
pub struct Effects {
    /// Final state of every action row created or changed.
    pub actions: HashMap<Uuid, ActionRecord>,
    pub entries: Vec<Entry>,
    pub rollups: HashMap<RollupKey, RollupDelta>,
    pub rounds: HashMap<RoundKey, i32>,
}

impl Effects {
    fn absorb(&mut self, other: Effects) {
        self.actions.extend(other.actions);
        self.entries.extend(other.entries);
        for (key, delta) in other.rollups {
            let into = self.rollups.entry(key).or_default();
            into.total_bet += delta.total_bet;
            into.total_win += delta.total_win;
            into.rolled_back_bet += delta.rolled_back_bet;
            into.rolled_back_win += delta.rolled_back_win;
        }
        for (key, delta) in other.rounds {
            *self.rounds.entry(key).or_default() += delta;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// One locked player and the stored actions relevant to the requests in hand.
#[derive(Debug)]
pub struct Wallet {
    pub player: Player,
    /// Processing time of everything applied now (taken after the lock).
    pub now: DateTime<Utc>,
    /// Action rows as loaded from the database.
    pub stored: HashMap<Uuid, ActionRecord>,
    /// Accepted, unwritten effects.
    pub effects: Effects,
}

impl Wallet {
    pub fn new(player: Player, now: DateTime<Utc>, stored: impl IntoIterator<Item = ActionRecord>) -> Wallet {
        Wallet {
            player,
            now,
            stored: stored.into_iter().map(|a| (a.action_id, a)).collect(),
            effects: Effects::default(),
        }
    }

    /// Applies one request's actions in order: all of them, or none.
    pub fn apply(&mut self, batch: &Batch) -> Result<Receipt, AppError> {
        if batch.currency.as_str() != self.player.currency {
            return Err(AppError::CurrencyMismatch);
        }
        let mut draft = Draft {
            wallet: self,
            balance: self.player.balance,
            last_seq: self.player.last_seq,
            effects: Effects::default(),
            batch,
        };
        let mut transactions = Vec::with_capacity(batch.actions.len());
        for action in &batch.actions {
            transactions.push((action.id(), draft.apply(action)?));
        }
        let (balance, last_seq, effects) = (draft.balance, draft.last_seq, draft.effects);
        self.player.balance = balance;
        self.player.last_seq = last_seq;
        self.effects.absorb(effects);
        Ok(Receipt { transactions, balance })
    }

    /// Rows that must be inserted (never stored before) versus updated.
    pub fn split_actions(&self) -> (Vec<&ActionRecord>, Vec<&ActionRecord>) {
        self.effects.actions.values().partition(|a| !self.stored.contains_key(&a.action_id))
    }
}

/// A request being evaluated: changes stay here until every action passed.
struct Draft<'a> {
    wallet: &'a Wallet,
    balance: i64,
    last_seq: i64,
    effects: Effects,
    batch: &'a Batch,
}

impl Draft<'_> {
    fn lookup(&self, id: Uuid) -> Option<&ActionRecord> {
        self.effects
            .actions
            .get(&id)
            .or_else(|| self.wallet.effects.actions.get(&id))
            .or_else(|| self.wallet.stored.get(&id))
    }

    fn player_id(&self) -> i64 {
        self.wallet.player.id
    }

    fn apply(&mut self, action: &Action) -> Result<Uuid, AppError> {
        match self.lookup(action.id()).cloned() {
            Some(stored) if !stored.is_placeholder() => {
                if stored.same_as(self.player_id(), action) {
                    Ok(stored.tx_id.expect("processed actions have a tx_id"))
                } else {
                    Err(AppError::Conflict(format!(
                        "action_id {} was already used with other parameters",
                        action.id()
                    )))
                }
            }
            Some(placeholder) => self.apply_late_original(action, placeholder),
            None => self.apply_new(action),
        }
    }

    fn apply_new(&mut self, action: &Action) -> Result<Uuid, AppError> {
        match *action {
            Action::Bet { amount, .. } => {
                if !self.wallet.player.status.may_bet() {
                    return Err(AppError::PlayerBlocked);
                }
                let amount = amount.minor_units();
                let tx_id = self.record(action, amount, -amount)?;
                self.rollup(self.wallet.bucket(), self.game_key()).total_bet += amount;
                if let Some(game_id) = &self.batch.game_id {
                    let key = (self.wallet.bucket(), self.game_key(), game_id.clone());
                    *self.effects.rounds.entry(key).or_default() += 1;
                }
                Ok(tx_id)
            }
            Action::Win { amount, .. } => {
                let amount = amount.minor_units();
                let tx_id = self.record(action, amount, amount)?;
                self.rollup(self.wallet.bucket(), self.game_key()).total_win += amount;
                Ok(tx_id)
            }
            Action::Rollback { id, original } => self.apply_rollback(action, id, original),
        }
    }

    fn apply_rollback(&mut self, action: &Action, id: Uuid, original_id: Uuid) -> Result<Uuid, AppError> {
        if original_id == id {
            // A rollback naming itself would reverse a rollback.
            return Err(AppError::RollbackOfRollback);
        }
        let Some(mut original) = self.lookup(original_id).cloned() else {
            // Pre-rollback: leave a placeholder saying the original is reversed
            // before it exists; it moves no money now or when it arrives.
            let placeholder = ActionRecord::placeholder(original_id, self.player_id(), id);
            self.effects.actions.insert(original_id, placeholder);
            return self.record(action, 0, 0);
        };
        if original.player_id != self.player_id() {
            return Err(AppError::Conflict(format!("action {original_id} belongs to another player")));
        }
        if original.kind == Some(EntryKind::Rollback) {
            return Err(AppError::RollbackOfRollback);
        }
        if original.reversed_by.is_some() {
            // Reversed already, or awaiting its late arrival: accepted, moves nothing.
            return self.record(action, 0, 0);
        }
        let amount = original.amount.expect("bets and wins have an amount");
        let bucket = bucket_of(original.processed_at.expect("processed actions have a time"));
        let game = original.game.clone().unwrap_or_default();
        let tx_id = match original.kind {
            Some(EntryKind::Bet) => {
                let tx_id = self.record(action, amount, amount)?;
                let rollup = self.rollup(bucket, game.clone());
                rollup.total_bet -= amount;
                rollup.rolled_back_bet += amount;
                if let Some(game_id) = &original.game_id {
                    *self.effects.rounds.entry((bucket, game, game_id.clone())).or_default() -= 1;
                }
                tx_id
            }
            Some(EntryKind::Win) => {
                let tx_id = self.record(action, amount, -amount)?;
                let rollup = self.rollup(bucket, game);
                rollup.total_win -= amount;
                rollup.rolled_back_win += amount;
                tx_id
            }
            other => unreachable!("only bets and wins are stored with an amount, got {other:?}"),
        };
        original.reversed_by = Some(id);
        self.effects.actions.insert(original_id, original);
        Ok(tx_id)
    }

    /// The original of an earlier pre-rollback arrives: it gets a tx_id and is
    /// recorded as rolled back, without moving money.
    fn apply_late_original(&mut self, action: &Action, placeholder: ActionRecord) -> Result<Uuid, AppError> {
        if placeholder.player_id != self.player_id() {
            return Err(AppError::Conflict(format!("action_id {} belongs to another player", action.id())));
        }
        let tx_id = match *action {
            Action::Bet { amount, .. } => {
                let tx_id = self.record(action, amount.minor_units(), 0)?;
                self.rollup(self.wallet.bucket(), self.game_key()).rolled_back_bet += amount.minor_units();
                tx_id
            }
            Action::Win { amount, .. } => {
                let tx_id = self.record(action, amount.minor_units(), 0)?;
                self.rollup(self.wallet.bucket(), self.game_key()).rolled_back_win += amount.minor_units();
                tx_id
            }
            // A pre-rollback targeted this id, and a rollback cannot be rolled back.
            Action::Rollback { .. } => return Err(AppError::RollbackOfRollback),
        };
        let record = self.effects.actions.get_mut(&action.id()).expect("recorded above");
        record.reversed_by = placeholder.reversed_by;
        Ok(tx_id)
    }

    /// Moves the balance by `change`, appends the ledger entry (whose amount is
    /// `amount`) and stores the action; refuses to go below zero.
    fn record(&mut self, action: &Action, amount: i64, change: i64) -> Result<Uuid, AppError> {
        let balance_before = self.balance;
        let balance_after = balance_before
            .checked_add(change)
            .ok_or_else(|| AppError::BadRequest("amount: the balance would overflow".into()))?;
        if balance_after < 0 {
            return Err(AppError::InsufficientFunds);
        }
        let (kind, stored_amount, original_action_id) = action.parts();
        let tx_id = Uuid::now_v7();
        self.balance = balance_after;
        self.last_seq += 1;
        self.effects.entries.push(Entry {
            seq: self.last_seq,
            tx_id,
            kind,
            amount,
            balance_before,
            balance_after,
            action_id: action.id(),
            original_action_id,
            game: self.batch.game.clone(),
            game_id: self.batch.game_id.clone(),
        });
        self.effects.actions.insert(
            action.id(),
            ActionRecord {
                action_id: action.id(),
                player_id: self.player_id(),
                kind: Some(kind),
                amount: stored_amount,
                original_action_id,
                tx_id: Some(tx_id),
                processed_at: Some(self.wallet.now),
                game: self.batch.game.clone(),
                game_id: self.batch.game_id.clone(),
                reversed_by: None,
            },
        );
        Ok(tx_id)
    }

    fn rollup(&mut self, bucket: DateTime<Utc>, game: String) -> &mut RollupDelta {
        self.effects.rollups.entry((bucket, game)).or_default()
    }

    fn game_key(&self) -> String {
        self.batch.game.clone().unwrap_or_default()
    }
}

impl ActionRecord {
    fn placeholder(action_id: Uuid, player_id: i64, reversed_by: Uuid) -> ActionRecord {
        ActionRecord {
            action_id,
            player_id,
            kind: None,
            amount: None,
            original_action_id: None,
            tx_id: None,
            processed_at: None,
            game: None,
            game_id: None,
            reversed_by: Some(reversed_by),
        }
    }
}

impl Wallet {
    /// The RTP rollup bucket of everything processed now.
    fn bucket(&self) -> DateTime<Utc> {
        bucket_of(self.now)
    }
}

/// The hour a processing time is summarised under.
pub fn bucket_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::hours(1)).expect("hour truncation cannot overflow")
}
