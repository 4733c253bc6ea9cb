//! The wallet's money rules, evaluated in memory.
//!
//! A [`Wallet`] holds one locked player's balance and every stored action the
//! requests in hand refer to. [`Wallet::apply`] runs one request's actions in
//! order and either keeps all of their effects or none; what was kept is later
//! turned into a single batched write by the store. No I/O happens here, which
//! is what lets the same rules serve one request or a coalesced group of them,
//! and what lets them be tested without a database. A refusal is a
//! [`Refusal`]; how it looks on the wire is `error.rs`'s business.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

use super::bonus::{self, ActiveBonus, Ended, Ending, Round, Split};
use super::limits::{Counted, Guard, LimitKind, Period};
use super::{Action, Batch};
use crate::domain::{floor_time, EntryKind, Flag, PlayerStatus};

/// Why the rules refused an operation. Nothing of a refused request is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("Player has not enough funds to process an action")]
    InsufficientFunds,
    #[error("a rollback cannot reverse another rollback")]
    RollbackOfRollback,
    #[error("player is blocked or self-excluded")]
    PlayerBlocked,
    /// The operator does not offer casino games in the player's country.
    #[error("casino games are not offered in the player's country")]
    GameForbidden,
    #[error("currency does not match the player's currency")]
    CurrencyMismatch,
    /// The player's KYC tier does not allow the operation.
    #[error("the player's KYC tier does not allow this")]
    KycTierForbids,
    /// A responsible-gambling limit the player set would be passed.
    #[error("the {period}'s {kind} limit would be exceeded")]
    OverLimit { kind: LimitKind, period: Period },
    /// A player has at most one active bonus.
    #[error("a bonus is already active")]
    BonusActive,
    /// A stake over the active bonus's `max_bet`.
    #[error("the stake is over the active bonus's max bet")]
    OverMaxBet,
    /// A stored action_id came again with another player, kind, amount or original.
    #[error("action_id {0} was already used with other parameters")]
    ActionReused(Uuid),
    /// The action, or the original a rollback names, is another player's.
    #[error("action {0} belongs to another player")]
    ForeignAction(Uuid),
    /// The balance would pass the largest amount a BIGINT holds.
    #[error("amount: the balance would overflow")]
    BalanceOverflow,
}

/// `balance` moved by the signed `change`: refused below zero, and refused
/// rather than wrapped past the largest balance.
pub fn apply_change(balance: i64, change: i64) -> Result<i64, Refusal> {
    match balance.checked_add(change) {
        None => Err(Refusal::BalanceOverflow),
        Some(after) if after < 0 => Err(Refusal::InsufficientFunds),
        Some(after) => Ok(after),
    }
}

/// The locked player row as the rules need it.
#[derive(Debug, Clone)]
pub struct Player {
    pub id: i64,
    pub operator: i16,
    pub currency: String,
    pub balance: i64,
    pub status: PlayerStatus,
    pub last_seq: i64,
    /// ISO 3166-1 alpha-2, when known: per-country flags are evaluated for it.
    pub country: Option<String>,
    /// 0, 1 or 2: which of the operator's KYC tiers the player is in.
    pub kyc_tier: i16,
    /// When a time-out or self-exclusion ends by itself.
    pub status_until: Option<DateTime<Utc>>,
    /// The player's limits and counters; `None` for a player who never set one.
    pub guard: Option<Guard>,
    /// The active bonus, if any.
    pub bonus: Option<ActiveBonus>,
    /// The player has had a bonus: their rounds are tracked to split wins.
    pub bonus_rounds: bool,
}

impl Player {
    /// The status in force at `now`: a time-out or self-exclusion past its
    /// end is over.
    pub fn status_at(&self, now: DateTime<Utc>) -> PlayerStatus {
        self.status.in_force(self.status_until, now)
    }
}

/// What the player's operator allows a bet, as configured when the request
/// arrived: taken from the operator's in-memory configuration, so checking
/// it costs no query. Wins and rollbacks are never refused by it, so that
/// open rounds settle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayPolicy {
    /// The `casino` flag: off for the player's country refuses bets.
    pub casino: Flag,
    /// The `play` of each KYC tier, by tier: a tier without it refuses bets.
    pub play_by_tier: [bool; 3],
    /// The operator's time zone, which the periods of limits follow.
    pub zone: Tz,
}

impl PlayPolicy {
    /// Everything allowed: what a request carries when its operator sets nothing.
    pub fn open() -> Arc<PlayPolicy> {
        static OPEN: std::sync::OnceLock<Arc<PlayPolicy>> = std::sync::OnceLock::new();
        OPEN.get_or_init(|| {
            Arc::new(PlayPolicy { casino: Flag::Everywhere(true), play_by_tier: [true; 3], zone: Tz::UTC })
        })
        .clone()
    }

    fn allows_bets(&self, player: &Player) -> bool {
        self.casino.is_on(player.country.as_deref())
    }

    /// Whether the player's tier may play; a tier the operator does not
    /// define (the schema allows none) may not.
    fn allows_play(&self, player: &Player) -> bool {
        usize::try_from(player.kyc_tier).ok().and_then(|tier| self.play_by_tier.get(tier)) == Some(&true)
    }
}

