//! Model-based property test of bonus money: random sequences of provider
//! requests (bets, wins, rollbacks, pre-rollbacks, replays and conflicting
//! replays, in a few rounds and game categories), manual grants, forfeits,
//! expiries (the stored end moved into the past) and sweeps over a few
//! players, run through the real code against Postgres and checked after
//! every step against a small in-memory model of cash, the active bonus, the
//! grants and the bonus rounds (docs/API.md, "Bonus money").

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use proptest::prelude::*;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;
use wallet::audit::{Actor, Origin};
use wallet::domain::{Amount, Currency, EntryKind, UserId, DEFAULT_OPERATOR};
use wallet::ledger::{process_submission, Action, Batch, Submission};

const PLAYERS: usize = 2;
const ID_SLOTS: usize = 24;
const GAMES: usize = 3;
const START_CASH: i64 = 500;
const CAMPAIGN: &str = "MODEL";
const MAX_BONUS: i64 = 1_000;
const WAGERING_MULTIPLIER: i64 = 2;
const CONVERSION_MULTIPLIER: i64 = 1;
const MAX_BET: i64 = 600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bet,
    Win,
    Rollback,
}

/// The category a request's game is filed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    Slots,
    Table,
    Other,
}

impl Category {
    fn name(self) -> &'static str {
        match self {
            Category::Slots => "slots",
            Category::Table => "table",
            Category::Other => "other",
        }
    }

    /// The campaign's contribution: `{"slots":100,"table":10}`, others 0.
    fn weight(self) -> i64 {
        match self {
            Category::Slots => 100,
            Category::Table => 10,
            Category::Other => 0,
        }
    }
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
enum Step {
    Play {
        player: usize,
        category: Category,
        game: usize,
        actions: Vec<GenAction>,
    },
    Grant {
        player: usize,
        amount: i64,
    },
    /// Gives up the `pick`-th of the player's grants (whatever its status).
    Forfeit {
        player: usize,
        pick: usize,
    },
    /// Time passes: the player's active bonus is past its end.
    Expire {
        player: usize,
    },
    Sweep,
}

fn step() -> impl Strategy<Value = Step> {
    let action = (
        prop_oneof![4 => Just(Kind::Bet), 2 => Just(Kind::Win), 2 => Just(Kind::Rollback)],
        0..ID_SLOTS,
        prop_oneof![Just(0_i64), Just(1), Just(50), Just(200), Just(650)],
        0..ID_SLOTS,
    )
        .prop_map(|(kind, slot, amount, original)| GenAction { kind, slot, amount, original });
    let category =
        prop_oneof![3 => Just(Category::Slots), 1 => Just(Category::Table), 1 => Just(Category::Other)];
    prop_oneof![
        10 => (0..PLAYERS, category, 0..GAMES, prop::collection::vec(action, 1..4))
            .prop_map(|(player, category, game, actions)| Step::Play { player, category, game, actions }),
        3 => (0..PLAYERS, prop_oneof![Just(50_i64), Just(150), Just(400)])
            .prop_map(|(player, amount)| Step::Grant { player, amount }),
        1 => (0..PLAYERS, 0..4_usize).prop_map(|(player, pick)| Step::Forfeit { player, pick }),
        1 => (0..PLAYERS).prop_map(|player| Step::Expire { player }),
        1 => Just(Step::Sweep),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Active,
    Completed,
    Expired,
    Forfeited,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Completed => "completed",
            Status::Expired => "expired",
            Status::Forfeited => "forfeited",
        }
    }
}

/// A grant row as the model expects it; the parts are as it ended.
#[derive(Debug, Clone)]
struct Grant {
    bonus_id: Uuid,
    status: Status,
    wagered: i64,
    staked: i64,
    converted: i64,
    forfeited: i64,
}

/// The active bonus, by the index of its grant.
#[derive(Debug, Clone, Copy)]
struct Bonus {
    grant: usize,
    balance: i64,
    wagered: i64,
    staked: i64,
    required: i64,
    cap: i64,
    /// Its stored end was moved into the past: the next touch ends it.
    past_end: bool,
}

