//! Responsible-gambling limits and the counters that enforce them, in memory.
//!
//! A player who set a limit carries a [`Guard`]: the limits (each with the
//! raise or removal it may be waiting out) and one [`Usage`] per period
//! length, the sums of the latest period of that length. The hot path and the
//! cashier load it with the player's row lock, check an operation against
//! it, count the operation in it and write the counters back in the
//! statement that writes the money; the limits are only read there
//! (migration 0012). Players without limits carry none and pay nothing here.
//!
//! Periods are calendar periods in the operator's time zone: the day from
//! midnight, the week from Monday's midnight, the month from the first's
//! midnight, so a day is 23 or 25 hours long across a DST change.
//!
//! Counting rules (docs/ARCHITECTURE.md, "Responsible gambling"):
//! - `deposit` sums the player's own deposits;
//! - `wager` sums the stakes of bets not rolled back;
//! - `loss` is those stakes minus the wins not rolled back.
//!
//! A bet is checked as if fully lost. Operations count in the period they
//! are processed in; a rollback takes its original out of the period the
//! original was processed in, while that period's counters are still kept.
//! Pre-rollbacks and the late originals they reversed count nowhere.

use std::fmt;

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::rules::Refusal;

/// What a limit caps.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LimitKind {
    Deposit,
    Loss,
    Wager,
}

impl LimitKind {
    pub const ALL: [LimitKind; 3] = [LimitKind::Deposit, LimitKind::Loss, LimitKind::Wager];

    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Deposit => "deposit",
            LimitKind::Loss => "loss",
            LimitKind::Wager => "wager",
        }
    }
}

/// The calendar period a limit holds over.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    pub const ALL: [Period; 3] = [Period::Day, Period::Week, Period::Month];

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The period of this length that `at` falls in, in `zone`.
    pub fn span(self, zone: Tz, at: DateTime<Utc>) -> Span {
        let day = at.with_timezone(&zone).date_naive();
        let (first, next) = match self {
            Period::Day => (day, day + Days::new(1)),
            Period::Week => {
                let monday = day - Days::new(u64::from(day.weekday().num_days_from_monday()));
                (monday, monday + Days::new(7))
            }
            Period::Month => {
                let first = day.with_day(1).unwrap_or(day);
                (first, first + Months::new(1))
            }
        };
        Span { start: midnight(zone, first), end: midnight(zone, next) }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first instant of `date` in `zone`: its midnight, or where a DST gap
/// swallows midnight, the first local time that exists that day.
fn midnight(zone: Tz, date: NaiveDate) -> DateTime<Utc> {
    let mut local = date.and_time(chrono::NaiveTime::MIN);
    // Offsets move in quarter hours; no gap is longer than a day.
    for _ in 0..96 {
        if let Some(at) = zone.from_local_datetime(&local).earliest() {
            return at.to_utc();
        }
        local += TimeDelta::minutes(15);
    }
    local.and_utc()
}

/// `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Span {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }
}

/// A limit as stored: `amount` until `pending_at`, then `pending_amount`
/// (`None`: no limit any more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub kind: LimitKind,
    pub period: Period,
    pub amount: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_at: Option<DateTime<Utc>>,
}

impl Limit {
    /// The amount in force at `now`; `None` once a pending removal is due.
    pub fn in_force(&self, now: DateTime<Utc>) -> Option<i64> {
        match self.pending_at {
            Some(at) if at <= now => self.pending_amount,
            _ => Some(self.amount),
        }
    }

    /// The raise or removal still waiting at `now`.
    pub fn pending(&self, now: DateTime<Utc>) -> Option<(Option<i64>, DateTime<Utc>)> {
        self.pending_at.filter(|at| *at > now).map(|at| (self.pending_amount, at))
    }
}

/// The sums of one period: a `period_sums` value of the wallet row (migration 0012).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "period_sums")]
pub struct Usage {
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub deposited: i64,
    pub staked: i64,
    pub won: i64,
}

impl Usage {
    pub fn empty(span: Span) -> Usage {
        Usage { period_start: span.start, period_end: span.end, deposited: 0, staked: 0, won: 0 }
    }

    pub fn span(&self) -> Span {
        Span { start: self.period_start, end: self.period_end }
    }

    /// How much of a limit of `kind` this period has used. A loss is
    /// negative while the player is winning.
    pub fn used(&self, kind: LimitKind) -> i128 {
        Counted { deposited: self.deposited, staked: self.staked, won: self.won }.toward(kind)
    }
}

/// What an operation adds to the sums (negative: what a rollback takes back).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    pub deposited: i64,
    pub staked: i64,
    pub won: i64,
}

impl Counted {
    /// What these sums add to a limit of `kind`: deposits, stakes, or
    /// stakes minus wins (negative while the player is winning).
    fn toward(&self, kind: LimitKind) -> i128 {
        match kind {
            LimitKind::Deposit => i128::from(self.deposited),
            LimitKind::Wager => i128::from(self.staked),
            LimitKind::Loss => i128::from(self.staked) - i128::from(self.won),
        }
    }
}

