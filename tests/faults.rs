//! Fault tests: real signed load against a real `wallet serve` process and a
//! private Postgres cluster, a fault in the middle of it, then a replay of
//! every request with the same ids, checked exactly against a reference model.
//!
//! They stop and start processes, so they are `#[ignore]`d and run on their
//! own, one at a time (`scripts/fault-tests`):
//!
//! ```text
//! cargo test --test faults -- --ignored --test-threads=1
//! ```
//!
//! Each test initialises its own cluster (`initdb` as the `postgres` user, trust
//! auth, a free port on 127.0.0.1, a temporary directory) and removes it
//! afterwards; the shared cluster on 5432 is never touched. With
//! `WALLET_FAULTS_KEEP=<dir>` the stopped cluster is moved under `<dir>`
//! instead, for `scripts/fault-tests` to reconcile once more.
//!
//! The workload is built so that its final state does not depend on the order
//! in which requests happened to succeed: every player starts with far more
//! money than they can lose, and a rollback nets to zero whether it arrives
//! before or after its original. So after the replay the model is exact.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;
use wallet::provider::signature::sign;

const SECRET: &str = "fault-test-secret";
const ADMIN_TOKEN: &str = "fault-test-admin";
const DATABASE: &str = "wallet_faults";
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const STARTING_BALANCE: i64 = 1_000_000_000;
const PLAYERS: usize = 12;
const REQUESTS_PER_PLAYER: usize = 60;
/// Upper bound on any one test, whatever goes wrong.
const TEST_DEADLINE: Duration = Duration::from_secs(240);

// ---------------------------------------------------------------------------
// A private Postgres cluster.

struct PrivatePostgres {
    dir: Option<tempfile::TempDir>,
    port: u16,
}

