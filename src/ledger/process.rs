//! The hot path: provider requests, start to finish.
//!
//! ```text
//! BEGIN; SET LOCAL plan_cache_mode = force_generic_plan
//! SELECT …, clock_timestamp() FROM players … ORDER BY id FOR UPDATE  -- 1. lock the players
//! SELECT … FROM actions              -- 2. the originals rollbacks name, after the lock (if any)
//!   … rules run in memory, request by request …
//! WITH … INSERT/UPDATE … UPDATE players                              -- 3. one statement writes everything
//! COMMIT
//! ```
//!
//! Four round trips whatever the number of actions, five when a rollback
//! names an original, and whatever the number of requests processed together
//! (see `group.rs`); nothing is queried inside a loop. A player's
//! responsible-gambling counters are columns of the locked row and its limits
//! are read with it. A request the rules refuse leaves no trace: its effects
//! are never added to what gets written.
//!
//! Step 2 does not look up the actions' own ids: they are new but for the rare
//! replay, and the registry's primary key finds a replay anyway when its row
//! is inserted, so a lookup per action would do that index descent twice.
//! When the insert does meet a stored id, nothing is kept and the group runs
//! again reading every id first ([`Probe`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use sqlx::types::Json;

use super::bonus::{ActiveBonus, Round, Split};
use super::limits::{Guard, Limit, Usage};
use super::rules::{Player, Processed, Receipt, Refusal, StoredAction, Wallet};
use super::{Action, Batch, Submission};
use crate::domain::{Amount, Currency, EntryKind, UserId};
use crate::error::{is_retryable, AppError, AppResult};
use crate::events::{BonusEvent, Event};

/// A balance lookup: the request carried no actions.
pub async fn balance_of(
    pool: &PgPool,
    operator: i16,
    user_id: &UserId,
    currency: &Currency,
) -> AppResult<i64> {
    // An expired bonus's balance is never shown, swept or not.
    let player = sqlx::query!(
        r#"SELECT currency, balance + CASE WHEN (bonus).expires_at > now() THEN (bonus).balance ELSE 0 END
                  AS "total!"
           FROM players WHERE operator_id = $1 AND user_id = $2"#,
        operator,
        user_id.as_str(),
    )
    .fetch_optional(pool)
    .await?
    .ok_or(AppError::PlayerNotFound)?;
    if player.currency != currency.as_str() {
        return Err(Refusal::CurrencyMismatch.into());
    }
    Ok(player.total)
}

/// Starts a hot-path transaction whose statements run their cached generic
/// plans. Their shape never depends on the values bound (arrays of rows), but
/// PostgreSQL's default is to keep planning a statement afresh for every
/// execution while its custom plan looks cheaper than the generic one, and
/// for the write statement (a dozen CTEs) planning cost as much as a third
/// of its execution (docs/BENCHMARKS.md). `SET LOCAL` ends with the
/// transaction, so the connection returns to the pool as it came.
const BEGIN_GENERIC: &str = "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan";

/// Which stored actions a group reads before its rules run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Every action id the requests name: one registry lookup per action.
    Every,
    /// Only the originals that rollbacks name. Every other id is taken to be
    /// new, which it almost always is, and the registry's primary key checks
    /// that when its row is inserted: an id that was stored after all fails
    /// the write, and the group is applied again with [`Probe::Every`]. A
    /// request the rules refuse leaves no row to check, so a group with a
    /// refusal reads the remaining ids and is judged again before it writes
    /// (the refused request may be a replay, which must answer its first
    /// result).
    Originals,
}

/// The outcome of each request of a group, in order.
pub struct GroupOutcome {
    pub outcomes: Vec<AppResult<Receipt>>,
    /// The first attempt took an id to be new that was stored already.
    pub met_stored_action: bool,
}

/// Applies one request's actions atomically under the player's row lock.
pub async fn process_submission(pool: &PgPool, submission: &Submission) -> AppResult<Receipt> {
    let mut outcomes = process_group(pool, &[submission]).await?;
    outcomes.pop().unwrap_or_else(|| Err(AppError::internal(anyhow::anyhow!("a group answered no outcome"))))
}

/// [`process_submission`] of `batch` for a player of `operator`, under no
/// operator policy: what the project's tools and tests replay history with.
pub async fn process_batch(pool: &PgPool, operator: i16, batch: &Batch) -> AppResult<Receipt> {
    process_submission(pool, &Submission::open(operator, batch.clone())).await
}

/// How many times a group that met a deadlock or serialization failure is
/// run again before its requests are answered 503 (safe to retry).
const CONTENTION_RETRIES: u32 = 3;

/// Applies several requests in one transaction. Each request keeps its own
/// all-or-nothing outcome, in order: a refused request adds nothing, and
/// the requests after it see the state as if it had never been sent.
///
/// The outer error means the transaction itself failed and nothing was kept.
pub async fn process_group(pool: &PgPool, batches: &[&Submission]) -> AppResult<Vec<AppResult<Receipt>>> {
    let mut conn = pool.acquire().await?;
    Ok(process_group_probing(&mut conn, batches, Probe::Originals).await?.outcomes)
}

