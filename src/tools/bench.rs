//! `wallet bench`: drives a running service the way providers do.
//!
//! Every request is signed like a provider's. Closed loop: `--connections`
//! workers, each sending its next request when the last one is answered.
//! Open loop (`--rate`): requests are sent on a fixed schedule whatever the
//! answers, and latency is measured from the time each request *should* have
//! been sent, so a stalled service cannot hide its queue (coordinated
//! omission). At the end the players' balances are read again: the money
//! they moved must equal what the accepted requests should have moved.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::IsTerminal;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Bytes;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use axum::http::{Request, Uri};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::provider::signature::sign;

/// What each request carries, and for which players.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// One bet per request, players uniform.
    Bet,
    /// A bet and a win per request.
    Round,
    /// N actions per request, bets and wins alternating.
    Batch(usize),
    /// Every request on one player.
    Hot,
    /// Players drawn from a Zipf distribution (a few very busy ones).
    Zipf,
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bet" => Ok(Workload::Bet),
            "round" => Ok(Workload::Round),
            "hot" => Ok(Workload::Hot),
            "zipf" => Ok(Workload::Zipf),
            _ => match s.strip_prefix("batch:").map(str::parse::<usize>) {
                Some(Ok(n)) if (1..=100).contains(&n) => Ok(Workload::Batch(n)),
                _ => Err(format!("unknown workload {s:?}: bet, round, batch:N (1..=100), hot or zipf")),
            },
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Base URL of the running service.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Provider HMAC secret to sign with: the service's `HMAC_SECRETS`, or its first one.
    #[arg(long, env = "HMAC_SECRETS", hide_env_values = true, default_value = "test",
          value_parser = super::first_secret)]
    pub secret: String,
    /// The provider endpoint: `/v1/process` (operator `default`), or
    /// `/v1/operators/<code>/process` with that operator's key as `--secret`.
    #[arg(long, default_value = "/v1/process")]
    pub path: String,
    /// What each request carries: bet | round | batch:N (N actions) | hot (one player) | zipf
    #[arg(long, default_value = "bet")]
    pub workload: Workload,
    /// Concurrent connections (closed loop), or the most requests in flight (open loop).
    #[arg(long, short = 'c', default_value_t = 64)]
    pub connections: usize,
    /// Open loop: requests per second on a fixed schedule.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Seconds to run (ignored when --requests is given).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Stop after this many requests.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Players `<prefix>1` … `<prefix><players>` must exist (see `wallet seed`).
    #[arg(long, default_value_t = 10_000)]
    pub players: usize,
    /// Prefix of the players' user ids, as given to `wallet seed`.
    #[arg(long, default_value = "P")]
    pub prefix: String,
    /// Currency of the players, as given to `wallet seed`.
    #[arg(long, default_value = "USD")]
    pub currency: String,
    /// Amount of each bet, in minor units.
    #[arg(long, default_value_t = 100)]
    pub amount: i64,
    /// Share of requests that repeat an earlier answered request verbatim.
    #[arg(long, default_value_t = 0.0)]
    pub duplicates: f64,
    /// Share of requests that roll back an earlier accepted bet.
    #[arg(long, default_value_t = 0.0)]
    pub rollbacks: f64,
    /// Share of requests that send a rollback before its bet (the bet follows later).
    #[arg(long, default_value_t = 0.0)]
    pub pre_rollbacks: f64,
    /// Exponent of the zipf workload.
    #[arg(long, default_value_t = 1.1)]
    pub zipf_exponent: f64,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Exit non-zero if any request failed (not only when money is not conserved).
    #[arg(long)]
    pub fail_on_errors: bool,
}

/// A request to send, and the money it moves if it is accepted.
struct Planned {
    player: usize,
    body: Bytes,
    expected_change: i64,
    actions: usize,
    /// An accepted bet that a later rollback may reverse.
    bet: Option<(Uuid, i64)>,
    /// A pre-rollback whose bet is still to be sent.
    pre_rolled_back: Option<Uuid>,
    /// A repeat must answer exactly what the first answer did.
    repeat_of: Option<Vec<TransactionRef>>,
}

impl Planned {
    /// A request of one action that leaves nothing for later requests.
    fn one_action(player: usize, body: Bytes, expected_change: i64) -> Planned {
        Planned {
            player,
            body,
            expected_change,
            actions: 1,
            bet: None,
            pre_rolled_back: None,
            repeat_of: None,
        }
    }
}

/// One action of a request, serialised straight into the body (building a
/// `serde_json::Value` per request cost the generator more CPU than signing it).
#[derive(Serialize)]
struct WireAction {
    action: &'static str,
    action_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_action_id: Option<Uuid>,
}

