//! The ledger: provider actions applied to player balances, exactly once.
//!
//! - `rules`: the money rules, in memory and free of I/O.
//! - `limits`: responsible-gambling limits and their counters, in memory.
//! - `bonus`: bonus money: splits, wagering, how a bonus ends, in memory.
//! - `process`: the hot path that locks a player, runs the rules and writes
//!   the outcome in one batched statement.
//! - `group`: group commit, many concurrent requests per transaction.
//! - `partitions`: keeps the monthly ledger partitions ahead of the clock.

pub mod bonus;
pub mod group;
pub mod limits;
pub mod partitions;
pub mod process;
pub mod rules;

use std::sync::Arc;

use uuid::Uuid;

use crate::domain::{Amount, Currency, EntryKind, UserId};

pub use process::{balance_of, process_batch, process_submission};
pub use rules::PlayPolicy;

/// One provider action, as validated at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Bet { id: Uuid, amount: Amount },
    Win { id: Uuid, amount: Amount },
    Rollback { id: Uuid, original: Uuid },
}

impl Action {
    pub fn id(&self) -> Uuid {
        match *self {
            Action::Bet { id, .. } | Action::Win { id, .. } | Action::Rollback { id, .. } => id,
        }
    }

    /// The parameters a repeat of this action must match: kind, amount and original.
    pub fn parts(&self) -> (EntryKind, Option<i64>, Option<Uuid>) {
        match *self {
            Action::Bet { amount, .. } => (EntryKind::Bet, Some(amount.minor_units()), None),
            Action::Win { amount, .. } => (EntryKind::Win, Some(amount.minor_units()), None),
            Action::Rollback { original, .. } => (EntryKind::Rollback, None, Some(original)),
        }
    }
}

/// A provider request: ordered actions for one player, applied all or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub user_id: UserId,
    pub currency: Currency,
    pub game: Option<String>,
    pub game_id: Option<String>,
    pub actions: Vec<Action>,
}

/// A provider request as the ledger takes it: the batch, the operator it was
/// sent for, and what that operator allowed bets when it arrived.
#[derive(Debug, Clone)]
pub struct Submission {
    pub operator: i16,
    pub policy: Arc<PlayPolicy>,
    /// The category its `game` is filed under: a bonus's wagering weight.
    pub category: Arc<str>,
    pub batch: Batch,
}

impl Submission {
    /// `batch` for a player of `operator` under no operator policy.
    pub fn open(operator: i16, batch: Batch) -> Submission {
        Submission { operator, policy: PlayPolicy::open(), category: Arc::from("other"), batch }
    }

    /// The player the request is for.
    pub fn player_key(&self) -> process::PlayerKey {
        (self.operator, self.batch.user_id.as_str().to_owned())
    }
}

impl Batch {
    /// Every action id the rules may need to look up: the actions themselves
    /// and the originals their rollbacks name.
    pub fn referenced_ids(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .actions
            .iter()
            .flat_map(|action| match *action {
                Action::Rollback { id, original } => [Some(id), Some(original)],
                other => [Some(other.id()), None],
            })
            .flatten()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The originals this request's rollbacks name.
    pub fn rollback_originals(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.actions.iter().filter_map(|action| match *action {
            Action::Rollback { original, .. } => Some(original),
            _ => None,
        })
    }
}