/// An action id the registry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredAction {
    /// A pre-rollback named this id before the action itself arrived: it is
    /// reversed already, and will move no money when it comes.
    Placeholder { action_id: Uuid, player_id: i64, reversed_by: Uuid },
    /// An action processed with its own tx_id.
    Processed(Processed),
}

/// A processed action and what it was processed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    pub action: Action,
    pub player_id: i64,
    pub tx_id: Uuid,
    pub processed_at: DateTime<Utc>,
    pub game: Option<String>,
    pub game_id: Option<String>,
    /// The rollback that reversed it (never set on a rollback).
    pub reversed_by: Option<Uuid>,
    /// How its money split between cash and a bonus; `None`: all cash.
    pub split: Option<Split>,
}

impl StoredAction {
    pub fn action_id(&self) -> Uuid {
        match self {
            StoredAction::Placeholder { action_id, .. } => *action_id,
            StoredAction::Processed(processed) => processed.action.id(),
        }
    }

    pub fn is_placeholder(&self) -> bool {
        matches!(self, StoredAction::Placeholder { .. })
    }
}

/// One row for the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    pub tx_id: Uuid,
    pub kind: EntryKind,
    pub amount: i64,
    /// The cash balance before and after.
    pub balance_before: i64,
    pub balance_after: i64,
    /// What the row did to the bonus balance.
    pub bonus_change: i64,
    /// The provider action; `None` for a bonus's own rows.
    pub action_id: Option<Uuid>,
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
    /// What the provider sees: cash and the active bonus's balance.
    pub balance: i64,
}

/// Effects of accepted requests, not yet written.
#[derive(Debug, Clone, Default)]
pub struct Effects {
    /// Final state of every action row created or changed.
    pub actions: HashMap<Uuid, StoredAction>,
    pub entries: Vec<Entry>,
    pub rollups: HashMap<RollupKey, RollupDelta>,
    pub rounds: HashMap<RoundKey, i32>,
    /// Bonus rounds as they now stand, by game_id ('' when none was sent).
    pub bonus_rounds: HashMap<String, Round>,
    /// Bonuses that ended.
    pub ended: Vec<Ended>,
    /// The active bonus changed (or ended).
    pub bonus_touched: bool,
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
        self.bonus_rounds.extend(other.bonus_rounds);
        self.ended.extend(other.ended);
        self.bonus_touched |= other.bonus_touched;
    }

    /// Nothing to write: no ledger row and no bonus ended.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.ended.is_empty()
    }
}

/// One locked player and the stored actions relevant to the requests in hand.
#[derive(Debug)]
pub struct Wallet {
    pub player: Player,
    /// Processing time of everything applied now (taken after the lock).
    pub now: DateTime<Utc>,
    /// Action rows as loaded from the database.
    pub stored: HashMap<Uuid, StoredAction>,
    /// Accepted, unwritten effects.
    pub effects: Effects,
    /// What the player's operator allows its bets.
    pub policy: Arc<PlayPolicy>,
    /// An accepted request changed the player's limit counters.
    pub counted: bool,
    /// The game category of the request in hand (its bonus wagering weight).
    pub category: Arc<str>,
    /// The player's bonus rounds that the requests in hand name, by game_id.
    pub rounds: HashMap<String, Round>,
}

impl Wallet {
    /// The wallet of a locked player. A bonus past its end expires first:
    /// whatever touches the wallet never sees an expired bonus's balance.
    pub fn new(player: Player, now: DateTime<Utc>, stored: impl IntoIterator<Item = StoredAction>) -> Wallet {
        let mut wallet = Wallet {
            player,
            now,
            stored: stored.into_iter().map(|a| (a.action_id(), a)).collect(),
            effects: Effects::default(),
            policy: PlayPolicy::open(),
            counted: false,
            category: Arc::from("other"),
            rounds: HashMap::new(),
        };
        wallet.expire_bonus();
        wallet
    }

    /// Ends the active bonus if it is past its end, forfeiting its balance.
    fn expire_bonus(&mut self) {
        if self.player.bonus.as_ref().is_some_and(|b| b.expired_at(self.now)) {
            // An expiry converts nothing, so it cannot overflow the cash balance.
            let _ = self.end_bonus(Ending::Expired);
        }
    }

    /// Ends the active bonus with `status` (see [`bonus::end`]); `None` when
    /// there was none. Its rows are written with the wallet's effects.
    pub fn end_bonus(&mut self, status: Ending) -> Result<Option<Ended>, Refusal> {
        let Some(active) = self.player.bonus.clone() else {
            return Ok(None);
        };
        let (entries, ended, cash) = bonus::end(&active, status, self.player.balance, self.player.last_seq)?;
        self.player.bonus = None;
        self.player.balance = cash;
        self.player.last_seq += entries.len() as i64;
        self.effects.entries.extend(entries);
        self.effects.ended.push(ended.clone());
        self.effects.bonus_touched = true;
        Ok(Some(ended))
    }

