//! Bonus money, as the ledger's rules need it: the active bonus on a wallet
//! row, how a stake, a win and a rollback split between cash and bonus, and
//! how a bonus ends. Pure functions; no I/O (API §10, docs/API.md "Bonuses").

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use uuid::Uuid;

use super::rules::{apply_change, Entry, Refusal};
use crate::domain::EntryKind;

/// A player's active bonus: the `active_bonus` value on the wallet row, read
/// with the lock and written back with the balance.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "active_bonus")]
pub struct ActiveBonus {
    pub bonus_id: Uuid,
    /// Bonus money left.
    pub balance: i64,
    /// Wagering counted so far, toward `required`.
    pub wagered: i64,
    pub required: i64,
    /// Every stake made while it was active: `wagered` never passes it.
    pub staked: i64,
    /// The largest stake allowed while it is active; `None`: no cap.
    pub max_bet: Option<i64>,
    /// The most its balance converts to cash on completion; `None`: all of it.
    pub cap: Option<i64>,
    pub expires_at: DateTime<Utc>,
    /// Percent of a stake that counts as wagering, by game category.
    pub weights: Json<BTreeMap<String, i64>>,
}

impl ActiveBonus {
    /// The wagering a stake of `amount` in `category` adds:
    /// `floor(amount * weight / 100)`; a category without a weight adds none.
    pub fn contribution(&self, amount: i64, category: &str) -> i64 {
        let weight = self.weights.get(category).copied().unwrap_or(0).clamp(0, 100);
        (i128::from(amount) * i128::from(weight) / 100) as i64
    }

    /// Whether it is over at `now`: an expired bonus is never spent or shown.
    pub fn expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now
    }

    pub fn completed(&self) -> bool {
        self.wagered >= self.required
    }
}

/// How a provider action's money split, when a bonus was involved: what
/// cash and the bonus paid (a bet) or received (a win; the rest of its
/// amount was a forfeited bonus part), the wagering a bet added, and which
/// bonus. A rollback returns and takes back exactly these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub cash: i64,
    pub bonus: i64,
    /// Bets only.
    pub wagering: Option<i64>,
    pub bonus_id: Uuid,
}

/// What the bets made in one round while a bonus was active staked, in all
/// and from the bonus; a win of the round is split in that proportion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    pub bonus_id: Option<Uuid>,
    pub staked: i64,
    pub bonus_staked: i64,
}

impl Round {
    /// The bonus share of a win of `amount` in this round, rounded down.
    ///
    /// `0 <= bonus_staked <= staked` (the rules keep it, and
    /// `bonus_rounds_staked_check` holds it for stored rounds), so a round
    /// with bonus stakes has stakes to divide by.
    pub fn bonus_share(&self, amount: i64) -> i64 {
        debug_assert!((0..=self.staked).contains(&self.bonus_staked), "{self:?}");
        if self.bonus_staked <= 0 {
            return 0;
        }
        (i128::from(amount) * i128::from(self.bonus_staked) / i128::from(self.staked)) as i64
    }
}

/// How a bonus stopped being active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// Wagered enough: its balance, up to the cap, became cash.
    Completed,
    /// Past `expires_at`: its balance was forfeited.
    Expired,
    /// Given up by the player (or a withdrawal that says `forfeit_bonus`).
    Forfeited,
}

impl Ending {
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Completed => "completed",
            Ending::Expired => "expired",
            Ending::Forfeited => "forfeited",
        }
    }
}

/// A bonus that ended, as its grant row records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub bonus_id: Uuid,
    pub status: Ending,
    pub wagered: i64,
    pub staked: i64,
    pub required: i64,
    pub converted: i64,
    pub forfeited: i64,
    /// The player's last ledger seq once its end was written.
    pub seq: i64,
}

