//! Bonuses (API.md §10) end to end: grants by deposit code and by staff,
//! cash-first stakes, max bet, wagering, wins split by their round's bonus
//! share, rollbacks, completion with its cap, expiry, forfeits and the
//! withdrawal rule. Every refusal is compared with a whole-database snapshot,
//! and every test ends with a clean `reconcile`.
//!
//! This follows the worked example of docs/API.md "Bonuses" step by step.

mod common;

use common::bluestar::*;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use wallet::ops::reconcile::reconcile;

/// Bluestar, its provider key, two campaigns (WELCOME: 100% up to 5,000 on
/// a deposit of 1,000 or more, 10× wagering, max bet 2,000, conversion up to
/// 2× the grant; VIP: manual, 1× wagering, conversion up to 1×) and a tier-2
/// player (who may deposit, play and withdraw): user_id, token, secret.
async fn setup(server: &TestServer, pool: &PgPool) -> (String, String, String) {
    bluestar(server, json!({})).await;
    let secret = bluestar_provider_key(server).await;
    let (user_id, token) = player(server, "ann@example.com").await;
    set_tier(server, &user_id, 2).await;
    sql(
        pool,
        r#"INSERT INTO bonus_campaigns (operator_id, code, kind, match_percent, max_bonus, min_deposit,
                                        wagering_multiplier, contributions, max_bet,
                                        max_conversion_multiplier, valid_days)
           SELECT id, 'WELCOME', 'deposit_match', 100, 5000, 1000, 10, '{"other": 100, "table": 10}'::jsonb,
                  2000, 2, 7 FROM operators WHERE code = 'bluestar'
           UNION ALL
           SELECT id, 'VIP', 'manual', 0, 0, 0, 1, '{"other": 100}'::jsonb, NULL, 1, 30
           FROM operators WHERE code = 'bluestar'"#,
    )
    .await;
    (user_id, token, secret)
}

async fn deposit(server: &TestServer, token: &str, key: &str, body: Value) -> (StatusCode, Value) {
    let headers = [BLUESTAR[0], ("idempotency-key", key)];
    server.send(Method::POST, "/v1/me/deposits", Some(token), &headers, Some(&body)).await
}

async fn withdraw(server: &TestServer, token: &str, key: &str, body: Value) -> (StatusCode, Value) {
    let headers = [BLUESTAR[0], ("idempotency-key", key)];
    server.send(Method::POST, "/v1/me/withdrawals", Some(token), &headers, Some(&body)).await
}

async fn play(server: &TestServer, secret: &str, user_id: &str, actions: Vec<Value>) -> (StatusCode, Value) {
    server.process_at(BLUESTAR_PROCESS, secret, &gbp(user_id, actions)).await
}

async fn balance(server: &TestServer, token: &str) -> (i64, i64, i64) {
    let (status, me) = as_player(server, Method::GET, "/v1/me", token, None).await;
    assert_eq!(status, 200, "{me}");
    let b = &me["balance"];
    (b["cash"].as_i64().unwrap(), b["bonus"].as_i64().unwrap(), b["total"].as_i64().unwrap())
}

async fn bonuses(server: &TestServer, token: &str) -> Vec<Value> {
    let (status, list) = as_player(server, Method::GET, "/v1/me/bonuses", token, None).await;
    assert_eq!(status, 200, "{list}");
    list.as_array().unwrap().clone()
}

async fn staff_grant(server: &TestServer, user_id: &str, key: &str, body: Value) -> (StatusCode, Value) {
    let headers = [BLUESTAR[0], ("idempotency-key", key)];
    let path = format!("/v1/players/{user_id}/bonuses");
    server.send(Method::POST, &path, Some(ADMIN_TOKEN), &headers, Some(&body)).await
}

async fn assert_reconciles(pool: &PgPool) {
    let report = reconcile(pool).await.unwrap();
    assert!(report.ok, "{report:?}");
}