/// The stakes of one round's bets made while a bonus was active.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Round {
    bonus: Option<usize>,
    staked: i64,
    bonus_staked: i64,
}

/// How an action's money split between cash and a bonus (by grant index).
#[derive(Debug, Clone, Copy)]
struct Split {
    cash: i64,
    bonus: i64,
    wagering: i64,
    grant: usize,
}

#[derive(Debug, Clone, Default)]
struct Account {
    cash: i64,
    bonus: Option<Bonus>,
    grants: Vec<Grant>,
    /// By game index.
    rounds: HashMap<usize, Round>,
}

impl Account {
    fn total(&self) -> i64 {
        self.cash + self.bonus.map_or(0, |b| b.balance)
    }

    fn is_active(&self, grant: usize) -> bool {
        self.bonus.is_some_and(|b| b.grant == grant)
    }

    /// Ends the active bonus: on completion its balance up to the cap
    /// becomes cash, the rest is forfeited.
    fn end(&mut self, status: Status) {
        let Some(b) = self.bonus.take() else { return };
        let converted = if status == Status::Completed { b.balance.min(b.cap) } else { 0 };
        self.cash += converted;
        let g = &mut self.grants[b.grant];
        g.status = status;
        g.wagered = b.wagered;
        g.staked = b.staked;
        g.converted = converted;
        g.forfeited = b.balance - converted;
    }

    /// Whatever touches the wallet first ends a bonus past its end.
    fn touch(&mut self) -> bool {
        if self.bonus.is_some_and(|b| b.past_end) {
            self.end(Status::Expired);
            return true;
        }
        false
    }
}

/// What the model remembers of an action id.
#[derive(Debug, Clone)]
struct Known {
    player: usize,
    /// `None`: only a pre-rollback has named this id so far.
    kind: Option<Kind>,
    amount: i64,
    original: Option<usize>,
    /// The round (game index) it was made in.
    game: usize,
    split: Option<Split>,
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
    accounts: Vec<Account>,
    ids: HashMap<usize, Known>,
}

type Expected = Result<(Model, Vec<ExpectedTx>), u16>;

impl Model {
    /// One provider request: the state after the touch (kept even when the
    /// request is refused) and the outcome.
    fn play(&self, p: usize, category: Category, game: usize, actions: &[GenAction]) -> (Model, Expected) {
        let mut touched = self.clone();
        touched.accounts[p].touch();
        let outcome = touched.play_touched(p, category, game, actions);
        (touched, outcome)
    }

