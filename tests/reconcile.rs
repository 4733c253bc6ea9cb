//! Reconciliation finds what it claims to find: a clean ledger passes, and
//! each kind of corruption is named by the check that owns it; over HTTP it
//! runs as a background job, one at a time, whose report is fetched later.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;
use wallet::ops::reconcile::{reconcile, runs, Report};

const RUNS: &str = "/v1/admin/reconciliation";

/// One player with a deposit, bets, a win, a rollback, a repeated rollback,
/// and a pre-rollback whose original arrives later.
async fn seed(pool: &PgPool) -> TestServer {
    let server = TestServer::start(pool.clone()).await;
    let (status, _) =
        server.admin_post("/v1/players", &json!({"user_id": "rec-1", "currency": "EUR"}), None).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) =
        server.admin_post("/v1/players/rec-1/deposits", &json!({"amount": 10000}), Some("opening")).await;
    assert_eq!(status, StatusCode::CREATED);

    let (first_bet, first_win, late) = (id(), id(), id());
    let round = |game_id: &str, actions: Value| json!({"user_id": "rec-1", "currency": "EUR", "game": "slots", "game_id": game_id, "actions": actions});
    for body in [
        round("r1", json!([bet(first_bet, 300), win(first_win, 500)])),
        round(
            "r2",
            json!([
                bet(id(), 200),
                rollback(id(), first_bet),
                rollback(id(), first_bet),
                rollback(id(), late)
            ]),
        ),
        round("r3", json!([bet(late, 700)])),
    ] {
        let (status, answer) = server.process(&body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    server
}

fn failing(report: &Report) -> Vec<&str> {
    report.checks.iter().filter(|c| c.mismatches > 0).map(|c| c.name.as_str()).collect()
}

/// Runs one statement that damages the database on purpose.
async fn corrupt(pool: &PgPool, sql: &str) {
    sqlx::query(sql).execute(pool).await.unwrap();
}

async fn failing_now(pool: &PgPool) -> Vec<String> {
    failing(&reconcile(pool).await.unwrap()).into_iter().map(String::from).collect()
}

/// Starts a run over HTTP and answers its id, asserting the 202.
async fn start_run(server: &TestServer) -> i64 {
    let (status, run) = server.admin_post(RUNS, &json!({}), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    assert_eq!(run["status"], "running", "{run}");
    run["run_id"].as_i64().unwrap()
}

/// Polls the run until it is no longer running, for at most 30 seconds, then
/// until its session has let go of the reconciliation lock.
async fn finished_run(server: &TestServer, run_id: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let run = loop {
        let (status, run) = server.admin_get(&format!("{RUNS}/{run_id}")).await;
        assert_eq!(status, StatusCode::OK, "{run}");
        if run["status"] != "running" {
            break run;
        }
        assert!(Instant::now() < deadline, "run {run_id} still running after 30 s: {run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    while advisory_locks(&server.pool).await > 0 {
        assert!(Instant::now() < deadline, "run {run_id} finished but its session holds the lock: {run}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    run
}

async fn advisory_locks(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

fn failing_in(run: &Value) -> Vec<&str> {
    let checks = run["report"]["checks"].as_array().unwrap();
    checks.iter().filter(|c| c["mismatches"] != 0).map(|c| c["name"].as_str().unwrap()).collect()
}

#[sqlx::test]
async fn a_clean_ledger_reconciles_and_a_run_started_over_http_says_so(pool: PgPool) {
    let server = seed(&pool).await;
    let report = reconcile(&pool).await.unwrap();
    assert!(report.ok, "{:?}", failing(&report));
    assert_eq!((report.players, report.ledger_rows), (1, 8));
    assert_eq!(report.total_balance, 10000 - 200 + 500);

    let run_id = start_run(&server).await;
    let run = finished_run(&server, run_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["report"]["ok"], true, "{run}");
    assert_eq!(run["report"]["total_balance"], 10000 - 200 + 500);
    assert_eq!(run["report"]["checks"].as_array().unwrap().len(), report.checks.len());
    assert!(run["finished_at"].as_str().unwrap() >= run["started_at"].as_str().unwrap(), "{run}");
    assert_eq!(run["error"], Value::Null);
    let (status, latest) = server.admin_get(RUNS).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(latest, run);

    for request in [server.client.get(server.url(RUNS)), server.client.post(server.url(RUNS))] {
        assert_eq!(request.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
}

#[sqlx::test]
async fn a_corrupted_database_is_reported_by_a_run_over_http(pool: PgPool) {
    let server = seed(&pool).await;
    corrupt(&pool, "UPDATE players SET balance = balance + 1").await;
    let run = finished_run(&server, start_run(&server).await).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["report"]["ok"], false, "{run}");
    assert_eq!(failing_in(&run), ["balance_equals_ledger_sum", "chain_ends_at_the_balance"]);
    let examples = &run["report"]["checks"][0]["examples"];
    assert_eq!(examples[0], format!("player 1 (rec-1): balance 10301, ledger movements sum to 10300"));
}

#[sqlx::test]
async fn a_start_while_a_run_is_going_answers_that_run_on_every_instance(pool: PgPool) {
    let server = seed(&pool).await;
    let other_instance = TestServer::start(pool.clone()).await;
    // Holds the run at its first read of the players.
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE players IN ACCESS EXCLUSIVE MODE").execute(&mut *blocker).await.unwrap();

    let run_id = start_run(&server).await;
    assert_eq!(start_run(&server).await, run_id);
    assert_eq!(start_run(&other_instance).await, run_id);
    let (status, run) = other_instance.admin_get(&format!("{RUNS}/{run_id}")).await;
    assert_eq!((status, &run["status"]), (StatusCode::OK, &json!("running")), "{run}");
    let running: i64 =
        sqlx::query_scalar("SELECT count(*) FROM reconciliation_runs").fetch_one(&pool).await.unwrap();
    assert_eq!(running, 1);

    blocker.rollback().await.unwrap();
    let run = finished_run(&server, run_id).await;
    assert_eq!((&run["status"], &run["report"]["ok"]), (&json!("succeeded"), &json!(true)), "{run}");
    // Once it is over, the next start is a new run.
    let next = start_run(&other_instance).await;
    assert!(next > run_id);
    assert_eq!(finished_run(&other_instance, next).await["status"], "succeeded");
}

#[sqlx::test]
async fn a_run_whose_instance_stopped_reads_as_failed_and_does_not_block_the_next(pool: PgPool) {
    let server = seed(&pool).await;
    // What a run leaves behind when its instance dies: its row, and no lock.
    let orphan: i64 = sqlx::query_scalar("INSERT INTO reconciliation_runs DEFAULT VALUES RETURNING id")
        .fetch_one(&pool)
        .await
        .unwrap();
    let (status, run) = server.admin_get(RUNS).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((&run["run_id"], &run["status"]), (&json!(orphan), &json!("failed")), "{run}");
    assert_eq!(run["error"], runs::ABANDONED);

    let next = start_run(&server).await;
    assert_ne!(next, orphan);
    assert_eq!(finished_run(&server, next).await["status"], "succeeded");
    let (status, error): (String, Option<String>) =
        sqlx::query_as("SELECT status, error FROM reconciliation_runs WHERE id = $1")
            .bind(orphan)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), error.as_deref()), ("failed", Some(runs::ABANDONED)));
}

#[sqlx::test]
async fn unknown_runs_are_404(pool: PgPool) {
    let server = TestServer::start(pool).await;
    let (status, body) = server.admin_get(RUNS).await;
    assert_error(status, &body, 404, 404);
    let run_id = start_run(&server).await;
    finished_run(&server, run_id).await;
    for path in [format!("{RUNS}/{}", run_id + 1), format!("{RUNS}/latest"), format!("{RUNS}/-1")] {
        let (status, body) = server.admin_get(&path).await;
        assert_error(status, &body, 404, 404);
        assert_eq!(body["message"], "no such reconciliation run");
    }
}

#[sqlx::test]
async fn balances_totalling_more_than_an_int8_reconcile_exactly(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    // Two players funded to the largest balance there is, with their deposit
    // rows and idempotency keys as the back office writes them.
    for user_id in ["whale-1", "whale-2"] {
        sqlx::query(
            "WITH p AS (INSERT INTO players (operator_id, user_id, currency, balance, last_seq)
                        VALUES (1, $1, 'EUR', $2, 1) RETURNING id),
                  k AS (INSERT INTO idempotency_keys (player_id, idempotency_key, request_fingerprint,
                                                      tx_id, balance_after)
                        SELECT id, 'opening', 'deposit:' || $2, $3, $2 FROM p)
             INSERT INTO ledger (player_id, seq, created_at, tx_id, kind, amount, balance_before,
                                 balance_after)
             SELECT id, 1, now(), $3, 'deposit', $2, 0, $2 FROM p",
        )
        .bind(user_id)
        .bind(i64::MAX)
        .bind(id())
        .execute(&pool)
        .await
        .unwrap();
    }
    let report = reconcile(&pool).await.unwrap();
    assert!(report.ok, "{:?}", failing(&report));
    assert_eq!(report.total_balance, 2 * i128::from(i64::MAX));

    // Stored as JSONB and answered as a plain, exact JSON number.
    let run_id = start_run(&server).await;
    assert_eq!(finished_run(&server, run_id).await["status"], "succeeded");
    let url = server.url(&format!("{RUNS}/{run_id}"));
    let text = server.client.get(url).bearer_auth(ADMIN_TOKEN).send().await.unwrap().text().await.unwrap();
    assert!(text.contains(r#""total_balance":18446744073709551614,"#), "{text}");
}

#[sqlx::test]
async fn reconcile_refuses_a_database_that_does_not_exist_and_creates_none(pool: PgPool) {
    let options = pool.connect_options();
    let name = format!("wallet_missing_{}", Uuid::new_v4().simple());
    let url =
        format!("postgres://{}@{}:{}/{name}", options.get_username(), options.get_host(), options.get_port());
    let error = wallet::ops::reconcile::run(&url, false).await.unwrap_err();
    assert_eq!(error.to_string(), format!("database \"{name}\" does not exist; check DATABASE_URL"));
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!exists);
}

#[sqlx::test]
async fn a_balance_that_drifted_from_the_ledger_is_named(pool: PgPool) {
    let _server = seed(&pool).await;
    corrupt(&pool, "UPDATE players SET balance = balance + 1").await;
    let report = reconcile(&pool).await.unwrap();
    assert!(!report.ok);
    assert_eq!(failing(&report), ["balance_equals_ledger_sum", "chain_ends_at_the_balance"]);
}

#[sqlx::test]
async fn a_lost_ledger_row_breaks_the_chain_and_the_registry(pool: PgPool) {
    let _server = seed(&pool).await;
    corrupt(&pool, "DELETE FROM ledger WHERE seq = 3").await;
    let failed = failing_now(&pool).await;
    for check in [
        "balance_equals_ledger_sum",
        "balance_chain_is_unbroken",
        "chain_ends_at_the_balance",
        "processed_actions_match_their_ledger_row",
    ] {
        assert!(failed.iter().any(|f| f == check), "{check} not in {failed:?}");
    }
}

#[sqlx::test]
async fn an_action_applied_twice_is_named(pool: PgPool) {
    let _server = seed(&pool).await;
    // A second effect of the first bet, chained correctly onto the balance:
    // only the exactly-once checks can see it.
    corrupt(
        &pool,
        "WITH first AS (SELECT * FROM ledger WHERE kind = 'bet' ORDER BY seq LIMIT 1),
              p AS (UPDATE players SET balance = balance - (SELECT amount FROM first),
                                       last_seq = last_seq + 1
                    RETURNING id, balance, last_seq)
         INSERT INTO ledger (player_id, seq, created_at, tx_id, kind, amount, balance_before,
                             balance_after, action_id, game, game_id)
         SELECT p.id, p.last_seq, f.created_at, gen_random_uuid(), 'bet', f.amount,
                p.balance + f.amount, p.balance, f.action_id, f.game, f.game_id
         FROM p, first f",
    )
    .await;
    let report = reconcile(&pool).await.unwrap();
    let failed = failing(&report);
    assert!(failed.contains(&"action_took_effect_once"), "{failed:?}");
    assert!(failed.contains(&"ledger_actions_are_registered"), "{failed:?}");
    assert!(!failed.contains(&"balance_chain_is_unbroken"), "{failed:?}");
    // Reversed once, taken twice: the bet and its rollback no longer net to zero.
    let net = report.checks.iter().find(|c| c.name == "net_effect_of_each_bet_and_win").unwrap();
    assert_eq!(net.examples.len(), 1, "{net:?}");
    let expected = "of 300 (reversed): moved -600 in 2 ledger rows, its rollbacks moved 300";
    assert!(net.examples[0].ends_with(expected), "{net:?}");
}

#[sqlx::test]
async fn rollups_that_disagree_with_the_actions_are_named(pool: PgPool) {
    let _server = seed(&pool).await;
    corrupt(&pool, "UPDATE rtp_hourly SET total_bet = total_bet + 5").await;
    corrupt(&pool, "DELETE FROM round_buckets").await;
    assert_eq!(
        failing_now(&pool).await,
        ["rtp_rollups_match_the_actions", "round_buckets_match_the_live_bets"]
    );
}

#[sqlx::test]
async fn rollups_filed_under_another_operator_are_named(pool: PgPool) {
    let _server = seed(&pool).await;
    corrupt(&pool, r#"INSERT INTO operators (id, code, config) VALUES (2, 'other', '{"name": "Other", "currencies": ["USD"]}')"#).await;
    corrupt(&pool, "UPDATE rtp_hourly SET operator_id = 2").await;
    assert_eq!(failing_now(&pool).await, ["rtp_rollups_match_the_actions"]);
}

#[sqlx::test]
async fn a_reversal_the_registry_forgot_is_named(pool: PgPool) {
    let _server = seed(&pool).await;
    corrupt(
        &pool,
        "UPDATE actions SET reversed_by = NULL
         WHERE reversed_by IS NOT NULL AND tx_id IS NOT NULL AND kind = 'bet' AND amount = 300",
    )
    .await;
    let report = reconcile(&pool).await.unwrap();
    let failed = failing(&report);
    assert!(failed.contains(&"net_effect_of_each_bet_and_win"), "{failed:?}");
    assert!(failed.contains(&"rtp_rollups_match_the_actions"), "{failed:?}");
    let net = report.checks.iter().find(|c| c.name == "net_effect_of_each_bet_and_win").unwrap();
    assert!(net.examples[0].ends_with("of 300 (live): moved -300, its rollbacks moved 300"), "{net:?}");
}

#[sqlx::test]
async fn a_win_that_moved_another_amount_than_registered_is_named(pool: PgPool) {
    let _server = seed(&pool).await;
    corrupt(&pool, "UPDATE actions SET amount = 400 WHERE kind = 'win'").await;
    let report = reconcile(&pool).await.unwrap();
    let failed = failing(&report);
    for check in [
        "processed_actions_match_their_ledger_row",
        "net_effect_of_each_bet_and_win",
        "rtp_rollups_match_the_actions",
    ] {
        assert!(failed.contains(&check), "{check} not in {failed:?}");
    }
    let net = report.checks.iter().find(|c| c.name == "net_effect_of_each_bet_and_win").unwrap();
    assert!(net.examples[0].ends_with("of 400 (live): moved 500, its rollbacks moved 0"), "{net:?}");
}

#[sqlx::test]
async fn a_reversed_bet_whose_rollback_paid_nothing_back_is_named(pool: PgPool) {
    let _server = seed(&pool).await;
    corrupt(&pool, "ALTER TABLE ledger DROP CONSTRAINT ledger_movement_check").await;
    corrupt(
        &pool,
        "UPDATE ledger SET balance_after = balance_before
         WHERE kind = 'rollback' AND amount = 300",
    )
    .await;
    let report = reconcile(&pool).await.unwrap();
    let failed = failing(&report);
    assert!(failed.contains(&"net_effect_of_each_bet_and_win"), "{failed:?}");
    let net = report.checks.iter().find(|c| c.name == "net_effect_of_each_bet_and_win").unwrap();
    assert_eq!(net.examples.len(), 1, "{net:?}");
    assert!(net.examples[0].ends_with("of 300 (reversed): moved -300, its rollbacks moved 0"), "{net:?}");
}

#[sqlx::test]
async fn ledger_rows_of_an_unknown_player_are_named(pool: PgPool) {
    let _server = seed(&pool).await;
    corrupt(
        &pool,
        "INSERT INTO ledger (player_id, seq, created_at, tx_id, kind, amount, balance_before, balance_after)
         VALUES (424242, 1, now(), gen_random_uuid(), 'deposit', 5, 0, 5)",
    )
    .await;
    let report = reconcile(&pool).await.unwrap();
    assert_eq!(failing(&report), ["ledger_rows_have_a_player", "back_office_movements_match_their_keys"]);
    assert_eq!(report.checks[1].examples, ["1 ledger rows for unknown player 424242"]);
}

#[sqlx::test]
async fn a_tx_id_on_two_ledger_rows_is_named(pool: PgPool) {
    let _server = seed(&pool).await;
    corrupt(&pool, "UPDATE ledger SET tx_id = (SELECT tx_id FROM ledger WHERE seq = 2) WHERE seq = 3").await;
    let failed = failing_now(&pool).await;
    assert!(failed.iter().any(|f| f == "tx_id_is_unique"), "{failed:?}");
}

#[sqlx::test]
async fn an_original_reversed_twice_is_named(pool: PgPool) {
    let _server = seed(&pool).await;
    // The repeated rollback claims to have reversed the bet's amount as well.
    corrupt(&pool, "ALTER TABLE ledger DROP CONSTRAINT ledger_movement_check").await;
    corrupt(
        &pool,
        "UPDATE ledger SET amount = 300
         WHERE kind = 'rollback' AND amount = 0 AND balance_after = balance_before
           AND original_action_id = (SELECT action_id FROM actions WHERE kind = 'bet' AND amount = 300)",
    )
    .await;
    assert_eq!(failing_now(&pool).await, ["original_reversed_at_most_once"]);
}

#[sqlx::test]
async fn a_rollback_of_another_players_action_is_named(pool: PgPool) {
    let _server = seed(&pool).await;
    player_with_balance(&pool, "rec-2", "EUR", 0).await;
    corrupt(
        &pool,
        "UPDATE actions SET player_id = (SELECT id FROM players WHERE user_id = 'rec-2')
         WHERE kind = 'bet' AND amount = 300",
    )
    .await;
    let failed = failing_now(&pool).await;
    for check in ["rollbacks_name_a_known_original", "reversals_point_at_their_rollback"] {
        assert!(failed.iter().any(|f| f == check), "{check} not in {failed:?}");
    }
}

#[sqlx::test]
async fn a_reversal_that_names_no_rollback_is_named(pool: PgPool) {
    let _server = seed(&pool).await;
    corrupt(
        &pool,
        "UPDATE actions SET reversed_by = (SELECT action_id FROM actions WHERE kind = 'win')
         WHERE kind = 'bet' AND amount = 300",
    )
    .await;
    assert_eq!(failing_now(&pool).await, ["reversals_point_at_their_rollback"]);
}

#[sqlx::test]
async fn a_deposit_whose_key_stores_another_balance_is_named(pool: PgPool) {
    let _server = seed(&pool).await;
    corrupt(&pool, "UPDATE idempotency_keys SET balance_after = balance_after + 1").await;
    assert_eq!(failing_now(&pool).await, ["back_office_movements_match_their_keys"]);
}

#[sqlx::test]
async fn a_daily_summary_that_disagrees_with_the_rollups_is_named(pool: PgPool) {
    let _server = seed(&pool).await;
    // Two days pass; the summariser seals the day the play happened on.
    for sql in [
        "UPDATE ledger SET created_at = created_at - interval '2 days'",
        "UPDATE actions SET processed_at = processed_at - interval '2 days' WHERE processed_at IS NOT NULL",
        "UPDATE rtp_hourly SET bucket = bucket - interval '2 days'",
        "UPDATE round_buckets SET bucket = bucket - interval '2 days'",
    ] {
        corrupt(&pool, sql).await;
    }
    let sealed = wallet::reports::summary::summarize(&pool).await.unwrap();
    assert!(sealed.days_sealed >= 1, "{sealed:?}");
    let report = reconcile(&pool).await.unwrap();
    assert!(report.ok, "{:?}", failing(&report));

    corrupt(&pool, "UPDATE rtp_daily SET total_win = total_win + 1").await;
    corrupt(&pool, "DELETE FROM rtp_daily_players").await;
    assert_eq!(
        failing_now(&pool).await,
        ["daily_summary_matches_the_rollups", "daily_players_match_the_rollups"]
    );
}