#[sqlx::test]
async fn the_worked_example_stakes_cash_first_splits_the_win_and_takes_back_a_rollback(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (user_id, token, secret) = setup(&server, &pool).await;

    // A deposit of 5,000 with WELCOME: 5,000 of bonus, 50,000 to wager.
    let (status, paid) =
        deposit(&server, &token, "d1", json!({"amount": 5000, "bonus_code": "WELCOME"})).await;
    assert_eq!(status, 201, "{paid}");
    assert_eq!(paid["balance"], 5000, "the answer's balance is cash");
    let bonus_id = paid["bonus"]["bonus_id"].as_str().expect("a bonus was granted").to_owned();
    assert_eq!(
        (paid["bonus"]["granted"].as_i64(), paid["bonus"]["required"].as_i64()),
        (Some(5000), Some(50_000))
    );
    assert_eq!(balance(&server, &token).await, (5000, 5000, 10_000));
    let (status, seen) =
        server.process_at(BLUESTAR_PROCESS, &secret, &json!({"user_id": user_id, "currency": "GBP"})).await;
    assert_eq!(
        (status, seen["balance"].as_i64()),
        (StatusCode::OK, Some(10_000)),
        "the provider sees cash + bonus"
    );

    // Over the max bet while the bonus is active: 106, nothing kept.
    let before = snapshot(&pool).await;
    let (status, body) = play(&server, &secret, &user_id, vec![bet(id(), 2001)]).await;
    assert_error(status, &body, 422, 106);
    assert_eq!(snapshot(&pool).await, before, "a refused bet changes nothing");

    // Three bets of 2,000 in round r1: cash first, then 1,000 from the bonus.
    let third = id();
    let (status, body) =
        play(&server, &secret, &user_id, vec![bet(id(), 2000), bet(id(), 2000), bet(third, 2000)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["balance"], 4000);
    assert_eq!(balance(&server, &token).await, (0, 4000, 4000));
    assert_eq!(
        bonuses(&server, &token).await[0]["wagered"],
        6000,
        "every stake counts at the weight of `other`"
    );

    // A win of 3,000 in r1: the bonus paid 1,000 of the round's 6,000, so
    // floor(3,000 × 1,000 / 6,000) = 500 goes to the bonus, 2,500 to cash.
    let (status, body) = play(&server, &secret, &user_id, vec![win(id(), 3000)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(balance(&server, &token).await, (2500, 4500, 7000));

    // Rolling back the third bet returns 1,000 to cash and 1,000 to the
    // bonus, and takes its 2,000 of wagering back.
    let (status, body) = play(&server, &secret, &user_id, vec![rollback(id(), third)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(balance(&server, &token).await, (3500, 5500, 9000));
    let listed = bonuses(&server, &token).await;
    assert_eq!((listed[0]["status"].as_str(), listed[0]["wagered"].as_i64()), (Some("active"), Some(4000)));
    assert_eq!(listed[0]["bonus_id"], bonus_id.as_str());

    // Only cash can leave, and not while the bonus is active...
    let before = snapshot(&pool).await;
    let (status, body) = withdraw(&server, &token, "w1", json!({"amount": 100})).await;
    assert_error(status, &body, 409, 123);
    assert_eq!(snapshot(&pool).await, before, "a refused withdrawal changes nothing");
    // ...unless it gives the bonus up.
    let (status, body) =
        withdraw(&server, &token, "w2", json!({"amount": 3500, "forfeit_bonus": true})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(balance(&server, &token).await, (0, 0, 0));
    let listed = bonuses(&server, &token).await;
    assert_eq!((listed[0]["status"].as_str(), listed[0]["balance"].as_i64()), (Some("forfeited"), Some(0)));

    // History rows carry both parts; the bonus has rows of its own.
    let (status, page) = as_player(&server, Method::GET, "/v1/me/transactions", &token, None).await;
    assert_eq!(status, 200, "{page}");
    let rows: Vec<(String, i64, i64)> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["cash_change"].as_i64().unwrap(),
                r["bonus_change"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("withdrawal", -3500, 0),
        ("bonus_forfeit", 0, -5500),
        ("rollback", 1000, 1000),
        ("win", 2500, 500),
        ("bet", -1000, -1000),
        ("bet", -2000, 0),
        ("bet", -2000, 0),
        ("bonus_grant", 0, 5000),
        ("deposit", 5000, 0),
    ];
    let expected: Vec<(String, i64, i64)> =
        expected.iter().map(|(k, c, b)| (k.to_string(), *c, *b)).collect();
    assert_eq!(rows, expected);
    // The player's events, each commit's balance before its bonus: cash
    // and bonus after a balance change, or the bonus's status and balance.
    let events: Vec<(String, Value)> = sqlx::query_as(
        "SELECT kind, body FROM player_event_log e JOIN players p ON p.id = e.player_id
         WHERE p.user_id = $1 ORDER BY e.id",
    )
    .bind(&user_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    let events: Vec<String> = events
        .iter()
        .map(|(kind, body)| match kind.as_str() {
            "balance" => {
                assert_eq!(body["total"], body["cash"].as_i64().unwrap() + body["bonus"].as_i64().unwrap());
                format!("balance {} {}", body["cash"], body["bonus"])
            }
            _ => format!("{kind} {} {}", body["status"].as_str().unwrap_or(""), body["balance"]),
        })
        .collect();
    let expected = [
        "balance 5000 0",
        "balance 5000 5000",
        "bonus active 5000",
        "balance 0 4000",
        "bonus active 4000",
        "balance 2500 4500",
        "bonus active 4500",
        "balance 3500 5500",
        "bonus active 5500",
        "balance 3500 0",
        "bonus forfeited 0",
        "balance 0 0",
    ];
    assert_eq!(
        events, expected,
        "one balance event per change (the bets were one request), then its bonus event"
    );
    assert_eq!(audited(&server, "bonus.grant").await.len(), 1);
    assert_eq!(audited(&server, "bonus.forfeit").await.len(), 1, "the withdrawal's forfeit is audited");
    assert_reconciles(&pool).await;
}

#[sqlx::test]
async fn completion_converts_up_to_the_cap_exactly_once_and_forfeits_the_rest(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (user_id, token, secret) = setup(&server, &pool).await;

    let (status, granted) =
        staff_grant(&server, &user_id, "g1", json!({"campaign": "VIP", "amount": 1000})).await;
    assert_eq!(status, 201, "{granted}");
    let (status, again) =
        staff_grant(&server, &user_id, "g1", json!({"campaign": "VIP", "amount": 1000})).await;
    assert_eq!((status, &again), (StatusCode::OK, &granted), "a replay answers the first grant");
    let (status, body) =
        staff_grant(&server, &user_id, "g1", json!({"campaign": "VIP", "amount": 999})).await;
    assert_error(status, &body, 409, 409);
    let before = snapshot(&pool).await;
    let (status, body) = staff_grant(&server, &user_id, "g2", json!({"campaign": "VIP", "amount": 5})).await;
    assert_error(status, &body, 409, 122);
    let (status, body) =
        staff_grant(&server, &user_id, "g3", json!({"campaign": "WELCOME", "amount": 5})).await;
    assert_error(status, &body, 422, 124);
    assert_eq!(snapshot(&pool).await, before, "refused grants change nothing");

    // 600 staked from the bonus, a win of 1,500 all to the bonus (it paid
    // the whole round), then 400 more: 1,000 wagered of 1,000 required.
    let (status, body) = play(&server, &secret, &user_id, vec![bet(id(), 600), win(id(), 1500)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(balance(&server, &token).await, (0, 1900, 1900));
    let (status, body) = play(&server, &secret, &user_id, vec![bet(id(), 400)]).await;
    assert_eq!(status, 200, "{body}");
    // 1,500 left converts up to 1× the grant: 1,000 cash, 500 forfeited.
    assert_eq!(balance(&server, &token).await, (1000, 0, 1000));
    assert_eq!(body["balance"], 1000);
    let listed = bonuses(&server, &token).await;
    assert_eq!(
        (listed[0]["status"].as_str(), listed[0]["wagered"].as_i64()),
        (Some("completed"), Some(1000))
    );
    let ended: (String, i64, i64) = sqlx::query_as("SELECT status, converted, forfeited FROM bonus_grants")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(ended, ("completed".to_owned(), 1000, 500));

    // Later play is all cash: nothing converts twice.
    let round_2 = json!({"user_id": user_id, "currency": "GBP", "game": "slots", "game_id": "r2",
                         "actions": [bet(id(), 100), win(id(), 50)]});
    let (status, body) = server.process_at(BLUESTAR_PROCESS, &secret, &round_2).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(balance(&server, &token).await, (950, 0, 950));
    // A late win of r1, whose stakes the bonus paid, has its bonus part
    // forfeited: the bonus is no longer active.
    let (status, body) = play(&server, &secret, &user_id, vec![win(id(), 40)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(balance(&server, &token).await, (950, 0, 950));
    let conversions: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger WHERE kind = 'bonus_conversion'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(conversions, 1);
    assert_reconciles(&pool).await;
}

#[sqlx::test]
async fn an_ineligible_code_never_fails_the_deposit_and_the_answer_says_why(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (user_id, token, _) = setup(&server, &pool).await;

    let (status, paid) = deposit(&server, &token, "a", json!({"amount": 500, "bonus_code": "WELCOME"})).await;
    assert_eq!(status, 201, "{paid}");
    assert_eq!(
        (paid["balance"].as_i64(), paid["bonus"]["code"].as_i64()),
        (Some(500), Some(124)),
        "under min_deposit"
    );
    let (_, paid) = deposit(&server, &token, "b", json!({"amount": 5000, "bonus_code": "NOPE"})).await;
    assert_eq!(paid["bonus"]["code"], 124, "unknown code: {paid}");
    let (_, paid) = deposit(&server, &token, "c", json!({"amount": 5000, "bonus_code": "VIP"})).await;
    assert_eq!(paid["bonus"]["code"], 124, "not a deposit campaign: {paid}");
    let (status, paid) =
        deposit(&server, &token, "d", json!({"amount": 2000, "bonus_code": "WELCOME"})).await;
    assert_eq!((status, paid["bonus"]["granted"].as_i64()), (StatusCode::CREATED, Some(2000)), "{paid}");
    let (status, replay) =
        deposit(&server, &token, "d", json!({"amount": 2000, "bonus_code": "WELCOME"})).await;
    assert_eq!(
        (status, &replay),
        (StatusCode::OK, &paid),
        "a replay answers the first deposit and its bonus"
    );
    let (status, body) = withdraw(&server, &token, "w", json!({"amount": 1, "forfeit_bonus": true})).await;
    assert_eq!(status, 201, "{body}");
    let (_, paid) = deposit(&server, &token, "e", json!({"amount": 5000, "bonus_code": "WELCOME"})).await;
    assert_eq!(paid["bonus"]["code"], 124, "once per player and campaign: {paid}");
    let (status, granted) =
        staff_grant(&server, &user_id, "g", json!({"campaign": "VIP", "amount": 10})).await;
    assert_eq!(status, 201, "{granted}");
    let (_, paid) = deposit(&server, &token, "f", json!({"amount": 100, "bonus_code": "WELCOME"})).await;
    assert_eq!(paid["bonus"]["code"], 124, "{paid}");
    assert_eq!(balance(&server, &token).await, (500 + 5000 + 5000 + 2000 - 1 + 5000 + 100, 10, 17_609));
    assert_reconciles(&pool).await;
}

#[sqlx::test]
async fn an_expired_bonus_is_never_seen_and_the_sweeper_or_the_next_bet_ends_it(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (user_id, token, secret) = setup(&server, &pool).await;
    let (status, paid) =
        deposit(&server, &token, "d", json!({"amount": 3000, "bonus_code": "WELCOME"})).await;
    assert_eq!(status, 201, "{paid}");
    // Time passes: the bonus's end moves into the past.
    sql(&pool, "UPDATE bonus_grants SET expires_at = now() - interval '1 second'").await;
    sql(&pool, "UPDATE players SET bonus.expires_at = now() - interval '1 second' WHERE (bonus).bonus_id IS NOT NULL").await;

    assert_eq!(balance(&server, &token).await, (3000, 0, 3000), "not shown, swept or not");
    let (_, seen) =
        server.process_at(BLUESTAR_PROCESS, &secret, &json!({"user_id": user_id, "currency": "GBP"})).await;
    assert_eq!(seen["balance"], 3000);
    assert_eq!(bonuses(&server, &token).await[0]["status"], "expired");
    // A bet over the balance is refused as if the bonus were gone; a bet in
    // range ends it on the way.
    let (status, body) = play(&server, &secret, &user_id, vec![bet(id(), 3001)]).await;
    assert_error(status, &body, 422, 100);
    let (status, body) = play(&server, &secret, &user_id, vec![bet(id(), 2500)]).await;
    assert_eq!(
        (status, body["balance"].as_i64()),
        (StatusCode::OK, Some(500)),
        "no max bet once expired: {body}"
    );
    let row: (String, i64) =
        sqlx::query_as("SELECT status, forfeited FROM bonus_grants").fetch_one(&pool).await.unwrap();
    assert_eq!(row, ("expired".to_owned(), 3000));
    assert_eq!(wallet::bonus::store::expire_due(&pool, 100).await.unwrap(), 0, "nothing left to sweep");
    assert_reconciles(&pool).await;
}

#[sqlx::test]
async fn the_sweeper_ends_bonuses_past_their_end_and_a_player_may_forfeit_theirs(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (user_id, token, _) = setup(&server, &pool).await;
    let (status, granted) =
        staff_grant(&server, &user_id, "g", json!({"campaign": "VIP", "amount": 700})).await;
    assert_eq!(status, 201, "{granted}");
    sql(&pool, "UPDATE bonus_grants SET expires_at = now() - interval '1 second'").await;
    sql(&pool, "UPDATE players SET bonus.expires_at = now() - interval '1 second' WHERE (bonus).bonus_id IS NOT NULL").await;
    assert_eq!(wallet::bonus::store::expire_due(&pool, 100).await.unwrap(), 1);
    let forfeits: i64 =
        sqlx::query_scalar("SELECT sum(amount)::int8 FROM ledger WHERE kind = 'bonus_forfeit'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(forfeits, 700);

    let (status, second) =
        staff_grant(&server, &user_id, "g2", json!({"campaign": "VIP", "amount": 300})).await;
    assert_eq!(status, 201, "{second}");
    let path = format!("/v1/me/bonuses/{}", second["bonus_id"].as_str().unwrap());
    let (status, body) = as_player(&server, Method::DELETE, &path, &token, None).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("forfeited")), "{body}");
    let (status, body) = as_player(&server, Method::DELETE, &path, &token, None).await;
    assert_error(status, &body, 409, 409);
    let unknown = format!("/v1/me/bonuses/{}", uuid::Uuid::new_v4());
    let (status, body) = as_player(&server, Method::DELETE, &unknown, &token, None).await;
    assert_error(status, &body, 404, 404);
    assert_eq!(audited(&server, "bonus.forfeit").await.len(), 1);
    assert_reconciles(&pool).await;
}

#[sqlx::test]
async fn a_stake_counts_toward_wagering_at_its_games_category_weight(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (user_id, token, secret) = setup(&server, &pool).await;
    let (status, filed) = server
        .send(
            Method::PUT,
            "/v1/games/slots",
            Some(ADMIN_TOKEN),
            &BLUESTAR,
            Some(&json!({"category": "table"})),
        )
        .await;
    assert_eq!(status, 200, "{filed}");
    let (status, paid) =
        deposit(&server, &token, "d", json!({"amount": 1000, "bonus_code": "WELCOME"})).await;
    assert_eq!(status, 201, "{paid}");
    // Every instance sees a filing within a second.
    let operator: i16 = sqlx::query_scalar("SELECT id FROM operators WHERE code = 'bluestar'")
        .fetch_one(&pool)
        .await
        .unwrap();
    for _ in 0..50 {
        if server.state.games.category(operator, Some("slots")).as_ref() == "table" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // `slots` is filed under `table`, which weighs 10%: 1,055 adds 105.
    let (status, body) = play(&server, &secret, &user_id, vec![bet(id(), 1055)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(bonuses(&server, &token).await[0]["wagered"], 105);
    // An unfiled game is `other`, which weighs 100%.
    let other = json!({"user_id": user_id, "currency": "GBP", "game": "crash", "game_id": "r9",
                       "actions": [bet(id(), 100)]});
    let (status, body) = server.process_at(BLUESTAR_PROCESS, &secret, &other).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(bonuses(&server, &token).await[0]["wagered"], 205);
    assert_reconciles(&pool).await;
}