    fn play_touched(&self, p: usize, category: Category, game: usize, actions: &[GenAction]) -> Expected {
        let mut next = self.clone();
        let mut replays = Vec::new();
        for a in actions {
            let params = (
                a.kind,
                if a.kind == Kind::Rollback { 0 } else { a.amount },
                (a.kind == Kind::Rollback).then_some(a.original),
            );
            let new = |kind, split| Known {
                player: p,
                kind: Some(kind),
                amount: params.1,
                original: params.2,
                game,
                split,
                tx_id: None,
                created_at_index: Some(replays.len()),
                reversed: false,
            };
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
                    // A late original: recorded as reversed, moves nothing.
                    if k.player != p {
                        return Err(409);
                    }
                    if a.kind == Kind::Rollback {
                        return Err(102);
                    }
                    next.ids.insert(a.slot, Known { reversed: true, ..new(a.kind, None) });
                }
                None => match a.kind {
                    Kind::Bet => {
                        let acc = &mut next.accounts[p];
                        let split = match acc.bonus {
                            Some(_) if a.amount > MAX_BET => return Err(106),
                            None if acc.cash < a.amount => return Err(100),
                            None => None,
                            Some(b) => {
                                let cash = a.amount.min(acc.cash);
                                if a.amount - cash > b.balance {
                                    return Err(100);
                                }
                                Some(Split {
                                    cash,
                                    bonus: a.amount - cash,
                                    wagering: a.amount * category.weight() / 100,
                                    grant: b.grant,
                                })
                            }
                        };
                        acc.cash -= split.map_or(a.amount, |s| s.cash);
                        if let Some(s) = split {
                            let round = acc.rounds.entry(game).or_default();
                            round.staked += a.amount;
                            round.bonus_staked += s.bonus;
                            if s.bonus > 0 {
                                round.bonus = Some(s.grant);
                            }
                            let b = acc.bonus.as_mut().unwrap();
                            b.balance -= s.bonus;
                            b.staked += a.amount;
                            b.wagered += s.wagering;
                            if b.wagered >= b.required {
                                acc.end(Status::Completed);
                            }
                        }
                        next.ids.insert(a.slot, new(Kind::Bet, split));
                    }
                    Kind::Win => {
                        let acc = &mut next.accounts[p];
                        let split = acc.rounds.get(&game).and_then(|r| {
                            let share = if r.staked <= 0 || r.bonus_staked <= 0 {
                                0
                            } else {
                                a.amount * r.bonus_staked / r.staked
                            };
                            let grant = r.bonus.filter(|_| share > 0)?;
                            let to_bonus = if acc.is_active(grant) { share } else { 0 };
                            Some(Split { cash: a.amount - share, bonus: to_bonus, wagering: 0, grant })
                        });
                        acc.cash += split.map_or(a.amount, |s| s.cash);
                        if let Some(s) = split.filter(|s| s.bonus != 0) {
                            acc.bonus.as_mut().unwrap().balance += s.bonus;
                        }
                        next.ids.insert(a.slot, new(Kind::Win, split));
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
                                        game,
                                        split: None,
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
                                let acc = &mut next.accounts[p];
                                let (cash, bonus) = match o.split {
                                    None => (o.amount, 0),
                                    Some(s) if acc.is_active(s.grant) => (s.cash, s.bonus),
                                    Some(s) => (s.cash, 0),
                                };
                                if o.kind == Some(Kind::Bet) {
                                    acc.cash += cash;
                                    if let Some(s) = o.split {
                                        if let Some(r) = acc.rounds.get_mut(&o.game) {
                                            r.staked = (r.staked - o.amount).max(0);
                                            r.bonus_staked = (r.bonus_staked - s.bonus).clamp(0, r.staked);
                                        }
                                        if let Some(b) = acc.bonus.as_mut().filter(|b| b.grant == s.grant) {
                                            b.balance += bonus;
                                            b.staked -= o.amount;
                                            b.wagered -= s.wagering;
                                        }
                                    }
                                } else {
                                    if acc.cash < cash {
                                        return Err(100);
                                    }
                                    acc.cash -= cash;
                                    if bonus != 0 {
                                        let b = acc.bonus.as_mut().unwrap();
                                        if b.balance < bonus {
                                            return Err(100);
                                        }
                                        b.balance -= bonus;
                                    }
                                }
                                o.reversed = true;
                                next.ids.insert(a.original, o);
                            }
                        }
                        next.ids.insert(a.slot, new(Kind::Rollback, None));
                    }
                },
            }
            replays.push(ExpectedTx::New);
        }
        Ok((next, replays))
    }
}

fn amount(n: i64) -> Amount {
    Amount::try_from(n).unwrap()
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    pool: PgPool,
    case: std::cell::Cell<u32>,
}

