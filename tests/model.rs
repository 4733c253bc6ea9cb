//! Model-based property test: random sequences of bets, wins, rollbacks,
//! pre-rollbacks, replays and conflicting replays over a few players, run
//! through the real hot path against Postgres and checked after every step
//! against a small in-memory model of the wallet.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;
use wallet::audit::{Actor, Origin};
use wallet::domain::{Amount, Currency, EntryKind, UserId, DEFAULT_OPERATOR};
use wallet::ledger::{process_batch, Action, Batch};

const PLAYERS: usize = 3;
const ID_SLOTS: usize = 10;
const START_BALANCE: i64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bet,
    Win,
    Rollback,
}

/// One generated action: ids are slots in a small pool, so they collide often.
#[derive(Debug, Clone, Copy)]
struct GenAction {
    kind: Kind,
    slot: usize,
    amount: i64,
    original: usize,
}

#[derive(Debug, Clone)]
struct Step {
    player: usize,
    actions: Vec<GenAction>,
}

fn step() -> impl Strategy<Value = Step> {
    let action = (
        prop_oneof![Just(Kind::Bet), Just(Kind::Win), Just(Kind::Rollback)],
        0..ID_SLOTS,
        prop_oneof![Just(0_i64), Just(1), Just(100), Just(400), Just(1_500)],
        0..ID_SLOTS,
    )
        .prop_map(|(kind, slot, amount, original)| GenAction { kind, slot, amount, original });
    (0..PLAYERS, prop::collection::vec(action, 1..4)).prop_map(|(player, actions)| Step { player, actions })
}

/// What the model remembers of an action id.
#[derive(Debug, Clone)]
struct Known {
    player: usize,
    /// `None`: only a pre-rollback has named this id so far.
    kind: Option<Kind>,
    amount: i64,
    original: Option<usize>,
    tx_id: Option<Uuid>,
    /// Position in the current request of the action that created this id,
    /// until its tx_id is known from the answer.
    created_at_index: Option<usize>,
    reversed: bool,
}

/// What the answer's tx_id for one action must be.
#[derive(Debug, Clone, Copy)]
enum ExpectedTx {
    New,
    Replay(Uuid),
    SameAs(usize),
}

#[derive(Debug, Clone)]
struct Model {
    balances: [i64; PLAYERS],
    ids: HashMap<usize, Known>,
}

/// The model's answer to a step: new balance and, per action, the tx_id a
/// replay must repeat (`None` for a new action), or an error code.
type Expected = Result<(Model, Vec<ExpectedTx>), u16>;

impl Model {
    fn apply(&self, step: &Step) -> Expected {
        let mut next = self.clone();
        let mut replays = Vec::new();
        for a in &step.actions {
            let p = step.player;
            let params = (
                a.kind,
                if a.kind == Kind::Rollback { 0 } else { a.amount },
                (a.kind == Kind::Rollback).then_some(a.original),
            );
            match next.ids.get(&a.slot).cloned() {
                Some(k) if k.kind.is_some() => {
                    if (k.player, k.kind.unwrap(), k.amount, k.original) != (p, params.0, params.1, params.2)
                    {
                        return Err(409);
                    }
                    replays.push(match (k.tx_id, k.created_at_index) {
                        (Some(tx_id), _) => ExpectedTx::Replay(tx_id),
                        (None, Some(index)) => ExpectedTx::SameAs(index),
                        (None, None) => unreachable!("a processed id has a tx_id or is new in this request"),
                    });
                    continue;
                }
                Some(k) => {
                    if k.player != p {
                        return Err(409);
                    }
                    if a.kind == Kind::Rollback {
                        return Err(102);
                    }
                    next.ids.insert(
                        a.slot,
                        Known {
                            player: p,
                            kind: Some(a.kind),
                            amount: a.amount,
                            original: None,
                            tx_id: None,
                            created_at_index: Some(replays.len()),
                            reversed: true,
                        },
                    );
                }
                None => match a.kind {
                    Kind::Bet | Kind::Win => {
                        let change = if a.kind == Kind::Bet { -a.amount } else { a.amount };
                        if next.balances[p] + change < 0 {
                            return Err(100);
                        }
                        next.balances[p] += change;
                        next.ids.insert(
                            a.slot,
                            Known {
                                player: p,
                                kind: Some(a.kind),
                                amount: a.amount,
                                original: None,
                                tx_id: None,
                                created_at_index: Some(replays.len()),
                                reversed: false,
                            },
                        );
                    }
                    Kind::Rollback if a.original == a.slot => return Err(102),
                    Kind::Rollback => {
                        match next.ids.get(&a.original).cloned() {
                            None => {
                                next.ids.insert(
                                    a.original,
                                    Known {
                                        player: p,
                                        kind: None,
                                        amount: 0,
                                        original: None,
                                        tx_id: None,
                                        created_at_index: None,
                                        reversed: true,
                                    },
                                );
                            }
                            Some(o) if o.player != p => return Err(409),
                            Some(o) if o.kind == Some(Kind::Rollback) => return Err(102),
                            Some(o) if o.reversed || o.kind.is_none() => {}
                            Some(mut o) => {
                                let change = if o.kind == Some(Kind::Bet) { o.amount } else { -o.amount };
                                if next.balances[p] + change < 0 {
                                    return Err(100);
                                }
                                next.balances[p] += change;
                                o.reversed = true;
                                next.ids.insert(a.original, o);
                            }
                        }
                        // A rollback whose own id was the pre-rolled-back original is
                        // handled above (102); here the id is new.
                        next.ids.insert(
                            a.slot,
                            Known {
                                player: p,
                                kind: Some(Kind::Rollback),
                                amount: 0,
                                original: Some(a.original),
                                tx_id: None,
                                created_at_index: Some(replays.len()),
                                reversed: false,
                            },
                        );
                    }
                },
            }
            replays.push(ExpectedTx::New);
        }
        Ok((next, replays))
    }
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    pool: PgPool,
    case: std::cell::Cell<u32>,
}

