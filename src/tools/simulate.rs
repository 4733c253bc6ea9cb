//! `wallet simulate`: plays rounds against a running wallet exactly as a game
//! provider would (signed HTTP), keeps its own tally of what it sent, and
//! checks the RTP reports against that tally to the cent.
//!
//! Every round bets, then wins with probability [`WIN_CHANCE`] and a payout
//! that makes the expected return the target RTP. Some rounds are rolled back
//! after the fact, some rollbacks arrive before their bet (the bet is then a
//! late original), and some requests are sent twice. The run uses its own
//! players and currency, so the reports for its window hold its rounds only.
//!
//! With `--bonuses`, players sign up, deposit with a bonus code and play
//! until their bonus completes or they are bust instead (see [`bonuses`]).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::provider::signature::sign;

mod bonuses;

/// Chance that a round wins; the payout is `rtp / WIN_CHANCE` times the bet.
const WIN_CHANCE: f64 = 0.25;
/// Share of rounds rolled back after they were played.
const ROLLBACK_SHARE: f64 = 0.04;
/// Share of rounds whose rollback arrives before the bet.
const PRE_ROLLBACK_SHARE: f64 = 0.02;
/// Share of requests sent a second time.
const REPEAT_SHARE: f64 = 0.03;
const MAX_BET: i64 = 1_000;
const GAMES: [&str; 4] = ["sim:slots", "sim:roulette", "sim:blackjack", "sim:crash"];

#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Players to create and play with.
    #[arg(long, default_value_t = 200)]
    pub players: u64,
    /// Rounds to play in total, spread evenly over the players.
    #[arg(long, default_value_t = 20_000)]
    pub rounds: u64,
    /// Rounds in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Target return to player.
    #[arg(long, default_value_t = 0.95)]
    pub rtp: f64,
    /// Base URL of the wallet (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Provider HMAC secret to sign with: the service's `HMAC_SECRETS`, or its first one.
    #[arg(long, env = "HMAC_SECRETS", hide_env_values = true, default_value = "test",
          value_parser = super::first_secret)]
    pub secret: String,
    /// Back-office bearer token: the service's `ADMIN_TOKEN`.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, default_value = "admin")]
    pub admin_token: String,
    /// Prefix of the user ids; a run tag is added so runs never share players.
    #[arg(long, default_value = "sim")]
    pub prefix: String,
    /// Players register, log in, get KYC tier 2 and deposit with the code of
    /// the `deposit_match` campaign SIMULATE of the operator `default` (made
    /// if missing), then play until the bonus completes, they are bust or
    /// they played their share of --rounds; their balances, bonuses and a
    /// reconciliation run are then checked, instead of the RTP reports.
    #[arg(long)]
    pub bonuses: bool,
}

/// What the simulator itself sent and had accepted, per player.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tally {
    rounds: i64,
    total_bet: i64,
    total_win: i64,
    rolled_back_bet: i64,
    rolled_back_win: i64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.rounds += other.rounds;
        self.total_bet += other.total_bet;
        self.total_win += other.total_win;
        self.rolled_back_bet += other.rolled_back_bet;
        self.rolled_back_win += other.rolled_back_win;
    }

    fn from_report(row: &Value) -> Tally {
        let field = |name: &str| row[name].as_i64().unwrap_or(i64::MIN);
        Tally {
            rounds: field("rounds"),
            total_bet: field("total_bet"),
            total_win: field("total_win"),
            rolled_back_bet: field("rolled_back_bet"),
            rolled_back_win: field("rolled_back_win"),
        }
    }

    fn fields(&self) -> [(&'static str, i64); 5] {
        [
            ("rounds", self.rounds),
            ("total_bet", self.total_bet),
            ("total_win", self.total_win),
            ("rolled_back_bet", self.rolled_back_bet),
            ("rolled_back_win", self.rolled_back_win),
        ]
    }
}

/// What became of a round that was played to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Played and left standing: a round in the reports.
    Counted,
    /// Rolled back after it was played: in `rolled_back_bet`/`_win`, not in `rounds`.
    RolledBack,
    /// Its rollback arrived before its bet: in `rolled_back_bet`, not in `rounds`.
    RolledBackFirst,
}

/// How many rounds met each fate, and what it took in requests.
#[derive(Debug, Default)]
struct Counts {
    counted: AtomicU64,
    rolled_back: AtomicU64,
    rolled_back_first: AtomicU64,
    /// Requests sent, repeats and retries included.
    requests: AtomicU64,
    /// Requests sent a second time on purpose, to check idempotency.
    repeated: AtomicU64,
    /// Requests sent again after a 429, a 5xx or a transport error.
    retried: AtomicU64,
}

