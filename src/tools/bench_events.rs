//! `wallet bench-events`: many players' event streams held open on a
//! running service while provider bets run at a fixed rate, measuring what
//! the streams cost the service (its resident memory) and how long each
//! bet's `balance` event takes to arrive.
//!
//! The players are made as `wallet seed` makes them, and their sessions are
//! written straight into the database: logging in ten thousand players
//! would be ten thousand Argon2 verifications, minutes of the service's CPU
//! that measure nothing here. Each stream is a real `GET /v1/me/events`.
//!
//! Each bet's delay is measured twice, into two histograms: from just
//! before its request was sent (an upper bound of commit to arrival, which
//! cannot miss a slow commit) and from its answer (what a front end that
//! saw the answer waits on top, often less than zero, counted as zero).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use rand::RngCore;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::config::DatabaseArgs;
use crate::domain::{Amount, Currency};
use crate::provider::signature::sign;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchEventsArgs {
    /// The service's database: the players and their sessions are made there.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Base URL of the running service.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Provider HMAC secret of operator `default`: the service's `HMAC_SECRETS`, or its first one.
    #[arg(long, env = "HMAC_SECRETS", hide_env_values = true, default_value = "test",
          value_parser = super::first_secret)]
    pub secret: String,
    /// Event streams to hold open, one per player.
    #[arg(long, default_value_t = 10_000)]
    pub streams: usize,
    /// Provider bets per second while the streams are open (0: none).
    #[arg(long, default_value_t = 2_000)]
    pub rate: u64,
    /// Seconds of bets.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Prefix of the players' user ids (`<prefix>1` … `<prefix><streams>`).
    #[arg(long, default_value = "EV")]
    pub prefix: String,
    /// The service's process id, to read its resident memory from /proc.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Streams being opened at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Bets in flight at most (open loop: a bet due while this many are in flight waits).
    #[arg(long, default_value_t = 256)]
    pub in_flight: usize,
    /// Seconds to wait after the last bet for events still on their way.
    #[arg(long, default_value_t = 3.0)]
    pub drain: f64,
}

/// When each bet was sent, answered and its event received, by tx_id:
/// whichever of the answer and the event comes second records the delays.
struct Timings {
    pending: Mutex<HashMap<String, Pending>>,
    from_send: Mutex<Histogram<u64>>,
    from_answer: Mutex<Histogram<u64>>,
}

enum Pending {
    Answered { sent: Instant, answered: Instant },
    Received(Instant),
}

impl Timings {
    fn new() -> Timings {
        let histogram = || Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"));
        Timings { pending: Mutex::default(), from_send: histogram(), from_answer: histogram() }
    }

    fn answered(&self, tx_id: String, sent: Instant, answered: Instant) {
        let mut pending = self.pending.lock().expect("never poisoned");
        match pending.remove(&tx_id) {
            Some(Pending::Received(received)) => self.record(sent, answered, received),
            _ => {
                pending.insert(tx_id, Pending::Answered { sent, answered });
            }
        }
    }

    fn received(&self, tx_id: String, received: Instant) {
        let mut pending = self.pending.lock().expect("never poisoned");
        match pending.remove(&tx_id) {
            Some(Pending::Answered { sent, answered }) => self.record(sent, answered, received),
            _ => {
                pending.insert(tx_id, Pending::Received(received));
            }
        }
    }

    fn record(&self, sent: Instant, answered: Instant, received: Instant) {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self.from_send.lock().expect("never poisoned").record(micros(received - sent));
        let _ = self
            .from_answer
            .lock()
            .expect("never poisoned")
            .record(micros(received.saturating_duration_since(answered)));
    }
}