    /// Gives the player the bonus `active`, whose balance is what was
    /// granted: the grant's ledger row. A bonus with nothing to wager
    /// completes at once.
    pub fn grant_bonus(&mut self, active: ActiveBonus) -> Result<(), Refusal> {
        if self.player.bonus.is_some() {
            return Err(Refusal::BonusActive);
        }
        let granted = active.balance;
        self.player.last_seq += 1;
        self.effects.entries.push(Entry {
            seq: self.player.last_seq,
            tx_id: Uuid::now_v7(),
            kind: EntryKind::BonusGrant,
            amount: granted,
            balance_before: self.player.balance,
            balance_after: self.player.balance,
            bonus_change: granted,
            action_id: None,
            original_action_id: None,
            game: None,
            game_id: None,
        });
        let completed = active.completed();
        self.player.bonus = Some(active);
        self.player.bonus_rounds = true;
        self.effects.bonus_touched = true;
        if completed {
            self.end_bonus(Ending::Completed)?;
        }
        Ok(())
    }

    /// What the provider sees: cash and the active bonus's balance.
    pub fn total(&self) -> i64 {
        self.player.balance + self.player.bonus.as_ref().map_or(0, |b| b.balance)
    }

    /// Applies one request's actions in order: all of them, or none.
    pub fn apply(&mut self, batch: &Batch) -> Result<Receipt, Refusal> {
        if batch.currency.as_str() != self.player.currency {
            return Err(Refusal::CurrencyMismatch);
        }
        let mut draft = Draft {
            wallet: self,
            balance: self.player.balance,
            last_seq: self.player.last_seq,
            effects: Effects::default(),
            guard: self.player.guard.clone(),
            bonus: self.player.bonus.clone(),
            batch,
        };
        let mut transactions = Vec::with_capacity(batch.actions.len());
        for action in &batch.actions {
            transactions.push((action.id(), draft.apply(action)?));
        }
        let (balance, last_seq, effects, guard, bonus) =
            (draft.balance, draft.last_seq, draft.effects, draft.guard, draft.bonus);
        self.player.balance = balance;
        self.player.last_seq = last_seq;
        if guard != self.player.guard {
            self.player.guard = guard;
            self.counted = true;
        }
        self.player.bonus = bonus;
        self.rounds.extend(effects.bonus_rounds.iter().map(|(key, round)| (key.clone(), *round)));
        self.effects.absorb(effects);
        Ok(Receipt { transactions, balance: self.total() })
    }

    /// Rows that must be inserted (never stored before) versus updated.
    pub fn split_actions(&self) -> (Vec<&StoredAction>, Vec<&StoredAction>) {
        self.effects.actions.values().partition(|a| !self.stored.contains_key(&a.action_id()))
    }
}

/// A request being evaluated: changes stay here until every action passed.
struct Draft<'a> {
    wallet: &'a Wallet,
    balance: i64,
    last_seq: i64,
    effects: Effects,
    /// The player's limits and counters as this request leaves them.
    guard: Option<Guard>,
    /// The active bonus as this request leaves it.
    bonus: Option<ActiveBonus>,
    batch: &'a Batch,
}