impl Harness {
    /// A database of its own for this test, migrated like production, named
    /// after the suite's database so that `scripts/test` reconciles it and
    /// leaves alone those of another suite on the same server.
    fn new() -> Harness {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
        let (server, suite) = base.rsplit_once('/').unwrap();
        let suite = suite.split('?').next().unwrap();
        let name = format!("{suite}_model_{}", &Uuid::new_v4().simple().to_string()[..12]);
        assert!(name.len() <= 63, "{name} is longer than PostgreSQL's names");
        let url = format!("{server}/{name}");
        let pool = runtime.block_on(async {
            wallet::prepare_database(&url).await.unwrap();
            PgPoolOptions::new().max_connections(2).connect(&url).await.unwrap()
        });
        Harness { runtime, pool, case: 0.into() }
    }

    fn run(&self, steps: &[Step]) -> Result<(), TestCaseError> {
        self.case.set(self.case.get() + 1);
        let case = self.case.get();
        let users: Vec<UserId> =
            (0..PLAYERS).map(|p| UserId::try_from(format!("c{case}-p{p}")).unwrap()).collect();
        let slots: Vec<Uuid> = (0..ID_SLOTS).map(|_| Uuid::new_v4()).collect();
        self.runtime.block_on(async {
            for user in &users {
                let usd = Currency::try_from("USD".to_string()).unwrap();
                wallet::players::store::create_player(
                    &self.pool,
                    DEFAULT_OPERATOR,
                    &Origin::without_request(Actor::Platform),
                    user,
                    &usd,
                )
                .await
                .unwrap();
                let amount = Amount::positive(START_BALANCE).unwrap();
                wallet::players::store::move_money(
                    &self.pool,
                    DEFAULT_OPERATOR,
                    &Origin::without_request(Actor::Platform),
                    wallet::players::store::Requester::Staff,
                    user,
                    EntryKind::Deposit,
                    amount,
                    "seed",
                    wallet::players::store::BonusAsk::Nothing,
                )
                .await
                .unwrap();
            }
            let mut model = Model { balances: [START_BALANCE; PLAYERS], ids: HashMap::new() };
            let mut seen_tx_ids = HashSet::new();
            for (n, step) in steps.iter().enumerate() {
                let batch = Batch {
                    user_id: users[step.player].clone(),
                    currency: Currency::try_from("USD".to_string()).unwrap(),
                    game: Some("model".into()),
                    game_id: Some(format!("round-{n}")),
                    actions: step
                        .actions
                        .iter()
                        .map(|a| match a.kind {
                            Kind::Bet => {
                                Action::Bet { id: slots[a.slot], amount: Amount::try_from(a.amount).unwrap() }
                            }
                            Kind::Win => {
                                Action::Win { id: slots[a.slot], amount: Amount::try_from(a.amount).unwrap() }
                            }
                            Kind::Rollback => {
                                Action::Rollback { id: slots[a.slot], original: slots[a.original] }
                            }
                        })
                        .collect(),
                };
                let actual = process_batch(&self.pool, DEFAULT_OPERATOR, &batch).await.map_err(|e| e.code());
                match (model.apply(step), actual) {
                    (Err(expected), Err(got)) => prop_assert_eq!(expected, got, "step {}: {:?}", n, step),
                    (Ok((mut next, replays)), Ok(receipt)) => {
                        prop_assert_eq!(
                            receipt.balance,
                            next.balances[step.player],
                            "step {}: {:?}",
                            n,
                            step
                        );
                        let answered: Vec<Uuid> = receipt.transactions.iter().map(|(_, tx)| *tx).collect();
                        for (i, (a, expected)) in step.actions.iter().zip(&replays).enumerate() {
                            match *expected {
                                ExpectedTx::Replay(original) => prop_assert_eq!(
                                    original,
                                    answered[i],
                                    "replay must answer the original tx_id"
                                ),
                                ExpectedTx::SameAs(first) => prop_assert_eq!(
                                    answered[first],
                                    answered[i],
                                    "a repeat in one request answers the first tx_id"
                                ),
                                ExpectedTx::New => {
                                    prop_assert!(seen_tx_ids.insert(answered[i]), "tx_id reused");
                                    let known = next.ids.get_mut(&a.slot).unwrap();
                                    known.tx_id = Some(answered[i]);
                                    known.created_at_index = None;
                                }
                            }
                        }
                        model = next;
                    }
                    (expected, actual) => prop_assert!(
                        false,
                        "step {}: {:?}: model {:?}, service {:?}",
                        n,
                        step,
                        expected.map(|(m, _)| m.balances),
                        actual.map(|r| r.balance)
                    ),
                }
                for (p, user) in users.iter().enumerate() {
                    let balance: i64 = sqlx::query_scalar("SELECT balance FROM players WHERE user_id = $1")
                        .bind(user.as_str())
                        .fetch_one(&self.pool)
                        .await
                        .unwrap();
                    prop_assert_eq!(
                        balance,
                        model.balances[p],
                        "stored balance of player {} after step {}",
                        p,
                        n
                    );
                }
            }
            Ok(())
        })
    }
}

#[test]
fn random_action_sequences_match_the_wallet_model() {
    let harness = Harness::new();
    let config = ProptestConfig { cases: 48, ..ProptestConfig::default() };
    proptest!(config, |(steps in prop::collection::vec(step(), 1..40))| {
        harness.run(&steps)?;
    });
}
