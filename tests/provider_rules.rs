//! Every rule of the provider contract (API.md §1) and every rejection of §4,
//! over signed HTTP. Rejections assert that the database is exactly as before.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use wallet::error::AppError;

const ALICE: &str = "alice";
const BOB: &str = "bob";

async fn server(pool: PgPool) -> TestServer {
    player_with_balance(&pool, ALICE, "USD", 1_000).await;
    player_with_balance(&pool, BOB, "USD", 1_000).await;
    TestServer::start(pool).await
}

/// Sends `body` and asserts it is refused with `status`/`code` and changes nothing.
async fn assert_refused(server: &TestServer, body: &Value, status: u16, code: i64) -> Value {
    let before = snapshot(&server.pool).await;
    let (got, answer) = server.process(body).await;
    assert_error(got, &answer, status, code);
    assert_eq!(snapshot(&server.pool).await, before, "a refused request must change nothing");
    answer
}

async fn ok(server: &TestServer, body: &Value) -> Value {
    let (status, answer) = server.process(body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

#[sqlx::test]
async fn the_alias_path_processes_like_the_main_path(pool: PgPool) {
    let server = server(pool).await;
    let bytes = serde_json::to_vec(&batch(ALICE, vec![bet(id(), 10)])).unwrap();
    let response = server
        .client
        .post(server.url("/aggregator/takehome/process"))
        .header("authorization", wallet::provider::signature::sign(SECRET.as_bytes(), &bytes))
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["balance"], 990);
}

#[sqlx::test]
async fn responses_carry_exactly_the_contract_keys_and_echo_a_missing_game_id_as_null(pool: PgPool) {
    let server = server(pool).await;
    let answer = ok(&server, &json!({"user_id": ALICE, "currency": "USD", "actions": [bet(id(), 1)]})).await;
    let keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["balance", "game_id", "transactions"], "exactly these keys (sorted)");
    assert_eq!(answer["game_id"], Value::Null);
    let tx_keys: Vec<&String> = answer["transactions"][0].as_object().unwrap().keys().collect();
    assert_eq!(tx_keys, ["action_id", "tx_id"]);
    let empty = ok(&server, &json!({"user_id": ALICE, "currency": "USD", "actions": []})).await;
    assert_eq!(empty, json!({"balance": 999}));
}

#[sqlx::test]
async fn a_repeat_inside_one_request_replays_the_first_tx_id(pool: PgPool) {
    let server = server(pool).await;
    let bet_id = id();
    let answer = ok(&server, &batch(ALICE, vec![bet(bet_id, 100), bet(bet_id, 100)])).await;
    assert_eq!(answer["balance"], 900);
    assert_eq!(tx_id(&answer, 0), tx_id(&answer, 1));
}

#[sqlx::test]
async fn a_reused_action_id_with_other_parameters_is_a_conflict(pool: PgPool) {
    let server = server(pool).await;
    let (bet_id, rollback_id) = (id(), id());
    ok(&server, &batch(ALICE, vec![bet(bet_id, 100), rollback(rollback_id, bet_id)])).await;
    // Other amount, other kind, other player, other original; each also with a
    // valid new action first, which must be undone with the rest.
    let conflicts = [
        batch(ALICE, vec![bet(id(), 5), bet(bet_id, 101)]),
        batch(ALICE, vec![bet(id(), 5), win(bet_id, 100)]),
        batch(BOB, vec![bet(id(), 5), bet(bet_id, 100)]),
        batch(ALICE, vec![bet(id(), 5), rollback(rollback_id, id())]),
        batch(ALICE, vec![bet(id(), 5), json!({"action": "bet", "action_id": rollback_id, "amount": 1})]),
    ];
    for body in &conflicts {
        assert_refused(&server, body, 409, 409).await;
    }
}

#[sqlx::test]
async fn a_failing_action_undoes_the_earlier_actions_of_its_request(pool: PgPool) {
    let server = server(pool).await;
    assert_refused(&server, &batch(ALICE, vec![win(id(), 500), bet(id(), 200), bet(id(), 1_400)]), 422, 100)
        .await;
    assert_eq!(server.balance(ALICE, "USD").await, 1_000);
}

