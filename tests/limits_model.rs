//! Model-based property test of responsible-gambling limits: random
//! sequences of own deposits, bets, wins, rollbacks (of bets and wins, in the
//! same or an earlier period), pre-rollbacks and their late originals, limit
//! changes and clock advances across day, week, month and DST boundaries in
//! Europe/London, run through the money rules (`Wallet::apply`, the code the
//! group-commit path runs) and the cashier's check, against a model that
//! knows nothing of counters: it keeps every operation and recomputes each
//! period's sums from that history, comparing calendar dates, after every step.
//! Every refusal and every counter must match.
//!
//! The database side of the same rules (the counters written with the money,
//! made from the ledger for a first limit, and recomputed by `reconcile`) is
//! tested in `tests/responsible.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Datelike, TimeDelta, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use uuid::Uuid;
use wallet::domain::{Amount, Currency, Flag, PlayerStatus, UserId};
use wallet::ledger::limits::{Counted, Guard, LimitKind, Period};
use wallet::ledger::rules::{Player, Refusal, StoredAction, Wallet};
use wallet::ledger::{Action, Batch, PlayPolicy};
use wallet::responsible::store::{decide, Outcome};
use wallet::responsible::{view, Who};

const ZONE: Tz = chrono_tz::Europe::London;
const DELAY_HOURS: i64 = 24;

#[derive(Debug, Clone)]
enum Op {
    Deposit(i64),
    Bet(i64),
    Win(i64),
    /// Rolls back the n-th bet or win so far (modulo how many there are).
    Rollback(usize),
    /// A rollback naming an id not seen yet; a later `LateOriginal` sends it.
    PreRollback,
    /// The original (a bet) of the n-th pre-rollback.
    LateOriginal(usize, i64),
    SetLimit(LimitKind, Period, Option<i64>),
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    let amount = prop_oneof![Just(1_i64), Just(50), Just(200), Just(700)];
    let kind = prop_oneof![Just(LimitKind::Deposit), Just(LimitKind::Loss), Just(LimitKind::Wager)];
    let period = prop_oneof![Just(Period::Day), Just(Period::Week), Just(Period::Month)];
    let limit =
        prop_oneof![Just(None), Just(Some(0_i64)), Just(Some(300)), Just(Some(1_000)), Just(Some(5_000))];
    prop_oneof![
        2 => amount.clone().prop_map(Op::Deposit),
        5 => amount.clone().prop_map(Op::Bet),
        3 => amount.clone().prop_map(Op::Win),
        2 => any::<usize>().prop_map(Op::Rollback),
        1 => Just(Op::PreRollback),
        1 => (any::<usize>(), amount).prop_map(|(n, a)| Op::LateOriginal(n, a)),
        3 => (kind, period, limit).prop_map(|(k, p, a)| Op::SetLimit(k, p, a)),
        // Minutes: up to about four days, so sequences cross days, weeks,
        // the end of March and the DST change of 29 March.
        3 => (1_i64..6_000).prop_map(Op::Advance),
    ]
}

/// An operation the model remembers: when it counted, and whether it was
/// rolled back since.
#[derive(Debug, Clone)]
struct Done {
    kind: LimitKind,
    amount: i64,
    at: DateTime<Utc>,
    rolled_back: bool,
}

/// A limit as the model keeps it: the amount in force, and a waiting change.
#[derive(Debug, Clone, Copy)]
struct ModelLimit {
    amount: i64,
    pending: Option<(Option<i64>, DateTime<Utc>)>,
}

#[derive(Default)]
struct Model {
    done: Vec<Done>,
    limits: HashMap<(LimitKind, Period), ModelLimit>,
}

/// Whether `a` and `b` fall in the same calendar period in `ZONE`.
fn same_period(period: Period, a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
    let (a, b) = (a.with_timezone(&ZONE).date_naive(), b.with_timezone(&ZONE).date_naive());
    match period {
        Period::Day => a == b,
        Period::Week => a.iso_week() == b.iso_week(),
        Period::Month => (a.year(), a.month()) == (b.year(), b.month()),
    }
}

impl Model {
    /// Applies waiting changes that are due.
    fn settle(&mut self, now: DateTime<Utc>) {
        self.limits.retain(|_, limit| match limit.pending {
            Some((amount, at)) if at <= now => match amount {
                Some(amount) => {
                    *limit = ModelLimit { amount, pending: None };
                    true
                }
                None => false,
            },
            _ => true,
        });
    }