impl Counts {
    fn played(&self) -> u64 {
        self.counted.load(Ordering::Relaxed)
            + self.rolled_back.load(Ordering::Relaxed)
            + self.rolled_back_first.load(Ordering::Relaxed)
    }

    fn add(&self, fate: Fate) {
        let counter = match fate {
            Fate::Counted => &self.counted,
            Fate::RolledBack => &self.rolled_back,
            Fate::RolledBackFirst => &self.rolled_back_first,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// How the run went, and why the reports count fewer rounds than were
    /// asked for, when they do.
    fn summary(&self, requested: u64, took: Duration) -> String {
        let [counted, rolled_back, rolled_back_first, requests, repeated, retried] = [
            &self.counted,
            &self.rolled_back,
            &self.rolled_back_first,
            &self.requests,
            &self.repeated,
            &self.retried,
        ]
        .map(|counter| counter.load(Ordering::Relaxed));
        let played = counted + rolled_back + rolled_back_first;
        let mut text = format!("rounds: {requested} requested, {played} played in {took:.1?}");
        if played < requested {
            text.push_str(&format!(" ({} not played: the run stopped early)", requested - played));
        }
        if counted < played {
            text.push_str(&format!(
                "; the reports count {counted} as rounds: {} were rolled back \
                 ({rolled_back} after they were played, {rolled_back_first} before their bet arrived) \
                 and count in rolled_back_bet and rolled_back_win instead",
                rolled_back + rolled_back_first
            ));
        }
        text.push_str(&format!(
            "\nrequests: {requests} sent, {repeated} of them repeats on purpose \
             (each answered as the first), {retried} retries after a 429, a 5xx or a transport error"
        ));
        text
    }
}

struct Client {
    http: reqwest::Client,
    url: String,
    secret: String,
    admin_token: String,
    counts: Counts,
}

impl Client {
    /// Sends a signed provider request, retrying transport errors, 429 and
    /// 5xx with the same body (safe: action ids make it idempotent).
    async fn process(&self, body: &Value) -> anyhow::Result<Value> {
        let bytes = serde_json::to_vec(body)?;
        let signature = sign(self.secret.as_bytes(), &bytes);
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.counts.requests.fetch_add(1, Ordering::Relaxed);
            let sent = self
                .http
                .post(format!("{}/v1/process", self.url))
                .header("Authorization", &signature)
                .header("Content-Type", "application/json")
                .body(bytes.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    return Ok(response.json().await?);
                }
                Ok(response) if retryable(response.status()) && attempt < 8 => {}
                Ok(response) => {
                    let status = response.status();
                    bail!(
                        "the wallet refused a request with {status}: {}; the request: {body}",
                        response.text().await?
                    );
                }
                Err(error) if attempt < 8 => tracing::warn!(%error, "retrying"),
                Err(error) => return Err(error.into()),
            }
            self.counts.retried.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
        }
    }

    /// A signed request, sent twice now and then; the repeat must answer the same.
    async fn process_maybe_twice(&self, body: &Value, rng: &mut StdRng) -> anyhow::Result<()> {
        let first = self.process(body).await?;
        if rng.random_bool(REPEAT_SHARE) {
            self.counts.repeated.fetch_add(1, Ordering::Relaxed);
            let again = self.process(body).await?;
            if again["transactions"] != first["transactions"] {
                bail!("a repeated request answered other tx_ids: {first} vs {again}");
            }
        }
        Ok(())
    }

    /// A request of the operator `default` (a player's with `bearer` their
    /// token, staff's with the admin token), retried on 429 and 5xx; answers
    /// the status and the JSON body (`null` when there is none).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.url))
                .header("X-Operator", "default");
            if let Some(token) = bearer {
                request = request.bearer_auth(token);
            }
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.with_context(|| format!("{method} {path}"))?;
            let status = response.status();
            if retryable(status) && attempt < 8 {
                self.counts.retried.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                continue;
            }
            let text = response.text().await?;
            let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text)? };
            return Ok((status, body));
        }
    }

    /// [`Client::call`] that must answer `expected`; a `null` body sends none.
    async fn expect(
        &self,
        expected: reqwest::StatusCode,
        method: reqwest::Method,
        path: &str,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> anyhow::Result<Value> {
        let (status, answer) =
            self.call(method.clone(), path, bearer, headers, Some(body).filter(|b| !b.is_null())).await?;
        if status != expected {
            bail!("{method} {path} answered {status}, not {expected}: {answer}");
        }
        Ok(answer)
    }

    async fn admin(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request.bearer_auth(&self.admin_token).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("back office answered {status}: {body}");
        }
        Ok(body)
    }

    /// Fails with what to do when no wallet answers at the URL.
    async fn check_alive(&self) -> anyhow::Result<()> {
        let url = format!("{}/health/live", self.url);
        match self.http.get(&url).send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => bail!("{url} answered {}: is that a wallet?", response.status()),
            Err(error) => Err(anyhow::Error::new(error).context(format!(
                "no wallet answers at {}: start one (`cargo run --release -- serve`) or pass --url",
                self.url
            ))),
        }
    }

    async fn report(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.admin(self.http.get(format!("{}/v1/reports/rtp/{path}", self.url)).query(query)).await
    }
}

pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.players > 0, "--players must be at least 1");
    anyhow::ensure!((0.0..=10.0).contains(&args.rtp), "--rtp must be between 0 and 10");
    let host = reqwest::Url::parse(&args.url).context("--url")?;
    anyhow::ensure!(
        matches!(host.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")),
        "--url must be a loopback address: simulated traffic stays on this machine"
    );
    let mut rng = StdRng::from_os_rng();
    let tag: String =
        (0..6).map(|_| char::from(b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789"[rng.random_range(0..32)])).collect();
    // A currency of its own: the casino report for it holds this run only.
    let currency = format!("S{tag}");
    let users: Vec<String> = (1..=args.players).map(|i| format!("{}-{tag}-{i}", args.prefix)).collect();
    let client = Arc::new(Client {
        http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
        url: args.url.trim_end_matches('/').to_string(),
        secret: args.secret,
        admin_token: args.admin_token,
        counts: Counts::default(),
    });
    client.check_alive().await?;
    if args.bonuses {
        println!("run {tag}: bonuses, concurrency {}, target RTP {}", args.concurrency, args.rtp);
        return bonuses::run(client, users, args.rounds, args.concurrency, args.rtp, currency).await;
    }

    let per_player = args.rounds.div_ceil(args.players) as i64;
    let funding = (per_player + 1) * MAX_BET * 2;
    println!(
        "run {tag}: {} players in {currency}, {} rounds, concurrency {}, target RTP {}",
        args.players, args.rounds, args.concurrency, args.rtp
    );
    for user in &users {
        client
            .admin(
                client
                    .http
                    .post(format!("{}/v1/players", client.url))
                    .json(&json!({"user_id": user, "currency": currency})),
            )
            .await?;
        client
            .admin(
                client
                    .http
                    .post(format!("{}/v1/players/{}/deposits", client.url, urlencode(user)))
                    .header("Idempotency-Key", format!("fund-{user}"))
                    .json(&json!({"amount": funding})),
            )
            .await?;
    }

    let started = Utc::now() - TimeDelta::seconds(1);
    // A bar for a person at a terminal; a line every few seconds for a log.
    let terminal = std::io::stderr().is_terminal();
    let bar = if terminal {
        ProgressBar::new(args.rounds).with_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {pos}/{len} rounds {per_sec} eta {eta}",
            )
            .expect("a valid template"),
        )
    } else {
        ProgressBar::hidden()
    };
    let progress_lines = (!terminal).then(|| tokio::spawn(progress_lines(bar.clone(), args.rounds)));
    let playing = Instant::now();
    let next_round = Arc::new(AtomicU64::new(0));
    let tallies = Arc::new(Mutex::new(BTreeMap::<String, Tally>::new()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let (client, next_round, tallies, bar, users, currency) = (
            client.clone(),
            next_round.clone(),
            tallies.clone(),
            bar.clone(),
            users.clone(),
            currency.clone(),
        );
        let (rounds, rtp) = (args.rounds, args.rtp);
        workers.spawn(async move {
            let mut rng = StdRng::from_os_rng();
            loop {
                let round = next_round.fetch_add(1, Ordering::Relaxed);
                if round >= rounds {
                    return anyhow::Ok(());
                }
                let user = &users[(round % users.len() as u64) as usize];
                let (tally, fate) = play_round(&client, &mut rng, user, &currency, rtp).await?;
                client.counts.add(fate);
                tallies
                    .lock()
                    .expect("no panics while holding the tally")
                    .entry(user.clone())
                    .or_default()
                    .add(&tally);
                bar.inc(1);
            }
        });
    }
    let mut stopped = None;
    while let Some(done) = workers.join_next().await {
        if let Err(error) = done.map_err(anyhow::Error::from).and_then(|worker| worker) {
            // The other workers are aborted when the set is dropped.
            stopped = Some(error);
            break;
        }
    }
    if let Some(lines) = progress_lines {
        lines.abort();
    }
    // The bar goes: the summary says where it ended.
    bar.finish_and_clear();
    let took = playing.elapsed();
    if let Some(error) = stopped {
        println!("{}", client.counts.summary(args.rounds, took));
        let played = client.counts.played();
        return Err(error.context(format!("the run stopped after {played} of {} rounds", args.rounds)));
    }
    println!("{}", client.counts.summary(args.rounds, took));
    let finished = Utc::now() + TimeDelta::seconds(1);
    let tallies = tallies.lock().expect("workers are done").clone();

    let mut differences = 0;
    // The exact window reads raw edges; the hour-aligned one reads rollups.
    let hour = TimeDelta::hours(1);
    let aligned = (started.duration_trunc(hour)?, finished.duration_trunc(hour)? + hour);
    for (label, (from, to)) in [("exact window", (started, finished)), ("whole hours", aligned)] {
        differences += check_window(&client, label, from, to, &currency, &tallies).await?;
    }
    for user in &users {
        let player =
            client.admin(client.http.get(format!("{}/v1/players/{}", client.url, urlencode(user)))).await?;
        let tally = tallies.get(user).copied().unwrap_or_default();
        let expected = funding - tally.total_bet + tally.total_win;
        if player["balance"].as_i64() != Some(expected) {
            differences += 1;
            println!("{user}: balance {} but expected {expected}", player["balance"]);
        }
    }
    if differences > 0 {
        bail!("{differences} differences between the reports and the simulator's tally");
    }
    println!("reports and balances match the tally to the cent");
    Ok(())
}

/// Where the run is, on stderr every five seconds, when no bar is drawn.
async fn progress_lines(bar: ProgressBar, rounds: u64) {
    let started = Instant::now();
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.tick().await;
    loop {
        every.tick().await;
        let played = bar.position();
        eprintln!(
            "simulate: {played}/{rounds} rounds played, {:.0} rounds/s",
            played as f64 / started.elapsed().as_secs_f64()
        );
    }
}

/// Whether a refused request may be sent again as it is: rate limited or unavailable.
fn retryable(status: reqwest::StatusCode) -> bool {
    status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Plays one round and answers what it adds to the player's tally.
async fn play_round(
    client: &Client,
    rng: &mut StdRng,
    user: &str,
    currency: &str,
    rtp: f64,
) -> anyhow::Result<(Tally, Fate)> {
    let game = GAMES[rng.random_range(0..GAMES.len())];
    let game_id = Uuid::new_v4().to_string();
    let request = |actions: Value, finished: bool| {
        json!({"user_id": user, "currency": currency, "game": game, "game_id": game_id,
               "finished": finished, "actions": actions})
    };
    let bet = rng.random_range(10..=MAX_BET);
    let win = rng.random_bool(WIN_CHANCE).then(|| (bet as f64 * rtp / WIN_CHANCE).round() as i64);
    let (bet_id, win_id) = (Uuid::new_v4(), Uuid::new_v4());
    let bet_action = json!([{"action": "bet", "action_id": bet_id, "amount": bet}]);
    let mut tally = Tally::default();

    let fate: f64 = rng.random();
    if fate < PRE_ROLLBACK_SHARE {
        // The rollback overtakes its bet; the bet then arrives already reversed.
        let rollback = json!([{"action": "rollback", "action_id": Uuid::new_v4(),
                               "original_action_id": bet_id}]);
        client.process_maybe_twice(&request(rollback, false), rng).await?;
        client.process_maybe_twice(&request(bet_action, true), rng).await?;
        tally.rolled_back_bet += bet;
        return Ok((tally, Fate::RolledBackFirst));
    }
    client.process_maybe_twice(&request(bet_action, win.is_none()), rng).await?;
    if let Some(win) = win {
        let action = json!([{"action": "win", "action_id": win_id, "amount": win}]);
        client.process_maybe_twice(&request(action, true), rng).await?;
    }
    if fate < PRE_ROLLBACK_SHARE + ROLLBACK_SHARE {
        let mut actions = vec![json!({"action": "rollback", "action_id": Uuid::new_v4(),
                                      "original_action_id": bet_id})];
        if win.is_some() {
            actions.push(json!({"action": "rollback", "action_id": Uuid::new_v4(),
                                "original_action_id": win_id}));
        }
        client.process_maybe_twice(&request(Value::Array(actions), true), rng).await?;
        tally.rolled_back_bet += bet;
        tally.rolled_back_win += win.unwrap_or(0);
        Ok((tally, Fate::RolledBack))
    } else {
        tally.rounds += 1;
        tally.total_bet += bet;
        tally.total_win += win.unwrap_or(0);
        Ok((tally, Fate::Counted))
    }
}

/// Compares the casino and per-player reports of one window with the tally;
/// prints them side by side and answers the number of differences.
async fn check_window(
    client: &Client,
    label: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    currency: &str,
    tallies: &BTreeMap<String, Tally>,
) -> anyhow::Result<usize> {
    let window = [
        ("from", from.to_rfc3339_opts(SecondsFormat::Micros, true)),
        ("to", to.to_rfc3339_opts(SecondsFormat::Micros, true)),
        ("currency", currency.to_string()),
    ];
    println!("\n{label} [{}, {}):", window[0].1, window[1].1);
    let casino = client.report("casino", &window).await?;
    let row = casino["data"].get(0).cloned().unwrap_or(Value::Null);
    let mut expected = Tally::default();
    for tally in tallies.values() {
        expected.add(tally);
    }
    let reported = Tally::from_report(&row);
    let mut differences = 0;
    println!("  {:<16} {:>16} {:>16}", "casino", "simulator", "report");
    let expected_users = tallies.len() as i64;
    let mut lines = vec![("users", expected_users, row["users"].as_i64().unwrap_or(-1))];
    lines
        .extend(expected.fields().into_iter().zip(reported.fields()).map(|((name, e), (_, r))| (name, e, r)));
    for (name, e, r) in lines {
        let mark = if e == r { "" } else { "  <-- differs" };
        differences += usize::from(e != r);
        println!("  {name:<16} {e:>16} {r:>16}{mark}");
    }
    let expected_rtp =
        (expected.total_bet != 0).then(|| expected.total_win as f64 / expected.total_bet as f64);
    println!("  {:<16} {:>16} {:>16}", "rtp", ratio(expected_rtp), ratio(row["rtp"].as_f64()));

    let mut players = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = window.to_vec();
        query.push(("limit", "1000".into()));
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let page = client.report("users", &query).await?;
        for row in page["data"].as_array().into_iter().flatten() {
            let user = row["user_id"].as_str().unwrap_or_default().to_string();
            players.insert(user, Tally::from_report(row));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let mut player_differences = 0;
    for (user, tally) in tallies {
        if players.get(user) != Some(tally) {
            player_differences += 1;
            println!("  {user}: simulator {tally:?}, report {:?}", players.get(user));
        }
    }
    player_differences += players.keys().filter(|u| !tallies.contains_key(*u)).count();
    println!(
        "  per player: {} of {} rows match",
        tallies.len() - player_differences.min(tallies.len()),
        tallies.len()
    );
    Ok(differences + player_differences)
}

/// A ratio to six places, or `n/a` when there is none (no bets, no RTP).
fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |value| format!("{value:.6}"))
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_shows_six_places_or_n_a_when_there_is_none() {
        assert_eq!(ratio(Some(0.8970001)), "0.897000");
        assert_eq!(ratio(Some(1.0)), "1.000000");
        assert_eq!(ratio(None), "n/a");
    }

    #[test]
    fn the_summary_says_why_the_reports_count_fewer_rounds_than_were_played() {
        let counts = Counts::default();
        for fate in [Fate::Counted, Fate::Counted, Fate::Counted, Fate::RolledBack, Fate::RolledBackFirst] {
            counts.add(fate);
        }
        counts.requests.store(9, Ordering::Relaxed);
        counts.repeated.store(1, Ordering::Relaxed);
        assert_eq!(
            counts.summary(5, Duration::from_millis(1500)),
            "rounds: 5 requested, 5 played in 1.5s; the reports count 3 as rounds: 2 were rolled back \
             (1 after they were played, 1 before their bet arrived) and count in rolled_back_bet \
             and rolled_back_win instead\n\
             requests: 9 sent, 1 of them repeats on purpose (each answered as the first), \
             0 retries after a 429, a 5xx or a transport error"
        );
    }

    #[test]
    fn the_summary_says_how_many_rounds_a_stopped_run_did_not_play() {
        let counts = Counts::default();
        counts.add(Fate::Counted);
        assert!(counts
            .summary(4, Duration::from_secs(2))
            .starts_with("rounds: 4 requested, 1 played in 2.0s (3 not played: the run stopped early)\n"));
    }
}
