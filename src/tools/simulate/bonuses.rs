//! `wallet simulate --bonuses`: players who sign up, deposit with a bonus
//! code and play signed provider rounds until their bonus completes or they
//! are bust, checked against the service's own numbers.
//!
//! Players come through the front door (API §8): registration under the
//! operator `default`, a login, KYC tier 2 from staff, a deposit with the
//! code of the `deposit_match` campaign [`CAMPAIGN`] (made if missing). The
//! simulator keeps a small model of each wallet (§10: cash first, wagering
//! by weight, wins split by their round's bonus share, rollbacks, completion
//! with its cap) and checks every provider answer against it, then each
//! player's `GET /v1/me` and bonus list, and a reconciliation run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{Client, GAMES, MAX_BET, ROLLBACK_SHARE, WIN_CHANCE};

/// The campaign every simulated player deposits with.
pub const CAMPAIGN: &str = "SIMULATE";
/// What each player deposits: the campaign's `min_deposit`, matched in full.
const DEPOSIT: i64 = 5_000;
/// The operator the players register with: the one `/v1/process` plays for.
const OPERATOR: &str = "default";
/// Every simulated game is unfiled in the catalog, so of this category.
const CATEGORY: &str = "other";

/// The terms of a campaign, as `GET /v1/bonus/campaigns/{code}` shows them.
#[derive(Debug, Clone)]
struct Terms {
    wagering_multiplier: i64,
    weight: i64,
    max_bet: Option<i64>,
    max_conversion_multiplier: Option<i64>,
}

impl Terms {
    fn read(campaign: &Value) -> anyhow::Result<Terms> {
        anyhow::ensure!(
            campaign["kind"] == "deposit_match" && campaign["active"] == true,
            "campaign {CAMPAIGN} exists but is not an active deposit_match campaign: {campaign}"
        );
        Ok(Terms {
            wagering_multiplier: campaign["wagering_multiplier"].as_i64().context("wagering_multiplier")?,
            weight: campaign["contributions"][CATEGORY].as_i64().unwrap_or(0).clamp(0, 100),
            max_bet: campaign["max_bet"].as_i64(),
            max_conversion_multiplier: campaign["max_conversion_multiplier"].as_i64(),
        })
    }
}

/// The active bonus, as the model holds it.
#[derive(Debug, Clone)]
struct Bonus {
    balance: i64,
    wagered: i64,
    staked: i64,
    required: i64,
    cap: Option<i64>,
}

/// A round's stakes while a bonus was active, in all and from the bonus.
#[derive(Debug, Clone, Copy, Default)]
struct Round {
    staked: i64,
    bonus_staked: i64,
    /// The bonus paid some of it (there is only ever one bonus here).
    bonus_paid: bool,
}

/// How an action's money split: cash and bonus parts, the wagering a bet added.
#[derive(Debug, Clone, Copy)]
struct Split {
    cash: i64,
    bonus: i64,
    wagering: i64,
}

/// One player's wallet as the simulator expects it to be.
#[derive(Debug, Clone, Default)]
struct Wallet {
    cash: i64,
    bonus: Option<Bonus>,
    completed: bool,
    converted: i64,
    rounds: HashMap<String, Round>,
}

impl Wallet {
    fn total(&self) -> i64 {
        self.cash + self.bonus.as_ref().map_or(0, |b| b.balance)
    }

    fn bonus_balance(&self) -> i64 {
        self.bonus.as_ref().map_or(0, |b| b.balance)
    }