impl WireAction {
    fn bet(action_id: Uuid, amount: i64) -> WireAction {
        WireAction { action: "bet", action_id, amount: Some(amount), original_action_id: None }
    }

    fn win(action_id: Uuid, amount: i64) -> WireAction {
        WireAction { action: "win", action_id, amount: Some(amount), original_action_id: None }
    }

    fn rollback(action_id: Uuid, original: Uuid) -> WireAction {
        WireAction { action: "rollback", action_id, amount: None, original_action_id: Some(original) }
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    user_id: &'a str,
    currency: &'a str,
    game: &'a str,
    game_id: &'a str,
    actions: &'a [WireAction],
}

/// The parts of an answer the generator checks: the error code, and the
/// transactions a repeat must answer again.
#[derive(Deserialize)]
struct Answer {
    code: Option<i64>,
    #[serde(default)]
    transactions: Vec<TransactionRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct TransactionRef {
    action_id: Uuid,
    tx_id: Uuid,
}

/// What the generator remembers across requests.
#[derive(Default)]
struct Memory {
    answered: VecDeque<(usize, Bytes, Vec<TransactionRef>)>,
    accepted_bets: VecDeque<(usize, Uuid, i64)>,
    pending_originals: VecDeque<(usize, Uuid)>,
}

struct Generator {
    args: BenchArgs,
    zipf: Option<Zipf<f64>>,
    memory: Mutex<Memory>,
}

impl Generator {
    fn player(&self, rng: &mut impl Rng) -> usize {
        match self.args.workload {
            Workload::Hot => 1,
            Workload::Zipf => self.zipf.as_ref().expect("zipf").sample(rng) as usize,
            _ => rng.random_range(1..=self.args.players),
        }
    }

    fn body(&self, player: usize, actions: &[WireAction]) -> Bytes {
        let mut game_id = Uuid::encode_buffer();
        let request = WireRequest {
            user_id: &format!("{}{}", self.args.prefix, player),
            currency: &self.args.currency,
            game: "bench:slots",
            game_id: Uuid::new_v4().simple().encode_lower(&mut game_id),
            actions,
        };
        serde_json::to_vec(&request).expect("json").into()
    }

    fn next(&self, rng: &mut impl Rng) -> Planned {
        let roll: f64 = rng.random();
        let args = &self.args;
        {
            let mut memory = self.memory.lock().expect("memory");
            if roll < args.duplicates {
                if let Some((player, body, answer)) = memory.answered.pop_front() {
                    return Planned {
                        actions: 0,
                        repeat_of: Some(answer),
                        ..Planned::one_action(player, body, 0)
                    };
                }
            } else if roll < args.duplicates + args.rollbacks {
                if let Some((player, bet, amount)) = memory.accepted_bets.pop_front() {
                    let action = WireAction::rollback(Uuid::new_v4(), bet);
                    return Planned::one_action(player, self.body(player, &[action]), amount);
                }
            } else if roll < args.duplicates + args.rollbacks + args.pre_rollbacks {
                // Half the time send the awaited original, else start a new pair.
                if rng.random_bool(0.5) {
                    if let Some((player, original)) = memory.pending_originals.pop_front() {
                        let action = WireAction::bet(original, args.amount);
                        return Planned::one_action(player, self.body(player, &[action]), 0);
                    }
                }
                let player = self.player(rng);
                let original = Uuid::new_v4();
                let action = WireAction::rollback(Uuid::new_v4(), original);
                return Planned {
                    pre_rolled_back: Some(original),
                    ..Planned::one_action(player, self.body(player, &[action]), 0)
                };
            }
        }
        let player = self.player(rng);
        let bet_id = Uuid::new_v4();
        let bet = WireAction::bet(bet_id, args.amount);
        let (actions, change) = match args.workload {
            Workload::Round => {
                let win = rng.random_range(0..=2 * args.amount);
                (vec![bet, WireAction::win(Uuid::new_v4(), win)], win - args.amount)
            }
            Workload::Batch(n) => {
                let mut actions = Vec::with_capacity(n);
                actions.push(bet);
                let mut change = -args.amount;
                for i in 1..n {
                    if i % 2 == 1 {
                        let win = rng.random_range(0..=2 * args.amount);
                        actions.push(WireAction::win(Uuid::new_v4(), win));
                        change += win;
                    } else {
                        actions.push(WireAction::bet(Uuid::new_v4(), args.amount));
                        change -= args.amount;
                    }
                }
                (actions, change)
            }
            _ => (vec![bet], -args.amount),
        };
        let single_bet = actions.len() == 1;
        Planned {
            player,
            body: self.body(player, &actions),
            expected_change: change,
            actions: actions.len(),
            bet: single_bet.then_some((bet_id, args.amount)),
            pre_rolled_back: None,
            repeat_of: None,
        }
    }

