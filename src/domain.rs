//! Values the wallet speaks in, parsed once at the edge and valid from then on.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
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
        storable(&value)?;
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
    storable(&value)?;
    if value.chars().count() <= 255 {
        Ok(value)
    } else {
        Err(Invalid("must be at most 255 characters"))
    }
}

/// Refuses text PostgreSQL cannot store: its `text` type has no NUL
/// character, and a NUL reaching a query fails it. Every string that comes
/// from outside and may reach the database passes through here first.
pub fn storable(value: &str) -> Result<(), Invalid> {
    if value.contains('\0') {
        Err(Invalid("must not contain the NUL character (\\u0000)"))
    } else {
        Ok(())
    }
}

/// A back-office `Idempotency-Key`: 1 to 255 characters of UTF-8 text
/// without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of a header's raw bytes; `None` (the header is missing) is
    /// told apart from a header that is present but unusable.
    pub fn from_header(value: Option<&[u8]>) -> Result<IdempotencyKey, Invalid> {
        let bytes = value.ok_or(Invalid("header is required, 1 to 255 characters"))?;
        let text = std::str::from_utf8(bytes).map_err(|_| Invalid("must be UTF-8 text"))?;
        if text.chars().any(char::is_control) {
            return Err(Invalid("must not contain control characters"));
        }
        match text.chars().count() {
            1..=255 => Ok(IdempotencyKey(text.to_string())),
            _ => Err(Invalid("must be 1 to 255 characters")),
        }
    }
}

/// Times the service accepts from outside and hands to the database: years
/// 0000 to 9999, what RFC 3339 can write. PostgreSQL stores far more
/// (4713 BC to 294276 AD); a bound this side of it keeps every query valid.
pub fn storable_time(at: DateTime<Utc>) -> bool {
    const MIN_SECONDS: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
    const MAX_SECONDS: i64 = 253_402_300_800; // 10000-01-01T00:00:00Z
    (MIN_SECONDS..MAX_SECONDS).contains(&at.timestamp())
}

/// A time from outside, RFC 3339 with any offset (`2026-11-23T10:00:00Z`),
/// in UTC and rounded up to the microsecond: the database keeps
/// microseconds, so `t >= from` for a stored `t` holds exactly when
/// `t >= ceil(from)`, and a half-open window `[from, to)` stays exact.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, Invalid> {
    const FORMAT: Invalid = Invalid("must be an RFC 3339 time such as 2026-11-23T10:00:00Z");
    let at = DateTime::parse_from_rfc3339(text).map_err(|_| FORMAT)?.to_utc();
    let rest = at.timestamp_subsec_nanos() % 1000;
    let at = if rest == 0 { at } else { at + TimeDelta::nanoseconds(i64::from(1000 - rest)) };
    Ok(at)
}

/// `at` rounded down to a whole `unit` since the Unix epoch (hours and days
/// are whole in UTC). Unlike `DurationRound`, which counts in nanoseconds
/// and fails outside 1677 to 2262, this works for every time chrono holds.
pub fn floor_time(at: DateTime<Utc>, unit: TimeDelta) -> DateTime<Utc> {
    let unit_micros = unit.num_microseconds().filter(|&u| u > 0).unwrap_or(1);
    let micros_into_unit = (i128::from(at.timestamp()) * 1_000_000
        + i128::from(at.timestamp_subsec_micros()))
    .rem_euclid(i128::from(unit_micros));
    let rest = TimeDelta::microseconds(micros_into_unit as i64)
        + TimeDelta::nanoseconds(i64::from(at.timestamp_subsec_nanos() % 1000));
    // The earliest time chrono holds is itself a whole day, so this never
    // goes below it.
    at.checked_sub_signed(rest).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Whether a player may place bets. Wins and rollbacks are accepted in every state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlayerStatus {
    Active,
    Blocked,
    SelfExcluded,
    /// A time-out the player took: ends by itself at `status_until`.
    CoolingOff,
}

impl PlayerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PlayerStatus::Active => "active",
            PlayerStatus::Blocked => "blocked",
            PlayerStatus::SelfExcluded => "self_excluded",
            PlayerStatus::CoolingOff => "cooling_off",
        }
    }

    pub fn may_bet(self) -> bool {
        self == PlayerStatus::Active
    }

    /// This status at `now`, given its end: a time-out or self-exclusion
    /// past `until` is over. A self-exclusion without an end is permanent.
    pub fn in_force(
        self,
        until: Option<chrono::DateTime<chrono::Utc>>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> PlayerStatus {
        match (self, until) {
            (PlayerStatus::CoolingOff | PlayerStatus::SelfExcluded, Some(end)) if end <= now => {
                PlayerStatus::Active
            }
            _ => self,
        }
    }

    /// A time-out or self-exclusion: nobody may shorten or lift it.
    pub fn is_exclusion(self) -> bool {
        matches!(self, PlayerStatus::CoolingOff | PlayerStatus::SelfExcluded)
    }
}