/// A limited player's limits (a row of `player_limits`) and counters (the
/// `day_sums`, `week_sums` and `month_sums` of the wallet row), read with the
/// row's lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Guard {
    pub limits: Vec<Limit>,
    /// The latest period of each length, by [`Period`] order; `None` until
    /// the player does something in one.
    pub usage: [Option<Usage>; 3],
}

impl Guard {
    /// The sums of the period of this length in progress at `now`: zero when
    /// the stored one is an earlier period.
    pub fn current(&self, period: Period, zone: Tz, now: DateTime<Utc>) -> Usage {
        match self.usage[period.index()] {
            Some(u) if u.span().contains(now) => u,
            _ => Usage::empty(period.span(zone, now)),
        }
    }

    /// Refuses an operation adding `counted` at `now` if any limit in force
    /// of the kinds it touches would be passed. A bet is checked as lost:
    /// `counted` has its stake and no win.
    pub fn check(&self, zone: Tz, now: DateTime<Utc>, counted: Counted) -> Result<(), Refusal> {
        for limit in &self.limits {
            let Some(amount) = limit.in_force(now) else { continue };
            let added = counted.toward(limit.kind);
            if added <= 0 {
                continue;
            }
            let used = self.current(limit.period, zone, now).used(limit.kind);
            if used + added > i128::from(amount) {
                return Err(Refusal::OverLimit { kind: limit.kind, period: limit.period });
            }
        }
        Ok(())
    }

    /// Counts an operation processed at `now` in the periods in progress.
    pub fn count(&mut self, zone: Tz, now: DateTime<Utc>, counted: Counted) {
        for period in Period::ALL {
            let mut usage = self.current(period, zone, now);
            add(&mut usage, counted);
            self.usage[period.index()] = Some(usage);
        }
    }

    /// Takes back what an operation processed at `at` counted, in each
    /// period whose counters are still those of `at`'s period.
    pub fn uncount(&mut self, at: DateTime<Utc>, counted: Counted) {
        let taken = Counted { deposited: -counted.deposited, staked: -counted.staked, won: -counted.won };
        for usage in self.usage.iter_mut().flatten() {
            if usage.span().contains(at) {
                add(usage, taken);
            }
        }
    }
}