/// [`process_group`] on `conn`, reading the stored actions that `probe` names first.
///
/// A deadlock or serialization failure rolled the whole transaction back, so
/// the group is simply run again, a few times, before giving up with 503.
pub async fn process_group_probing(
    conn: &mut PgConnection,
    batches: &[&Submission],
    probe: Probe,
) -> AppResult<GroupOutcome> {
    let mut attempt = 1;
    loop {
        match probe_and_apply(conn, batches, probe).await {
            Err(error) if is_retryable(&error) && attempt <= CONTENTION_RETRIES => {
                tracing::debug!(attempt, error = %error, "group met a deadlock or serialization failure; running it again");
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

async fn probe_and_apply(
    conn: &mut PgConnection,
    batches: &[&Submission],
    probe: Probe,
) -> AppResult<GroupOutcome> {
    if let Some(outcomes) = apply_group(conn, batches, probe).await? {
        return Ok(GroupOutcome { outcomes, met_stored_action: false });
    }
    let outcomes = apply_group(conn, batches, Probe::Every)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("registry conflict with every action read")))?;
    Ok(GroupOutcome { outcomes, met_stored_action: true })
}

/// One transaction. `None`: under [`Probe::Originals`], an action taken to be
/// new was stored already; nothing was kept.
async fn apply_group(
    conn: &mut PgConnection,
    batches: &[&Submission],
    probe: Probe,
) -> AppResult<Option<Vec<AppResult<Receipt>>>> {
    let mut tx = conn.begin_with(BEGIN_GENERIC).await?;
    let keys: Vec<PlayerKey> = batches.iter().map(|s| s.player_key()).collect();
    let Locked { players, now } = lock_players(&mut tx, &keys).await?;
    let every_id = || sorted_ids(batches.iter().flat_map(|s| s.batch.referenced_ids()));
    let first_read = match probe {
        Probe::Every => every_id(),
        Probe::Originals => sorted_ids(batches.iter().flat_map(|s| s.batch.rollback_originals())),
    };
    let mut stored = load_actions(&mut tx, &first_read).await?;
    let rounds = load_rounds(&mut tx, &players, &stored, batches).await?;
    let (mut wallets, mut outcomes) = evaluate(&players, now, &stored, &rounds, batches);
    if probe == Probe::Originals && outcomes.iter().any(Result::is_err) {
        let rest: Vec<Uuid> =
            every_id().into_iter().filter(|id| first_read.binary_search(id).is_err()).collect();
        stored.extend(load_actions(&mut tx, &rest).await?);
        (wallets, outcomes) = evaluate(&players, now, &stored, &rounds, batches);
    }

    let changed: Vec<&Wallet> = wallets.values().filter(|w| !w.effects.is_empty()).collect();
    if !changed.is_empty() {
        match write_effects(&mut tx, now, &changed).await {
            Err(error) if probe == Probe::Originals && is_registry_conflict(&error) => return Ok(None),
            written => written?,
        }
    }
    tx.commit().await?;
    Ok(Some(outcomes))
}

fn sorted_ids(ids: impl Iterator<Item = Uuid>) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Runs the rules for every request in order, from the locked players' state.
fn evaluate(
    players: &HashMap<PlayerKey, Player>,
    now: DateTime<Utc>,
    stored: &[StoredAction],
    rounds: &BonusRounds,
    batches: &[&Submission],
) -> (HashMap<PlayerKey, Wallet>, Vec<AppResult<Receipt>>) {
    let mut wallets: HashMap<PlayerKey, Wallet> = players
        .iter()
        .map(|(key, player)| {
            let mut wallet = Wallet::new(player.clone(), now, stored.iter().cloned());
            wallet.rounds = rounds.get(&player.id).cloned().unwrap_or_default();
            (key.clone(), wallet)
        })
        .collect();
    let outcomes = batches
        .iter()
        .map(|submission| match wallets.get_mut(&submission.player_key()) {
            Some(wallet) => {
                wallet.policy = submission.policy.clone();
                wallet.category = submission.category.clone();
                wallet.apply(&submission.batch).map_err(AppError::from)
            }
            None => Err(AppError::PlayerNotFound),
        })
        .collect();
    (wallets, outcomes)
}

/// The bonus rounds of the players who ever had a bonus, by player id and game_id.
type BonusRounds = HashMap<i64, HashMap<String, Round>>;

/// Reads the bonus rounds the requests may touch: their own and those of
/// the originals their rollbacks name, for the players who ever had a bonus
/// (no round trip when none did). Called after the lock, so that it sees
/// what the lock's previous holder wrote.
async fn load_rounds(
    conn: &mut PgConnection,
    players: &HashMap<PlayerKey, Player>,
    stored: &[StoredAction],
    batches: &[&Submission],
) -> AppResult<BonusRounds> {
    let tracked: Vec<i64> = players.values().filter(|p| p.bonus_rounds).map(|p| p.id).collect();
    if tracked.is_empty() {
        return Ok(BonusRounds::new());
    }
    let mut game_ids: Vec<&str> = batches
        .iter()
        .filter(|s| players.get(&s.player_key()).is_some_and(|p| p.bonus_rounds))
        .map(|s| s.batch.game_id.as_deref().unwrap_or_default())
        .chain(stored.iter().filter_map(|a| match a {
            StoredAction::Processed(p) if tracked.contains(&p.player_id) => {
                Some(p.game_id.as_deref().unwrap_or_default())
            }
            _ => None,
        }))
        .collect();
    game_ids.sort_unstable();
    game_ids.dedup();
    let rows = sqlx::query!(
        "SELECT player_id, game_id, bonus_id, staked, bonus_staked FROM bonus_rounds
         WHERE player_id = ANY($1) AND game_id = ANY($2)",
        &tracked,
        &game_ids as _,
    )
    .fetch_all(conn)
    .await?;
    let mut rounds = BonusRounds::new();
    for r in rows {
        let round = Round { bonus_id: r.bonus_id, staked: r.staked, bonus_staked: r.bonus_staked };
        rounds.entry(r.player_id).or_default().insert(r.game_id, round);
    }
    Ok(rounds)
}

/// A new action's row collided with a stored one in the registry.
fn is_registry_conflict(error: &sqlx::Error) -> bool {
    error.as_database_error().and_then(|e| e.constraint()) == Some("actions_pkey")
}

/// A player as requests name it: its operator and its `user_id` there.
pub type PlayerKey = (i16, String);

/// Players locked for the rest of a transaction.
pub struct Locked {
    pub players: HashMap<PlayerKey, Player>,
    /// The processing time of what is written under these locks: the
    /// database's clock, and never earlier than the last change of any locked
    /// player, so that a player's entries never go back in time (the clock is
    /// read with the rows, possibly before a wait for their lock, while the
    /// rows are read after it).
    pub now: DateTime<Utc>,
}

/// `SELECT … FOR UPDATE` on the players, in id order so that transactions
/// locking several players can never deadlock each other. Every writer of a
/// balance takes this lock first, so a player's requests apply one after another.
///
/// The statement matches operators and user ids as two lists, which keeps the
/// one-operator group (nearly every group) on the plain index scan of
/// `(operator_id, user_id)`. A group spanning operators may also lock a
/// player with one of its user ids at another of its operators; that row is
/// left out of the result and its lock, taken in the same id order, ends
/// with the transaction.
pub async fn lock_players(conn: &mut PgConnection, keys: &[PlayerKey]) -> AppResult<Locked> {
    let mut operators: Vec<i16> = keys.iter().map(|(operator, _)| *operator).collect();
    operators.sort_unstable();
    operators.dedup();
    let mut user_ids: Vec<&str> = keys.iter().map(|(_, user_id)| user_id.as_str()).collect();
    user_ids.sort_unstable();
    user_ids.dedup();
    let rows = sqlx::query!(
        r#"SELECT p.id, p.operator_id, p.user_id, p.currency, p.balance, p.status, p.last_seq, p.country,
                  p.kyc_tier, p.status_until, p.updated_at, clock_timestamp() AS "clock!",
                  p.limits AS "limits: Json<Vec<Limit>>", p.day_sums AS "day_sums: Usage",
                  p.week_sums AS "week_sums: Usage", p.month_sums AS "month_sums: Usage",
                  p.bonus AS "bonus: ActiveBonus", p.bonus_rounds
           FROM players p WHERE p.operator_id = ANY($1) AND p.user_id = ANY($2)
           ORDER BY p.id
           FOR UPDATE"#,
        &operators,
        &user_ids as _,
    )
    .fetch_all(conn)
    .await?;
    let now = rows.iter().flat_map(|p| [p.clock, p.updated_at]).max().unwrap_or_else(Utc::now);
    let players = rows
        .into_iter()
        .map(|p| {
            let player = Player {
                id: p.id,
                operator: p.operator_id,
                currency: p.currency,
                balance: p.balance,
                status: p.status.parse().map_err(AppError::internal)?,
                last_seq: p.last_seq,
                country: p.country,
                kyc_tier: p.kyc_tier,
                status_until: p.status_until,
                guard: p
                    .limits
                    .map(|Json(limits)| Guard { limits, usage: [p.day_sums, p.week_sums, p.month_sums] }),
                bonus: p.bonus,
                bonus_rounds: p.bonus_rounds,
            };
            Ok(((p.operator_id, p.user_id), player))
        })
        .filter(|row| row.as_ref().map_or(true, |(key, _)| operators.len() == 1 || keys.contains(key)))
        .collect::<AppResult<_>>()?;
    Ok(Locked { players, now })
}

/// Loads the stored actions among `ids`; no round trip when there are none.
/// Called after the lock, so that it sees what the lock's previous holder wrote.
pub async fn load_actions(conn: &mut PgConnection, ids: &[Uuid]) -> AppResult<Vec<StoredAction>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query!(
        r#"SELECT action_id, player_id, kind AS "kind?: EntryKind", amount, original_action_id,
                  tx_id, processed_at, game, game_id, reversed_by, cash_part, bonus_part, wagering, bonus_id
           FROM actions WHERE action_id = ANY($1)"#,
        ids,
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            let row = ActionRow {
                kind: r.kind,
                amount: r.amount,
                original_action_id: r.original_action_id,
                tx_id: r.tx_id,
                processed_at: r.processed_at,
                game: r.game,
                game_id: r.game_id,
                reversed_by: r.reversed_by,
                split: match (r.cash_part, r.bonus_part, r.bonus_id) {
                    (Some(cash), Some(bonus), Some(bonus_id)) => {
                        Some(Split { cash, bonus, wagering: r.wagering, bonus_id })
                    }
                    _ => None,
                },
            };
            row.into_stored(r.action_id, r.player_id).ok_or_else(|| {
                AppError::internal(anyhow::anyhow!("action {} has a row of no known shape", r.action_id))
            })
        })
        .collect()
}