    fn used(&self, kind: LimitKind, period: Period, now: DateTime<Utc>) -> i64 {
        let sum = |counted: LimitKind| -> i64 {
            self.done
                .iter()
                .filter(|d| d.kind == counted && !d.rolled_back && same_period(period, d.at, now))
                .map(|d| d.amount)
                .sum()
        };
        match kind {
            LimitKind::Deposit => sum(LimitKind::Deposit),
            LimitKind::Wager => sum(LimitKind::Wager),
            // Wins are remembered under `Loss`.
            LimitKind::Loss => sum(LimitKind::Wager) - sum(LimitKind::Loss),
        }
    }

    /// The limits an operation adding `amount` of `kind` would pass.
    fn passed(&self, counted: LimitKind, amount: i64, now: DateTime<Utc>) -> Vec<(LimitKind, Period)> {
        self.limits
            .iter()
            .filter(|((kind, _), _)| match counted {
                LimitKind::Deposit => *kind == LimitKind::Deposit,
                _ => *kind != LimitKind::Deposit,
            })
            .filter(|((kind, period), limit)| self.used(*kind, *period, now) + amount > limit.amount)
            .map(|(key, _)| *key)
            .collect()
    }

    fn set(&mut self, kind: LimitKind, period: Period, requested: Option<i64>, now: DateTime<Utc>) {
        let key = (kind, period);
        let delayed = now + TimeDelta::hours(DELAY_HOURS);
        match (self.limits.get(&key).copied(), requested) {
            (None, None) => {}
            (None, Some(amount)) => {
                self.limits.insert(key, ModelLimit { amount, pending: None });
            }
            (Some(limit), Some(amount)) if amount <= limit.amount => {
                self.limits.insert(key, ModelLimit { amount, pending: None });
            }
            (Some(limit), requested) => {
                self.limits
                    .insert(key, ModelLimit { amount: limit.amount, pending: Some((requested, delayed)) });
            }
        }
    }
}

/// The implementation: a wallet's player and stored actions between requests.
struct Real {
    player: Player,
    stored: HashMap<Uuid, StoredAction>,
    policy: Arc<PlayPolicy>,
}

impl Real {
    fn new() -> Real {
        let player = Player {
            id: 1,
            operator: 1,
            currency: "GBP".into(),
            balance: 1_000_000_000,
            status: PlayerStatus::Active,
            last_seq: 0,
            country: Some("GB".into()),
            kyc_tier: 2,
            status_until: None,
            guard: Some(Guard::default()),
            bonus: None,
            bonus_rounds: false,
        };
        let policy =
            Arc::new(PlayPolicy { casino: Flag::Everywhere(true), play_by_tier: [true; 3], zone: ZONE });
        Real { player, stored: HashMap::new(), policy }
    }

    /// One provider request, processed at `now` as a group would.
    fn apply(&mut self, now: DateTime<Utc>, actions: Vec<Action>) -> Result<(), Refusal> {
        let mut wallet = Wallet::new(self.player.clone(), now, self.stored.values().cloned());
        wallet.policy = self.policy.clone();
        let batch = Batch {
            user_id: UserId::try_from("p".to_string()).unwrap(),
            currency: Currency::try_from("GBP".to_string()).unwrap(),
            game: Some("slots".into()),
            game_id: Some("r".into()),
            actions,
        };
        let outcome = wallet.apply(&batch).map(|_| ());
        self.player = wallet.player;
        self.stored.extend(wallet.effects.actions);
        outcome
    }

    /// An own deposit, as the cashier checks and counts it.
    fn deposit(&mut self, now: DateTime<Utc>, amount: i64) -> Result<(), Refusal> {
        let guard = self.player.guard.as_mut().unwrap();
        let counted = Counted { deposited: amount, ..Counted::default() };
        guard.check(ZONE, now, counted)?;
        guard.count(ZONE, now, counted);
        Ok(())
    }

    /// A limits request of the player, as the store decides it.
    fn set(&mut self, kind: LimitKind, period: Period, requested: Option<i64>, now: DateTime<Utc>) {
        let guard = self.player.guard.as_mut().unwrap();
        let at = guard.limits.iter().position(|l| l.kind == kind && l.period == period);
        let current = at.map(|i| guard.limits[i]);
        let delay = TimeDelta::hours(DELAY_HOURS);
        match (decide(Who::Player, kind, period, current.as_ref(), requested, now, delay).unwrap(), at) {
            (Outcome::Keep, _) => {}
            (Outcome::Set(limit), Some(i)) => guard.limits[i] = limit,
            (Outcome::Set(limit), None) => guard.limits.push(limit),
            (Outcome::Delete, Some(i)) => {
                guard.limits.remove(i);
            }
            (Outcome::Delete, None) => {}
        }
    }
}