pub async fn run(args: BenchEventsArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(args.streams > 0, "--streams must be at least 1");
    let pool = super::connect_existing(&args.database.database_url).await?;
    crate::ledger::partitions::ensure_ahead(&pool).await?;
    let operator = crate::domain::DEFAULT_OPERATOR;
    let currency = Currency::try_from("USD".to_string()).context("currency")?;
    let balance = Amount::try_from(1_000_000_000_000).context("balance")?;
    let n = i64::try_from(args.streams)?;
    super::seed::seed_players(&pool, operator, &args.prefix, n, balance.minor_units(), &currency).await?;
    let tokens = open_sessions(&pool, operator, &args.prefix, n).await?;
    pool.close().await;
    println!("{} players with a session each ({}1 … {}{n})", tokens.len(), args.prefix, args.prefix);

    let rss_before = args.pid.and_then(rss_kib);
    let timings = Arc::new(Timings::new());
    let received = Arc::new(AtomicU64::new(0));
    let streams = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
    let opening = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let started = Instant::now();
    let mut opened = Vec::with_capacity(tokens.len());
    for token in tokens {
        let permit = opening.clone().acquire_owned().await?;
        let (client, url) = (streams.clone(), format!("{}/v1/me/events", args.url));
        let (timings, received) = (timings.clone(), received.clone());
        opened.push(tokio::spawn(async move {
            let response = client
                .get(url)
                .bearer_auth(token)
                .header("x-operator", "default")
                .send()
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    if r.status().is_success() {
                        Ok(r)
                    } else {
                        Err(format!("status {}", r.status()))
                    }
                });
            drop(permit);
            let response = response?;
            tokio::spawn(read_stream(response, timings, received));
            Ok::<(), String>(())
        }));
    }
    let mut failures: HashMap<String, usize> = HashMap::new();
    for task in opened {
        if let Err(error) = task.await? {
            *failures.entry(error).or_default() += 1;
        }
    }
    let open = args.streams - failures.values().sum::<usize>();
    println!("{open} streams open in {:.1?}; failed: {failures:?}", started.elapsed());
    // Let the service settle (allocator, buffers) before reading its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_open = args.pid.and_then(rss_kib);
    if let (Some(before), Some(open_rss)) = (rss_before, rss_open) {
        let per_stream = (open_rss.saturating_sub(before)) as f64 * 1024.0 / open.max(1) as f64;
        println!(
            "service RSS: {:.1} MiB before, {:.1} MiB with {open} streams ({per_stream:.0} bytes a stream)",
            before as f64 / 1024.0,
            open_rss as f64 / 1024.0
        );
    }

    let (ok, failed) = if args.rate > 0 { bets(&args, open, timings.clone()).await? } else { (0, 0) };
    tokio::time::sleep(Duration::from_secs_f64(args.drain)).await;
    if let Some(rss) = args.pid.and_then(rss_kib) {
        println!("service RSS after the bets: {:.1} MiB", rss as f64 / 1024.0);
    }
    let events = received.load(Ordering::Relaxed);
    println!("bets: {ok} answered 200, {failed} failed; balance events received: {events}");
    let show = |label: &str, histogram: &Histogram<u64>| {
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "  {label:28} n {:6}  p50 {:7.1} ms  p99 {:7.1} ms  max {:7.1} ms",
            histogram.len(),
            ms(0.5),
            ms(0.99),
            histogram.max() as f64 / 1000.0
        );
    };
    show("event delay from the send", &timings.from_send.lock().expect("never poisoned"));
    show("event delay from the answer", &timings.from_answer.lock().expect("never poisoned"));
    let missing = timings.pending.lock().expect("never poisoned").len();
    if args.rate > 0 && ok > 0 && events == 0 {
        println!("no balance events arrived: does this build log them on the provider path?");
    }
    if missing > 0 {
        println!("  {missing} bets or events without their other half (answer or event)");
    }
    Ok(failed == 0 && failures.is_empty())
}