/// The columns of an `actions` row after its id and player: a placeholder
/// leaves all but `reversed_by` NULL.
struct ActionRow {
    kind: Option<EntryKind>,
    amount: Option<i64>,
    original_action_id: Option<Uuid>,
    tx_id: Option<Uuid>,
    processed_at: Option<DateTime<Utc>>,
    game: Option<String>,
    game_id: Option<String>,
    reversed_by: Option<Uuid>,
    split: Option<Split>,
}

impl ActionRow {
    /// The stored action of this row. The table's CHECK constraints allow
    /// only these shapes; `None` for anything else.
    fn into_stored(self, id: Uuid, player_id: i64) -> Option<StoredAction> {
        let Some(tx_id) = self.tx_id else {
            return Some(StoredAction::Placeholder {
                action_id: id,
                player_id,
                reversed_by: self.reversed_by?,
            });
        };
        let amount = || self.amount.and_then(|a| Amount::try_from(a).ok());
        let action = match self.kind? {
            EntryKind::Bet => Action::Bet { id, amount: amount()? },
            EntryKind::Win => Action::Win { id, amount: amount()? },
            EntryKind::Rollback => Action::Rollback { id, original: self.original_action_id? },
            _ => return None,
        };
        Some(StoredAction::Processed(Processed {
            action,
            player_id,
            tx_id,
            processed_at: self.processed_at?,
            game: self.game,
            game_id: self.game_id,
            reversed_by: self.reversed_by,
            split: self.split,
        }))
    }