impl Draft<'_> {
    fn lookup(&self, id: Uuid) -> Option<&StoredAction> {
        self.effects
            .actions
            .get(&id)
            .or_else(|| self.wallet.effects.actions.get(&id))
            .or_else(|| self.wallet.stored.get(&id))
    }

    fn player_id(&self) -> i64 {
        self.wallet.player.id
    }

    fn apply(&mut self, action: &Action) -> Result<Uuid, Refusal> {
        match self.lookup(action.id()).cloned() {
            Some(StoredAction::Processed(stored)) => {
                if stored.player_id == self.player_id() && stored.action == *action {
                    Ok(stored.tx_id)
                } else {
                    Err(Refusal::ActionReused(action.id()))
                }
            }
            Some(StoredAction::Placeholder { player_id, reversed_by, .. }) => {
                self.apply_late_original(action, player_id, reversed_by)
            }
            None => self.apply_new(action),
        }
    }

    fn apply_new(&mut self, action: &Action) -> Result<Uuid, Refusal> {
        match *action {
            Action::Bet { amount, .. } => {
                if !self.wallet.player.status_at(self.wallet.now).may_bet() {
                    return Err(Refusal::PlayerBlocked);
                }
                if !self.wallet.policy.allows_bets(&self.wallet.player) {
                    return Err(Refusal::GameForbidden);
                }
                if !self.wallet.policy.allows_play(&self.wallet.player) {
                    return Err(Refusal::KycTierForbids);
                }
                let amount = amount.minor_units();
                if self.bonus.as_ref().and_then(|b| b.max_bet).is_some_and(|max_bet| amount > max_bet) {
                    return Err(Refusal::OverMaxBet);
                }
                let staked = Counted { staked: amount, ..Counted::default() };
                if let Some(guard) = &self.guard {
                    guard.check(self.wallet.policy.zone, self.wallet.now, staked)?;
                }
                let split = self.stake(amount)?;
                let (cash, from_bonus) = split.map_or((amount, 0), |s| (s.cash, s.bonus));
                let tx_id = self.record(action, amount, -cash, -from_bonus, None, split)?;
                if let Some(split) = split {
                    self.wager(amount, split)?;
                }
                self.count(staked);
                self.rollup(self.wallet.bucket(), self.game_key()).total_bet += amount;
                if let Some(game_id) = &self.batch.game_id {
                    let key = (self.wallet.bucket(), self.game_key(), game_id.clone());
                    *self.effects.rounds.entry(key).or_default() += 1;
                }
                Ok(tx_id)
            }
            Action::Win { amount, .. } => {
                let amount = amount.minor_units();
                let split = self.win_split(amount);
                let (cash, to_bonus) = split.map_or((amount, 0), |s| (s.cash, s.bonus));
                let tx_id = self.record(action, amount, cash, to_bonus, None, split)?;
                self.count(Counted { won: amount, ..Counted::default() });
                self.rollup(self.wallet.bucket(), self.game_key()).total_win += amount;
                Ok(tx_id)
            }
            Action::Rollback { id, original } => self.apply_rollback(action, id, original),
        }
    }

    fn apply_rollback(&mut self, action: &Action, id: Uuid, original_id: Uuid) -> Result<Uuid, Refusal> {
        if original_id == id {
            // A rollback naming itself would reverse a rollback.
            return Err(Refusal::RollbackOfRollback);
        }
        let mut original = match self.lookup(original_id).cloned() {
            None => {
                // Pre-rollback: leave a placeholder saying the original is
                // reversed before it exists; it moves no money now or when it
                // arrives.
                let placeholder = StoredAction::Placeholder {
                    action_id: original_id,
                    player_id: self.player_id(),
                    reversed_by: id,
                };
                self.effects.actions.insert(original_id, placeholder);
                return self.record(action, 0, 0, 0, None, None);
            }
            Some(StoredAction::Placeholder { player_id, .. }) => {
                if player_id != self.player_id() {
                    return Err(Refusal::ForeignAction(original_id));
                }
                // Awaiting its late arrival, reversed already: accepted, moves nothing.
                return self.record(action, 0, 0, 0, None, None);
            }
            Some(StoredAction::Processed(original)) => original,
        };
        if original.player_id != self.player_id() {
            return Err(Refusal::ForeignAction(original_id));
        }
        let amount = match original.action {
            Action::Bet { amount, .. } | Action::Win { amount, .. } => amount.minor_units(),
            Action::Rollback { .. } => return Err(Refusal::RollbackOfRollback),
        };
        if original.reversed_by.is_some() {
            // Reversed already: accepted, moves nothing.
            return self.record(action, 0, 0, 0, None, None);
        }
        let bucket = bucket_of(original.processed_at);
        let game = original.game.clone().unwrap_or_default();
        // Each part goes back where it came from; a part of a bonus that is
        // no longer active has nowhere to go back to, and is forfeited.
        let (cash, bonus) = match original.split {
            None => (amount, 0),
            Some(split) if self.is_active(split.bonus_id) => (split.cash, split.bonus),
            Some(split) => (split.cash, 0),
        };
        let tx_id = if matches!(original.action, Action::Bet { .. }) {
            let tx_id = self.record(action, amount, cash, bonus, None, None)?;
            if let Some(split) = original.split {
                self.unwager(amount, split, original.game_id.clone().unwrap_or_default());
            }
            self.uncount(original.processed_at, Counted { staked: amount, ..Counted::default() });
            let rollup = self.rollup(bucket, game.clone());
            rollup.total_bet -= amount;
            rollup.rolled_back_bet += amount;
            if let Some(game_id) = &original.game_id {
                *self.effects.rounds.entry((bucket, game, game_id.clone())).or_default() -= 1;
            }
            tx_id
        } else {
            let tx_id = self.record(action, amount, -cash, -bonus, None, None)?;
            self.uncount(original.processed_at, Counted { won: amount, ..Counted::default() });
            let rollup = self.rollup(bucket, game);
            rollup.total_win -= amount;
            rollup.rolled_back_win += amount;
            tx_id
        };
        original.reversed_by = Some(id);
        self.effects.actions.insert(original_id, StoredAction::Processed(original));
        Ok(tx_id)
    }

    /// The original of an earlier pre-rollback arrives: it gets a tx_id and is
    /// recorded as rolled back, without moving money.
    fn apply_late_original(
        &mut self,
        action: &Action,
        owner: i64,
        reversed_by: Uuid,
    ) -> Result<Uuid, Refusal> {
        if owner != self.player_id() {
            return Err(Refusal::ForeignAction(action.id()));
        }
        match *action {
            Action::Bet { amount, .. } => {
                let tx_id = self.record(action, amount.minor_units(), 0, 0, Some(reversed_by), None)?;
                self.rollup(self.wallet.bucket(), self.game_key()).rolled_back_bet += amount.minor_units();
                Ok(tx_id)
            }
            Action::Win { amount, .. } => {
                let tx_id = self.record(action, amount.minor_units(), 0, 0, Some(reversed_by), None)?;
                self.rollup(self.wallet.bucket(), self.game_key()).rolled_back_win += amount.minor_units();
                Ok(tx_id)
            }
            // A pre-rollback targeted this id, and a rollback cannot be rolled back.
            Action::Rollback { .. } => Err(Refusal::RollbackOfRollback),
        }
    }

    /// Moves the cash balance by `cash` and the active bonus's by `bonus`,
    /// appends the ledger entry (whose amount is `amount`) and stores the
    /// action with its `split`; refuses to go below zero or to overflow.
    fn record(
        &mut self,
        action: &Action,
        amount: i64,
        cash: i64,
        bonus: i64,
        reversed_by: Option<Uuid>,
        split: Option<Split>,
    ) -> Result<Uuid, Refusal> {
        let balance_before = self.balance;
        let balance_after = apply_change(balance_before, cash)?;
        if bonus != 0 {
            let active = self.bonus.as_mut().ok_or(Refusal::InsufficientFunds)?;
            active.balance = apply_change(active.balance, bonus)?;
            self.effects.bonus_touched = true;
        }
        let (kind, _, original_action_id) = action.parts();
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
            bonus_change: bonus,
            action_id: Some(action.id()),
            original_action_id,
            game: self.batch.game.clone(),
            game_id: self.batch.game_id.clone(),
        });
        self.effects.actions.insert(
            action.id(),
            StoredAction::Processed(Processed {
                action: *action,
                player_id: self.player_id(),
                tx_id,
                processed_at: self.wallet.now,
                game: self.batch.game.clone(),
                game_id: self.batch.game_id.clone(),
                reversed_by,
                split,
            }),
        );
        Ok(tx_id)
    }

    /// Whether `bonus_id` is the active bonus.
    fn is_active(&self, bonus_id: Uuid) -> bool {
        self.bonus.as_ref().is_some_and(|b| b.bonus_id == bonus_id)
    }

    /// How a stake of `amount` is paid while a bonus is active: cash first,
    /// the rest from the bonus. `None`: no bonus, all cash.
    fn stake(&self, amount: i64) -> Result<Option<Split>, Refusal> {
        let Some(active) = &self.bonus else {
            return Ok(None);
        };
        let cash = amount.min(self.balance);
        if amount - cash > active.balance {
            return Err(Refusal::InsufficientFunds);
        }
        Ok(Some(Split {
            cash,
            bonus: amount - cash,
            wagering: Some(active.contribution(amount, &self.wallet.category)),
            bonus_id: active.bonus_id,
        }))
    }

    /// Counts a stake paid with `split` toward its bonus and its round, and
    /// completes the bonus once wagered enough.
    fn wager(&mut self, amount: i64, split: Split) -> Result<(), Refusal> {
        let key = self.batch.game_id.clone().unwrap_or_default();
        let mut round = self.round(&key);
        round.staked += amount;
        round.bonus_staked += split.bonus;
        if split.bonus > 0 {
            round.bonus_id = Some(split.bonus_id);
        }
        self.effects.bonus_rounds.insert(key, round);
        let Some(active) = &mut self.bonus else {
            return Ok(());
        };
        active.staked += amount;
        active.wagered += split.wagering.unwrap_or(0);
        self.effects.bonus_touched = true;
        if active.completed() {
            self.end_bonus(Ending::Completed)?;
        }
        Ok(())
    }

    /// Takes back what a rolled-back stake paid with `split` counted: from
    /// its round, and from its bonus if that is still the active one.
    fn unwager(&mut self, amount: i64, split: Split, key: String) {
        if let Some(mut round) = self.tracked_round(&key) {
            round.staked = (round.staked - amount).max(0);
            round.bonus_staked = (round.bonus_staked - split.bonus).clamp(0, round.staked);
            self.effects.bonus_rounds.insert(key, round);
        }
        if let Some(active) = self.bonus.as_mut().filter(|b| b.bonus_id == split.bonus_id) {
            active.staked -= amount;
            active.wagered -= split.wagering.unwrap_or(0);
            self.effects.bonus_touched = true;
        }
    }

    /// How a win of `amount` splits: the bonus share of its round goes to
    /// the bonus that paid it if still active, else is forfeited; the rest
    /// is cash. `None`: all cash.
    fn win_split(&self, amount: i64) -> Option<Split> {
        let round = self.tracked_round(self.batch.game_id.as_deref().unwrap_or_default())?;
        let share = round.bonus_share(amount);
        let bonus_id = round.bonus_id.filter(|_| share > 0)?;
        let to_bonus = if self.is_active(bonus_id) { share } else { 0 };
        Some(Split { cash: amount - share, bonus: to_bonus, wagering: None, bonus_id })
    }

    /// The round `key` as this request sees it.
    fn round(&self, key: &str) -> Round {
        self.tracked_round(key).unwrap_or_default()
    }

    fn tracked_round(&self, key: &str) -> Option<Round> {
        self.effects.bonus_rounds.get(key).or_else(|| self.wallet.rounds.get(key)).copied()
    }

    /// Ends the active bonus: on completion its balance (up to the cap)
    /// becomes cash and the rest is forfeited.
    fn end_bonus(&mut self, status: Ending) -> Result<(), Refusal> {
        let Some(active) = self.bonus.take() else {
            return Ok(());
        };
        let (entries, ended, cash) = bonus::end(&active, status, self.balance, self.last_seq)?;
        self.last_seq += entries.len() as i64;
        self.balance = cash;
        self.effects.entries.extend(entries);
        self.effects.ended.push(ended);
        self.effects.bonus_touched = true;
        Ok(())
    }

    /// Counts an operation processed now in a limited player's periods.
    fn count(&mut self, counted: Counted) {
        if let Some(guard) = &mut self.guard {
            guard.count(self.wallet.policy.zone, self.wallet.now, counted);
        }
    }

    /// Takes an operation processed at `at` out of a limited player's periods.
    fn uncount(&mut self, at: DateTime<Utc>, counted: Counted) {
        if let Some(guard) = &mut self.guard {
            guard.uncount(at, counted);
        }
    }

    fn rollup(&mut self, bucket: DateTime<Utc>, game: String) -> &mut RollupDelta {
        self.effects.rollups.entry((bucket, game)).or_default()
    }

    fn game_key(&self) -> String {
        self.batch.game.clone().unwrap_or_default()
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
    floor_time(at, TimeDelta::hours(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Amount, Currency, UserId};

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T10:30:00Z").unwrap().to_utc()
    }

    fn wallet(balance: i64, status: PlayerStatus, stored: Vec<StoredAction>) -> Wallet {
        let player = Player {
            id: 1,
            operator: 1,
            currency: "USD".into(),
            balance,
            status,
            last_seq: 0,
            country: Some("GB".into()),
            kyc_tier: 0,
            status_until: None,
            guard: None,
            bonus: None,
            bonus_rounds: false,
        };
        Wallet::new(player, now(), stored)
    }

    fn batch(actions: Vec<Action>) -> Batch {
        Batch {
            user_id: UserId::try_from("p".to_string()).unwrap(),
            currency: Currency::try_from("USD".to_string()).unwrap(),
            game: Some("slots".into()),
            game_id: Some("round-1".into()),
            actions,
        }
    }

    fn bet(amount: i64) -> Action {
        Action::Bet { id: Uuid::new_v4(), amount: Amount::try_from(amount).unwrap() }
    }

    fn win(amount: i64) -> Action {
        Action::Win { id: Uuid::new_v4(), amount: Amount::try_from(amount).unwrap() }
    }

    fn rollback(original: Uuid) -> Action {
        Action::Rollback { id: Uuid::new_v4(), original }
    }

    fn processed(action: Action, player_id: i64) -> StoredAction {
        StoredAction::Processed(Processed {
            action,
            player_id,
            tx_id: Uuid::new_v4(),
            processed_at: now() - TimeDelta::hours(3),
            game: Some("slots".into()),
            game_id: Some("round-0".into()),
            reversed_by: None,
            split: None,
        })
    }

    #[test]
    fn a_bet_debits_a_win_credits_and_each_is_written_once() {
        let mut w = wallet(100, PlayerStatus::Active, vec![]);
        let receipt = w.apply(&batch(vec![bet(30), win(50)])).unwrap();
        assert_eq!(receipt.balance, 120);
        assert_eq!(receipt.transactions.len(), 2);
        let changes: Vec<i64> =
            w.effects.entries.iter().map(|e| e.balance_after - e.balance_before).collect();
        assert_eq!(changes, [-30, 50]);
        let rollup = w.effects.rollups[&(bucket_of(now()), "slots".to_string())];
        assert_eq!((rollup.total_bet, rollup.total_win), (30, 50));
        assert_eq!(w.effects.rounds[&(bucket_of(now()), "slots".to_string(), "round-1".to_string())], 1);
    }

    #[test]
    fn a_refused_request_keeps_nothing_and_the_next_sees_the_state_before_it() {
        let mut w = wallet(100, PlayerStatus::Active, vec![]);
        assert_eq!(w.apply(&batch(vec![win(10), bet(500)])), Err(Refusal::InsufficientFunds));
        assert!(w.effects.is_empty() && w.effects.actions.is_empty() && w.effects.rollups.is_empty());
        assert_eq!(w.player.balance, 100);
        assert_eq!(w.apply(&batch(vec![bet(100)])).unwrap().balance, 0);
    }

    #[test]
    fn each_action_must_leave_a_balance_of_zero_or_more_whatever_follows_it() {
        let mut w = wallet(1_000, PlayerStatus::Active, vec![]);
        assert_eq!(w.apply(&batch(vec![bet(1_001), win(5)])), Err(Refusal::InsufficientFunds));
        assert!(w.effects.is_empty(), "the refused request kept nothing");
        assert_eq!(w.apply(&batch(vec![bet(1_000), win(5)])).unwrap().balance, 5);
    }

    #[test]
    fn a_repeat_answers_its_first_tx_id_and_other_parameters_are_refused() {
        let first = bet(10);
        let mut w = wallet(100, PlayerStatus::Active, vec![]);
        let tx = w.apply(&batch(vec![first])).unwrap().transactions[0].1;
        let again = w.apply(&batch(vec![first])).unwrap();
        assert_eq!((again.transactions[0].1, again.balance), (tx, 90));
        let Action::Bet { id, .. } = first else { unreachable!() };
        let other = Action::Bet { id, amount: Amount::try_from(11).unwrap() };
        assert_eq!(w.apply(&batch(vec![other])), Err(Refusal::ActionReused(id)));
        let as_win = Action::Win { id, amount: Amount::try_from(10).unwrap() };
        assert_eq!(w.apply(&batch(vec![as_win])), Err(Refusal::ActionReused(id)));
    }

    #[test]
    fn another_players_action_is_reused_not_replayed() {
        let theirs = bet(10);
        let mut w = wallet(100, PlayerStatus::Active, vec![processed(theirs, 2)]);
        assert_eq!(w.apply(&batch(vec![theirs])), Err(Refusal::ActionReused(theirs.id())));
        assert_eq!(w.apply(&batch(vec![rollback(theirs.id())])), Err(Refusal::ForeignAction(theirs.id())));
    }

    #[test]
    fn a_rollback_reverses_once_into_the_originals_hour() {
        let original = bet(40);
        let mut w = wallet(60, PlayerStatus::Active, vec![processed(original, 1)]);
        let receipt = w.apply(&batch(vec![rollback(original.id())])).unwrap();
        assert_eq!(receipt.balance, 100);
        let hour = bucket_of(now() - TimeDelta::hours(3));
        let rollup = w.effects.rollups[&(hour, "slots".to_string())];
        assert_eq!((rollup.total_bet, rollup.rolled_back_bet), (-40, 40));
        assert_eq!(w.effects.rounds[&(hour, "slots".to_string(), "round-0".to_string())], -1);
        assert!(
            matches!(&w.effects.actions[&original.id()], StoredAction::Processed(p) if p.reversed_by.is_some())
        );
        // A second rollback of it is accepted and moves nothing.
        assert_eq!(w.apply(&batch(vec![rollback(original.id())])).unwrap().balance, 100);
    }

    #[test]
    fn new_rows_are_told_from_changed_stored_ones() {
        let stored = bet(40);
        let unseen = Uuid::new_v4();
        let mut w = wallet(60, PlayerStatus::Active, vec![processed(stored, 1)]);
        let (undo, pre) = (rollback(stored.id()), rollback(unseen));
        w.apply(&batch(vec![undo, pre])).unwrap();
        let (new, changed) = w.split_actions();
        let ids = |rows: Vec<&StoredAction>| {
            let mut ids: Vec<Uuid> = rows.iter().map(|r| r.action_id()).collect();
            ids.sort();
            ids
        };
        let mut expected_new = vec![undo.id(), pre.id(), unseen];
        expected_new.sort();
        assert_eq!(ids(new), expected_new, "both rollbacks and the placeholder are inserted");
        assert_eq!(ids(changed), [stored.id()], "the reversed bet is updated");
    }

    #[test]
    fn rolling_back_a_win_needs_the_funds_and_moves_it_to_rolled_back() {
        let original = win(80);
        let mut w = wallet(50, PlayerStatus::Active, vec![processed(original, 1)]);
        assert_eq!(w.apply(&batch(vec![rollback(original.id())])), Err(Refusal::InsufficientFunds));
        w.apply(&batch(vec![win(30)])).unwrap();
        assert_eq!(w.apply(&batch(vec![rollback(original.id())])).unwrap().balance, 0);
        let hour = bucket_of(now() - TimeDelta::hours(3));
        let rollup = w.effects.rollups[&(hour, "slots".to_string())];
        assert_eq!((rollup.total_win, rollup.rolled_back_win), (-80, 80));
    }

    #[test]
    fn a_late_win_is_counted_as_rolled_back_in_its_own_hour() {
        let late = win(25);
        let mut w = wallet(100, PlayerStatus::Active, vec![]);
        w.apply(&batch(vec![rollback(late.id())])).unwrap();
        assert_eq!(w.apply(&batch(vec![late])).unwrap().balance, 100);
        let rollup = w.effects.rollups[&(bucket_of(now()), "slots".to_string())];
        assert_eq!((rollup.total_win, rollup.rolled_back_win), (0, 25));
    }

    #[test]
    fn a_rollback_naming_another_players_unseen_original_is_refused() {
        let unseen = Uuid::new_v4();
        let theirs =
            StoredAction::Placeholder { action_id: unseen, player_id: 2, reversed_by: Uuid::new_v4() };
        let mut w = wallet(100, PlayerStatus::Active, vec![theirs]);
        assert_eq!(w.apply(&batch(vec![rollback(unseen)])), Err(Refusal::ForeignAction(unseen)));
    }

    #[test]
    fn a_pre_rollback_leaves_a_placeholder_and_the_late_original_moves_nothing() {
        let late = bet(25);
        let mut w = wallet(100, PlayerStatus::Active, vec![]);
        let pre = rollback(late.id());
        assert_eq!(w.apply(&batch(vec![pre])).unwrap().balance, 100);
        assert!(w.effects.actions[&late.id()].is_placeholder());
        let receipt = w.apply(&batch(vec![late])).unwrap();
        assert_eq!(receipt.balance, 100, "the late original is recorded reversed");
        assert!(!w.effects.actions[&late.id()].is_placeholder());
        let rollup = w.effects.rollups[&(bucket_of(now()), "slots".to_string())];
        assert_eq!((rollup.total_bet, rollup.rolled_back_bet), (0, 25));
        assert!(
            matches!(&w.effects.actions[&late.id()], StoredAction::Processed(p) if p.reversed_by == Some(pre.id()))
        );
    }

    #[test]
    fn rollbacks_of_rollbacks_are_refused_however_they_are_named() {
        let earlier = rollback(Uuid::new_v4());
        let mut w = wallet(100, PlayerStatus::Active, vec![processed(earlier, 1)]);
        assert_eq!(w.apply(&batch(vec![rollback(earlier.id())])), Err(Refusal::RollbackOfRollback));
        let id = Uuid::new_v4();
        assert_eq!(
            w.apply(&batch(vec![Action::Rollback { id, original: id }])),
            Err(Refusal::RollbackOfRollback)
        );
        // A rollback arriving for an id a pre-rollback reserved as an original.
        let reserved = Uuid::new_v4();
        w.apply(&batch(vec![rollback(reserved)])).unwrap();
        let late = Action::Rollback { id: reserved, original: Uuid::new_v4() };
        assert_eq!(w.apply(&batch(vec![late])), Err(Refusal::RollbackOfRollback));
    }

    #[test]
    fn a_blocked_player_cannot_bet_but_wins_and_rollbacks_go_through() {
        let original = bet(10);
        let mut w = wallet(100, PlayerStatus::SelfExcluded, vec![processed(original, 1)]);
        assert_eq!(w.apply(&batch(vec![bet(1)])), Err(Refusal::PlayerBlocked));
        assert_eq!(w.apply(&batch(vec![win(5), rollback(original.id())])).unwrap().balance, 115);
    }

    #[test]
    fn casino_off_in_the_players_country_refuses_bets_but_settles_open_rounds() {
        let original = bet(10);
        let mut w = wallet(100, PlayerStatus::Active, vec![processed(original, 1)]);
        let countries = [("GB".to_string(), false)].into_iter().collect();
        w.policy = Arc::new(PlayPolicy {
            casino: Flag::PerCountry { default: true, countries },
            play_by_tier: [true; 3],
            zone: Tz::UTC,
        });
        assert_eq!(w.apply(&batch(vec![win(5), bet(1)])), Err(Refusal::GameForbidden));
        assert_eq!(w.apply(&batch(vec![win(5), rollback(original.id())])).unwrap().balance, 115);
        w.player.country = Some("SE".into());
        assert_eq!(w.apply(&batch(vec![bet(1)])).unwrap().balance, 114);
        w.player.country = None;
        assert_eq!(
            w.apply(&batch(vec![bet(1)])).unwrap().balance,
            113,
            "an unknown country takes the default"
        );
    }

    #[test]
    fn a_tier_without_play_refuses_bets_but_settles_open_rounds() {
        let original = bet(10);
        let mut w = wallet(100, PlayerStatus::Active, vec![processed(original, 1)]);
        w.policy = Arc::new(PlayPolicy {
            casino: Flag::Everywhere(true),
            play_by_tier: [false, true, true],
            zone: Tz::UTC,
        });
        assert_eq!(w.apply(&batch(vec![win(5), bet(1)])), Err(Refusal::KycTierForbids));
        assert_eq!(w.player.balance, 100, "the refused request kept nothing");
        assert_eq!(w.apply(&batch(vec![win(5), rollback(original.id())])).unwrap().balance, 115);
        w.player.kyc_tier = 1;
        assert_eq!(w.apply(&batch(vec![bet(1)])).unwrap().balance, 114);
        w.player.kyc_tier = 2;
        assert_eq!(w.apply(&batch(vec![bet(1)])).unwrap().balance, 113);
    }

    #[test]
    fn a_tier_the_policy_does_not_know_may_not_play() {
        let mut w = wallet(100, PlayerStatus::Active, vec![]);
        for tier in [-1, 3, i16::MAX] {
            w.player.kyc_tier = tier;
            assert_eq!(w.apply(&batch(vec![bet(1)])), Err(Refusal::KycTierForbids), "tier {tier}");
        }
        w.player.kyc_tier = 0;
        assert_eq!(w.apply(&batch(vec![bet(1)])).unwrap().balance, 99, "the open policy lets tier 0 play");
    }

    #[test]
    fn the_blocked_status_is_told_before_the_tier() {
        let mut w = wallet(100, PlayerStatus::CoolingOff, vec![]);
        w.policy =
            Arc::new(PlayPolicy { casino: Flag::Everywhere(true), play_by_tier: [false; 3], zone: Tz::UTC });
        assert_eq!(w.apply(&batch(vec![bet(1)])), Err(Refusal::PlayerBlocked));
    }

    #[test]
    fn another_currency_is_refused() {
        let mut w = wallet(100, PlayerStatus::Active, vec![]);
        let mut eur = batch(vec![bet(1)]);
        eur.currency = Currency::try_from("EUR".to_string()).unwrap();
        assert_eq!(w.apply(&eur), Err(Refusal::CurrencyMismatch));
    }

    #[test]
    fn a_balance_never_wraps_past_its_largest_value() {
        let mut w = wallet(i64::MAX - 5, PlayerStatus::Active, vec![]);
        assert_eq!(w.apply(&batch(vec![win(10)])), Err(Refusal::BalanceOverflow));
        assert_eq!(w.apply(&batch(vec![win(5)])).unwrap().balance, i64::MAX);
        assert_eq!(apply_change(i64::MAX, 1), Err(Refusal::BalanceOverflow));
        assert_eq!(apply_change(5, -6), Err(Refusal::InsufficientFunds));
        assert_eq!(apply_change(5, -5), Ok(0));
    }
}