    /// Whether accepted answers are kept, for replays to be checked against.
    fn keeps_answers(&self) -> bool {
        self.args.duplicates > 0.0
    }

    /// Remembers what an accepted request makes possible next.
    fn remember(&self, planned: Planned, transactions: Vec<TransactionRef>) {
        let mut memory = self.memory.lock().expect("memory");
        if let Some((bet, amount)) = planned.bet {
            if memory.accepted_bets.len() < 100_000 {
                memory.accepted_bets.push_back((planned.player, bet, amount));
            }
        }
        if let Some(original) = planned.pre_rolled_back {
            memory.pending_originals.push_back((planned.player, original));
        }
        if self.keeps_answers() && planned.repeat_of.is_none() && memory.answered.len() < 10_000 {
            memory.answered.push_back((planned.player, planned.body, transactions));
        }
    }
}

/// Counters shared by every request task.
struct Tally {
    histogram: Mutex<Histogram<u64>>,
    sent: AtomicU64,
    accepted: AtomicU64,
    actions: AtomicU64,
    outcomes: Mutex<BTreeMap<String, u64>>,
    transport_errors: AtomicU64,
    replay_mismatches: AtomicU64,
    expected_change: Mutex<HashMap<usize, i64>>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            histogram: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram")),
            sent: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            actions: AtomicU64::new(0),
            outcomes: Mutex::default(),
            transport_errors: AtomicU64::new(0),
            replay_mismatches: AtomicU64::new(0),
            expected_change: Mutex::default(),
        }
    }
}

/// Sends one planned request and records what happened, with latency
/// measured from `intended` (the scheduled start in open loop).
async fn send(
    connections: &Connections,
    generator: &Generator,
    tally: &Tally,
    planned: Planned,
    intended: Instant,
) {
    let signature = sign(generator.args.secret.as_bytes(), &planned.body);
    tally.sent.fetch_add(1, Ordering::Relaxed);
    let response = connections.process(&signature, planned.body.clone()).await;
    let outcome = response.ok().map(|(status, body)| {
        // An accepted answer is only parsed when a replay may need it later.
        let unread = Answer { code: None, transactions: Vec::new() };
        let answer = match status {
            200 if !generator.keeps_answers() => unread,
            _ => serde_json::from_slice(&body).unwrap_or(unread),
        };
        (status, answer)
    });
    let micros = intended.elapsed().as_micros().clamp(1, 60_000_000) as u64;
    tally.histogram.lock().expect("histogram").saturating_record(micros);
    let Some((status, answer)) = outcome else {
        tally.transport_errors.fetch_add(1, Ordering::Relaxed);
        *tally.outcomes.lock().expect("outcomes").entry("transport error".into()).or_default() += 1;
        return;
    };
    let key = match (status, answer.code) {
        (200, _) => "200".to_string(),
        (status, Some(code)) => format!("{status} code {code}"),
        (status, None) => status.to_string(),
    };
    *tally.outcomes.lock().expect("outcomes").entry(key).or_default() += 1;
    if status != 200 {
        return;
    }
    tally.accepted.fetch_add(1, Ordering::Relaxed);
    tally.actions.fetch_add(planned.actions as u64, Ordering::Relaxed);
    if let Some(first) = &planned.repeat_of {
        if *first != answer.transactions {
            tally.replay_mismatches.fetch_add(1, Ordering::Relaxed);
        }
    }
    *tally.expected_change.lock().expect("expected").entry(planned.player).or_default() +=
        planned.expected_change;
    generator.remember(planned, answer.transactions);
}

/// Reads every player's balance through the provider API.
async fn balances(
    connections: &Connections,
    args: &BenchArgs,
    players: &[usize],
) -> anyhow::Result<HashMap<usize, i64>> {
    use futures_util::StreamExt;
    let lookups = futures_util::stream::iter(players.iter().copied())
        .map(|player| async move {
            let body = serde_json::to_vec(
                &json!({"user_id": format!("{}{}", args.prefix, player), "currency": args.currency}),
            )?;
            let signature = sign(args.secret.as_bytes(), &body);
            let (_, answer) = connections.process(&signature, body.into()).await?;
            let answer: Value = serde_json::from_slice(&answer).context("balance answer")?;
            let balance = answer["balance"].as_i64().with_context(|| {
                format!(
                    "no balance for player {}{player}: {answer} (seed the players first: wallet seed)",
                    args.prefix
                )
            })?;
            anyhow::Ok((player, balance))
        })
        .buffer_unordered(32);
    lookups.collect::<Vec<_>>().await.into_iter().collect()
}