    fn of(stored: &StoredAction) -> ActionRow {
        match stored {
            StoredAction::Placeholder { reversed_by, .. } => ActionRow {
                kind: None,
                amount: None,
                original_action_id: None,
                tx_id: None,
                processed_at: None,
                game: None,
                game_id: None,
                reversed_by: Some(*reversed_by),
                split: None,
            },
            StoredAction::Processed(p) => {
                let (kind, amount, original_action_id) = p.action.parts();
                ActionRow {
                    kind: Some(kind),
                    amount,
                    original_action_id,
                    tx_id: Some(p.tx_id),
                    processed_at: Some(p.processed_at),
                    game: p.game.clone(),
                    game_id: p.game_id.clone(),
                    reversed_by: p.reversed_by,
                    split: p.split,
                }
            }
        }
    }
}

/// Changed action rows as parallel arrays, for `unnest`.
#[derive(Default)]
struct ActionColumns {
    action_id: Vec<Uuid>,
    player_id: Vec<i64>,
    kind: Vec<Option<&'static str>>,
    amount: Vec<Option<i64>>,
    original_action_id: Vec<Option<Uuid>>,
    tx_id: Vec<Option<Uuid>>,
    processed_at: Vec<Option<DateTime<Utc>>>,
    game: Vec<Option<String>>,
    game_id: Vec<Option<String>>,
    reversed_by: Vec<Option<Uuid>>,
}

impl ActionColumns {
    fn push(&mut self, player_id: i64, stored: &StoredAction) {
        let r = ActionRow::of(stored);
        self.action_id.push(stored.action_id());
        self.player_id.push(player_id);
        self.kind.push(r.kind.map(EntryKind::as_str));
        self.amount.push(r.amount);
        self.original_action_id.push(r.original_action_id);
        self.tx_id.push(r.tx_id);
        self.processed_at.push(r.processed_at);
        self.game.push(r.game);
        self.game_id.push(r.game_id);
        self.reversed_by.push(r.reversed_by);
    }
}

/// New placeholders (the unseen originals of pre-rollbacks) as parallel arrays.
#[derive(Default)]
struct PlaceholderColumns {
    action_id: Vec<Uuid>,
    player_id: Vec<i64>,
    reversed_by: Vec<Option<Uuid>>,
}

/// Ledger rows as parallel arrays. A new action's registry row is made of
/// its ledger row (`registers`), plus the rollback that may already have
/// reversed it in the same group (`reversed_by`).
#[derive(Default)]
struct EntryColumns {
    player_id: Vec<i64>,
    seq: Vec<i64>,
    tx_id: Vec<Uuid>,
    kind: Vec<&'static str>,
    amount: Vec<i64>,
    balance_before: Vec<i64>,
    balance_after: Vec<i64>,
    bonus_change: Vec<i64>,
    action_id: Vec<Option<Uuid>>,
    original_action_id: Vec<Option<Uuid>>,
    game: Vec<Option<String>>,
    game_id: Vec<Option<String>>,
    registers: Vec<bool>,
    reversed_by: Vec<Option<Uuid>>,
    /// Whether the row is its player's `balance` event (it takes an event id).
    balance_event: Vec<bool>,
    /// With a balance event, the bonus balance after it (`None`: 0).
    bonus_after: Vec<Option<i64>>,
}

impl EntryColumns {
    /// Makes the wallet's last entry, if it wrote any, its `balance` event
    /// (API §11, migrations/0017): one per player and commit, with the
    /// balances as the commit leaves them.
    fn mark_balance_event(&mut self, wallet: &Wallet) {
        if wallet.effects.entries.is_empty() {
            return;
        }
        *self.balance_event.last_mut().expect("the wallet's entries were pushed") = true;
        *self.bonus_after.last_mut().expect("the wallet's entries were pushed") =
            wallet.player.bonus.as_ref().map(|b| b.balance);
    }
}

/// What only players with a bonus write, as parallel arrays: empty for
/// everyone else. New actions' splits; bonus rounds as they now stand;
/// bonuses that ended; the active bonus of each player whose bonus changed.
#[derive(Default)]
struct BonusColumns {
    s_action_id: Vec<Uuid>,
    s_cash: Vec<i64>,
    s_bonus: Vec<i64>,
    s_wagering: Vec<Option<i64>>,
    s_bonus_id: Vec<Uuid>,
    r_player_id: Vec<i64>,
    r_game_id: Vec<String>,
    r_bonus_id: Vec<Option<Uuid>>,
    r_staked: Vec<i64>,
    r_bonus_staked: Vec<i64>,
    x_bonus_id: Vec<Uuid>,
    x_status: Vec<&'static str>,
    x_wagered: Vec<i64>,
    x_staked: Vec<i64>,
    x_converted: Vec<i64>,
    x_forfeited: Vec<i64>,
    x_seq: Vec<i64>,
}

/// Events for the players' streams (API §11), as parallel arrays.
#[derive(Default)]
struct EventColumns {
    player_id: Vec<i64>,
    kind: Vec<&'static str>,
    body: Vec<String>,
}

