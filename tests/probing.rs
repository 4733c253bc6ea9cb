//! Defects found by probing the service as an attacker and a first-time user
//! would, each pinned by a test against a real server and a real database:
//! no input panics a handler, drops a connection or answers 500; every
//! rejection leaves the database exactly as it was.

mod common;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wallet::config::ConnectionLimits;
use wallet::domain::{DEFAULT_OPERATOR, MAX_AMOUNT};
use wallet::error::AppError;
use wallet::ledger::{process_batch, Action};

const REPORTS: [&str; 3] = ["users", "casino", "games"];

#[sqlx::test]
async fn report_windows_anywhere_in_years_0000_to_9999_are_answered(pool: PgPool) {
    let server = TestServer::start(pool).await;
    for (from, to) in [
        ("2026-11-27T00:00:00Z", "2262-04-12T00:00:00Z"),
        ("0000-01-01T00:00:00Z", "2026-11-27T00:00:00Z"),
        ("0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z"),
        ("1600-02-29T12:34:56.789Z", "1700-01-01T00:00:00%2B14:00"),
    ] {
        for report in REPORTS {
            let (status, body) =
                server.admin_get(&format!("/v1/reports/rtp/{report}?from={from}&to={to}")).await;
            assert_eq!(status, StatusCode::OK, "{report} [{from}, {to}): {body}");
        }
    }
    for (query, field) in [
        ("from=+10000-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("from=2026-01-01T00:00:00Z&to=-0001-01-01T00:00:00Z", "to"),
    ] {
        let (status, body) = server.admin_get(&format!("/v1/reports/rtp/casino?{query}")).await;
        assert_error(status, &body, 400, 400);
        assert!(body["message"].as_str().unwrap().starts_with(field), "{body}");
    }
}

/// Sends raw bytes on a fresh connection and returns what came back.
async fn raw_exchange(server: &TestServer, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[sqlx::test]
async fn an_invented_method_adds_no_metric_series(pool: PgPool) {
    let server = TestServer::start(pool).await;
    let metrics =
        || async { server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap() };
    let invented = "X".repeat(60_000);
    let request = format!("{invented} /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let answer = raw_exchange(&server, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{}", &answer[..answer.len().min(200)]);
    let before = metrics().await.len();
    for _ in 0..3 {
        let other =
            format!("{}Y /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "Z".repeat(1000));
        raw_exchange(&server, other.as_bytes()).await;
    }
    let page = metrics().await;
    assert!(!page.contains("XXXXXXXX") && !page.contains("ZZZZZZZZ"), "a method became a label value");
    assert!(page.contains(r#"method="other""#), "{page}");
    assert!(page.len() < before + 2_000, "/metrics grew from {before} to {} bytes", page.len());
}

/// Whether the server closed `stream` within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // a response; keep reading until it closes
        }
    }
}

#[sqlx::test]
async fn idle_and_half_sent_connections_are_closed_at_the_deadline(pool: PgPool) {
    let limits = ConnectionLimits { idle_timeout: Duration::from_secs(1), max_connections: 100 };
    let server = TestServer::start_with(pool, limits).await;

    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /health/li").await.unwrap();
    let mut idle_after_a_request = TcpStream::connect(server.addr).await.unwrap();
    idle_after_a_request.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut trickle = TcpStream::connect(server.addr).await.unwrap();
    let trickler = tokio::spawn(async move {
        // One byte of a header every 300 ms: never complete, never silent.
        for byte in b"GET /health/live HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if trickle.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        false
    });

    for (name, stream) in [
        ("silent", &mut silent),
        ("half a request line", &mut half),
        ("idle keep-alive", &mut idle_after_a_request),
    ] {
        assert!(
            closed_within(stream, Duration::from_secs(4)).await,
            "{name} connection still open after 4 s"
        );
    }
    assert!(trickler.await.unwrap(), "a connection trickling its headers was never closed");
}

#[sqlx::test]
async fn connections_beyond_the_cap_wait_until_one_closes(pool: PgPool) {
    let limits = ConnectionLimits { idle_timeout: Duration::from_secs(30), max_connections: 2 };
    let server = TestServer::start_with(pool, limits).await;
    let first = TcpStream::connect(server.addr).await.unwrap();
    let _second = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let waited = tokio::time::timeout(Duration::from_millis(700), third.read_to_end(&mut answer)).await;
    assert!(waited.is_err() && answer.is_empty(), "a third connection was served past a cap of two");

    drop(first);
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"), "served once a slot freed");
}

#[sqlx::test]
async fn a_nul_in_any_text_field_is_a_400_that_changes_nothing(pool: PgPool) {
    player_with_balance(&pool, "nul", "USD", 1000).await;
    let server = TestServer::start(pool.clone()).await;
    let before = snapshot(&pool).await;

    for body in [
        json!({"user_id": "nu\u{0}l", "currency": "USD", "actions": [bet(id(), 1)]}),
        json!({"user_id": "nul", "currency": "USD", "game": "g\u{0}", "actions": [bet(id(), 1)]}),
        json!({"user_id": "nul", "currency": "USD", "game_id": "\u{0}", "actions": [bet(id(), 1)]}),
        json!({"user_id": "nu\u{0}l", "currency": "USD"}),
    ] {
        let (status, answer) = server.process(&body).await;
        assert_error(status, &answer, 400, 400);
    }
    let (status, answer) =
        server.admin_post("/v1/players", &json!({"user_id": "a\u{0}", "currency": "USD"}), None).await;
    assert_error(status, &answer, 400, 400);
    let (status, answer) =
        server.admin_post("/v1/players/nu%00l/deposits", &json!({"amount": 5}), Some("k")).await;
    assert_error(status, &answer, 400, 400);
    for path in [
        "/v1/players/nu%00l".to_string(),
        "/v1/players/nu%00l/transactions".to_string(),
        "/v1/reports/rtp/users?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z&user_id=nu%00l".to_string(),
    ] {
        let (status, answer) = server.admin_get(&path).await;
        assert_error(status, &answer, 400, 400);
    }
    for report in ["users", "games"] {
        let cursor =
            URL_SAFE_NO_PAD.encode(json!({"report": report, "key": "a\u{0}", "currency": "USD"}).to_string());
        let (status, answer) = server
            .admin_get(&format!(
                "/v1/reports/rtp/{report}?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z&cursor={cursor}"
            ))
            .await;
        assert_error(status, &answer, 400, 400);
    }
    assert_eq!(snapshot(&pool).await, before, "a refused request changed the database");
}

#[sqlx::test]
async fn the_same_action_ids_sent_for_two_players_in_opposite_orders_never_deadlock(pool: PgPool) {
    // Four pairs of players at once, each pair sending the same 100 new ids
    // in opposite orders, thirty times: without a stable insert order most
    // runs meet a deadlock somewhere.
    const PAIRS: usize = 4;
    for pair in 0..PAIRS {
        player_with_balance(&pool, &format!("left-{pair}"), "USD", 1_000_000).await;
        player_with_balance(&pool, &format!("right-{pair}"), "USD", 1_000_000).await;
    }
    let amount = wallet::domain::Amount::try_from(1).unwrap();
    for trial in 0..30 {
        let contests = (0..PAIRS).map(|pair| {
            let pool = pool.clone();
            async move {
                let ids: Vec<_> = (0..100).map(|_| id()).collect();
                let forward = ledger_batch(
                    &format!("left-{pair}"),
                    ids.iter().map(|&id| Action::Bet { id, amount }).collect(),
                );
                let backward = ledger_batch(
                    &format!("right-{pair}"),
                    ids.iter().rev().map(|&id| Action::Bet { id, amount }).collect(),
                );
                tokio::join!(
                    process_batch(&pool, DEFAULT_OPERATOR, &forward),
                    process_batch(&pool, DEFAULT_OPERATOR, &backward)
                )
            }
        });
        for (a, b) in futures::future::join_all(contests).await {
            let statuses = [&a, &b].map(|outcome| {
                outcome.as_ref().map_or_else(AppError::status, |_| axum::http::StatusCode::OK)
            });
            assert!(
                statuses.contains(&axum::http::StatusCode::OK)
                    && statuses.contains(&axum::http::StatusCode::CONFLICT),
                "trial {trial}: one request wins the ids, the other is a 409: {a:?} / {b:?}"
            );
        }
    }
}

#[sqlx::test]
async fn balance_neutral_play_past_i64_in_one_hour_is_reported_exactly(pool: PgPool) {
    player_with_balance(&pool, "whale", "USD", MAX_AMOUNT).await;
    let server = TestServer::start(pool.clone()).await;
    // Each request bets and wins 10^15 fifty times: 5 × 10^16 staked, nothing
    // moved. 190 of them stake 9.5 × 10^18, past BIGINT's 9.22 × 10^18.
    let requests = 190u64;
    for round in 0..requests {
        let actions: Vec<Value> =
            (0..50).flat_map(|_| [bet(id(), MAX_AMOUNT), win(id(), MAX_AMOUNT)]).collect();
        let mut body = batch("whale", actions);
        body["game_id"] = json!(format!("round-{round}"));
        let (status, answer) = server.process(&body).await;
        assert_eq!(status, StatusCode::OK, "request {round}: {answer}");
    }
    let staked = u64::try_from(MAX_AMOUNT).unwrap() * 50 * requests;
    assert!(staked > i64::MAX as u64);
    let window = "from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z";
    for report in REPORTS {
        let (status, body) = server.admin_get(&format!("/v1/reports/rtp/{report}?{window}")).await;
        assert_eq!(status, StatusCode::OK, "{report}: {body}");
        let row = &body["data"][0];
        assert_eq!(row["total_bet"].as_u64(), Some(staked), "{report}: {row}");
        assert_eq!(row["total_win"].as_u64(), Some(staked), "{report}: {row}");
        assert_eq!(row["rtp"].as_f64(), Some(1.0), "{report}: {row}");
    }
    assert_eq!(server.balance("whale", "USD").await, MAX_AMOUNT);
}

/// Wins of at most 10^15 each, a hundred per request, that add `total`.
fn wins_adding(user_id: &str, total: i64) -> Vec<Value> {
    let mut rest = total;
    let mut requests = Vec::new();
    while rest > 0 {
        let mut actions = Vec::new();
        while rest > 0 && actions.len() < 100 {
            let amount = rest.min(MAX_AMOUNT);
            actions.push(win(id(), amount));
            rest -= amount;
        }
        requests.push(batch(user_id, actions));
    }
    requests
}

#[sqlx::test]
async fn money_that_would_overflow_a_balance_is_a_400_on_every_path(pool: PgPool) {
    player_with_balance(&pool, "rich", "USD", MAX_AMOUNT).await;
    let server = TestServer::start(pool.clone()).await;
    // Wins, legitimately, up to 5 below the largest balance.
    for request in wins_adding("rich", i64::MAX - 5 - MAX_AMOUNT) {
        let (status, answer) = server.process(&request).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    assert_eq!(server.balance("rich", "USD").await, i64::MAX - 5);
    let before = snapshot(&pool).await;

    let (status, answer) = server.process(&batch("rich", vec![win(id(), 10)])).await;
    assert_error(status, &answer, 400, 400);
    assert!(answer["message"].as_str().unwrap().contains("overflow"), "{answer}");
    let (status, answer) =
        server.admin_post("/v1/players/rich/deposits", &json!({"amount": 10}), Some("too-much")).await;
    assert_error(status, &answer, 400, 400);
    assert!(answer["message"].as_str().unwrap().contains("overflow"), "{answer}");
    assert_eq!(snapshot(&pool).await, before, "a refused request changed the database");

    let (status, answer) =
        server.admin_post("/v1/players/rich/deposits", &json!({"amount": 5}), Some("to-the-top")).await;
    assert_eq!(status, StatusCode::CREATED, "up to the limit itself is fine: {answer}");
    assert_eq!(answer["balance"].as_i64(), Some(i64::MAX));
}

#[sqlx::test]
async fn a_forged_history_cursor_is_a_400(pool: PgPool) {
    player_with_balance(&pool, "p", "USD", 10).await;
    let server = TestServer::start(pool).await;
    for forged in ["-300000000000000000:1", "300000000000000000:1", "0:99999999999999999999", "x:1"] {
        let cursor = URL_SAFE_NO_PAD.encode(forged);
        let (status, body) = server.admin_get(&format!("/v1/players/p/transactions?cursor={cursor}")).await;
        assert_error(status, &body, 400, 400);
        assert!(body["message"].as_str().unwrap().starts_with("cursor"), "{body}");
    }
}

#[sqlx::test]
async fn a_path_that_is_not_utf8_is_a_json_400(pool: PgPool) {
    let server = TestServer::start(pool).await;
    for path in ["/v1/players/%FF", "/v1/players/%C3%28/transactions"] {
        let (status, body) = server.admin_get(path).await;
        assert_error(status, &body, 400, 400);
        assert!(body["message"].as_str().unwrap().starts_with("path"), "{body}");
    }
}

#[sqlx::test]
async fn idempotency_keys_may_be_any_utf8_text_and_bad_ones_are_named_for_what_is_wrong(pool: PgPool) {
    player_with_balance(&pool, "k", "USD", 0).await;
    let server = TestServer::start(pool).await;
    let deposit = |key: reqwest::header::HeaderValue| {
        server
            .client
            .post(server.url("/v1/players/k/deposits"))
            .bearer_auth(ADMIN_TOKEN)
            .header("idempotency-key", key)
            .json(&json!({"amount": 5}))
            .send()
    };
    let accented = reqwest::header::HeaderValue::from_bytes("dépôt-1".as_bytes()).unwrap();
    let response = deposit(accented.clone()).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = deposit(accented).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the same key replays");

    let latin1 = reqwest::header::HeaderValue::from_bytes(b"d\xe9p\xf4t").unwrap();
    let response = deposit(latin1).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with("Idempotency-Key") && message.contains("UTF-8"), "{message}");
}

#[sqlx::test]
async fn reports_read_only_their_own_operators_players_and_rollups(pool: PgPool) {
    use wallet::reports::{store, window::Window};
    sqlx::query(r#"INSERT INTO operators (id, code, config) VALUES (2, 'other', '{"name": "Other", "currencies": ["USD"]}')"#).execute(&pool).await.unwrap();
    player_with_balance(&pool, "home", "USD", 1_000).await;
    sqlx::query("INSERT INTO players (operator_id, user_id, currency, balance) VALUES (2, 'away', 'USD', 0)")
        .execute(&pool)
        .await
        .unwrap();
    let home = ledger_batch("home", vec![Action::Bet { id: id(), amount: 100.try_into().unwrap() }]);
    process_batch(&pool, DEFAULT_OPERATOR, &home).await.unwrap();
    let away = ledger_batch("away", vec![Action::Win { id: id(), amount: 7.try_into().unwrap() }]);
    process_batch(&pool, 2, &away).await.unwrap();

    // Whole hours from the rollups and raw edges from the ledger, both.
    let now = chrono::Utc::now();
    for window in [
        Window::new(now - chrono::TimeDelta::days(2), now + chrono::TimeDelta::days(2)),
        Window::new(now - chrono::TimeDelta::minutes(1), now + chrono::TimeDelta::minutes(1)),
    ] {
        for (operator, bet, win) in [(DEFAULT_OPERATOR, 100, 0), (2, 0, 7)] {
            let casino = store::casino(&pool, operator, &window, None).await.unwrap();
            assert_eq!(casino.len(), 1, "operator {operator}: {casino:?}");
            assert_eq!(
                (casino[0].users, casino[0].totals.total_bet, casino[0].totals.total_win),
                (1, bet, win)
            );
            let games = store::games(&pool, operator, &window, None, None, 10).await.unwrap();
            assert_eq!(
                games.iter().map(|g| (g.totals.total_bet, g.totals.total_win)).collect::<Vec<_>>(),
                [(bet, win)]
            );
            let users = store::users(&pool, operator, &window, None, None, None, 10).await.unwrap();
            let expected = if operator == 2 { "away" } else { "home" };
            assert_eq!(users.iter().map(|u| u.user_id.as_str()).collect::<Vec<_>>(), [expected]);
        }
    }
}