#[sqlx::test]
async fn a_bet_of_the_whole_balance_leaves_zero_and_a_zero_bet_is_accepted(pool: PgPool) {
    let server = server(pool).await;
    assert_eq!(ok(&server, &batch(ALICE, vec![bet(id(), 1_000)])).await["balance"], 0);
    assert_eq!(ok(&server, &batch(ALICE, vec![bet(id(), 0)])).await["balance"], 0);
    assert_refused(&server, &batch(ALICE, vec![bet(id(), 1)]), 422, 100).await;
}

#[sqlx::test]
async fn a_bet_past_the_balance_is_refused_even_when_a_later_win_would_cover_it(pool: PgPool) {
    let server = server(pool).await;
    // Each action is judged on the balance it leaves, not on where the
    // request ends: 1000 - 1001 is below zero, whatever the win adds after.
    assert_refused(&server, &batch(ALICE, vec![bet(id(), 1_001), win(id(), 5)]), 422, 100).await;
    // Down to exactly zero on the way is allowed.
    assert_eq!(ok(&server, &batch(ALICE, vec![bet(id(), 1_000), win(id(), 5)])).await["balance"], 5);
}

#[sqlx::test]
async fn a_round_counts_once_for_its_bets_and_not_at_all_when_they_are_undone_in_one_request(pool: PgPool) {
    let server = server(pool).await;
    ok(&server, &batch(ALICE, vec![bet(id(), 10), bet(id(), 20)])).await;
    let undone_bet = id();
    let mut undone = batch(ALICE, vec![bet(undone_bet, 30), rollback(id(), undone_bet)]);
    undone["game_id"] = json!("round-2");
    ok(&server, &undone).await;
    let rounds: Vec<(String, i64)> =
        sqlx::query_as("SELECT game_id, live_bets::bigint FROM round_buckets ORDER BY game_id")
            .fetch_all(&server.pool)
            .await
            .unwrap();
    assert_eq!(rounds, vec![("round-1".to_string(), 2)], "a round undone in its own request leaves no row");
    let counted: i64 = sqlx::query_scalar("SELECT sum(rounds)::bigint FROM rtp_hourly")
        .fetch_one(&server.pool)
        .await
        .unwrap();
    assert_eq!(counted, 1);
}

#[sqlx::test]
async fn a_bet_rolled_back_in_its_own_request_is_never_reversed_again(pool: PgPool) {
    let server = server(pool).await;
    let bet_id = id();
    let both = ok(&server, &batch(ALICE, vec![bet(bet_id, 100), rollback(id(), bet_id)])).await;
    assert_eq!(both["balance"], 1_000);
    // A later rollback of it finds it reversed already: accepted, moves nothing.
    assert_eq!(ok(&server, &batch(ALICE, vec![rollback(id(), bet_id)])).await["balance"], 1_000);
}

#[sqlx::test]
async fn rolling_back_a_win_debits_it_and_refuses_to_overdraw(pool: PgPool) {
    let server = server(pool).await;
    let (small_win, big_win) = (id(), id());
    ok(&server, &batch(ALICE, vec![win(small_win, 300), win(big_win, 5_000)])).await;
    assert_eq!(ok(&server, &batch(ALICE, vec![rollback(id(), small_win)])).await["balance"], 6_000);
    ok(&server, &batch(ALICE, vec![bet(id(), 5_500)])).await;
    assert_refused(&server, &batch(ALICE, vec![rollback(id(), big_win)]), 422, 100).await;
}

#[sqlx::test]
async fn an_original_is_reversed_at_most_once(pool: PgPool) {
    let server = server(pool).await;
    let bet_id = id();
    ok(&server, &batch(ALICE, vec![bet(bet_id, 100)])).await;
    let first = ok(&server, &batch(ALICE, vec![rollback(id(), bet_id)])).await;
    let second = ok(&server, &batch(ALICE, vec![rollback(id(), bet_id)])).await;
    assert_eq!(first["balance"], 1_000);
    assert_eq!(second["balance"], 1_000, "a second rollback changes nothing");
    assert_ne!(tx_id(&first, 0), tx_id(&second, 0), "but gets its own tx_id");
}

#[sqlx::test]
async fn a_second_pre_rollback_of_the_same_unseen_original_changes_nothing(pool: PgPool) {
    let server = server(pool).await;
    let bet_id = id();
    ok(&server, &batch(ALICE, vec![rollback(id(), bet_id)])).await;
    ok(&server, &batch(ALICE, vec![rollback(id(), bet_id)])).await;
    assert_eq!(ok(&server, &batch(ALICE, vec![bet(bet_id, 100)])).await["balance"], 1_000);
    // The late original replays like any other action.
    let replay = ok(&server, &batch(ALICE, vec![bet(bet_id, 100)])).await;
    assert_eq!(replay["balance"], 1_000);
}