impl EventColumns {
    /// A `bonus` event when the wallet's bonus changed: one per player and
    /// commit. (Its `balance` event is its last ledger row, marked by
    /// [`EntryColumns::mark_balance_event`].)
    fn push_for(&mut self, wallet: &Wallet) {
        let player = &wallet.player;
        if !wallet.effects.bonus_touched {
            return;
        }
        let event = match (&player.bonus, wallet.effects.ended.last()) {
            (Some(b), _) => BonusEvent {
                bonus_id: b.bonus_id,
                status: "active".into(),
                balance: b.balance,
                wagered: b.wagered,
                required: b.required,
            },
            (None, Some(x)) => BonusEvent {
                bonus_id: x.bonus_id,
                status: x.status.as_str().into(),
                balance: 0,
                wagered: x.wagered,
                required: x.required,
            },
            (None, None) => return,
        };
        self.push(player.id, &Event::Bonus(event));
    }

    fn push(&mut self, player_id: i64, event: &Event) {
        self.player_id.push(player_id);
        self.kind.push(event.kind());
        self.body.push(event.body().map_or_else(|_| "{}".to_owned(), |body| body.to_string()));
    }
}

/// Rollup and round deltas, and the players' new balances, as parallel arrays.
#[derive(Default)]
struct SummaryColumns {
    r_player_id: Vec<i64>,
    r_currency: Vec<String>,
    r_operator: Vec<i16>,
    r_bucket: Vec<DateTime<Utc>>,
    r_game: Vec<String>,
    r_bet: Vec<i64>,
    r_win: Vec<i64>,
    r_rb_bet: Vec<i64>,
    r_rb_win: Vec<i64>,
    n_player_id: Vec<i64>,
    n_bucket: Vec<DateTime<Utc>>,
    n_game: Vec<String>,
    n_game_id: Vec<String>,
    n_delta: Vec<i32>,
    p_id: Vec<i64>,
    p_balance: Vec<i64>,
    p_last_seq: Vec<i64>,
    /// A limited player's counters of the day, week and month when they
    /// changed; `None` keeps them.
    p_day_sums: Vec<Option<Usage>>,
    p_week_sums: Vec<Option<Usage>>,
    p_month_sums: Vec<Option<Usage>>,
    /// Whether the player's active bonus changed, and what it now is.
    p_bonus_set: Vec<bool>,
    p_bonus: Vec<Option<ActiveBonus>>,
}

/// A notification of a group's events fits NOTIFY's payload (under 8000
/// bytes): at most two events a player, each `player_id:id,` in at most 40
/// bytes, after a time of at most 20 digits and a `/`.
const _: () = assert!(super::group::MAX_GROUP * 2 * 40 + 21 < 8000);

