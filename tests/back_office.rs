//! The back-office API: players, deposits and withdrawals with idempotency
//! keys, and the transaction history.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

#[sqlx::test]
async fn creating_a_player_is_201_then_200_and_another_currency_is_409(pool: PgPool) {
    let server = TestServer::start(pool).await;
    let body = json!({"user_id": "8|USDT|USD", "currency": "USD"});
    let (status, created) = server.admin_post("/v1/players", &body, None).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        created,
        json!({"user_id": "8|USDT|USD", "currency": "USD", "balance": 0, "status": "active"})
    );
    let (status, again) = server.admin_post("/v1/players", &body, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, created);
    let (status, answer) =
        server.admin_post("/v1/players", &json!({"user_id": "8|USDT|USD", "currency": "EUR"}), None).await;
    assert_error(status, &answer, 409, 409);
    let (status, answer) =
        server.admin_post("/v1/players", &json!({"user_id": "x", "currency": "usd"}), None).await;
    assert_error(status, &answer, 400, 400);
}

#[sqlx::test]
async fn players_are_read_by_percent_encoded_user_id(pool: PgPool) {
    let server = TestServer::start(pool).await;
    server.admin_post("/v1/players", &json!({"user_id": "8|USDT|USD", "currency": "USD"}), None).await;
    let (status, player) = server.admin_get("/v1/players/8%7CUSDT%7CUSD").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(player["user_id"], "8|USDT|USD");
    assert_eq!(player["balance"], 0);
    assert!(player["created_at"].as_str().unwrap().ends_with('Z'));
    let (status, answer) = server.admin_get("/v1/players/nobody").await;
    assert_error(status, &answer, 404, 101);
}

#[sqlx::test]
async fn the_back_office_requires_the_bearer_token(pool: PgPool) {
    let server = TestServer::start(pool).await;
    for token in [None, Some("wrong"), Some("")] {
        let mut request =
            server.client.post(server.url("/v1/players")).json(&json!({"user_id": "u", "currency": "USD"}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.json::<Value>().await.unwrap()["code"], 401);
    }
    assert_eq!(snapshot(&server.pool).await["players"], Value::Null);
}

#[sqlx::test]
async fn a_deposit_replayed_with_its_key_answers_the_first_result(pool: PgPool) {
    let server = TestServer::start(pool).await;
    server.admin_post("/v1/players", &json!({"user_id": "u", "currency": "USD"}), None).await;
    let (status, first) =
        server.admin_post("/v1/players/u/deposits", &json!({"amount": 500}), Some("k1")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(first["balance"], 500);
    let (status, replay) =
        server.admin_post("/v1/players/u/deposits", &json!({"amount": 500}), Some("k1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(replay, first);
    let before = snapshot(&server.pool).await;
    let (status, answer) =
        server.admin_post("/v1/players/u/deposits", &json!({"amount": 501}), Some("k1")).await;
    assert_error(status, &answer, 409, 409);
    let (status, answer) =
        server.admin_post("/v1/players/u/withdrawals", &json!({"amount": 500}), Some("k1")).await;
    assert_error(status, &answer, 409, 409);
    assert_eq!(snapshot(&server.pool).await, before);
}

#[sqlx::test]
async fn withdrawals_cannot_overdraw_and_bad_movements_are_400(pool: PgPool) {
    let server = TestServer::start(pool).await;
    player_with_balance(&server.pool, "u", "USD", 300).await;
    let before = snapshot(&server.pool).await;
    let (status, answer) =
        server.admin_post("/v1/players/u/withdrawals", &json!({"amount": 301}), Some("w1")).await;
    assert_error(status, &answer, 422, 100);
    for (body, key) in [
        (json!({"amount": 0}), Some("k")),
        (json!({"amount": -5}), Some("k")),
        (json!({"amount": 1.5}), Some("k")),
        (json!({"amount": "5"}), Some("k")),
        (json!({}), Some("k")),
        (json!({"amount": 5}), None),
        (json!({"amount": 5}), Some("")),
    ] {
        let (status, answer) = server.admin_post("/v1/players/u/withdrawals", &body, key).await;
        assert_error(status, &answer, 400, 400);
    }
    let long_key = "k".repeat(256);
    let (status, _) =
        server.admin_post("/v1/players/u/deposits", &json!({"amount": 5}), Some(&long_key)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, answer) =
        server.admin_post("/v1/players/ghost/deposits", &json!({"amount": 5}), Some("k")).await;
    assert_error(status, &answer, 404, 101);
    assert_eq!(snapshot(&server.pool).await, before);
    let (status, paid) =
        server.admin_post("/v1/players/u/withdrawals", &json!({"amount": 300}), Some("w2")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(paid["balance"], 0);
}

#[sqlx::test]
async fn the_history_lists_every_movement_newest_first_across_pages(pool: PgPool) {
    let server = TestServer::start(pool).await;
    player_with_balance(&server.pool, "u", "USD", 1_000).await;
    let (bet_id, win_id, unseen, pre_rollback_id) = (id(), id(), id(), id());
    server.process(&batch("u", vec![bet(bet_id, 100), win(win_id, 40)])).await;
    server.process(&batch("u", vec![rollback(id(), bet_id), rollback(pre_rollback_id, unseen)])).await;
    server.process(&batch("u", vec![bet(unseen, 70)])).await;
    server.admin_post("/v1/players/u/withdrawals", &json!({"amount": 10}), Some("w")).await;

    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/players/u/transactions?limit=2&cursor={c}"),
            None => "/v1/players/u/transactions?limit=2".to_string(),
        };
        let (status, page) = server.admin_get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        rows.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let summary: Vec<(&str, i64, i64, i64, bool)> = rows
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap(),
                r["amount"].as_i64().unwrap(),
                r["balance_change"].as_i64().unwrap(),
                r["balance_after"].as_i64().unwrap(),
                r["rolled_back"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("withdrawal", 10, -10, 1_030, false),
            ("bet", 70, 0, 1_040, true),      // late original of a pre-rollback
            ("rollback", 0, 0, 1_040, false), // the pre-rollback itself
            ("rollback", 100, 100, 1_040, false),
            ("win", 40, 40, 940, false),
            ("bet", 100, -100, 900, true),
            ("deposit", 1_000, 1_000, 1_000, false),
        ]
    );
    assert_eq!(rows[2]["action_id"], pre_rollback_id.to_string());
    assert_eq!(rows[5]["game_id"], "round-1");
    assert_eq!(rows[6]["action_id"], Value::Null);
}

#[sqlx::test]
async fn bad_history_queries_are_400(pool: PgPool) {
    let server = TestServer::start(pool).await;
    player_with_balance(&server.pool, "u", "USD", 1).await;
    for query in ["limit=0", "limit=1001", "limit=x", "cursor=%%%", "cursor=bm9wZQ"] {
        let (status, answer) = server.admin_get(&format!("/v1/players/u/transactions?{query}")).await;
        assert_error(status, &answer, 400, 400);
    }
    let (status, answer) = server.admin_get("/v1/players/ghost/transactions").await;
    assert_error(status, &answer, 404, 101);
}