    /// A stake: cash first, the rest from the bonus, its wagering counted;
    /// completes the bonus once wagered enough.
    /// `None`: no bonus was active, all cash.
    fn bet(&mut self, game_id: &str, amount: i64, weight: i64) -> Option<Split> {
        let Some(bonus) = &mut self.bonus else {
            self.cash -= amount;
            return None;
        };
        let cash = amount.min(self.cash);
        let split = Split { cash, bonus: amount - cash, wagering: amount * weight / 100 };
        self.cash -= split.cash;
        bonus.balance -= split.bonus;
        bonus.staked += amount;
        bonus.wagered += split.wagering;
        let round = self.rounds.entry(game_id.to_owned()).or_default();
        round.staked += amount;
        round.bonus_staked += split.bonus;
        round.bonus_paid |= split.bonus > 0;
        if bonus.wagered >= bonus.required {
            let converted = bonus.balance.min(bonus.cap.unwrap_or(i64::MAX));
            self.cash += converted;
            self.converted += converted;
            self.completed = true;
            self.bonus = None;
        }
        Some(split)
    }

    /// A win: the round's bonus share to the bonus if still active (else
    /// forfeited), the rest to cash.
    fn win(&mut self, game_id: &str, amount: i64) -> Split {
        let round = self.rounds.get(game_id).copied().unwrap_or_default();
        let share = if round.staked > 0 && round.bonus_staked > 0 && round.bonus_paid {
            amount * round.bonus_staked / round.staked
        } else {
            0
        };
        let to_bonus = match &mut self.bonus {
            Some(bonus) => {
                bonus.balance += share;
                share
            }
            None => 0,
        };
        self.cash += amount - share;
        Split { cash: amount - share, bonus: to_bonus, wagering: 0 }
    }

    /// Rolling back a bet paid with `split`: each part back where it came
    /// from (a bonus part only to a bonus still active), its wagering and
    /// its round's stakes taken back.
    fn roll_back_bet(&mut self, game_id: &str, amount: i64, split: Option<Split>) {
        let Some(split) = split else {
            self.cash += amount;
            return;
        };
        self.cash += split.cash;
        if let Some(round) = self.rounds.get_mut(game_id) {
            round.staked = (round.staked - amount).max(0);
            round.bonus_staked = (round.bonus_staked - split.bonus).clamp(0, round.staked);
        }
        if let Some(bonus) = &mut self.bonus {
            bonus.balance += split.bonus;
            bonus.staked -= amount;
            bonus.wagered -= split.wagering;
        }
    }

    /// Rolling back a win that paid `split`.
    fn roll_back_win(&mut self, split: Split) {
        self.cash -= split.cash;
        if let Some(bonus) = &mut self.bonus {
            bonus.balance -= split.bonus;
        }
    }
}

/// How the run ended for the players.
#[derive(Debug, Default)]
struct Outcome {
    completed: AtomicU64,
    bust: AtomicU64,
    unfinished: AtomicU64,
    converted: AtomicU64,
    rounds: AtomicU64,
}

/// A registered, funded player and what the simulator expects of them.
struct Player {
    user_id: String,
    token: String,
    wallet: Wallet,
    bonus_id: String,
}