fn as_postgres(program: &str, args: &[&str], cwd: &Path) -> ExitStatus {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(Path::new(PG_BIN).join(program))
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {program} as postgres: {e}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl PrivatePostgres {
    fn init() -> PrivatePostgres {
        let dir = tempfile::Builder::new().prefix("wallet-faults-pg-").tempdir().expect("temp dir");
        let status =
            Command::new("chown").args(["postgres:postgres"]).arg(dir.path()).status().expect("chown");
        assert!(status.success(), "cannot hand the temp dir to postgres");
        let data = dir.path().join("data");
        let status = as_postgres(
            "initdb",
            &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
            dir.path(),
        );
        assert!(status.success(), "initdb failed");
        let cluster = PrivatePostgres { dir: Some(dir), port: free_port() };
        cluster.start();
        cluster
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().expect("cluster directory").path()
    }

    fn data(&self) -> String {
        self.path().join("data").to_str().unwrap().to_owned()
    }

    fn start(&self) {
        // fsync is off: these tests kill processes, not machines, and the
        // kernel keeps what Postgres wrote across a process crash.
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=60",
            self.port,
            self.path().display()
        );
        let log = self.path().join("postgres.log");
        let status = as_postgres(
            "pg_ctl",
            &["-D", &self.data(), "-l", log.to_str().unwrap(), "-o", &options, "-w", "-t", "60", "start"],
            self.path(),
        );
        assert!(status.success(), "the private cluster did not start");
    }

    /// `mode` is pg_ctl's: `fast` (disconnects everyone) or `immediate` (a crash).
    fn stop(&self, mode: &str) {
        as_postgres("pg_ctl", &["-D", &self.data(), "-m", mode, "-w", "-t", "60", "stop"], self.path());
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop("fast");
        let Some(dir) = self.dir.take() else { return };
        if let Ok(keep) = std::env::var("WALLET_FAULTS_KEEP") {
            let target = Path::new(&keep).join(dir.path().file_name().unwrap());
            let _ = std::fs::create_dir_all(&keep);
            let kept = dir.keep();
            if std::fs::rename(&kept, &target).is_err() {
                let _ = Command::new("mv").arg(&kept).arg(&target).status();
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The service as a process.

struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn spawn(database_url: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wallet"))
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("WALLET_ADDR", "127.0.0.1:0")
            .env("HMAC_SECRETS", format!("retired-secret,{SECRET}"))
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            .env("DB_POOL_SIZE", "8")
            .env("DB_ACQUIRE_TIMEOUT_MS", "1000")
            .env("REQUEST_TIMEOUT_MS", "5000")
            .env("PLAYER_RATE_LIMIT_RPS", "0")
            .env("RUST_LOG", "info,sqlx=warn")
            .env_remove("LOG_FORMAT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the wallet binary starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (bound, listening) = mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    if event["message"] == "wallet listening" {
                        let _ = bound.send(event["addr"].as_str().unwrap_or("").to_owned());
                    }
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = match listening.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr.parse().expect("the logged address parses"),
            Err(_) => {
                let _ = child.kill();
                panic!("the server did not report its address:\n{}", log.lock().unwrap().join("\n"))
            }
        };
        Server { child, addr, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("process status").is_none()
    }

    /// Waits (bounded) for the process to end.
    fn wait_for_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("process status") {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit in {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = self.log_text();
        if std::thread::panicking() {
            eprintln!("server log:\n{log}");
            return;
        }
        // Whatever happened, no secret and no signature reached the log.
        assert!(!log.contains(SECRET), "the provider secret was logged");
        assert!(!log.contains(ADMIN_TOKEN), "the admin token was logged");
        assert!(!log.contains("HMAC-SHA256 "), "a signature was logged");
    }
}

// ---------------------------------------------------------------------------
// The workload and its reference model.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bet,
    Win,
    Rollback,
}

#[derive(Clone, Debug)]
struct ProviderRequest {
    body: String,
}

struct Workload {
    players: Vec<String>,
    requests: Vec<Vec<ProviderRequest>>,
    /// Every action: its player, kind, amount (0 for rollbacks) and original.
    actions: HashMap<Uuid, (usize, Kind, i64, Option<Uuid>)>,
}

impl Workload {
    /// Deterministic bets, wins, rollbacks, repeated rollbacks and
    /// pre-rollbacks whose original arrives a few requests later.
    fn generate(seed: u64) -> Workload {
        let mut rng = StdRng::seed_from_u64(seed);
        let run = Uuid::new_v4().simple().to_string();
        let players: Vec<String> = (0..PLAYERS).map(|p| format!("fault-{}-{p}", &run[..8])).collect();
        let mut actions = HashMap::new();
        let mut requests = Vec::new();
        for (p, user_id) in players.iter().enumerate() {
            let mut sent: Vec<Uuid> = Vec::new();
            let mut late: BTreeMap<usize, Vec<Uuid>> = BTreeMap::new();
            let mut player_requests = Vec::new();
            for r in 0..REQUESTS_PER_PLAYER {
                let mut batch: Vec<Value> = Vec::new();
                let mut add = |kind: Kind, id: Uuid, amount: i64, original: Option<Uuid>| {
                    actions.insert(id, (p, kind, amount, original));
                    batch.push(match kind {
                        Kind::Bet => json!({"action": "bet", "action_id": id, "amount": amount}),
                        Kind::Win => json!({"action": "win", "action_id": id, "amount": amount}),
                        Kind::Rollback => json!({"action": "rollback", "action_id": id,
                                                 "original_action_id": original}),
                    });
                    id
                };
                for original in late.remove(&r).unwrap_or_default() {
                    add(Kind::Bet, original, rng.random_range(1..=500), None);
                }
                let bet = add(Kind::Bet, Uuid::new_v4(), rng.random_range(0..=1000), None);
                let mut fresh = vec![bet];
                if rng.random_bool(0.5) {
                    fresh.push(add(Kind::Win, Uuid::new_v4(), rng.random_range(0..=2000), None));
                }
                if !sent.is_empty() && rng.random_bool(0.2) {
                    // Sometimes an original that was already rolled back: a
                    // repeated reversal, accepted and moving nothing.
                    let original = sent[rng.random_range(0..sent.len())];
                    add(Kind::Rollback, Uuid::new_v4(), 0, Some(original));
                }
                if r + 5 < REQUESTS_PER_PLAYER && rng.random_bool(0.1) {
                    let original = Uuid::new_v4();
                    add(Kind::Rollback, Uuid::new_v4(), 0, Some(original));
                    late.entry(r + rng.random_range(1..=4)).or_default().push(original);
                }
                sent.extend(fresh);
                let body = json!({
                    "user_id": user_id, "currency": "EUR", "game": "fault:slots",
                    "game_id": format!("round-{p}-{r}"), "finished": true, "actions": batch,
                })
                .to_string();
                player_requests.push(ProviderRequest { body });
            }
            assert!(late.is_empty());
            requests.push(player_requests);
        }
        Workload { players, requests, actions }
    }

    fn reversed(&self) -> HashSet<Uuid> {
        self.actions.values().filter_map(|(_, _, _, original)| *original).collect()
    }

    /// Each player's balance once every request has been applied, in any order.
    fn expected_balances(&self) -> Vec<i64> {
        let reversed = self.reversed();
        let mut balances = vec![STARTING_BALANCE; self.players.len()];
        for (id, (p, kind, amount, _)) in &self.actions {
            if reversed.contains(id) {
                continue;
            }
            match kind {
                Kind::Bet => balances[*p] -= amount,
                Kind::Win => balances[*p] += amount,
                Kind::Rollback => {}
            }
        }
        balances
    }

    /// One ledger row per distinct action, plus the opening deposit.
    fn expected_ledger_rows(&self) -> Vec<i64> {
        let mut rows = vec![1; self.players.len()];
        for (p, ..) in self.actions.values() {
            rows[*p] += 1;
        }
        rows
    }
}

// ---------------------------------------------------------------------------
// The client side.

/// What the client saw: status counts and every tx_id answered with a 200.
#[derive(Default)]
struct Observed {
    statuses: BTreeMap<String, usize>,
    answered: HashMap<Uuid, Uuid>,
    contradictions: Vec<String>,
}

impl Observed {
    fn count(&mut self, outcome: String) {
        *self.statuses.entry(outcome).or_default() += 1;
    }

    /// Records the tx_ids of a 200; a different tx_id for a known action is a
    /// contradiction (an action applied twice).
    fn record(&mut self, body: &Value) {
        for tx in body["transactions"].as_array().into_iter().flatten() {
            let action: Uuid = tx["action_id"].as_str().unwrap().parse().unwrap();
            let tx_id: Uuid = tx["tx_id"].as_str().unwrap().parse().unwrap();
            if let Some(earlier) = self.answered.insert(action, tx_id) {
                if earlier != tx_id {
                    self.contradictions.push(format!("{action}: tx {earlier} then {tx_id}"));
                }
            }
        }
    }

    fn statuses_other_than(&self, allowed: &[&str]) -> Vec<String> {
        self.statuses
            .iter()
            .filter(|(s, _)| !allowed.contains(&s.as_str()))
            .map(|(s, n)| format!("{s} x{n}"))
            .collect()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

async fn send(client: &reqwest::Client, base: &str, request: &ProviderRequest) -> (String, Value) {
    let sent = client
        .post(format!("{base}/v1/process"))
        .header("content-type", "application/json")
        .header("authorization", sign(SECRET.as_bytes(), request.body.as_bytes()))
        .body(request.body.clone())
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status().as_u16().to_string();
            let body = response.json::<Value>().await.unwrap_or(Value::Null);
            (status, body)
        }
        Err(error) if error.is_timeout() => ("timeout".into(), Value::Null),
        Err(_) => ("transport error".into(), Value::Null),
    }
}

/// Creates the players and gives each the starting balance (idempotently),
/// and limits of every kind and period too high to refuse anything, so that
/// every request also checks and counts them and `wallet reconcile` proves
/// the counters exact after the fault.
async fn open_accounts(base: &str, workload: &Workload) {
    let client = client();
    for user_id in &workload.players {
        let created = client
            .post(format!("{base}/v1/players"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"user_id": user_id, "currency": "EUR"}))
            .send()
            .await
            .unwrap();
        assert!(created.status().is_success(), "{}", created.status());
        let encoded = user_id.replace('|', "%7C");
        let deposit = client
            .post(format!("{base}/v1/players/{encoded}/deposits"))
            .bearer_auth(ADMIN_TOKEN)
            .header("idempotency-key", format!("opening-{user_id}"))
            .json(&json!({"amount": STARTING_BALANCE}))
            .send()
            .await
            .unwrap();
        assert!(deposit.status().is_success(), "{}", deposit.status());
        let high = json!({"day": 1_000_000_000_000_i64, "week": 1_000_000_000_000_i64, "month": 1_000_000_000_000_i64});
        let limits = client
            .put(format!("{base}/v1/players/{encoded}/limits"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"deposit": high, "loss": high, "wager": high}))
            .send()
            .await
            .unwrap();
        assert!(limits.status().is_success(), "{}", limits.status());
    }
}

/// Sends every player's requests once, in order, players in parallel. The
/// counter lets the test strike while the load is running.
async fn load(base: String, workload: Arc<Workload>, done: Arc<AtomicUsize>) -> Observed {
    let observed = Arc::new(Mutex::new(Observed::default()));
    let mut workers = Vec::new();
    for p in 0..workload.players.len() {
        let (base, workload, done, observed) =
            (base.clone(), workload.clone(), done.clone(), observed.clone());
        workers.push(tokio::spawn(async move {
            let client = client();
            for request in &workload.requests[p] {
                let (status, body) = send(&client, &base, request).await;
                let mut observed = observed.lock().unwrap();
                if status == "200" {
                    observed.record(&body);
                }
                observed.count(status);
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    Arc::try_unwrap(observed).ok().expect("workers are done").into_inner().unwrap()
}

/// Sends every request again with the same ids until each is answered 200
/// (bounded: a request that keeps failing fails the test).
async fn replay(base: &str, workload: &Workload, observed: &mut Observed) {
    let client = client();
    let mut handles = Vec::new();
    for p in 0..workload.players.len() {
        let (client, base, requests) = (client.clone(), base.to_owned(), workload.requests[p].clone());
        handles.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for request in &requests {
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    let (status, body) = send(&client, &base, request).await;
                    if status == "200" {
                        answers.push(body);
                        break;
                    }
                    assert!(attempts < 40, "replay of {} keeps failing: {status} {body}", request.body);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
            answers
        }));
    }
    for handle in handles {
        for body in handle.await.unwrap() {
            observed.record(&body);
        }
    }
}

/// Waits until `done` reaches `n`, at most `limit`.
async fn wait_for(done: &AtomicUsize, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while done.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "the load stalled before {n} requests");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------
// Checking the database.

async fn connect(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(30))
        .connect(url)
        .await
        .expect("the test connects to the private cluster")
}

/// Every action answered 200 is in the ledger with the tx_id it was answered.
async fn assert_answers_durable(db: &PgPool, observed: &Observed) {
    let ids: Vec<Uuid> = observed.answered.keys().copied().collect();
    let stored: HashMap<Uuid, Uuid> =
        sqlx::query_as("SELECT action_id, tx_id FROM ledger WHERE action_id = ANY($1)")
            .bind(&ids)
            .fetch_all(db)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let lost: Vec<String> = observed
        .answered
        .iter()
        .filter(|(action, tx)| stored.get(action) != Some(tx))
        .map(|(action, tx)| format!("{action} (answered tx {tx}, stored {:?})", stored.get(action)))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} answered actions are not durable: {:?}",
        lost.len(),
        ids.len(),
        &lost[..lost.len().min(10)]
    );
}

/// The final state equals the model exactly.
async fn assert_state_exact(db: &PgPool, workload: &Workload, observed: &Observed) {
    assert!(
        observed.contradictions.is_empty(),
        "actions answered with two tx_ids: {:?}",
        observed.contradictions
    );
    let balances = workload.expected_balances();
    let rows = workload.expected_ledger_rows();
    for (p, user_id) in workload.players.iter().enumerate() {
        let (balance, last_seq, entries): (i64, i64, i64) = sqlx::query_as(
            "SELECT p.balance, p.last_seq, (SELECT count(*) FROM ledger l WHERE l.player_id = p.id)
             FROM players p WHERE p.user_id = $1",
        )
        .bind(user_id)
        .fetch_one(db)
        .await
        .unwrap();
        assert_eq!(balance, balances[p], "balance of {user_id}");
        assert_eq!(entries, rows[p], "ledger rows of {user_id}");
        assert_eq!(last_seq, rows[p], "last_seq of {user_id}");
    }
    // Every action exactly once, with the tx_id the client was given.
    let stored: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT action_id, tx_id FROM ledger WHERE action_id IS NOT NULL")
            .fetch_all(db)
            .await
            .unwrap();
    assert_eq!(stored.len(), workload.actions.len(), "provider ledger rows");
    for (action, tx) in &stored {
        assert!(workload.actions.contains_key(action), "unknown action {action}");
        assert_eq!(observed.answered.get(action), Some(tx), "tx_id of {action}");
    }
    let reversed: HashSet<Uuid> =
        sqlx::query_scalar("SELECT action_id FROM actions WHERE reversed_by IS NOT NULL")
            .fetch_all(db)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(reversed, workload.reversed(), "originals marked reversed");
    let placeholders: i64 =
        sqlx::query_scalar("SELECT count(*) FROM actions WHERE tx_id IS NULL").fetch_one(db).await.unwrap();
    assert_eq!(placeholders, 0, "every late original arrived");
}

/// `wallet reconcile` on the database passes.
fn assert_reconciles(database_url: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_wallet"))
        .args(["reconcile", "--database-url", database_url])
        .env("RUST_LOG", "warn")
        .output()
        .expect("wallet reconcile runs");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    assert!(output.status.success(), "reconciliation failed:\n{report}");
    assert!(report.contains("reconciliation clean"), "{report}");
}

async fn ready_status(client: &reqwest::Client, server: &Server) -> String {
    match client.get(server.url("/health/ready")).send().await {
        Ok(response) => response.status().as_u16().to_string(),
        Err(_) => "transport error".into(),
    }
}

// ---------------------------------------------------------------------------
// The scenarios.

/// What a fault scenario does once the load is a third of the way through.
enum Fault {
    KillServer,
    RestartPostgres,
    TerminateBackends,
    TerminateServer,
}

async fn run_scenario(fault: Fault, seed: u64) {
    let cluster = Arc::new(PrivatePostgres::init());
    let database_url = cluster.url(DATABASE);
    let workload = Arc::new(Workload::generate(seed));
    let total: usize = workload.requests.iter().map(Vec::len).sum();
    let mut server = Server::spawn(&database_url);
    let base = format!("http://{}", server.addr);
    open_accounts(&base, &workload).await;
    let db = connect(&database_url).await;

    let done = Arc::new(AtomicUsize::new(0));
    let running = tokio::spawn(load(base.clone(), workload.clone(), done.clone()));
    wait_for(&done, total / 3, Duration::from_secs(120)).await;
    let probe = client();

    let observed = match fault {
        Fault::KillServer => {
            server.signal("KILL");
            server.wait_for_exit(Duration::from_secs(10));
            let observed = running.await.unwrap();
            println!("load around kill -9: {:?}", observed.statuses);
            assert_eq!(observed.statuses_other_than(&["200", "transport error"]), Vec::<String>::new());
            observed
        }
        Fault::RestartPostgres => {
            let stopped_at = done.load(Ordering::SeqCst);
            let crashing = cluster.clone();
            tokio::task::spawn_blocking(move || crashing.stop("immediate")).await.unwrap();
            // The outage lasts until a couple of dozen requests were refused.
            wait_for(&done, (stopped_at + 24).min(total), Duration::from_secs(60)).await;
            let ready_during_outage = ready_status(&probe, &server).await;
            let restarting = cluster.clone();
            tokio::task::spawn_blocking(move || restarting.start()).await.unwrap();
            let observed = running.await.unwrap();
            println!("load around the Postgres restart: {:?}", observed.statuses);
            assert_eq!(ready_during_outage, "503", "/health/ready during the outage");
            assert!(observed.statuses.get("503").copied().unwrap_or(0) > 0, "no 503 during the outage");
            assert_eq!(observed.statuses_other_than(&["200", "503"]), Vec::<String>::new());
            assert!(server.is_running(), "the service died with its database");
            observed
        }
        Fault::TerminateBackends => {
            let admin = connect(&cluster.url("postgres")).await;
            let mut terminated = 0i64;
            for _ in 0..5 {
                terminated += sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
                     FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                )
                .bind(DATABASE)
                .fetch_one(&admin)
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            let observed = running.await.unwrap();
            println!("load around {terminated} terminated backends: {:?}", observed.statuses);
            assert!(terminated > 0, "no backend was terminated");
            assert_eq!(observed.statuses_other_than(&["200", "503"]), Vec::<String>::new());
            assert!(server.is_running());
            observed
        }
        Fault::TerminateServer => {
            server.signal("TERM");
            let status = server.wait_for_exit(Duration::from_secs(30));
            let observed = running.await.unwrap();
            println!("load around SIGTERM: {:?}, exit {status}", observed.statuses);
            assert!(status.success(), "graceful shutdown exits 0, got {status}");
            assert!(
                server.log_text().contains("requests in flight finished"),
                "the server did not report a graceful stop"
            );
            assert_eq!(observed.statuses_other_than(&["200", "transport error"]), Vec::<String>::new());
            observed
        }
    };
    let mut observed = observed;
    assert!(observed.statuses.get("200").copied().unwrap_or(0) > 0);

    // Recovery: a fresh process where the old one is gone; the same one otherwise.
    if !server.is_running() {
        drop(server);
        server = Server::spawn(&database_url);
    }
    let base = format!("http://{}", server.addr);
    assert_answers_durable(&db, &observed).await;
    replay(&base, &workload, &mut observed).await;
    assert_state_exact(&db, &workload, &observed).await;
    db.close().await;
    drop(server);
    assert_reconciles(&database_url);
}

async fn bounded(fault: Fault, seed: u64) {
    tokio::time::timeout(TEST_DEADLINE, run_scenario(fault, seed))
        .await
        .expect("the fault test finished within its deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stops and starts processes; run with scripts/fault-tests"]
async fn kill_9_mid_load_then_replay_applies_every_action_exactly_once() {
    bounded(Fault::KillServer, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stops and starts processes; run with scripts/fault-tests"]
async fn postgres_restart_mid_load_answers_503_and_recovers_without_a_service_restart() {
    bounded(Fault::RestartPostgres, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stops and starts processes; run with scripts/fault-tests"]
async fn terminated_pool_connections_under_load_recover() {
    bounded(Fault::TerminateBackends, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stops and starts processes; run with scripts/fault-tests"]
async fn sigterm_under_load_keeps_every_request_answered_200() {
    bounded(Fault::TerminateServer, 4).await;
}

// ---------------------------------------------------------------------------
// kill -9 in the middle of a player's event stream.

/// One Server-Sent Event as the stream sent it.
#[derive(Debug, Clone, PartialEq)]
struct Streamed {
    id: i64,
    kind: String,
    data: Value,
}

/// Reads `GET /v1/me/events` (after `last`, if any) into `into` until the
/// stream ends, as it does when the service dies.
async fn follow_events(base: String, token: String, last: Option<i64>, into: Arc<Mutex<Vec<Streamed>>>) {
    let mut request = reqwest::Client::new()
        .get(format!("{base}/v1/me/events"))
        .bearer_auth(&token)
        .header("x-operator", "default");
    if let Some(last) = last {
        request = request.header("last-event-id", last.to_string());
    }
    let Ok(mut response) = request.send().await else { return };
    assert_eq!(response.status(), 200, "the stream opens");
    let mut pending = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find("\n\n") {
            let message: String = pending.drain(..end + 2).collect();
            let (mut id, mut kind, mut data) = (None, String::new(), Value::Null);
            for line in message.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    kind = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).unwrap_or(Value::Null);
                }
            }
            if let Some(id) = id {
                into.lock().unwrap().push(Streamed { id, kind, data });
            }
        }
    }
}

/// A registered player of `default` with cash: its user_id and a session token.
async fn streaming_player(base: &str) -> (String, String) {
    let client = client();
    let registration = json!({"email": "ann@example.com", "password": "correct horse battery",
                              "currency": "EUR", "country": "GB", "date_of_birth": "1990-05-17"});
    let as_player = |path: &str, body: Value| {
        let request = client.post(format!("{base}{path}")).header("x-operator", "default").json(&body);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let registered = as_player("/v1/auth/register", registration).await;
    let user_id = registered["user_id"].as_str().expect("registered").to_owned();
    let login =
        as_player("/v1/auth/login", json!({"email": "ann@example.com", "password": "correct horse battery"}))
            .await;
    let token = login["token"].as_str().expect("a session").to_owned();
    let deposit = client
        .post(format!("{base}/v1/players/{user_id}/deposits"))
        .bearer_auth(ADMIN_TOKEN)
        .header("idempotency-key", "stream-opening")
        .json(&json!({"amount": STARTING_BALANCE}))
        .send()
        .await
        .unwrap();
    assert!(deposit.status().is_success(), "{}", deposit.status());
    (user_id, token)
}

async fn stream_scenario() {
    const BETS: usize = 300;
    let cluster = PrivatePostgres::init();
    let database_url = cluster.url(DATABASE);
    let mut server = Server::spawn(&database_url);
    let base = format!("http://{}", server.addr);
    let (user_id, token) = streaming_player(&base).await;
    let db = connect(&database_url).await;

    let received = Arc::new(Mutex::new(Vec::new()));
    // From the start of the log: the opening deposit's event included.
    let stream = tokio::spawn(follow_events(base.clone(), token.clone(), Some(0), received.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Bets one after another; kill -9 once a third have been answered.
    let bets: Vec<ProviderRequest> = (0..BETS)
        .map(|n| {
            let body = json!({"user_id": user_id, "currency": "EUR", "game": "faults:stream",
                              "game_id": format!("s-{n}"),
                              "actions": [{"action": "bet", "action_id": Uuid::new_v4(), "amount": 1}]});
            ProviderRequest { body: body.to_string() }
        })
        .collect();
    let client = client();
    let mut answered = 0;
    for bet in &bets {
        let (status, _) = send(&client, &base, bet).await;
        if status == "200" {
            answered += 1;
        }
        if answered == BETS / 3 {
            server.signal("KILL");
            server.wait_for_exit(Duration::from_secs(10));
            break;
        }
    }
    tokio::time::timeout(Duration::from_secs(10), stream)
        .await
        .expect("the stream ends with the process")
        .unwrap();
    let before_kill = received.lock().unwrap().clone();
    println!("{} events received before kill -9", before_kill.len());

    // A fresh process; the client resumes from the last id it received,
    // while the rest of the bets land.
    drop(server);
    let server = Server::spawn(&database_url);
    let base = format!("http://{}", server.addr);
    let last = before_kill.last().map(|e| e.id);
    let resumed = Arc::new(Mutex::new(Vec::new()));
    let stream = tokio::spawn(follow_events(base.clone(), token.clone(), last, resumed.clone()));
    for bet in &bets {
        let (status, _) = send(&client, &base, bet).await;
        assert_eq!(status, "200", "after the restart every bet (or its replay) is answered");
    }
    let committed: Vec<i64> = sqlx::query_scalar(
        "SELECT e.id FROM player_event_log e JOIN players p ON p.id = e.player_id
         WHERE p.user_id = $1 ORDER BY e.id",
    )
    .bind(&user_id)
    .fetch_all(&db)
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = before_kill.len() + resumed.lock().unwrap().len();
        if got >= committed.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stream.abort();
    let mut every: Vec<Streamed> = before_kill;
    every.extend(resumed.lock().unwrap().iter().cloned());
    let ids: Vec<i64> = every.iter().map(|e| e.id).collect();
    assert_eq!(ids, committed, "every committed event exactly once, in order, across the kill");
    let balances = every.iter().filter(|e| e.kind == "balance").count();
    assert_eq!(balances, BETS + 1, "a balance event per bet and one for the opening deposit");
    let last_cash = every.iter().rev().find(|e| e.kind == "balance").map(|e| e.data["cash"].clone());
    assert_eq!(last_cash, Some(json!(STARTING_BALANCE - BETS as i64)));
    db.close().await;
    drop(server);
    assert_reconciles(&database_url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stops and starts processes; run with scripts/fault-tests"]
async fn kill_9_mid_stream_then_resume_by_last_event_id_loses_no_event() {
    tokio::time::timeout(TEST_DEADLINE, stream_scenario())
        .await
        .expect("the fault test finished within its deadline");
}