#[sqlx::test]
async fn a_pre_rollback_and_its_original_in_one_request_move_nothing(pool: PgPool) {
    let server = server(pool).await;
    let bet_id = id();
    let answer =
        ok(&server, &batch(ALICE, vec![rollback(id(), bet_id), bet(bet_id, 100), bet(id(), 10)])).await;
    assert_eq!(answer["balance"], 990);
}

#[sqlx::test]
async fn a_bet_and_its_rollback_in_one_request_cancel_out(pool: PgPool) {
    let server = server(pool).await;
    let bet_id = id();
    let answer =
        ok(&server, &batch(ALICE, vec![bet(bet_id, 1_000), rollback(id(), bet_id), bet(id(), 10)])).await;
    assert_eq!(answer["balance"], 990);
}

#[sqlx::test]
async fn a_rollback_of_a_rollback_is_refused_with_code_102(pool: PgPool) {
    let server = server(pool).await;
    let (bet_id, rollback_id) = (id(), id());
    ok(&server, &batch(ALICE, vec![bet(bet_id, 100), rollback(rollback_id, bet_id)])).await;
    assert_refused(&server, &batch(ALICE, vec![rollback(id(), rollback_id)]), 422, 102).await;
}

#[sqlx::test]
async fn a_rollback_naming_itself_as_its_original_is_refused_with_code_102(pool: PgPool) {
    let server = server(pool).await;
    let own = id();
    assert_refused(&server, &batch(ALICE, vec![bet(id(), 5), rollback(own, own)]), 422, 102).await;
}

#[sqlx::test]
async fn a_late_original_that_is_itself_a_rollback_is_refused_with_code_102(pool: PgPool) {
    let server = server(pool).await;
    let (bet_id, late_rollback_id) = (id(), id());
    ok(&server, &batch(ALICE, vec![bet(bet_id, 100), rollback(id(), late_rollback_id)])).await;
    assert_refused(&server, &batch(ALICE, vec![rollback(late_rollback_id, bet_id)]), 422, 102).await;
}

#[sqlx::test]
async fn a_rollback_of_another_players_action_is_a_conflict(pool: PgPool) {
    let server = server(pool).await;
    let bob_bet = id();
    ok(&server, &batch(BOB, vec![bet(bob_bet, 100)])).await;
    assert_refused(&server, &batch(ALICE, vec![rollback(id(), bob_bet)]), 409, 409).await;
    // Nor may another player claim an id that a pre-rollback reserved.
    let reserved = id();
    ok(&server, &batch(BOB, vec![rollback(id(), reserved)])).await;
    assert_refused(&server, &batch(ALICE, vec![bet(reserved, 10)]), 409, 409).await;
}

#[sqlx::test]
async fn an_unknown_player_is_404_with_code_101(pool: PgPool) {
    let server = server(pool).await;
    let answer = assert_refused(&server, &batch("nobody", vec![bet(id(), 1)]), 404, 101).await;
    assert_eq!(answer["message"], "Player is invalid");
    assert_refused(&server, &json!({"user_id": "nobody", "currency": "USD"}), 404, 101).await;
}

#[sqlx::test]
async fn a_currency_other_than_the_players_is_code_154(pool: PgPool) {
    let server = server(pool).await;
    let mut body = batch(ALICE, vec![bet(id(), 1)]);
    body["currency"] = json!("EUR");
    assert_refused(&server, &body, 422, 154).await;
    assert_refused(&server, &json!({"user_id": ALICE, "currency": "EUR"}), 422, 154).await;
}

