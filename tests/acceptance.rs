//! The acceptance scenarios A–J of the original specification, each on its
//! own player and database, over signed HTTP.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

const USER: &str = "8|USDT|USD";

async fn server_with(pool: PgPool, balance: i64) -> TestServer {
    player_with_balance(&pool, USER, "USD", balance).await;
    TestServer::start(pool).await
}

#[sqlx::test]
async fn a_request_without_authorization_is_forbidden(pool: PgPool) {
    let server = server_with(pool, 74322001).await;
    let before = snapshot(&server.pool).await;
    let body = serde_json::to_vec(&json!({"user_id": USER, "currency": "USD"})).unwrap();
    let (status, answer) = server.process_raw(&body, None).await;
    assert_error(status, &answer, 403, 403);
    assert_eq!(snapshot(&server.pool).await, before);
}

#[sqlx::test]
async fn b_balance_lookup_answers_exactly_the_balance(pool: PgPool) {
    let server = server_with(pool, 74322001).await;
    let body =
        serde_json::to_vec(&json!({"user_id": USER, "currency": "USD", "game": "acceptance:test"})).unwrap();
    let response = server
        .client
        .post(server.url("/v1/process"))
        .header("authorization", wallet::provider::signature::sign(SECRET.as_bytes(), &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), r#"{"balance":74322001}"#);
}

#[sqlx::test]
async fn c_a_bet_debits_the_balance(pool: PgPool) {
    let server = server_with(pool, 74322001).await;
    let (status, body) = server.process(&batch(USER, vec![bet(id(), 100)])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["balance"], 74321901);
    assert_eq!(body["game_id"], "round-1");
    assert_eq!(body["transactions"].as_array().unwrap().len(), 1);
}

#[sqlx::test]
async fn d_a_bet_and_a_win_in_one_call_apply_in_order(pool: PgPool) {
    let server = server_with(pool, 74321901).await;
    let (bet_id, win_id) = (id(), id());
    let (status, body) = server.process(&batch(USER, vec![bet(bet_id, 100), win(win_id, 250)])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["balance"], 74322051);
    assert_eq!(body["transactions"][0]["action_id"], bet_id.to_string());
    assert_eq!(body["transactions"][1]["action_id"], win_id.to_string());
}

#[sqlx::test]
async fn e_a_bet_beyond_the_balance_is_refused_and_changes_nothing(pool: PgPool) {
    let server = server_with(pool, 74322051).await;
    let before = snapshot(&server.pool).await;
    let (status, body) = server.process(&batch(USER, vec![bet(id(), 74322202)])).await;
    assert_error(status, &body, 422, 100);
    assert_eq!(body["message"], "Player has not enough funds to process an action");
    assert_eq!(snapshot(&server.pool).await, before);
    assert_eq!(server.balance(USER, "USD").await, 74322051);
}

#[sqlx::test]
async fn f_a_bet_then_a_win_in_two_calls(pool: PgPool) {
    let server = server_with(pool, 74322201).await;
    let (_, first) = server.process(&batch(USER, vec![bet(id(), 100)])).await;
    assert_eq!(first["balance"], 74322101);
    let (_, second) = server.process(&batch(USER, vec![win(id(), 700)])).await;
    assert_eq!(second["balance"], 74322801);
}

#[sqlx::test]
async fn g_a_bet_then_its_rollback_restores_the_balance(pool: PgPool) {
    let server = server_with(pool, 74322001).await;
    let bet_id = id();
    let (_, first) = server.process(&batch(USER, vec![bet(bet_id, 100)])).await;
    assert_eq!(first["balance"], 74321901);
    let (status, second) = server.process(&batch(USER, vec![rollback(id(), bet_id)])).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["balance"], 74322001);
    assert_ne!(tx_id(&second, 0), tx_id(&first, 0), "a rollback gets its own tx_id");
}

#[sqlx::test]
async fn h_a_repeated_bet_replays_its_tx_id_while_a_new_bet_applies(pool: PgPool) {
    let server = server_with(pool, 74322151).await;
    let bet_id = id();
    let (_, first) = server.process(&batch(USER, vec![bet(bet_id, 100)])).await;
    assert_eq!(first["balance"], 74322051);
    let (status, second) = server.process(&batch(USER, vec![bet(bet_id, 100), bet(id(), 50)])).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["balance"], 74322001);
    assert_eq!(tx_id(&second, 0), tx_id(&first, 0));
}

#[sqlx::test]
async fn i_a_rollback_before_its_bet_leaves_the_balance_alone_both_times(pool: PgPool) {
    let server = server_with(pool, 74321821).await;
    let bet_id = id();
    let (status, first) = server.process(&batch(USER, vec![rollback(id(), bet_id)])).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["balance"], 74321821);
    let (status, second) = server.process(&batch(USER, vec![bet(bet_id, 100)])).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["balance"], 74321821);
    assert_ne!(tx_id(&second, 0), tx_id(&first, 0), "the late original gets its own tx_id");
}

#[sqlx::test]
async fn j_rollbacks_of_a_bet_and_a_win_before_either_leave_the_balance_alone(pool: PgPool) {
    let server = server_with(pool, 74321821).await;
    let (bet_id, win_id) = (id(), id());
    let (status, first) =
        server.process(&batch(USER, vec![rollback(id(), bet_id), rollback(id(), win_id)])).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["balance"], 74321821);
    let (status, second) = server.process(&batch(USER, vec![bet(bet_id, 100), win(win_id, 250)])).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["balance"], 74321821);
}