/// Ends `bonus` with `status`: the ledger rows that empty its balance (a
/// conversion to cash up to the cap, then a forfeit of the rest; none for an
/// empty balance), numbered after `last_seq` from the cash balance `cash`.
/// Returns the rows, what the grant records, and the cash balance after.
pub fn end(
    bonus: &ActiveBonus,
    status: Ending,
    cash: i64,
    last_seq: i64,
) -> Result<(Vec<Entry>, Ended, i64), Refusal> {
    let converted = match status {
        Ending::Completed => bonus.balance.min(bonus.cap.unwrap_or(i64::MAX)),
        Ending::Expired | Ending::Forfeited => 0,
    };
    let forfeited = bonus.balance - converted;
    let mut entries = Vec::new();
    let mut cash_after = cash;
    for (kind, amount) in [(EntryKind::BonusConversion, converted), (EntryKind::BonusForfeit, forfeited)] {
        if amount == 0 {
            continue;
        }
        let before = cash_after;
        if kind == EntryKind::BonusConversion {
            cash_after = apply_change(cash_after, amount)?;
        }
        entries.push(Entry {
            seq: last_seq + entries.len() as i64 + 1,
            tx_id: Uuid::now_v7(),
            kind,
            amount,
            balance_before: before,
            balance_after: cash_after,
            bonus_change: -amount,
            action_id: None,
            original_action_id: None,
            game: None,
            game_id: None,
        });
    }
    let ended = Ended {
        bonus_id: bonus.bonus_id,
        status,
        wagered: bonus.wagered,
        staked: bonus.staked,
        required: bonus.required,
        converted,
        forfeited,
        seq: last_seq + entries.len() as i64,
    };
    Ok((entries, ended, cash_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bonus(balance: i64, cap: Option<i64>) -> ActiveBonus {
        ActiveBonus {
            bonus_id: Uuid::nil(),
            balance,
            wagered: 0,
            required: 1000,
            staked: 0,
            max_bet: None,
            cap,
            expires_at: DateTime::UNIX_EPOCH,
            weights: Json(BTreeMap::from([("slots".into(), 100), ("table".into(), 10)])),
        }
    }

    #[test]
    fn a_stake_counts_its_categorys_weight_rounded_down_and_nothing_elsewhere() {
        let b = bonus(0, None);
        assert_eq!(b.contribution(250, "slots"), 250);
        assert_eq!(b.contribution(255, "table"), 25, "25.5 rounds down");
        assert_eq!(b.contribution(9, "table"), 0);
        assert_eq!(b.contribution(1000, "other"), 0, "a category without a weight adds none");
    }

    #[test]
    fn a_win_goes_to_the_bonus_in_the_proportion_it_paid_the_round_rounded_down() {
        let round = Round { bonus_id: Some(Uuid::nil()), staked: 300, bonus_staked: 100 };
        assert_eq!(round.bonus_share(100), 33);
        assert_eq!(round.bonus_share(300), 100);
        assert_eq!(Round::default().bonus_share(500), 0, "no stakes at all: all cash");
        let cash_only = Round { bonus_id: Some(Uuid::nil()), staked: 300, bonus_staked: 0 };
        assert_eq!(cash_only.bonus_share(500), 0, "no stakes from the bonus: all cash");
    }

    #[test]
    fn completion_converts_up_to_the_cap_and_forfeits_the_rest() {
        let (entries, ended, cash) = end(&bonus(700, Some(500)), Ending::Completed, 40, 9).unwrap();
        assert_eq!(cash, 540);
        assert_eq!((ended.converted, ended.forfeited, ended.seq), (500, 200, 11));
        let rows: Vec<_> = entries.iter().map(|e| (e.seq, e.kind, e.amount, e.bonus_change)).collect();
        assert_eq!(
            rows,
            [(10, EntryKind::BonusConversion, 500, -500), (11, EntryKind::BonusForfeit, 200, -200)]
        );
        assert_eq!((entries[0].balance_before, entries[0].balance_after), (40, 540));
        assert_eq!((entries[1].balance_before, entries[1].balance_after), (540, 540));
    }

    #[test]
    fn an_expired_or_forfeited_bonus_converts_nothing_and_an_empty_one_writes_no_row() {
        let (entries, ended, cash) = end(&bonus(300, None), Ending::Expired, 5, 0).unwrap();
        assert_eq!((cash, ended.converted, ended.forfeited), (5, 0, 300));
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].kind, EntryKind::BonusForfeit);
        let (entries, ended, _) = end(&bonus(0, None), Ending::Completed, 5, 0).unwrap();
        assert!(entries.is_empty());
        assert_eq!((ended.converted, ended.forfeited), (0, 0));
    }
}