fn amount(n: i64) -> Amount {
    Amount::try_from(n).unwrap()
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    // Friday 27 March 2026: the month ends on Tuesday, DST starts on Sunday.
    let mut now = DateTime::parse_from_rfc3339("2026-03-27T20:00:00Z").unwrap().to_utc();
    let (mut model, mut real) = (Model::default(), Real::new());
    // Bets and wins that may be rolled back: (action, model index).
    let mut settled: Vec<(Uuid, usize)> = Vec::new();
    let mut reserved: Vec<Uuid> = Vec::new();
    for op in ops {
        model.settle(now);
        match op {
            Op::Deposit(n) | Op::Bet(n) => {
                let (counted, outcome) = match op {
                    Op::Deposit(_) => (LimitKind::Deposit, real.deposit(now, n)),
                    _ => {
                        let action = Action::Bet { id: Uuid::new_v4(), amount: amount(n) };
                        let outcome = real.apply(now, vec![action]);
                        if outcome.is_ok() {
                            settled.push((action.id(), model.done.len()));
                        }
                        (LimitKind::Wager, outcome)
                    }
                };
                let passed = model.passed(counted, n, now);
                match outcome {
                    Ok(()) => {
                        prop_assert!(passed.is_empty(), "{op:?} at {now} was accepted past {passed:?}");
                        model.done.push(Done { kind: counted, amount: n, at: now, rolled_back: false });
                    }
                    Err(Refusal::OverLimit { kind, period }) => {
                        prop_assert!(
                            passed.contains(&(kind, period)),
                            "{op:?} at {now} refused by {kind} {period}, model {passed:?}"
                        );
                    }
                    Err(other) => prop_assert!(false, "{op:?} refused: {other:?}"),
                }
            }
            Op::Win(n) => {
                let action = Action::Win { id: Uuid::new_v4(), amount: amount(n) };
                prop_assert_eq!(real.apply(now, vec![action]), Ok(()));
                settled.push((action.id(), model.done.len()));
                model.done.push(Done { kind: LimitKind::Loss, amount: n, at: now, rolled_back: false });
            }
            Op::Rollback(n) if !settled.is_empty() => {
                let (original, index) = settled[n % settled.len()];
                prop_assert_eq!(
                    real.apply(now, vec![Action::Rollback { id: Uuid::new_v4(), original }]),
                    Ok(())
                );
                model.done[index].rolled_back = true;
            }
            Op::Rollback(_) => {}
            Op::PreRollback => {
                let original = Uuid::new_v4();
                prop_assert_eq!(
                    real.apply(now, vec![Action::Rollback { id: Uuid::new_v4(), original }]),
                    Ok(())
                );
                reserved.push(original);
            }
            Op::LateOriginal(n, a) if !reserved.is_empty() => {
                let id = reserved.remove(n % reserved.len());
                // Recorded as rolled back already: never refused, counted nowhere.
                prop_assert_eq!(real.apply(now, vec![Action::Bet { id, amount: amount(a) }]), Ok(()));
            }
            Op::LateOriginal(..) => {}
            Op::SetLimit(kind, period, requested) => {
                real.set(kind, period, requested, now);
                model.set(kind, period, requested, now);
            }
            Op::Advance(minutes) => now += TimeDelta::minutes(minutes),
        }
        model.settle(now);
        // Every limit in force and its counter, as `GET /v1/me/limits` shows them.
        let shown = view(real.player.guard.as_ref().unwrap(), ZONE, now);
        let mut expected = 0;
        for ((kind, period), limit) in &model.limits {
            expected += 1;
            let Some(got) = shown.get(kind).and_then(|p| p.get(period)) else {
                return Err(TestCaseError::fail(format!("{kind} {period} missing at {now}: {shown:?}")));
            };
            prop_assert_eq!(got.amount, limit.amount, "{} {} amount at {}", kind, period, now);
            prop_assert_eq!(got.used, model.used(*kind, *period, now), "{} {} used at {}", kind, period, now);
            prop_assert_eq!(got.pending.as_ref().map(|p| (p.amount, p.effective_at)), limit.pending);
        }
        prop_assert_eq!(
            shown.values().map(|p| p.len()).sum::<usize>(),
            expected,
            "no other limit: {:?}",
            shown
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn limits_and_counters_match_a_model_that_recomputes_from_history(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