impl std::str::FromStr for PlayerStatus {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(PlayerStatus::Active),
            "blocked" => Ok(PlayerStatus::Blocked),
            "self_excluded" => Ok(PlayerStatus::SelfExcluded),
            "cooling_off" => Ok(PlayerStatus::CoolingOff),
            _ => Err(Invalid("must be one of active, blocked, self_excluded, cooling_off")),
        }
    }
}

/// The kind of a ledger entry, mirroring the `entry_kind` database enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, sqlx::Type, utoipa::ToSchema)]
#[sqlx(type_name = "entry_kind", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Bet,
    Win,
    Rollback,
    Deposit,
    Withdrawal,
    /// A bonus given: bonus money in.
    BonusGrant,
    /// A completed bonus's balance (up to its cap) become cash.
    BonusConversion,
    /// Bonus money given up: expired, forfeited, or past the conversion cap.
    BonusForfeit,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Bet => "bet",
            EntryKind::Win => "win",
            EntryKind::Rollback => "rollback",
            EntryKind::Deposit => "deposit",
            EntryKind::Withdrawal => "withdrawal",
            EntryKind::BonusGrant => "bonus_grant",
            EntryKind::BonusConversion => "bonus_conversion",
            EntryKind::BonusForfeit => "bonus_forfeit",
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
    fn text_with_a_nul_is_refused_before_it_reaches_the_database() {
        assert!(UserId::try_from("a\0b".to_string()).is_err());
        assert!(short_text("round\0".to_string()).is_err());
        assert!(short_text("round".to_string()).is_ok());
    }

    #[test]
    fn idempotency_keys_tell_missing_from_malformed() {
        let missing = IdempotencyKey::from_header(None).unwrap_err();
        assert!(missing.0.contains("required"));
        let not_utf8 = IdempotencyKey::from_header(Some(b"caf\xe9")).unwrap_err();
        assert!(not_utf8.0.contains("UTF-8"), "{not_utf8}");
        assert_eq!(IdempotencyKey::from_header(Some("café-1".as_bytes())).unwrap().as_str(), "café-1");
        assert!(IdempotencyKey::from_header(Some(b"a\tb")).is_err());
        assert!(IdempotencyKey::from_header(Some(b"")).is_err());
        assert!(IdempotencyKey::from_header(Some("k".repeat(256).as_bytes())).is_err());
    }

    #[test]
    fn times_are_floored_in_every_year_chrono_holds() {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().to_utc();
        let hour = TimeDelta::hours(1);
        assert_eq!(floor_time(at("2026-11-27T10:15:00.5Z"), hour), at("2026-11-27T10:00:00Z"));
        assert_eq!(floor_time(at("2262-04-12T00:30:00Z"), hour), at("2262-04-12T00:00:00Z"));
        assert_eq!(floor_time(at("0000-01-01T05:59:59.999999999Z"), hour), at("0000-01-01T05:00:00Z"));
        assert_eq!(floor_time(at("1969-12-31T23:30:00Z"), TimeDelta::days(1)), at("1969-12-31T00:00:00Z"));
        assert_eq!(floor_time(DateTime::<Utc>::MIN_UTC, hour), DateTime::<Utc>::MIN_UTC);
        let max = DateTime::<Utc>::MAX_UTC;
        assert!(floor_time(max, hour) <= max);
        // A unit of nothing floors to the microsecond instead of dividing by zero.
        assert_eq!(
            floor_time(at("2026-11-27T10:15:00.0000015Z"), TimeDelta::zero()),
            at("2026-11-27T10:15:00.000001Z")
        );
    }

    #[test]
    fn parsed_times_are_utc_rounded_up_to_the_microsecond() {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().to_utc();
        assert_eq!(parse_time("2026-11-01T12:00:00.0000001+02:00"), Ok(at("2026-11-01T10:00:00.000001Z")));
        assert_eq!(parse_time("2026-11-01T10:00:00.000001Z"), Ok(at("2026-11-01T10:00:00.000001Z")));
        assert_eq!(parse_time("9999-12-31T23:59:59.999999Z"), Ok(at("9999-12-31T23:59:59.999999Z")));
        for bad in ["yesterday", "2026-11-01", "2026-11-01T10:00:00", ""] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn storable_times_are_the_years_rfc_3339_can_write() {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().to_utc();
        assert!(storable_time(at("0000-01-01T00:00:00Z")));
        assert!(storable_time(at("9999-12-31T23:59:59.999999Z")));
        assert!(!storable_time(DateTime::<Utc>::MAX_UTC));
        assert!(!storable_time(DateTime::<Utc>::MIN_UTC));
    }

    #[test]
    fn user_ids_count_characters_not_bytes() {
        assert!(UserId::try_from("é".repeat(255)).is_ok());
        assert!(UserId::try_from("é".repeat(256)).is_err());
        assert!(UserId::try_from(String::new()).is_err());
    }
}