#[sqlx::test]
async fn a_blocked_or_self_excluded_player_cannot_bet_but_wins_and_rollbacks_apply(pool: PgPool) {
    let server = server(pool).await;
    let bet_id = id();
    ok(&server, &batch(ALICE, vec![bet(bet_id, 100)])).await;
    for status in ["blocked", "self_excluded"] {
        let response = server
            .client
            .patch(server.url(&format!("/v1/players/{ALICE}")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"status": status}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_refused(&server, &batch(ALICE, vec![bet(id(), 1)]), 422, 110).await;
    }
    ok(&server, &batch(ALICE, vec![win(id(), 50)])).await;
    assert_eq!(ok(&server, &batch(ALICE, vec![rollback(id(), bet_id)])).await["balance"], 1_050);
    // A replay of an earlier bet is not a new bet: it still answers its tx_id.
    ok(&server, &batch(ALICE, vec![bet(bet_id, 100)])).await;
}

#[sqlx::test]
async fn malformed_bodies_and_out_of_range_fields_are_400_naming_the_field(pool: PgPool) {
    let server = server(pool).await;
    let a = id();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"currency": "USD"}), "user_id"),
        (json!({"user_id": ALICE}), "currency"),
        (json!({"user_id": 5, "currency": "USD"}), "user_id"),
        (json!({"user_id": "", "currency": "USD"}), "user_id"),
        (json!({"user_id": "x".repeat(256), "currency": "USD"}), "user_id"),
        (json!({"user_id": ALICE, "currency": "usd"}), "currency"),
        (json!({"user_id": ALICE, "currency": "US"}), "currency"),
        (json!({"user_id": ALICE, "currency": "USD", "game": "g".repeat(256)}), "game"),
        (json!({"user_id": ALICE, "currency": "USD", "game_id": 7}), "game_id"),
        (json!({"user_id": ALICE, "currency": "USD", "finished": "yes"}), "finished"),
        (json!({"user_id": ALICE, "currency": "USD", "actions": {}}), "actions"),
        (batch(ALICE, vec![json!({"action": "bet", "action_id": a, "amount": -1})]), "actions[0].amount"),
        (batch(ALICE, vec![json!({"action": "bet", "action_id": a, "amount": 1.5})]), "actions[0].amount"),
        (batch(ALICE, vec![json!({"action": "bet", "action_id": a, "amount": 1e3})]), "actions[0].amount"),
        (
            batch(ALICE, vec![json!({"action": "bet", "action_id": a, "amount": 1_000_000_000_000_001_i64})]),
            "actions[0].amount",
        ),
        (batch(ALICE, vec![json!({"action": "bet", "action_id": a, "amount": "100"})]), "actions[0].amount"),
        (batch(ALICE, vec![json!({"action": "bet", "action_id": a})]), "actions[0].amount"),
        (
            batch(ALICE, vec![json!({"action": "win", "action_id": "not-a-uuid", "amount": 1})]),
            "actions[0].action_id",
        ),
        (batch(ALICE, vec![json!({"action": "spin", "action_id": a, "amount": 1})]), "actions[0].action"),
        (batch(ALICE, vec![json!({"action": "rollback", "action_id": a})]), "actions[0].original_action_id"),
        (
            batch(ALICE, vec![json!({"action": "rollback", "action_id": a, "original_action_id": "x"})]),
            "actions[0].original_action_id",
        ),
        (
            batch(
                ALICE,
                vec![json!({"action": "rollback", "action_id": a, "original_action_id": id(), "amount": 5})],
            ),
            "actions[0].amount",
        ),
        (
            batch(ALICE, vec![bet(id(), 1), json!({"action": "bet", "action_id": a, "amount": -5})]),
            "actions[1].amount",
        ),
        (batch(ALICE, (0..101).map(|_| bet(id(), 1)).collect()), "actions"),
    ];
    for (body, field) in cases {
        let answer = assert_refused(&server, &body, 400, 400).await;
        let message = answer["message"].as_str().unwrap();
        assert!(message.starts_with(field), "expected the message to name {field}: {message} for {body}");
    }
    // Not JSON at all, and JSON followed by garbage, signed correctly.
    for raw in [&b"{\"user_id\": "[..], b"[]", b"{\"user_id\":\"alice\",\"currency\":\"USD\"} trailing"] {
        let before = snapshot(&server.pool).await;
        let (status, answer) =
            server.process_raw(raw, Some(&wallet::provider::signature::sign(SECRET.as_bytes(), raw))).await;
        assert_error(status, &answer, 400, 400);
        assert_eq!(snapshot(&server.pool).await, before);
    }
}

#[sqlx::test]
async fn exactly_100_actions_are_accepted(pool: PgPool) {
    let server = server(pool).await;
    let answer = ok(&server, &batch(ALICE, (0..100).map(|_| bet(id(), 1)).collect())).await;
    assert_eq!(answer["balance"], 900);
    assert_eq!(answer["transactions"].as_array().unwrap().len(), 100);
}

