//! Values the wallet speaks in, parsed once at the edge and valid from then on.

use std::fmt;

use serde::{Serialize, Serializer};

/// The largest amount any single request may carry, in minor units.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;

/// Why a value could not be accepted; the caller adds the field's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub &'static str);

/// A non-negative amount of money in minor units (cents), at most [`MAX_AMOUNT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(i64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub fn minor_units(self) -> i64 {
        self.0
    }

    /// A strictly positive amount, as deposits and withdrawals require.
    pub fn positive(value: i64) -> Result<Amount, Invalid> {
        match Amount::try_from(value)? {
            Amount(0) => Err(Invalid("must be greater than 0")),
            amount => Ok(amount),
        }
    }
}

impl TryFrom<i64> for Amount {
    type Error = Invalid;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        if value < 0 {
            Err(Invalid("must not be negative"))
        } else if value > MAX_AMOUNT {
            Err(Invalid("must be at most 1000000000000000"))
        } else {
            Ok(Amount(value))
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.0)
    }
}

/// A player's identifier within an operator, as the provider and back office know it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(String);

impl UserId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = Invalid;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.chars().count() {
            1..=255 => Ok(UserId(value)),
            _ => Err(Invalid("must be 1 to 255 characters")),
        }
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A currency code: 3 to 10 characters of `A-Z0-9`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency(String);

impl Currency {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Currency {
    type Error = Invalid;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let well_formed = (3..=10).contains(&value.len())
            && value.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if well_formed {
            Ok(Currency(value))
        } else {
            Err(Invalid("must be 3 to 10 characters of A-Z and 0-9"))
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Free text from a provider (`game`, `game_id`): at most 255 characters.
pub fn short_text(value: String) -> Result<String, Invalid> {
    if value.chars().count() <= 255 {
        Ok(value)
    } else {
        Err(Invalid("must be at most 255 characters"))
    }
}

/// Whether a player may place bets. Wins and rollbacks are accepted in every state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlayerStatus {
    Active,
    Blocked,
    SelfExcluded,
}

impl PlayerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PlayerStatus::Active => "active",
            PlayerStatus::Blocked => "blocked",
            PlayerStatus::SelfExcluded => "self_excluded",
        }
    }

    pub fn may_bet(self) -> bool {
        self == PlayerStatus::Active
    }
}

impl std::str::FromStr for PlayerStatus {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(PlayerStatus::Active),
            "blocked" => Ok(PlayerStatus::Blocked),
            "self_excluded" => Ok(PlayerStatus::SelfExcluded),
            _ => Err(Invalid("must be one of active, blocked, self_excluded")),
        }
    }
}

/// The kind of a ledger entry, mirroring the `entry_kind` database enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, sqlx::Type)]
#[sqlx(type_name = "entry_kind", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Bet,
    Win,
    Rollback,
    Deposit,
    Withdrawal,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Bet => "bet",
            EntryKind::Win => "win",
            EntryKind::Rollback => "rollback",
            EntryKind::Deposit => "deposit",
            EntryKind::Withdrawal => "withdrawal",
        }
    }
}

/// The operator every player belongs to until tenants arrive.
pub const DEFAULT_OPERATOR: i16 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_outside_the_contract_are_rejected() {
        assert!(Amount::try_from(-1).is_err());
        assert!(Amount::try_from(MAX_AMOUNT + 1).is_err());
        assert_eq!(Amount::try_from(MAX_AMOUNT).unwrap().minor_units(), MAX_AMOUNT);
        assert!(Amount::positive(0).is_err());
    }

    #[test]
    fn currencies_are_upper_case_alphanumerics() {
        assert!(Currency::try_from("USD".to_string()).is_ok());
        assert!(Currency::try_from("USDT2".to_string()).is_ok());
        assert!(Currency::try_from("usd".to_string()).is_err());
        assert!(Currency::try_from("US".to_string()).is_err());
        assert!(Currency::try_from("ABCDEFGHIJK".to_string()).is_err());
    }

    #[test]
    fn user_ids_count_characters_not_bytes() {
        assert!(UserId::try_from("é".repeat(255)).is_ok());
        assert!(UserId::try_from("é".repeat(256)).is_err());
        assert!(UserId::try_from(String::new()).is_err());
    }
}