/// An ISO 3166-1 alpha-2 country code, upper case.
pub fn is_country(code: &str) -> bool {
    code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// A feature flag of an operator: on or off everywhere, or a default with
/// per-country exceptions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Flag {
    Everywhere(bool),
    PerCountry { default: bool, countries: std::collections::BTreeMap<String, bool> },
}

impl Flag {
    /// Whether the flag is on for a player of `country` (the default when
    /// the country is not known).
    pub fn is_on(&self, country: Option<&str>) -> bool {
        match self {
            Flag::Everywhere(on) => *on,
            Flag::PerCountry { default, countries } => {
                country.and_then(|c| countries.get(c)).copied().unwrap_or(*default)
            }
        }
    }
}

impl TryFrom<serde_json::Value> for Flag {
    type Error = Invalid;

    fn try_from(value: serde_json::Value) -> Result<Flag, Invalid> {
        const SHAPE: &str = r#"a flag is a bool or {"default": bool, "countries": {"XX": bool}}"#;
        let serde_json::Value::Object(mut fields) = value else {
            return value.as_bool().map(Flag::Everywhere).ok_or(Invalid(SHAPE));
        };
        let default = fields.remove("default").and_then(|v| v.as_bool()).ok_or(Invalid(SHAPE))?;
        let countries = match fields.remove("countries") {
            None => Default::default(),
            Some(serde_json::Value::Object(countries)) => countries
                .into_iter()
                .map(|(country, on)| match on.as_bool() {
                    Some(on) if is_country(&country) => Ok((country, on)),
                    _ => Err(Invalid(
                        "countries: each key is an ISO 3166-1 alpha-2 code (\"GB\") and each value a bool",
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(Invalid(SHAPE)),
        };
        if !fields.is_empty() {
            return Err(Invalid(SHAPE));
        }
        Ok(Flag::PerCountry { default, countries })
    }
}

impl<'de> serde::Deserialize<'de> for Flag {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Flag, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Flag::try_from(value).map_err(|Invalid(problem)| serde::de::Error::custom(problem))
    }
}