/// Writes everything the accepted requests did, for every player of the
/// group, in one statement: new and changed action rows, ledger entries,
/// rollup deltas and the players' balances.
///
/// Each row appears once (the rules merge repeated changes to one row
/// first), because the parts of one statement cannot see each other's writes.
///
/// Every array element costs PostgreSQL a decode, so a new action's registry
/// row is not sent on its own: it is made of the action's ledger row, which
/// carries the same id, player, kind, amount, original, tx_id and game. The
/// arrays are expanded by `unnest` in the select list, which runs them in
/// lockstep without first copying each one into a temporary store, as
/// `FROM UNNEST(a, b, …)` does.
pub async fn write_effects(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    wallets: &[&Wallet],
) -> Result<(), sqlx::Error> {
    let (mut placeholders, mut updated) = (PlaceholderColumns::default(), ActionColumns::default());
    let mut e = EntryColumns::default();
    let mut m = SummaryColumns::default();
    let mut b = BonusColumns::default();
    let mut events = EventColumns::default();
    debug_assert!(wallets.len() <= super::group::MAX_GROUP, "one notification holds a group's events");
    for wallet in wallets {
        let player = &wallet.player;
        let (new_rows, changed_rows) = wallet.split_actions();
        debug_assert_eq!(
            wallet
                .effects
                .entries
                .iter()
                .filter(|e| e.action_id.is_some_and(|id| !wallet.stored.contains_key(&id)))
                .count(),
            new_rows.iter().filter(|r| !r.is_placeholder()).count(),
            "every new action's registry row is made of its one ledger row"
        );
        for row in new_rows {
            if let StoredAction::Placeholder { action_id, reversed_by, .. } = row {
                placeholders.action_id.push(*action_id);
                placeholders.player_id.push(player.id);
                placeholders.reversed_by.push(Some(*reversed_by));
            }
        }
        changed_rows.into_iter().for_each(|r| updated.push(player.id, r));
        for entry in &wallet.effects.entries {
            e.player_id.push(player.id);
            e.seq.push(entry.seq);
            e.tx_id.push(entry.tx_id);
            e.kind.push(entry.kind.as_str());
            e.amount.push(entry.amount);
            e.balance_before.push(entry.balance_before);
            e.balance_after.push(entry.balance_after);
            e.bonus_change.push(entry.bonus_change);
            e.action_id.push(entry.action_id);
            e.original_action_id.push(entry.original_action_id);
            e.game.push(entry.game.clone());
            e.game_id.push(entry.game_id.clone());
            // An entry with an action is that action recorded now: its row is
            // new unless it fills the placeholder of an earlier pre-rollback.
            let registers = entry.action_id.is_some_and(|id| !wallet.stored.contains_key(&id));
            e.registers.push(registers);
            e.balance_event.push(false);
            e.bonus_after.push(None);
            let processed = match entry.action_id.and_then(|id| wallet.effects.actions.get(&id)) {
                Some(StoredAction::Processed(p)) if registers => Some(p),
                _ => None,
            };
            e.reversed_by.push(processed.and_then(|p| p.reversed_by));
            if let Some((action_id, split)) = processed.and_then(|p| Some((p.action.id(), p.split?))) {
                b.s_action_id.push(action_id);
                b.s_cash.push(split.cash);
                b.s_bonus.push(split.bonus);
                b.s_wagering.push(split.wagering);
                b.s_bonus_id.push(split.bonus_id);
            }
        }
        for (game_id, round) in &wallet.effects.bonus_rounds {
            b.r_player_id.push(player.id);
            b.r_game_id.push(game_id.clone());
            b.r_bonus_id.push(round.bonus_id);
            b.r_staked.push(round.staked);
            b.r_bonus_staked.push(round.bonus_staked);
        }
        for ended in &wallet.effects.ended {
            b.x_bonus_id.push(ended.bonus_id);
            b.x_status.push(ended.status.as_str());
            b.x_wagered.push(ended.wagered);
            b.x_staked.push(ended.staked);
            b.x_converted.push(ended.converted);
            b.x_forfeited.push(ended.forfeited);
            b.x_seq.push(ended.seq);
        }
        e.mark_balance_event(wallet);
        events.push_for(wallet);
        for ((bucket, game), d) in &wallet.effects.rollups {
            m.r_player_id.push(player.id);
            m.r_currency.push(player.currency.clone());
            m.r_operator.push(player.operator);
            m.r_bucket.push(*bucket);
            m.r_game.push(game.clone());
            m.r_bet.push(d.total_bet);
            m.r_win.push(d.total_win);
            m.r_rb_bet.push(d.rolled_back_bet);
            m.r_rb_win.push(d.rolled_back_win);
        }
        for ((bucket, game, game_id), delta) in wallet.effects.rounds.iter().filter(|(_, d)| **d != 0) {
            m.n_player_id.push(player.id);
            m.n_bucket.push(*bucket);
            m.n_game.push(game.clone());
            m.n_game_id.push(game_id.clone());
            m.n_delta.push(*delta);
        }
        m.p_id.push(player.id);
        m.p_balance.push(player.balance);
        m.p_last_seq.push(player.last_seq);
        let [day, week, month] =
            player.guard.as_ref().filter(|_| wallet.counted).map_or([None; 3], |g| g.usage);
        m.p_day_sums.push(day);
        m.p_week_sums.push(week);
        m.p_month_sums.push(month);
        m.p_bonus_set.push(wallet.effects.bonus_touched);
        m.p_bonus.push(player.bonus.clone().filter(|_| wallet.effects.bonus_touched));
    }

    sqlx::query!(
        r#"
        WITH entry_rows AS (
            -- A balance event's id, from the events' sequence (migrations/0017).
            SELECT v.*, CASE WHEN v.balance_event THEN nextval('player_events_id_seq') END AS event_id
            FROM (SELECT unnest($15::int8[]) AS player_id, unnest($16::int8[]) AS seq,
                         unnest($17::uuid[]) AS tx_id, unnest($18::text[]) AS kind,
                         unnest($19::int8[]) AS amount, unnest($20::int8[]) AS balance_before,
                         unnest($21::int8[]) AS balance_after, unnest($22::uuid[]) AS action_id,
                         unnest($23::uuid[]) AS original_action_id, unnest($24::text[]) AS game,
                         unnest($25::text[]) AS game_id, unnest($26::bool[]) AS registers,
                         unnest($27::uuid[]) AS reversed_by, unnest($48::int8[]) AS bonus_change,
                         unnest($71::bool[]) AS balance_event, unnest($72::int8[]) AS bonus_after) AS v
        ),
        entries AS (
            INSERT INTO ledger (player_id, seq, created_at, tx_id, kind, amount, balance_before,
                                balance_after, bonus_change, action_id, original_action_id, game, game_id,
                                event_id, bonus_after)
            SELECT e.player_id, e.seq, $1, e.tx_id, e.kind::entry_kind, e.amount, e.balance_before,
                   e.balance_after, e.bonus_change, e.action_id, e.original_action_id, e.game, e.game_id,
                   e.event_id, e.bonus_after
            FROM entry_rows e
        ),
        -- How new actions' money split between cash and a bonus (players with a bonus only).
        splits AS (
            SELECT unnest($49::uuid[]) AS action_id, unnest($50::int8[]) AS cash_part,
                   unnest($51::int8[]) AS bonus_part, unnest($52::int8[]) AS wagering,
                   unnest($53::uuid[]) AS bonus_id
        ),
        -- New actions (their row is made of their ledger row: a rollback's
        -- registry row has no amount) and new placeholders, in action_id
        -- order: two groups inserting some of the same ids (a replay sent for
        -- two players at once) then wait for each other in one order, never
        -- in a cycle, so they cannot deadlock.
        inserted_actions AS (
            INSERT INTO actions (action_id, player_id, kind, amount, original_action_id,
                                 tx_id, processed_at, game, game_id, reversed_by,
                                 cash_part, bonus_part, wagering, bonus_id)
            SELECT e.action_id, e.player_id, e.kind::entry_kind,
                   CASE WHEN e.kind = 'rollback' THEN NULL ELSE e.amount END,
                   e.original_action_id, e.tx_id, $1, e.game, e.game_id, e.reversed_by,
                   s.cash_part, s.bonus_part, s.wagering, s.bonus_id
            FROM entry_rows e
            LEFT JOIN splits s ON s.action_id = e.action_id
            WHERE e.registers
            UNION ALL
            SELECT unnest($2::uuid[]), unnest($3::int8[]), NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                   unnest($4::uuid[]), NULL, NULL, NULL, NULL
            ORDER BY 1
        ),
        -- Bonus rounds as they now stand (read under the same lock).
        bonus_rounds_written AS (
            INSERT INTO bonus_rounds AS r (player_id, game_id, bonus_id, staked, bonus_staked, updated_at)
            SELECT unnest($54::int8[]), unnest($55::text[]), unnest($56::uuid[]), unnest($57::int8[]),
                   unnest($58::int8[]), $1
            ON CONFLICT (player_id, game_id) DO UPDATE
            SET bonus_id = excluded.bonus_id, staked = excluded.staked,
                bonus_staked = excluded.bonus_staked, updated_at = excluded.updated_at
        ),
        -- Bonuses that ended: completed, or expired on this touch.
        ended_bonuses AS (
            UPDATE bonus_grants AS g
            SET status = x.status, ended_at = $1, balance = 0, wagered = x.wagered, staked = x.staked,
                converted = x.converted, forfeited = x.forfeited, ended_seq = x.ended_seq
            FROM (SELECT unnest($59::uuid[]) AS bonus_id, unnest($60::text[]) AS status,
                         unnest($61::int8[]) AS wagered, unnest($62::int8[]) AS staked,
                         unnest($63::int8[]) AS converted, unnest($64::int8[]) AS forfeited,
                         unnest($70::int8[]) AS ended_seq) AS x
            WHERE g.bonus_id = x.bonus_id AND g.status = 'active'
        ),
        -- What the players' streams are sent once this commits (API §11).
        -- Numbered after every balance event above (the gate reads all of
        -- entry_rows first), so that a player's bonus event follows the
        -- balance event of the same commit.
        logged_events AS (
            INSERT INTO player_events (player_id, at, kind, body)
            SELECT unnest($65::int8[]), $1, unnest($66::text[]), unnest($67::text[])::jsonb
            WHERE (SELECT count(*) FROM entry_rows) >= 0
            RETURNING player_id, id
        ),
        -- Every instance is told the events' ids at commit, as
        -- notify_player_events (migrations/0017) would, inline: a group's
        -- pairs always fit one notification (asserted above), and a function
        -- call per commit cost more than the rest of this part.
        notified AS (
            SELECT CASE WHEN count(*) > 0 THEN
                       pg_notify('player_events', (extract(epoch FROM $1::timestamptz) * 1000000)::int8 || '/'
                                 || string_agg(n.player_id || ':' || n.id, ',' ORDER BY n.id))
                   END AS sent
            FROM (SELECT player_id, event_id AS id FROM entry_rows WHERE event_id IS NOT NULL
                  UNION ALL
                  SELECT player_id, id FROM logged_events) AS n
        ),
        -- Placeholders filled by their late original, originals marked reversed.
        -- Only rows of locked players: nobody else can be changing them.
        updated_actions AS (
            UPDATE actions AS t
            SET kind = a.kind::entry_kind, amount = a.amount, original_action_id = a.original_action_id,
                tx_id = a.tx_id, processed_at = a.processed_at, game = a.game,
                game_id = a.game_id, reversed_by = a.reversed_by
            FROM (SELECT unnest($5::uuid[]) AS action_id, unnest($6::int8[]) AS player_id,
                         unnest($7::text[]) AS kind, unnest($8::int8[]) AS amount,
                         unnest($9::uuid[]) AS original_action_id, unnest($10::uuid[]) AS tx_id,
                         unnest($11::timestamptz[]) AS processed_at, unnest($12::text[]) AS game,
                         unnest($13::text[]) AS game_id, unnest($14::uuid[]) AS reversed_by) AS a
            WHERE t.action_id = a.action_id AND t.player_id = a.player_id
        ),
        -- Round bookkeeping for exact distinct-round counts (see
        -- migrations/0002_report_rounds.sql). Only the locked players' rows
        -- are read or written.
        round_deltas AS (
            SELECT unnest($36::int8[]) AS player_id, unnest($37::timestamptz[]) AS bucket,
                   unnest($38::text[]) AS game, unnest($39::text[]) AS game_id,
                   unnest($40::int4[]) AS delta
        ),
        -- Every stored row of the rounds touched now.
        round_family AS (
            SELECT f.player_id, f.bucket, f.game, f.game_id, f.split
            FROM round_buckets f
            WHERE (f.player_id, f.game_id) IN (SELECT player_id, game_id FROM round_deltas)
        ),
        -- Rounds that now have rows in more than one (hour, game).
        split_rounds AS (
            SELECT k.player_id, k.game_id
            FROM (SELECT player_id, bucket, game, game_id FROM round_deltas
                  UNION SELECT player_id, bucket, game, game_id FROM round_family) AS k
            GROUP BY k.player_id, k.game_id HAVING count(*) > 1
        ),
        rounds AS (
            INSERT INTO round_buckets AS b (player_id, bucket, game, game_id, live_bets, split)
            SELECT k.player_id, k.bucket, k.game, k.game_id, k.delta,
                   (k.player_id, k.game_id) IN (SELECT player_id, game_id FROM split_rounds)
            FROM (SELECT player_id, bucket, game, game_id, delta FROM round_deltas
                  UNION ALL
                  -- Stored rows of a round that just became split get the mark too.
                  SELECT f.player_id, f.bucket, f.game, f.game_id, 0 FROM round_family f
                  WHERE NOT f.split
                    AND (f.player_id, f.game_id) IN (SELECT player_id, game_id FROM split_rounds)
                    AND NOT EXISTS (SELECT 1 FROM round_deltas d
                                    WHERE d.player_id = f.player_id AND d.bucket = f.bucket
                                      AND d.game = f.game AND d.game_id = f.game_id)) AS k
            ON CONFLICT (player_id, bucket, game, game_id) DO UPDATE
            SET live_bets = b.live_bets + excluded.live_bets,
                split = b.split OR excluded.split
            RETURNING b.player_id, b.bucket, b.game, b.game_id, b.live_bets
        ),
        -- Rows whose live_bets crossed zero change the hour's live-round count.
        round_changes AS (
            SELECT r.player_id, r.bucket, r.game,
                   sum((r.live_bets > 0)::int - (r.live_bets - d.delta > 0)::int) AS rounds
            FROM rounds r
            JOIN round_deltas d
              ON d.player_id = r.player_id AND d.bucket = r.bucket
             AND d.game = r.game AND d.game_id = r.game_id
            GROUP BY r.player_id, r.bucket, r.game
        ),
        rollups AS (
            INSERT INTO rtp_hourly AS h (player_id, bucket, game, currency, operator_id, total_bet,
                                         total_win, rolled_back_bet, rolled_back_win, rounds)
            SELECT coalesce(r.player_id, c.player_id), coalesce(r.bucket, c.bucket),
                   coalesce(r.game, c.game),
                   coalesce(r.currency, (SELECT currency FROM players WHERE id = c.player_id)),
                   coalesce(r.operator_id, (SELECT operator_id FROM players WHERE id = c.player_id)),
                   coalesce(r.bet, 0), coalesce(r.win, 0), coalesce(r.rb_bet, 0),
                   coalesce(r.rb_win, 0), coalesce(c.rounds, 0)
            FROM (SELECT unnest($28::int8[]) AS player_id, unnest($29::timestamptz[]) AS bucket,
                         unnest($30::text[]) AS game, unnest($31::text[]) AS currency,
                         unnest($32::int8[]) AS bet, unnest($33::int8[]) AS win,
                         unnest($34::int8[]) AS rb_bet, unnest($35::int8[]) AS rb_win,
                         unnest($44::int2[]) AS operator_id) AS r
            FULL JOIN round_changes c
              ON c.player_id = r.player_id AND c.bucket = r.bucket AND c.game = r.game
            ON CONFLICT (player_id, bucket, game) DO UPDATE
            SET total_bet = h.total_bet + excluded.total_bet,
                total_win = h.total_win + excluded.total_win,
                rolled_back_bet = h.rolled_back_bet + excluded.rolled_back_bet,
                rolled_back_win = h.rolled_back_win + excluded.rolled_back_win,
                rounds = h.rounds + excluded.rounds
        )
        -- A limited player's counters change with its money; NULL keeps them.
        UPDATE players AS p
        SET balance = u.balance, last_seq = u.last_seq, updated_at = $1,
            day_sums = coalesce(u.day_sums, p.day_sums), week_sums = coalesce(u.week_sums, p.week_sums),
            month_sums = coalesce(u.month_sums, p.month_sums),
            bonus = CASE WHEN u.bonus_set THEN u.bonus ELSE p.bonus END,
            bonus_rounds = p.bonus_rounds OR (u.bonus).bonus_id IS NOT NULL
        FROM (SELECT unnest($41::int8[]) AS id, unnest($42::int8[]) AS balance,
                     unnest($43::int8[]) AS last_seq, unnest($45::period_sums[]) AS day_sums,
                     unnest($46::period_sums[]) AS week_sums, unnest($47::period_sums[]) AS month_sums,
                     unnest($68::bool[]) AS bonus_set, unnest($69::active_bonus[]) AS bonus) AS u,
             notified
        WHERE p.id = u.id
        "#,
        now,
        &placeholders.action_id,
        &placeholders.player_id,
        &placeholders.reversed_by as _,
        &updated.action_id,
        &updated.player_id,
        &updated.kind as _,
        &updated.amount as _,
        &updated.original_action_id as _,
        &updated.tx_id as _,
        &updated.processed_at as _,
        &updated.game as _,
        &updated.game_id as _,
        &updated.reversed_by as _,
        &e.player_id,
        &e.seq,
        &e.tx_id,
        &e.kind as _,
        &e.amount,
        &e.balance_before,
        &e.balance_after,
        &e.action_id as _,
        &e.original_action_id as _,
        &e.game as _,
        &e.game_id as _,
        &e.registers,
        &e.reversed_by as _,
        &m.r_player_id,
        &m.r_bucket,
        &m.r_game,
        &m.r_currency,
        &m.r_bet,
        &m.r_win,
        &m.r_rb_bet,
        &m.r_rb_win,
        &m.n_player_id,
        &m.n_bucket,
        &m.n_game,
        &m.n_game_id,
        &m.n_delta,
        &m.p_id,
        &m.p_balance,
        &m.p_last_seq,
        &m.r_operator,
        &m.p_day_sums as _,
        &m.p_week_sums as _,
        &m.p_month_sums as _,
        &e.bonus_change,
        &b.s_action_id,
        &b.s_cash,
        &b.s_bonus,
        &b.s_wagering as _,
        &b.s_bonus_id,
        &b.r_player_id,
        &b.r_game_id,
        &b.r_bonus_id as _,
        &b.r_staked,
        &b.r_bonus_staked,
        &b.x_bonus_id,
        &b.x_status as _,
        &b.x_wagered,
        &b.x_staked,
        &b.x_converted,
        &b.x_forfeited,
        &events.player_id,
        &events.kind as _,
        &events.body,
        &m.p_bonus_set,
        &m.p_bonus as _,
        &b.x_seq,
        &e.balance_event,
        &e.bonus_after as _,
    )
    .execute(conn)
    .await?;
    Ok(())
}