/// How long one request may take before it counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Keep-alive HTTP/1.1 connections to the service, one per request in flight,
/// driven through hyper's connection handles: a general-purpose client's
/// pool, retry and redirect layers cost the generator about a quarter of its
/// CPU, which it takes from the service it measures (docs/BENCHMARKS.md).
struct Connections {
    /// `host:port` to connect to, also sent as `Host`.
    authority: String,
    /// The provider endpoint requests are POSTed to.
    path: String,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl Connections {
    fn new(url: &str, path: &str) -> anyhow::Result<Connections> {
        let uri: Uri = url.parse().context("--url")?;
        if uri.scheme_str() != Some("http") {
            bail!("--url must be an http:// address, got {url}");
        }
        let host = uri.host().context("--url has no host")?;
        let authority = format!("{host}:{}", uri.port_u16().unwrap_or(80));
        Ok(Connections { authority, path: path.to_owned(), idle: Mutex::default() })
    }

    /// POSTs `body` to the provider endpoint and reads the whole answer: its status and body.
    async fn process(&self, authorization: &str, body: Bytes) -> anyhow::Result<(u16, Bytes)> {
        let request = Request::post(self.path.as_str())
            .header(HOST, &self.authority)
            .header(AUTHORIZATION, authorization)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let idle = self.idle.lock().expect("connections").pop();
        let mut connection = match idle {
            Some(connection) if connection.is_ready() => connection,
            _ => self.connect().await?,
        };
        let exchange = async {
            let response = connection.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.context("request timed out")??;
        self.idle.lock().expect("connections").push(connection);
        Ok(answer)
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(&self.authority).await.with_context(|| {
            format!(
                "cannot connect to {}: is the wallet running there? start it \
                     (`cargo run --release -- serve`) or pass --url",
                self.authority
            )
        })?;
        stream.set_nodelay(true)?;
        let (connection, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // The driver ends when its handle is dropped or the service closes the connection.
        tokio::spawn(driver);
        Ok(connection)
    }
}

/// The figures of one run.
#[derive(Debug, Serialize)]
pub struct Report {
    pub workload: String,
    pub mode: String,
    pub connections: usize,
    pub seconds: f64,
    pub requests: u64,
    pub accepted: u64,
    pub requests_per_second: f64,
    pub actions_per_second: f64,
    pub latency_ms: BTreeMap<String, f64>,
    pub outcomes: BTreeMap<String, u64>,
    pub replay_mismatches: u64,
    pub money_expected: i64,
    pub money_moved: i64,
    pub money_conserved: bool,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<bool> {
    if args.players == 0 {
        bail!("--players must be at least 1");
    }
    let zipf = match args.workload {
        Workload::Zipf => {
            Some(Zipf::new(args.players as f64, args.zipf_exponent).context("zipf parameters")?)
        }
        _ => None,
    };
    let connections = Arc::new(Connections::new(&args.url, &args.path)?);
    let touched: Vec<usize> =
        if args.workload == Workload::Hot { vec![1] } else { (1..=args.players).collect() };
    let before = balances(&connections, &args, &touched).await?;

    let generator = Arc::new(Generator { args: args.clone(), zipf, memory: Mutex::default() });
    let tally = Arc::new(Tally::new());
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration);
    let limit = args.requests.unwrap_or(u64::MAX);
    let timed = args.requests.is_none();
    let done = move |sent: u64| sent >= limit || (timed && Instant::now() >= deadline);
    let progress = tokio::spawn(show_progress(tally.clone(), started));

    match args.rate {
        None => {
            let issued = Arc::new(AtomicU64::new(0));
            let workers = (0..args.connections.max(1)).map(|_| {
                let (connections, generator, tally, issued) =
                    (connections.clone(), generator.clone(), tally.clone(), issued.clone());
                tokio::spawn(async move {
                    let mut rng = StdRng::from_os_rng();
                    while !done(issued.fetch_add(1, Ordering::Relaxed)) {
                        let planned = generator.next(&mut rng);
                        send(&connections, &generator, &tally, planned, Instant::now()).await;
                    }
                })
            });
            for worker in workers.collect::<Vec<_>>() {
                worker.await?;
            }
        }
        Some(rate) => {
            let in_flight = Arc::new(tokio::sync::Semaphore::new(args.connections.max(1)));
            let mut tasks = tokio::task::JoinSet::new();
            let mut rng = StdRng::from_os_rng();
            let mut n: u64 = 0;
            while !done(n) {
                let intended = started + Duration::from_secs_f64(n as f64 / rate as f64);
                tokio::time::sleep_until(intended.into()).await;
                let permit = in_flight.clone().acquire_owned().await?;
                let planned = generator.next(&mut rng);
                let (connections, generator, tally) = (connections.clone(), generator.clone(), tally.clone());
                tasks.spawn(async move {
                    send(&connections, &generator, &tally, planned, intended).await;
                    drop(permit);
                });
                n += 1;
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    progress.abort();
    if std::io::stderr().is_terminal() {
        eprintln!();
    }

    let after = balances(&connections, &args, &touched).await?;
    let money_moved: i64 = touched.iter().map(|p| after[p] - before[p]).sum();
    let expected = tally.expected_change.lock().expect("expected").clone();
    let money_expected: i64 = expected.values().sum();
    let per_player_exact =
        touched.iter().all(|p| after[p] - before[p] == expected.get(p).copied().unwrap_or(0));
    let transport_errors = tally.transport_errors.load(Ordering::Relaxed);
    let histogram = tally.histogram.lock().expect("histogram").clone();
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let report = Report {
        workload: format!("{:?}", args.workload).to_lowercase(),
        mode: args.rate.map_or("closed loop".into(), |r| format!("open loop at {r}/s")),
        connections: args.connections,
        seconds,
        requests: tally.sent.load(Ordering::Relaxed),
        accepted: tally.accepted.load(Ordering::Relaxed),
        requests_per_second: tally.sent.load(Ordering::Relaxed) as f64 / seconds,
        actions_per_second: tally.actions.load(Ordering::Relaxed) as f64 / seconds,
        latency_ms: [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)]
            .into_iter()
            .map(|(name, q)| (name.to_string(), ms(q)))
            .chain([("max".to_string(), histogram.max() as f64 / 1000.0)])
            .collect(),
        outcomes: tally.outcomes.lock().expect("outcomes").clone(),
        replay_mismatches: tally.replay_mismatches.load(Ordering::Relaxed),
        money_expected,
        money_moved,
        // A request whose answer never arrived may or may not have applied:
        // conservation cannot be proven then, so it is not claimed.
        money_conserved: per_player_exact && transport_errors == 0,
    };
    print_report(&report, args.json);
    let errors = report.outcomes.iter().any(|(k, _)| k != "200") || report.replay_mismatches > 0;
    Ok(report.money_conserved && report.replay_mismatches == 0 && !(args.fail_on_errors && errors))
}

/// Requests sent so far and the rate: a line rewritten every second at a
/// terminal, a new line every five seconds for a log.
async fn show_progress(tally: Arc<Tally>, started: Instant) {
    let terminal = std::io::stderr().is_terminal();
    let period = Duration::from_secs(if terminal { 1 } else { 5 });
    let mut every = tokio::time::interval(period);
    every.tick().await;
    let mut last = 0;
    loop {
        every.tick().await;
        let sent = tally.sent.load(Ordering::Relaxed);
        let failed: u64 = tally
            .outcomes
            .lock()
            .expect("outcomes")
            .iter()
            .filter(|(k, _)| *k != "200")
            .map(|(_, v)| v)
            .sum();
        let line = format!(
            "{:>6.1}s  {:>9} requests  {:>8.0} req/s  {:>6} failed",
            started.elapsed().as_secs_f64(),
            sent,
            (sent - last) as f64 / period.as_secs_f64(),
            failed
        );
        if terminal {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
        last = sent;
    }
}

fn print_report(report: &Report, as_json: bool) {
    if as_json {
        println!("{}", serde_json::to_string_pretty(report).expect("json"));
        return;
    }
    println!("workload       {} ({}, {} connections)", report.workload, report.mode, report.connections);
    println!("requests       {} in {:.1} s, {} accepted", report.requests, report.seconds, report.accepted);
    println!(
        "throughput     {:.0} requests/s, {:.0} actions/s",
        report.requests_per_second, report.actions_per_second
    );
    let latency: Vec<String> = report.latency_ms.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
    println!("latency ms     {}", latency.join("  "));
    let outcomes: Vec<String> = report.outcomes.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!("outcomes       {}", outcomes.join(", "));
    println!("replays        {} answered differently from the first time", report.replay_mismatches);
    println!(
        "money          expected {} moved {} -> {}",
        report.money_expected,
        report.money_moved,
        if report.money_conserved { "conserved" } else { "NOT CONSERVED" }
    );
}