/// Adds `counted` to the sums; they stay within what was counted before,
/// so they neither overflow nor go below zero (the table's checks say so too).
fn add(usage: &mut Usage, counted: Counted) {
    usage.deposited = usage.deposited.saturating_add(counted.deposited);
    usage.staked = usage.staked.saturating_add(counted.staked);
    usage.won = usage.won.saturating_add(counted.won);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    const LONDON: Tz = chrono_tz::Europe::London;

    #[test]
    fn periods_are_calendar_periods_in_the_operators_zone() {
        // Friday 27 November 2026, 23:30 in London (UTC+0).
        let now = at("2026-11-27T23:30:00Z");
        assert_eq!(
            Period::Day.span(LONDON, now),
            Span { start: at("2026-11-27T00:00:00Z"), end: at("2026-11-28T00:00:00Z") }
        );
        assert_eq!(
            Period::Week.span(LONDON, now),
            Span { start: at("2026-11-23T00:00:00Z"), end: at("2026-11-30T00:00:00Z") }
        );
        assert_eq!(
            Period::Month.span(LONDON, now),
            Span { start: at("2026-11-01T00:00:00Z"), end: at("2026-12-01T00:00:00Z") }
        );
        // The same instant is already Saturday in Stockholm.
        let stockholm = chrono_tz::Europe::Stockholm;
        assert_eq!(Period::Day.span(stockholm, now).start, at("2026-11-27T23:00:00Z"));
    }

    #[test]
    fn a_day_across_a_dst_change_is_23_or_25_hours() {
        let spring = Period::Day.span(LONDON, at("2026-03-29T12:00:00Z"));
        assert_eq!(spring, Span { start: at("2026-03-29T00:00:00Z"), end: at("2026-03-29T23:00:00Z") });
        let autumn = Period::Day.span(LONDON, at("2026-10-25T12:00:00Z"));
        assert_eq!(autumn, Span { start: at("2026-10-24T23:00:00Z"), end: at("2026-10-26T00:00:00Z") });
        // The week holding the spring change is 167 hours.
        let week = Period::Week.span(LONDON, at("2026-03-29T12:00:00Z"));
        assert_eq!(week.end - week.start, TimeDelta::hours(167));
    }

    #[test]
    fn a_midnight_inside_a_dst_gap_starts_the_day_when_the_day_starts() {
        // Chile skipped 00:00–01:00 local on 6 September 2026.
        let santiago = chrono_tz::America::Santiago;
        let day = Period::Day.span(santiago, at("2026-09-06T12:00:00Z"));
        assert_eq!(day.start, at("2026-09-06T04:00:00Z"), "01:00 at UTC-3");
        assert_eq!(day.end - day.start, TimeDelta::hours(23));
    }

    fn limit(kind: LimitKind, period: Period, amount: i64) -> Limit {
        Limit { kind, period, amount, pending_amount: None, pending_at: None }
    }

    fn stake(amount: i64) -> Counted {
        Counted { staked: amount, ..Counted::default() }
    }

    #[test]
    fn a_bet_is_checked_as_lost_against_every_limit_in_force() {
        let now = at("2026-11-27T10:00:00Z");
        let mut guard = Guard {
            limits: vec![
                limit(LimitKind::Wager, Period::Week, 1_000),
                limit(LimitKind::Loss, Period::Day, 300),
            ],
            usage: [None; 3],
        };
        guard.check(LONDON, now, stake(300)).unwrap();
        guard.count(LONDON, now, stake(300));
        let over_loss = Err(Refusal::OverLimit { kind: LimitKind::Loss, period: Period::Day });
        assert_eq!(guard.check(LONDON, now, stake(1)), over_loss);
        guard.count(LONDON, now, Counted { won: 500, ..Counted::default() });
        guard.check(LONDON, now, stake(500)).unwrap();
        guard.count(LONDON, now, stake(500));
        assert_eq!(guard.check(LONDON, now, stake(1)), over_loss, "lost 300 of 300 today");
        guard.count(LONDON, now, Counted { won: 1_000, ..Counted::default() });
        let over_wager = Err(Refusal::OverLimit { kind: LimitKind::Wager, period: Period::Week });
        assert_eq!(guard.check(LONDON, now, stake(201)), over_wager);
        guard.check(LONDON, now, stake(200)).unwrap();
        // A win alone is never refused, nor is a deposit by play limits.
        guard.check(LONDON, now, Counted { won: 10, ..Counted::default() }).unwrap();
        guard.check(LONDON, now, Counted { deposited: 10_000, ..Counted::default() }).unwrap();
    }

    #[test]
    fn a_new_period_starts_from_zero_and_a_rollback_changes_only_its_own_period() {
        let friday = at("2026-11-27T10:00:00Z");
        let saturday = at("2026-11-28T10:00:00Z");
        let mut guard = Guard { limits: vec![limit(LimitKind::Wager, Period::Day, 100)], usage: [None; 3] };
        guard.count(LONDON, friday, stake(100));
        assert!(guard.check(LONDON, friday, stake(1)).is_err());
        guard.check(LONDON, saturday, stake(100)).unwrap();
        guard.count(LONDON, saturday, stake(60));
        // Friday's bet rolled back on Saturday: the day's counters are
        // Saturday's now; the week's and the month's still hold it.
        guard.uncount(friday, stake(100));
        assert_eq!(guard.current(Period::Day, LONDON, saturday).staked, 60);
        assert_eq!(guard.current(Period::Week, LONDON, saturday).staked, 60);
        assert_eq!(guard.current(Period::Month, LONDON, saturday).staked, 60);
    }

    #[test]
    fn an_operation_at_midnight_belongs_to_the_day_that_starts() {
        let friday = at("2026-11-27T10:00:00Z");
        let midnight = at("2026-11-28T00:00:00Z");
        let mut guard = Guard { limits: vec![limit(LimitKind::Wager, Period::Day, 100)], usage: [None; 3] };
        guard.count(LONDON, friday, stake(100));
        assert!(guard.check(LONDON, midnight - TimeDelta::microseconds(1), stake(1)).is_err());
        guard.check(LONDON, midnight, stake(100)).unwrap();
        assert_eq!(guard.current(Period::Day, LONDON, midnight).period_start, midnight);
        // Friday's bet rolled back at midnight: Friday is no longer the day kept.
        guard.count(LONDON, midnight, stake(30));
        guard.uncount(friday, stake(100));
        assert_eq!(guard.current(Period::Day, LONDON, midnight).staked, 30);
    }

    #[test]
    fn a_pending_raise_or_removal_takes_over_at_its_time() {
        let now = at("2026-11-27T10:00:00Z");
        let later = now + TimeDelta::hours(24);
        let raise = Limit {
            pending_amount: Some(500),
            pending_at: Some(later),
            ..limit(LimitKind::Loss, Period::Day, 100)
        };
        assert_eq!((raise.in_force(now), raise.pending(now)), (Some(100), Some((Some(500), later))));
        assert_eq!((raise.in_force(later), raise.pending(later)), (Some(500), None));
        let removal = Limit { pending_at: Some(later), ..raise };
        let removal = Limit { pending_amount: None, ..removal };
        assert_eq!(removal.in_force(later), None);
        let guard = Guard { limits: vec![removal], usage: [None; 3] };
        guard.check(LONDON, later, stake(i64::MAX)).unwrap();
        assert!(guard.check(LONDON, now, stake(101)).is_err());
    }

    #[test]
    fn sums_near_the_largest_amount_neither_overflow_nor_pass() {
        let now = at("2026-11-27T10:00:00Z");
        let mut guard =
            Guard { limits: vec![limit(LimitKind::Wager, Period::Month, i64::MAX)], usage: [None; 3] };
        guard.count(LONDON, now, stake(i64::MAX));
        assert!(guard.check(LONDON, now, stake(1)).is_err());
    }
}