#[sqlx::test]
async fn a_body_over_64_kib_is_413(pool: PgPool) {
    let server = server(pool).await;
    let before = snapshot(&server.pool).await;
    let body = json!({"user_id": ALICE, "currency": "USD", "game": "x".repeat(70_000)});
    let bytes = serde_json::to_vec(&body).unwrap();
    let (status, answer) =
        server.process_raw(&bytes, Some(&wallet::provider::signature::sign(SECRET.as_bytes(), &bytes))).await;
    assert_error(status, &answer, 413, 413);
    assert_eq!(snapshot(&server.pool).await, before);
}

#[sqlx::test]
async fn wrong_missing_or_garbled_signatures_are_403_and_touch_nothing(pool: PgPool) {
    let server = server(pool).await;
    let bytes = serde_json::to_vec(&batch(ALICE, vec![bet(id(), 100)])).unwrap();
    let good = wallet::provider::signature::sign(SECRET.as_bytes(), &bytes);
    let hex = good.strip_prefix("HMAC-SHA256 ").unwrap().to_string();
    let mut flipped = hex.clone();
    flipped.replace_range(0..1, if hex.starts_with('0') { "1" } else { "0" });
    let other_body = wallet::provider::signature::sign(SECRET.as_bytes(), b"{}");
    let wrong_secret = wallet::provider::signature::sign(b"not-the-secret", &bytes);
    let headers = [
        None,
        Some(String::new()),
        Some(hex.clone()),
        Some(format!("Bearer {hex}")),
        Some(format!("HMAC-SHA256 {flipped}")),
        Some(format!("HMAC-SHA256 {}", &hex[..63])),
        Some(format!("HMAC-SHA256 {}zz", &hex[..62])),
        Some(other_body),
        Some(wrong_secret),
    ];
    for header in headers {
        let before = snapshot(&server.pool).await;
        let (status, answer) = server.process_raw(&bytes, header.as_deref()).await;
        assert_error(status, &answer, 403, 403);
        assert_eq!(snapshot(&server.pool).await, before, "header {header:?}");
    }
    // Upper-case hex is the same signature.
    let (status, _) = server.process_raw(&bytes, Some(&format!("HMAC-SHA256 {}", hex.to_uppercase()))).await;
    assert_eq!(status, StatusCode::OK);
}

#[sqlx::test]
async fn unknown_routes_and_methods_answer_json_errors(pool: PgPool) {
    let server = server(pool).await;
    let response = server.client.get(server.url("/v1/nowhere")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.json::<Value>().await.unwrap()["code"], 404);
    let response = server.client.get(server.url("/v1/process")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.json::<Value>().await.unwrap()["code"], 405);
}

/// The schema backs the rules: should a request ever get past the rules with
/// a change the schema forbids, the client gets the contract's answer for it,
/// not a 500. These are the constraints a request's write can meet; the
/// others (a ledger row's movement or fields, an action row's shape) can only
/// fail through a fault in the service itself, and stay 500.
#[sqlx::test]
async fn constraints_a_request_can_meet_answer_their_contract_code_never_500(pool: PgPool) {
    let server = server(pool).await;
    let pool = &server.pool;
    let bob_bet = id();
    ok(&server, &batch(BOB, vec![bet(bob_bet, 10)])).await;
    let violations = [
        (
            "players_balance_check",
            "UPDATE players SET balance = -1 WHERE user_id = 'alice'".to_string(),
            422,
            100,
        ),
        (
            "ledger_balance_after_check",
            "INSERT INTO ledger (player_id, seq, created_at, tx_id, kind, amount, balance_before,
                                 balance_after, action_id)
             SELECT id, last_seq + 1, now(), gen_random_uuid(), 'bet', 1001, 1000, -1, gen_random_uuid()
             FROM players WHERE user_id = 'alice'"
                .to_string(),
            422,
            100,
        ),
        (
            "actions_pkey",
            format!(
                "INSERT INTO actions (action_id, player_id, reversed_by)
                 SELECT '{bob_bet}', id, gen_random_uuid() FROM players WHERE user_id = 'alice'"
            ),
            409,
            409,
        ),
    ];
    for (constraint, statement, status, code) in violations {
        let before = snapshot(pool).await;
        let error = sqlx::query(&statement).execute(pool).await.unwrap_err();
        assert_eq!(error.as_database_error().and_then(|e| e.constraint()), Some(constraint), "{error}");
        let error = AppError::from(error);
        assert_eq!((error.status().as_u16(), error.code()), (status, code), "{constraint}: {error:?}");
        assert_eq!(snapshot(pool).await, before, "{constraint}");
    }
}