impl Harness {
    /// A database of its own for this test, migrated like production, named
    /// after the suite's database so that `scripts/test` reconciles it and
    /// leaves alone those of another suite on the same server; with the
    /// `manual` campaign every grant uses.
    fn new() -> Harness {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
        let (server, suite) = base.rsplit_once('/').unwrap();
        let suite = suite.split('?').next().unwrap();
        let name = format!("{suite}_bonus_{}", &Uuid::new_v4().simple().to_string()[..12]);
        assert!(name.len() <= 63, "{name} is longer than PostgreSQL's names");
        let url = format!("{server}/{name}");
        let pool = runtime.block_on(async {
            wallet::prepare_database(&url).await.unwrap();
            let pool = PgPoolOptions::new().max_connections(2).connect(&url).await.unwrap();
            sqlx::query(
                "INSERT INTO bonus_campaigns (operator_id, code, kind, max_bonus, wagering_multiplier,
                                              contributions, max_bet, max_conversion_multiplier, valid_days)
                 VALUES ($1, $2, 'manual', $3, $4, '{\"slots\": 100, \"table\": 10}'::jsonb, $5, $6, 30)",
            )
            .bind(DEFAULT_OPERATOR)
            .bind(CAMPAIGN)
            .bind(MAX_BONUS)
            .bind(WAGERING_MULTIPLIER as i32)
            .bind(MAX_BET)
            .bind(CONVERSION_MULTIPLIER as i32)
            .execute(&pool)
            .await
            .unwrap();
            pool
        });
        Harness { runtime, pool, case: 0.into() }
    }

    fn run(&self, steps: &[Step]) -> Result<(), TestCaseError> {
        self.case.set(self.case.get() + 1);
        let case = self.case.get();
        let users: Vec<UserId> =
            (0..PLAYERS).map(|p| UserId::try_from(format!("c{case}-p{p}")).unwrap()).collect();
        let slots: Vec<Uuid> = (0..ID_SLOTS).map(|_| Uuid::new_v4()).collect();
        let origin = Origin::without_request(Actor::Platform);
        self.runtime.block_on(async {
            // A case that failed part way may have left a bonus past its end.
            wallet::bonus::store::expire_due(&self.pool, 1_000).await.unwrap();
            let mut player_ids = Vec::new();
            for user in &users {
                let usd = Currency::try_from("USD".to_string()).unwrap();
                wallet::players::store::create_player(&self.pool, DEFAULT_OPERATOR, &origin, user, &usd)
                    .await
                    .unwrap();
                wallet::players::store::move_money(
                    &self.pool,
                    DEFAULT_OPERATOR,
                    &origin,
                    wallet::players::store::Requester::Staff,
                    user,
                    EntryKind::Deposit,
                    amount(START_CASH),
                    "seed",
                    wallet::players::store::BonusAsk::Nothing,
                )
                .await
                .unwrap();
                let id: i64 =
                    sqlx::query_scalar("SELECT id FROM players WHERE operator_id = $1 AND user_id = $2")
                        .bind(DEFAULT_OPERATOR)
                        .bind(user.as_str())
                        .fetch_one(&self.pool)
                        .await
                        .unwrap();
                player_ids.push(id);
            }
            let account = Account { cash: START_CASH, ..Account::default() };
            let mut model = Model { accounts: vec![account; PLAYERS], ids: HashMap::new() };
            let mut seen_tx_ids = HashSet::new();
            for (n, step) in steps.iter().enumerate() {
                match step {
                    Step::Play { player, category, game, actions } => {
                        let p = *player;
                        let batch = Batch {
                            user_id: users[p].clone(),
                            currency: Currency::try_from("USD".to_string()).unwrap(),
                            game: Some(format!("{}-game", category.name())),
                            game_id: Some(format!("g{game}")),
                            actions: actions
                                .iter()
                                .map(|a| match a.kind {
                                    Kind::Bet => Action::Bet { id: slots[a.slot], amount: amount(a.amount) },
                                    Kind::Win => Action::Win { id: slots[a.slot], amount: amount(a.amount) },
                                    Kind::Rollback => {
                                        Action::Rollback { id: slots[a.slot], original: slots[a.original] }
                                    }
                                })
                                .collect(),
                        };
                        let mut submission = Submission::open(DEFAULT_OPERATOR, batch);
                        submission.category = Arc::from(category.name());
                        let actual = process_submission(&self.pool, &submission).await.map_err(|e| e.code());
                        let (touched, expected) = model.play(p, *category, *game, actions);
                        match (expected, actual) {
                            (Err(expected), Err(got)) => {
                                prop_assert_eq!(expected, got, "step {}: {:?}", n, step);
                                model = touched;
                            }
                            (Ok((mut next, replays)), Ok(receipt)) => {
                                prop_assert_eq!(
                                    receipt.balance,
                                    next.accounts[p].total(),
                                    "answered balance, step {}: {:?}",
                                    n,
                                    step
                                );
                                let answered: Vec<Uuid> =
                                    receipt.transactions.iter().map(|(_, tx)| *tx).collect();
                                for (i, (a, expected)) in actions.iter().zip(&replays).enumerate() {
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
                                expected.map(|(m, _)| m.accounts[p].total()),
                                actual.map(|r| r.balance)
                            ),
                        }
                    }
                    Step::Grant { player, amount } => {
                        let p = *player;
                        let key = Uuid::new_v4().to_string();
                        let actual = wallet::bonus::store::grant_manual(
                            &self.pool,
                            DEFAULT_OPERATOR,
                            &origin,
                            &users[p],
                            CAMPAIGN,
                            *amount,
                            &key,
                        )
                        .await;
                        let mut touched = model.clone();
                        touched.accounts[p].touch();
                        let acc = &mut touched.accounts[p];
                        match (acc.bonus.is_some(), actual) {
                            (true, Err(e)) => prop_assert_eq!(e.code(), 122, "step {}: {:?}", n, step),
                            (false, Ok((view, replay))) => {
                                prop_assert!(!replay);
                                let required = WAGERING_MULTIPLIER * amount;
                                prop_assert_eq!(
                                    (
                                        view.status.as_str(),
                                        view.granted,
                                        view.balance,
                                        view.wagered,
                                        view.required
                                    ),
                                    ("active", *amount, *amount, 0, required)
                                );
                                acc.grants.push(Grant {
                                    bonus_id: view.bonus_id,
                                    status: Status::Active,
                                    wagered: 0,
                                    staked: 0,
                                    converted: 0,
                                    forfeited: 0,
                                });
                                acc.bonus = Some(Bonus {
                                    grant: acc.grants.len() - 1,
                                    balance: *amount,
                                    wagered: 0,
                                    staked: 0,
                                    required,
                                    cap: CONVERSION_MULTIPLIER * amount,
                                    past_end: false,
                                });
                                model = touched;
                            }
                            (active, actual) => prop_assert!(
                                false,
                                "step {}: {:?}: model has an active bonus: {}, service {:?}",
                                n,
                                step,
                                active,
                                actual.map(|(v, _)| v).map_err(|e| e.code())
                            ),
                        }
                    }
                    Step::Forfeit { player, pick } => {
                        let p = *player;
                        let acc = &model.accounts[p];
                        let (bonus_id, expected) = if acc.grants.is_empty() {
                            (Uuid::new_v4(), Err(404))
                        } else {
                            let at = pick % acc.grants.len();
                            let live = acc.bonus.is_some_and(|b| b.grant == at && !b.past_end);
                            (acc.grants[at].bonus_id, if live { Ok(()) } else { Err(409) })
                        };
                        let actual = wallet::bonus::store::forfeit(
                            &self.pool,
                            DEFAULT_OPERATOR,
                            &origin,
                            &users[p],
                            bonus_id,
                        )
                        .await;
                        match (expected, actual) {
                            (Ok(()), Ok(view)) => {
                                prop_assert_eq!((view.status.as_str(), view.balance), ("forfeited", 0));
                                model.accounts[p].end(Status::Forfeited);
                            }
                            (Err(code), Err(e)) => {
                                prop_assert_eq!(code, e.code(), "step {}: {:?}", n, step);
                                // A bonus past its end expires on the touch of a
                                // forfeit of any of the player's grants.
                                if code == 409 && model.accounts[p].bonus.is_some_and(|b| b.past_end) {
                                    model.accounts[p].end(Status::Expired);
                                }
                            }
                            (expected, actual) => prop_assert!(
                                false,
                                "step {}: {:?}: model {:?}, service {:?}",
                                n,
                                step,
                                expected,
                                actual.map_err(|e| e.code())
                            ),
                        }
                    }
                    Step::Expire { player } => {
                        let p = *player;
                        sqlx::query(
                            "UPDATE bonus_grants SET expires_at = now() - interval '1 second'
                             WHERE status = 'active' AND player_id = $1",
                        )
                        .bind(player_ids[p])
                        .execute(&self.pool)
                        .await
                        .unwrap();
                        sqlx::query(
                            "UPDATE players SET bonus.expires_at = now() - interval '1 second'
                             WHERE (bonus).bonus_id IS NOT NULL AND id = $1",
                        )
                        .bind(player_ids[p])
                        .execute(&self.pool)
                        .await
                        .unwrap();
                        if let Some(b) = model.accounts[p].bonus.as_mut() {
                            b.past_end = true;
                        }
                    }
                    Step::Sweep => {
                        let ended = wallet::bonus::store::expire_due(&self.pool, 100).await.unwrap();
                        let expected =
                            model.accounts.iter_mut().filter_map(|acc| acc.touch().then_some(())).count();
                        prop_assert_eq!(ended, expected, "bonuses the sweep ended, step {}", n);
                    }
                }
                for (p, (id, account)) in player_ids.iter().zip(&model.accounts).enumerate() {
                    check(&self.pool, *id, account, p, n).await?;
                }
            }
            let report = wallet::ops::reconcile::reconcile(&self.pool).await.unwrap();
            prop_assert!(report.ok, "reconcile: {:?}", report);
            Ok(())
        })
    }
}