/// One session per player `<prefix>1..=n` of `operator`, written straight
/// into the database as a login would make it: their tokens.
async fn open_sessions(
    pool: &sqlx::PgPool,
    operator: i16,
    prefix: &str,
    n: i64,
) -> anyhow::Result<Vec<String>> {
    let tokens: Vec<String> = (0..n)
        .map(|_| {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            format!("ply_{}", hex::encode(bytes))
        })
        .collect();
    let hashes: Vec<Vec<u8>> = tokens.iter().map(|t| crate::staff::token_hash(t)).collect();
    let session_ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    let user_ids: Vec<String> = (1..=n).map(|i| format!("{prefix}{i}")).collect();
    let inserted = sqlx::query!(
        r#"INSERT INTO player_sessions (session_id, player_id, operator_id, token_hash, expires_at)
           SELECT s.session_id, p.id, $1, s.token_hash, now() + interval '1 day'
           FROM unnest($2::uuid[], $3::text[], $4::bytea[]) AS s (session_id, user_id, token_hash)
           JOIN players p ON p.operator_id = $1 AND p.user_id = s.user_id"#,
        operator,
        &session_ids,
        &user_ids,
        &hashes,
    )
    .execute(pool)
    .await?;
    if inserted.rows_affected() != n as u64 {
        bail!("only {} of the {n} players exist to open sessions for", inserted.rows_affected());
    }
    Ok(tokens)
}

/// Reads one stream to its end, timing each `balance` event.
async fn read_stream(mut response: reqwest::Response, timings: Arc<Timings>, received: Arc<AtomicU64>) {
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let arrived = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if !frame.lines().any(|line| line == "event: balance") {
                continue;
            }
            let data = frame.lines().find_map(|line| line.strip_prefix("data: "));
            let tx_id = data
                .and_then(|data| serde_json::from_str::<Value>(data).ok())
                .and_then(|body| body["tx_id"].as_str().map(str::to_owned));
            if let Some(tx_id) = tx_id {
                received.fetch_add(1, Ordering::Relaxed);
                timings.received(tx_id, arrived);
            }
        }
    }
}

/// Bets at `--rate` for `--duration` on the players with streams, round
/// robin (each player's bets are `players / rate` seconds apart): how many
/// were answered 200, and how many not.
async fn bets(args: &BenchEventsArgs, players: usize, timings: Arc<Timings>) -> anyhow::Result<(u64, u64)> {
    let client = reqwest::Client::new();
    let url = format!("{}/v1/process", args.url);
    let in_flight = Arc::new(Semaphore::new(args.in_flight.max(1)));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let total = (args.rate as f64 * args.duration) as u64;
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let start = tokio::time::Instant::now();
    println!("{total} bets at {}/s on {players} players", args.rate);
    let mut tasks = Vec::new();
    for i in 0..total {
        tokio::time::sleep_until(start + interval * u32::try_from(i).unwrap_or(u32::MAX)).await;
        let permit = in_flight.clone().acquire_owned().await?;
        let player = i as usize % players.max(1) + 1;
        let body = json!({"user_id": format!("{}{player}", args.prefix), "currency": "USD", "game": "bench:events",
            "game_id": format!("r{i}"), "actions": [{"action": "bet", "action_id": Uuid::new_v4(), "amount": 1}]});
        let body = serde_json::to_vec(&body)?;
        let signature = sign(args.secret.as_bytes(), &body);
        let (client, url, timings) = (client.clone(), url.clone(), timings.clone());
        let (ok, failed) = (ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let answer = client.post(url).header("authorization", signature).body(body).send().await;
            let answered = Instant::now();
            drop(permit);
            let tx_id = match answer {
                Ok(response) if response.status().is_success() => response
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|body| body["transactions"][0]["tx_id"].as_str().map(str::to_owned)),
                _ => None,
            };
            match tx_id {
                Some(tx_id) => {
                    ok.fetch_add(1, Ordering::Relaxed);
                    timings.answered(tx_id, sent, answered);
                }
                None => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    Ok((ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed)))
}

/// The resident memory of process `pid` in KiB (`VmRSS` of /proc/<pid>/status).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