pub(super) async fn run(
    client: Arc<Client>,
    users: Vec<String>,
    rounds: u64,
    concurrency: usize,
    rtp: f64,
    own_currency: String,
) -> anyhow::Result<()> {
    let terms = campaign(&client).await?;
    let currency = currency(&client, own_currency).await?;
    let per_player = rounds.div_ceil(users.len() as u64);
    println!(
        "{} players in {currency} deposit {DEPOSIT} with bonus code {CAMPAIGN} and play up to {per_player} \
         rounds each, until their bonus completes or they are bust",
        users.len()
    );
    let started = Instant::now();
    let queue = Arc::new(std::sync::Mutex::new(users));
    let outcome = Arc::new(Outcome::default());
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, queue, outcome, terms, currency) =
            (client.clone(), queue.clone(), outcome.clone(), terms.clone(), currency.clone());
        workers.spawn(async move {
            let mut rng = StdRng::from_os_rng();
            loop {
                let Some(user) = queue.lock().expect("no panics while holding the queue").pop() else {
                    return anyhow::Ok(());
                };
                let mut player = sign_up(&client, &user, &currency, &terms).await?;
                let played = play(&client, &mut rng, &mut player, &currency, &terms, per_player, rtp)
                    .await
                    .with_context(|| format!("player {}", player.user_id))?;
                outcome.rounds.fetch_add(played, Ordering::Relaxed);
                check_player(&client, &player).await?;
                let counter = if player.wallet.completed {
                    outcome.converted.fetch_add(player.wallet.converted as u64, Ordering::Relaxed);
                    &outcome.completed
                } else if played < per_player {
                    &outcome.bust
                } else {
                    &outcome.unfinished
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    let [completed, bust, unfinished, converted, played] =
        [&outcome.completed, &outcome.bust, &outcome.unfinished, &outcome.converted, &outcome.rounds]
            .map(|counter| counter.load(Ordering::Relaxed));
    println!(
        "bonuses: {} players, {completed} completed, {bust} bust, {unfinished} still wagering; \
         {converted} converted to cash in all; {played} rounds in {:.1?}",
        completed + bust + unfinished,
        started.elapsed()
    );
    reconcile(&client).await?;
    println!("balances and bonuses match the simulator's wallets; reconciliation clean");
    Ok(())
}

/// The campaign's terms, making it first if the operator has none.
async fn campaign(client: &Client) -> anyhow::Result<Terms> {
    let path = format!("/v1/bonus/campaigns/{CAMPAIGN}");
    let (status, found) = client.call(Method::GET, &path, Some(&client.admin_token), &[], None).await?;
    let campaign = match status {
        StatusCode::OK => found,
        StatusCode::NOT_FOUND => {
            let terms = json!({"code": CAMPAIGN, "kind": "deposit_match", "match_percent": 100,
                               "max_bonus": DEPOSIT, "min_deposit": DEPOSIT, "wagering_multiplier": 10,
                               "contributions": {CATEGORY: 100, "slots": 100, "table": 10},
                               "max_bet": MAX_BET, "max_conversion_multiplier": 2, "valid_days": 7,
                               "active": true});
            let (status, made) = client
                .call(Method::POST, "/v1/bonus/campaigns", Some(&client.admin_token), &[], Some(&terms))
                .await?;
            match status {
                StatusCode::CREATED => made,
                // Another run made it meanwhile.
                StatusCode::CONFLICT => {
                    client.call(Method::GET, &path, Some(&client.admin_token), &[], None).await?.1
                }
                _ => bail!("creating campaign {CAMPAIGN} answered {status}: {made}"),
            }
        }
        _ => bail!("reading campaign {CAMPAIGN} answered {status}: {found}"),
    };
    Terms::read(&campaign)
}

/// The run's own currency when the operator takes any (as `default` does
/// until configured), else the operator's first.
async fn currency(client: &Client, own: String) -> anyhow::Result<String> {
    let (status, tenant) = client.call(Method::GET, "/v1/tenant", None, &[], None).await?;
    anyhow::ensure!(status == StatusCode::OK, "GET /v1/tenant answered {status}: {tenant}");
    anyhow::ensure!(
        tenant["features"]["player_registration"] != false && tenant["features"]["bonuses"] != false,
        "the operator {OPERATOR} does not allow player registration or bonuses: {tenant}"
    );
    match tenant["currencies"].as_array().and_then(|all| all.first()).and_then(Value::as_str) {
        Some(first) => Ok(first.to_owned()),
        None => Ok(own),
    }
}

/// Registers `user`, logs in, has staff set KYC tier 2 and deposits with the
/// bonus code: a player holding [`DEPOSIT`] in cash and the bonus it earned.
async fn sign_up(client: &Client, user: &str, currency: &str, terms: &Terms) -> anyhow::Result<Player> {
    let email = format!("{}@simulate.example", user.to_lowercase());
    let password = format!("{user}-password");
    let body = json!({"email": email, "password": password, "currency": currency, "country": "GB",
                      "date_of_birth": "1990-01-01"});
    let registered =
        client.expect(StatusCode::CREATED, Method::POST, "/v1/auth/register", None, &[], &body).await?;
    let user_id = registered["user_id"].as_str().context("registration answered no user_id")?.to_owned();
    let login = json!({"email": email, "password": password});
    let session = client.expect(StatusCode::OK, Method::POST, "/v1/auth/login", None, &[], &login).await?;
    let token = session["token"].as_str().context("login answered no token")?.to_owned();
    let kyc = format!("/v1/players/{}/kyc", super::urlencode(&user_id));
    let tier = json!({"tier": 2, "note": "simulated player"});
    client.expect(StatusCode::OK, Method::PUT, &kyc, Some(&client.admin_token), &[], &tier).await?;
    let deposit = json!({"amount": DEPOSIT, "bonus_code": CAMPAIGN});
    let key = format!("deposit-{user_id}");
    let paid = client
        .expect(
            StatusCode::CREATED,
            Method::POST,
            "/v1/me/deposits",
            Some(&token),
            &[("Idempotency-Key", &key)],
            &deposit,
        )
        .await?;
    let bonus = &paid["bonus"];
    let (Some(bonus_id), Some(granted), Some(required)) =
        (bonus["bonus_id"].as_str(), bonus["granted"].as_i64(), bonus["required"].as_i64())
    else {
        bail!("the deposit of {user_id} earned no bonus: {paid}");
    };
    anyhow::ensure!(
        required == terms.wagering_multiplier * granted,
        "the bonus of {user_id} requires {required}, not {} × {granted}: {paid}",
        terms.wagering_multiplier
    );
    let wallet = Wallet {
        cash: DEPOSIT,
        bonus: Some(Bonus {
            balance: granted,
            wagered: 0,
            staked: 0,
            required,
            cap: terms.max_conversion_multiplier.map(|m| m * granted),
        }),
        ..Wallet::default()
    };
    anyhow::ensure!(
        paid["balance"].as_i64() == Some(wallet.cash),
        "the deposit answered cash {} but {} was deposited",
        paid["balance"],
        wallet.cash
    );
    Ok(Player { user_id, token, wallet, bonus_id: bonus_id.to_owned() })
}

/// Plays rounds until the bonus completes, the player is bust (less left
/// than the next stake) or `rounds` were played; answers how many were.
/// Every answer's balance must be the model's cash + bonus.
async fn play(
    client: &Client,
    rng: &mut StdRng,
    player: &mut Player,
    currency: &str,
    terms: &Terms,
    rounds: u64,
    rtp: f64,
) -> anyhow::Result<u64> {
    let max_bet = terms.max_bet.unwrap_or(MAX_BET).min(MAX_BET);
    let wallet = &mut player.wallet;
    for played in 0..rounds {
        if wallet.completed {
            return Ok(played);
        }
        let stake = rng.random_range(10.min(max_bet)..=max_bet);
        if wallet.total() < stake {
            return Ok(played);
        }
        let game = GAMES[rng.random_range(0..GAMES.len())];
        let game_id = Uuid::new_v4().to_string();
        let request = |actions: Value| {
            json!({"user_id": player.user_id, "currency": currency, "game": game, "game_id": game_id,
                   "actions": actions})
        };
        let bet_id = Uuid::new_v4();
        let bet = wallet.bet(&game_id, stake, terms.weight);
        let answer = client
            .process(&request(json!([{"action": "bet", "action_id": bet_id, "amount": stake}])))
            .await?;
        expect_balance(&answer, wallet, "a bet")?;
        let payout = rng.random_bool(WIN_CHANCE).then(|| (stake as f64 * rtp / WIN_CHANCE).round() as i64);
        let win_id = Uuid::new_v4();
        let win = match payout {
            Some(amount) => {
                let split = wallet.win(&game_id, amount);
                let answer = client
                    .process(&request(json!([{"action": "win", "action_id": win_id, "amount": amount}])))
                    .await?;
                expect_balance(&answer, wallet, "a win")?;
                Some(split)
            }
            None => None,
        };
        if rng.random_bool(ROLLBACK_SHARE) {
            let mut actions = vec![json!({"action": "rollback", "action_id": Uuid::new_v4(),
                                          "original_action_id": bet_id})];
            wallet.roll_back_bet(&game_id, stake, bet);
            if let Some(split) = win {
                actions.push(json!({"action": "rollback", "action_id": Uuid::new_v4(),
                                    "original_action_id": win_id}));
                wallet.roll_back_win(split);
            }
            let answer = client.process(&request(Value::Array(actions))).await?;
            expect_balance(&answer, wallet, "a rollback")?;
        }
    }
    Ok(rounds)
}

fn expect_balance(answer: &Value, wallet: &Wallet, what: &str) -> anyhow::Result<()> {
    if answer["balance"].as_i64() != Some(wallet.total()) {
        bail!(
            "{what} answered balance {} but the simulator expects {} (cash {}, bonus {})",
            answer["balance"],
            wallet.total(),
            wallet.cash,
            wallet.bonus_balance()
        );
    }
    Ok(())
}

/// The service's own view of the player: `GET /v1/me` and the bonus list.
async fn check_player(client: &Client, player: &Player) -> anyhow::Result<()> {
    let me =
        client.expect(StatusCode::OK, Method::GET, "/v1/me", Some(&player.token), &[], &Value::Null).await?;
    let wallet = &player.wallet;
    let expected = json!({"cash": wallet.cash, "bonus": wallet.bonus_balance(), "total": wallet.total()});
    if me["balance"] != expected {
        bail!("{}: GET /v1/me shows {} but the simulator expects {expected}", player.user_id, me["balance"]);
    }
    let list = client
        .expect(StatusCode::OK, Method::GET, "/v1/me/bonuses", Some(&player.token), &[], &Value::Null)
        .await?;
    let shown = list.as_array().and_then(|all| all.first()).cloned().unwrap_or(Value::Null);
    let (status, balance, wagered) = match &wallet.bonus {
        Some(bonus) => ("active", bonus.balance, Some(bonus.wagered)),
        None => ("completed", 0, None),
    };
    let matches = shown["bonus_id"] == player.bonus_id.as_str()
        && shown["status"] == status
        && shown["balance"] == balance
        && wagered.is_none_or(|w| shown["wagered"] == w)
        && list.as_array().map(Vec::len) == Some(1);
    if !matches {
        bail!(
            "{}: the bonus list shows {list} but the simulator expects bonus {} {status} with balance {balance}",
            player.user_id,
            player.bonus_id
        );
    }
    Ok(())
}

/// Starts a reconciliation run and waits for it: every check must agree.
async fn reconcile(client: &Client) -> anyhow::Result<()> {
    let mut run = Value::Null;
    for _ in 0..50 {
        let (status, body) = client
            .call(Method::POST, "/v1/admin/reconciliation", Some(&client.admin_token), &[], None)
            .await?;
        match status {
            StatusCode::ACCEPTED => {
                run = body;
                break;
            }
            // A run is starting or finishing elsewhere.
            StatusCode::CONFLICT => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => bail!("POST /v1/admin/reconciliation answered {status}: {body}"),
        }
    }
    let run_id = run["run_id"].as_i64().with_context(|| format!("no reconciliation run started: {run}"))?;
    let path = format!("/v1/admin/reconciliation/{run_id}");
    let deadline = Instant::now() + Duration::from_secs(600);
    while run["status"] == "running" {
        anyhow::ensure!(
            Instant::now() < deadline,
            "reconciliation run {run_id} still running after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        run = client
            .expect(StatusCode::OK, Method::GET, &path, Some(&client.admin_token), &[], &Value::Null)
            .await?;
    }
    if run["status"] != "succeeded" || run["report"]["ok"] != true {
        bail!("reconciliation run {run_id} did not come out clean: {run:#}");
    }
    Ok(())
}