/// The stored player row, grants and bonus rounds of player `p` against the model.
async fn check(pool: &PgPool, id: i64, acc: &Account, p: usize, n: usize) -> Result<(), TestCaseError> {
    let (cash, bonus_id, balance, wagered, staked): (
        i64,
        Option<Uuid>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    ) = sqlx::query_as(
        "SELECT balance, (bonus).bonus_id, (bonus).balance, (bonus).wagered, (bonus).staked
             FROM players WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap();
    prop_assert_eq!(cash, acc.cash, "cash of player {} after step {}", p, n);
    let expected = acc.bonus.map(|b| (acc.grants[b.grant].bonus_id, b.balance, b.wagered, b.staked));
    let stored = bonus_id.map(|bonus_id| (bonus_id, balance.unwrap(), wagered.unwrap(), staked.unwrap()));
    prop_assert_eq!(stored, expected, "active bonus of player {} after step {}", p, n);

    let rows: Vec<(Uuid, String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT bonus_id, status, converted, forfeited, wagered, staked FROM bonus_grants
         WHERE player_id = $1 ORDER BY created_at, bonus_id",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut stored: Vec<_> = rows
        .into_iter()
        .map(|(bonus_id, status, converted, forfeited, wagered, staked)| {
            let ended = status != "active";
            (bonus_id, status, converted, forfeited, ended.then_some((wagered, staked)))
        })
        .collect();
    stored.sort_by_key(|r| r.0);
    let mut expected: Vec<_> = acc
        .grants
        .iter()
        .map(|g| {
            let ended = g.status != Status::Active;
            (
                g.bonus_id,
                g.status.as_str().to_string(),
                g.converted,
                g.forfeited,
                ended.then_some((g.wagered, g.staked)),
            )
        })
        .collect();
    expected.sort_by_key(|r| r.0);
    prop_assert_eq!(stored, expected, "grants of player {} after step {}", p, n);

    let rows: Vec<(String, Option<Uuid>, i64, i64)> = sqlx::query_as(
        "SELECT game_id, bonus_id, staked, bonus_staked FROM bonus_rounds WHERE player_id = $1 ORDER BY game_id",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut expected: Vec<_> = acc
        .rounds
        .iter()
        .map(|(game, r)| {
            (format!("g{game}"), r.bonus.map(|g| acc.grants[g].bonus_id), r.staked, r.bonus_staked)
        })
        .collect();
    expected.sort();
    prop_assert_eq!(rows, expected, "bonus rounds of player {} after step {}", p, n);
    Ok(())
}

#[test]
fn random_bonus_sequences_match_the_bonus_model() {
    let harness = Harness::new();
    let config = ProptestConfig { cases: 48, ..ProptestConfig::default() };
    proptest!(config, |(steps in prop::collection::vec(step(), 1..25))| {
        harness.run(&steps)?;
    });
}
