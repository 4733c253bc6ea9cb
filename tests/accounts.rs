//! Player accounts (API.md §8): registration, login sessions, the player's
//! own API and cashier, and KYC tiers gating deposits, withdrawals and bets.
//!
//! Time passes by moving the stored times back (a session's `last_seen_at`,
//! a failure's time): the service reads every time from the database clock.

mod common;

use std::time::{Duration, Instant};

use common::bluestar::*;
use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

#[sqlx::test]
async fn a_registration_answers_the_account_and_is_audited_without_the_password(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    bluestar(&server, json!({})).await;
    let (status, body) = register(&server, &registration("Ann.Lee@Example.com")).await;
    assert_eq!(status, 201, "{body}");
    let user_id = body["user_id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(user_id).is_ok(), "the service makes the user_id: {user_id}");
    assert_eq!(
        body,
        json!({"user_id": user_id, "email": "Ann.Lee@Example.com", "currency": "GBP", "country": "GB",
               "kyc_tier": 0, "status": "active"})
    );
    let hash: String =
        sqlx::query_scalar("SELECT password_hash FROM accounts").fetch_one(&pool).await.unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$") && !hash.contains(PASSWORD), "{hash}");

    let entries = audited(&server, "player.create").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["actor"], json!({"type": "player", "id": user_id}));
    assert_eq!(entries[0]["target"], format!("player:{user_id}"));
    assert_eq!(entries[0]["after"]["email"], "Ann.Lee@Example.com");
    let trail: String = sqlx::query_scalar(
        "SELECT coalesce((SELECT string_agg(t::text, '') FROM audit_log t), '')
             || coalesce((SELECT string_agg(t::text, '') FROM audit_pending t), '')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(trail.contains("Ann.Lee@Example.com"), "the registration is in the trail");
    assert!(!trail.contains(PASSWORD) && !trail.contains("argon2"), "the trail holds no password or hash");

    // The email is unique per operator whatever its case; another operator may have it.
    let snapshot_before = snapshot(&pool).await;
    let (status, body) = register(&server, &registration("ann.lee@EXAMPLE.COM")).await;
    assert_error(status, &body, 409, 409);
    assert_eq!(snapshot(&pool).await, snapshot_before);
    let mut on_default = registration("ann.lee@example.com");
    on_default["currency"] = json!("USD");
    let (status, body) = server
        .send(Method::POST, "/v1/auth/register", None, &[("x-operator", "default")], Some(&on_default))
        .await;
    assert_eq!(status, 201, "default serves any currency: {body}");
}

#[sqlx::test]
async fn every_bad_registration_is_refused_with_its_code_and_changes_nothing(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    bluestar(&server, json!({"min_age": 21})).await;
    let twenty = (chrono::Utc::now().date_naive() - chrono::Days::new(20 * 366)).to_string();
    let tomorrow = (chrono::Utc::now().date_naive() + chrono::Days::new(2)).to_string();
    let cases: Vec<(&str, Value, u16, i64)> = vec![
        ("email", json!("ann"), 400, 400),
        ("email", json!("ann@example"), 400, 400),
        ("email", json!("a@b@example.com"), 400, 400),
        ("password", json!("short-pw1"), 400, 400),
        ("password", json!("x".repeat(129)), 400, 400),
        ("country", json!("GBR"), 400, 400),
        ("country", json!("G1"), 400, 400),
        ("date_of_birth", json!("1990-02-30"), 400, 400),
        ("date_of_birth", json!("17/05/1990"), 400, 400),
        ("date_of_birth", json!(tomorrow), 400, 400),
        ("currency", json!("gbp"), 400, 400),
        ("currency", json!("USD"), 422, 154),
        ("date_of_birth", json!(twenty), 422, 130),
        ("email", json!(7), 400, 400),
    ];
    let before = snapshot(&pool).await;
    for (field, value, status_expected, code) in cases {
        let mut body = registration("bad@example.com");
        body[field] = value.clone();
        let (status, answer) = register(&server, &body).await;
        assert_error(status, &answer, status_expected, code);
        if status_expected == 400 {
            let message = answer["message"].as_str().unwrap();
            assert!(message.starts_with(field), "{field} = {value}: {message}");
        }
    }
    let mut missing = registration("bad@example.com");
    missing.as_object_mut().unwrap().remove("date_of_birth");
    let (status, answer) = register(&server, &missing).await;
    assert_error(status, &answer, 400, 400);
    let body = registration("bad@example.com");
    let (status, answer) = server.send(Method::POST, "/v1/auth/register", None, &[], Some(&body)).await;
    assert_error(status, &answer, 404, 120);
    assert_eq!(snapshot(&pool).await, before, "no refusal changed anything");
}

#[sqlx::test]
async fn registration_turned_off_for_a_country_is_403_code_121(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    bluestar(&server, json!({})).await;
    let patch = json!({"features": {"player_registration": {"default": true, "countries": {"GB": false}}}});
    let (status, body) =
        server.send(Method::PATCH, "/v1/operators/bluestar", Some(ADMIN_TOKEN), &[], Some(&patch)).await;
    assert_eq!(status, 200, "{body}");
    let off = async || {
        server
            .state
            .operators
            .by_code("bluestar")
            .is_some_and(|t| !t.document.flag("player_registration", Some("GB")))
    };
    for _ in 0..100 {
        if off().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = snapshot(&pool).await;
    let (status, body) = register(&server, &registration("gb@example.com")).await;
    assert_error(status, &body, 403, 121);
    assert_eq!(snapshot(&pool).await, before);
    let mut swede = registration("se@example.com");
    swede["country"] = json!("SE");
    let (status, body) = register(&server, &swede).await;
    assert_eq!(status, 201, "{body}");
}

#[sqlx::test]
async fn a_login_opens_a_session_that_reads_the_account_by_host_or_x_operator(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    bluestar(&server, json!({"session_max_hours": 2})).await;
    let (user_id, token) = player(&server, "ann@example.com").await;
    assert!(token.starts_with("ply_") && token.len() == 68, "{token}");
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT token_hash FROM player_sessions").fetch_one(&pool).await.unwrap();
    assert_eq!(stored, wallet::staff::token_hash(&token), "only the token's hash is stored");

    let (status, session) = login(&server, "ANN@example.com", PASSWORD).await;
    assert_eq!(status, 200, "the email's case does not matter: {session}");
    let expires_at = chrono::DateTime::parse_from_rfc3339(session["expires_at"].as_str().unwrap()).unwrap();
    let hours = (expires_at.to_utc() - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((1.9..=2.0).contains(&hours), "session_max_hours after login: {hours}");

    let by_host = [("host", "bluestar.example:8080")];
    let (status, me) = server.send(Method::GET, "/v1/me", Some(&token), &by_host, None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me,
        json!({"user_id": user_id, "email": "ann@example.com", "currency": "GBP", "country": "GB",
               "kyc_tier": 0, "status": "active", "status_until": null,
               "balance": {"cash": 0, "bonus": 0, "total": 0}})
    );
    let logins = audited(&server, "auth.login").await;
    assert_eq!(logins.len(), 2);
    assert_eq!(logins[0]["actor"], json!({"type": "player", "id": user_id}));
    assert!(!logins.iter().any(|e| e.to_string().contains(&token[4..])));
}

#[sqlx::test]
async fn an_unknown_email_and_a_wrong_password_answer_alike_and_take_alike(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    bluestar(&server, json!({"login_max_failures": 100})).await;
    player(&server, "ann@example.com").await;
    let sessions_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM player_sessions").fetch_one(&pool).await.unwrap();
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for n in 0..5 {
        let started = Instant::now();
        let (status, a) = login(&server, "ann@example.com", "not the password").await;
        wrong.push(started.elapsed());
        assert_error(status, &a, 401, 401);
        let started = Instant::now();
        let (status, b) = login(&server, &format!("nobody{n}@example.com"), "not the password").await;
        unknown.push(started.elapsed());
        assert_error(status, &b, 401, 401);
        assert_eq!(a, b, "one message for both");
    }
    wrong.sort();
    unknown.sort();
    // Without the dummy hash an unknown email answers in a few milliseconds,
    // tens of times sooner than a wrong password; with it, alike. The bound
    // is loose because the machine is shared.
    assert!(unknown[2] * 3 > wrong[2], "unknown email {:?} vs wrong password {:?}", unknown, wrong);
    let after: i64 =
        sqlx::query_scalar("SELECT count(*) FROM player_sessions").fetch_one(&pool).await.unwrap();
    assert_eq!(after, sessions_before, "no failure opens a session");
    let failures = audited(&server, "auth.login_failed").await;
    assert_eq!(failures.len(), 10);
    assert_eq!(failures[0]["after"]["reason"], "wrong_password");
    assert_eq!(failures[1]["after"]["reason"], "unknown_email");
    assert_eq!(failures[1]["target"], "email:nobody0@example.com");
    assert!(!failures.iter().any(|e| e.to_string().contains("not the password")));
}

#[sqlx::test]
async fn failures_lock_an_email_for_15_minutes_even_against_the_right_password(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    bluestar(&server, json!({"login_max_failures": 3})).await;
    player(&server, "ann@example.com").await;
    for _ in 0..3 {
        let (status, body) = login(&server, "ann@example.com", "not the password").await;
        assert_error(status, &body, 401, 401);
    }
    let (status, body) = login(&server, "ann@example.com", PASSWORD).await;
    assert_error(status, &body, 429, 429);
    let entries = audited(&server, "auth.login_failed").await;
    assert_eq!(entries.len(), 4, "the refused attempt is audited too");
    assert_eq!(entries[2]["after"]["locked"], true, "the third failure locks");
    assert_eq!(entries[3]["after"]["reason"], "locked");

    // A minute before the lockout ends it holds; after, the right password works.
    sql(&pool, "UPDATE login_failures SET locked_until = now() + interval '1 minute'").await;
    assert_eq!(login(&server, "ann@example.com", PASSWORD).await.0, 429);
    sql(&pool, "UPDATE login_failures SET locked_until = now() - interval '1 second', recent = ARRAY[now() - interval '15 minutes']").await;
    let (status, body) = login(&server, "ann@example.com", PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM login_failures").fetch_one(&pool).await.unwrap();
    assert_eq!(left, 0, "a login clears the email's failures");

    // Failures older than 15 minutes do not count towards a lockout.
    for _ in 0..2 {
        login(&server, "ann@example.com", "not the password").await;
    }
    sql(
        &pool,
        "UPDATE login_failures SET recent = ARRAY(SELECT t - interval '15 minutes' FROM unnest(recent) t)",
    )
    .await;
    assert_eq!(login(&server, "ann@example.com", "not the password").await.0, 401);
    assert_eq!(login(&server, "ann@example.com", PASSWORD).await.0, 200, "one recent failure locks nothing");

    // An email without an account locks the same way, so a lockout tells nothing.
    for _ in 0..3 {
        assert_eq!(login(&server, "nobody@example.com", PASSWORD).await.0, 401);
    }
    let (status, body) = login(&server, "nobody@example.com", PASSWORD).await;
    assert_error(status, &body, 429, 429);
}

#[sqlx::test]
async fn a_session_dies_idle_or_at_its_absolute_end_with_code_113(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    bluestar(&server, json!({"session_idle_minutes": 30})).await;
    let (_, token) = player(&server, "ann@example.com").await;

    // Used within the idle time, it lives on, and its use counts as activity.
    sql(&pool, "UPDATE player_sessions SET created_at = now() - interval '1 hour', last_seen_at = now() - interval '29 minutes'").await;
    assert_eq!(as_player(&server, Method::GET, "/v1/me", &token, None).await.0, 200);
    let idle: f64 =
        sqlx::query_scalar("SELECT extract(epoch FROM now() - last_seen_at)::float8 FROM player_sessions")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(idle < 60.0, "last_seen_at moved on: {idle}");

    sql(&pool, "UPDATE player_sessions SET last_seen_at = now() - interval '31 minutes'").await;
    let before = snapshot(&pool).await;
    let (status, body) = as_player(&server, Method::GET, "/v1/me", &token, None).await;
    assert_error(status, &body, 401, 113);
    assert_eq!(snapshot(&pool).await, before, "an expired session is not revived");

    let (_, token) = login(&server, "ann@example.com", PASSWORD).await;
    let token = token["token"].as_str().unwrap();
    sql(&pool, "UPDATE player_sessions SET created_at = now() - interval '25 hours', expires_at = now() - interval '1 second' WHERE revoked_at IS NULL AND last_seen_at > now() - interval '1 minute'").await;
    let (status, body) = as_player(&server, Method::GET, "/v1/me", token, None).await;
    assert_error(status, &body, 401, 113);
}

#[sqlx::test]
async fn revoked_foreign_unknown_and_missing_tokens_are_401(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    bluestar(&server, json!({})).await;
    let (_, token) = player(&server, "ann@example.com").await;
    let (status, body) =
        server.send(Method::GET, "/v1/me", Some(&token), &[("x-operator", "default")], None).await;
    assert_error(status, &body, 401, 401);
    let (status, body) = as_player(&server, Method::GET, "/v1/me", "ply_0000", None).await;
    assert_error(status, &body, 401, 401);
    let (status, body) = server.send(Method::GET, "/v1/me", None, &BLUESTAR, None).await;
    assert_error(status, &body, 401, 401);
    let (status, body) = server.send(Method::GET, "/v1/me", Some(&token), &[], None).await;
    assert_error(status, &body, 404, 120);
    let (status, body) = server.send(Method::GET, "/v1/me", Some(ADMIN_TOKEN), &BLUESTAR, None).await;
    assert_error(status, &body, 401, 401);

    let (status, body) = as_player(&server, Method::POST, "/v1/auth/logout", &token, None).await;
    assert_eq!((status.as_u16(), body), (204, Value::Null));
    let (status, body) = as_player(&server, Method::GET, "/v1/me", &token, None).await;
    assert_error(status, &body, 401, 401);
}

#[sqlx::test]
async fn a_player_lists_their_sessions_and_ends_one_but_no_one_elses(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    bluestar(&server, json!({})).await;
    let (_, phone) = player(&server, "ann@example.com").await;
    let (_, laptop) = login(&server, "ann@example.com", PASSWORD).await;
    let laptop = laptop["token"].as_str().unwrap().to_owned();
    let (_, bob) = player(&server, "bob@example.com").await;

    let (status, list) = as_player(&server, Method::GET, "/v1/me/sessions", &laptop, None).await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    for session in &list {
        let keys: Vec<&String> = session.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["created_at", "current", "last_seen_at", "session_id"]);
    }
    let current: Vec<bool> = list.iter().map(|s| s["current"].as_bool().unwrap()).collect();
    assert_eq!(current, [true, false], "newest first, the laptop's is current");
    let phone_id = list[1]["session_id"].as_str().unwrap();

    let before = snapshot(&pool).await;
    let path = format!("/v1/me/sessions/{phone_id}");
    let (status, body) = as_player(&server, Method::DELETE, &path, &bob, None).await;
    assert_error(status, &body, 404, 404);
    let unknown = format!("/v1/me/sessions/{}", uuid::Uuid::new_v4());
    let (status, body) = as_player(&server, Method::DELETE, &unknown, &laptop, None).await;
    assert_error(status, &body, 404, 404);
    let (status, body) =
        as_player(&server, Method::DELETE, "/v1/me/sessions/not-a-uuid", &laptop, None).await;
    assert_error(status, &body, 404, 404);
    assert_eq!(snapshot(&pool).await, before, "no refusal ended a session");

    assert_eq!(as_player(&server, Method::DELETE, &path, &laptop, None).await.0, 204);
    assert_eq!(as_player(&server, Method::GET, "/v1/me", &phone, None).await.0, 401);
    assert_eq!(as_player(&server, Method::GET, "/v1/me", &laptop, None).await.0, 200);
    let (_, list) = as_player(&server, Method::GET, "/v1/me/sessions", &laptop, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[sqlx::test]
async fn the_cashier_is_gated_by_tier_and_keeps_the_back_offices_idempotency_rules(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    bluestar(&server, json!({})).await;
    let (user_id, token) = player(&server, "ann@example.com").await;

    // Tier 0 may do nothing; each refusal leaves the database as it was.
    let before = snapshot(&pool).await;
    let (status, body) = cashier(&server, "deposits", &token, "d1", 100_000).await;
    assert_error(status, &body, 422, 111);
    let (status, body) = cashier(&server, "withdrawals", &token, "w1", 1).await;
    assert_error(status, &body, 422, 111);
    assert_eq!(snapshot(&pool).await, before);

    // Tier 1 deposits up to 200000 in a lifetime, and may not withdraw.
    set_tier(&server, &user_id, 1).await;
    let (status, first) = cashier(&server, "deposits", &token, "d1", 150_000).await;
    assert_eq!(status, 201, "{first}");
    let keys: Vec<&String> = first.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["balance", "tx_id"]);
    assert_eq!(first["balance"], 150_000);
    let (status, again) = cashier(&server, "deposits", &token, "d1", 150_000).await;
    assert_eq!((status.as_u16(), &again), (200, &first), "a replay answers the first result");
    let before = snapshot(&pool).await;
    let (status, body) = cashier(&server, "deposits", &token, "d1", 150_001).await;
    assert_error(status, &body, 409, 409);
    let (status, body) = cashier(&server, "deposits", &token, "d2", 50_001).await;
    assert_error(status, &body, 422, 111);
    let (status, body) = cashier(&server, "withdrawals", &token, "w1", 1).await;
    assert_error(status, &body, 422, 111);
    let body = json!({"amount": 5});
    let (status, answer) = as_player(&server, Method::POST, "/v1/me/deposits", &token, Some(&body)).await;
    assert_error(status, &answer, 400, 400);
    for bad in [json!({"amount": 0}), json!({"amount": -5}), json!({"amount": 1.5}), json!({})] {
        let headers = [BLUESTAR[0], ("idempotency-key", "d9")];
        let (status, answer) =
            server.send(Method::POST, "/v1/me/deposits", Some(&token), &headers, Some(&bad)).await;
        assert_error(status, &answer, 400, 400);
    }
    assert_eq!(snapshot(&pool).await, before);

    // Staff adjustments are not gated and do not count as the player's own deposits.
    let staff = [BLUESTAR[0], ("idempotency-key", "bo-1")];
    let path = format!("/v1/players/{user_id}/deposits");
    let (status, body) =
        server.send(Method::POST, &path, Some(ADMIN_TOKEN), &staff, Some(&json!({"amount": 900_000}))).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = cashier(&server, "deposits", &token, "d3", 50_000).await;
    assert_eq!((status.as_u16(), body["balance"].as_i64()), (201, Some(1_100_000)), "{body}");
    // A key the staff used is no replay for the player.
    let (status, body) = cashier(&server, "deposits", &token, "bo-1", 900_000).await;
    assert_error(status, &body, 409, 409);

    // Tier 2 withdraws cash, never more than there is.
    set_tier(&server, &user_id, 2).await;
    let (status, body) = cashier(&server, "withdrawals", &token, "w2", 100_000).await;
    assert_eq!((status.as_u16(), body["balance"].as_i64()), (201, Some(1_000_000)), "{body}");
    let before = snapshot(&pool).await;
    let (status, body) = cashier(&server, "withdrawals", &token, "w3", 1_000_001).await;
    assert_error(status, &body, 422, 100);
    assert_eq!(snapshot(&pool).await, before);

    // The player's history is §2's, the same rows staff see.
    let (status, mine) = as_player(&server, Method::GET, "/v1/me/transactions?limit=2", &token, None).await;
    assert_eq!(status, 200, "{mine}");
    let (_, theirs) = server
        .send(
            Method::GET,
            &format!("/v1/players/{user_id}/transactions?limit=2"),
            Some(ADMIN_TOKEN),
            &BLUESTAR,
            None,
        )
        .await;
    assert_eq!(mine, theirs);
    assert_eq!(mine["data"][0]["kind"], "withdrawal");
    let cursor = mine["next_cursor"].as_str().unwrap();
    let (_, rest) =
        as_player(&server, Method::GET, &format!("/v1/me/transactions?cursor={cursor}"), &token, None).await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 2);
    let (status, body) = as_player(&server, Method::GET, "/v1/me/transactions?limit=0", &token, None).await;
    assert_error(status, &body, 400, 400);

    let deposits = audited(&server, "player.deposit").await;
    let own: Vec<&Value> = deposits.iter().filter(|e| e["actor"]["type"] == "player").collect();
    assert_eq!(own.len(), 2, "each own deposit audited once, with the player as actor");
    let (_, me) = as_player(&server, Method::GET, "/v1/me", &token, None).await;
    assert_eq!(me["balance"], json!({"cash": 1_000_000, "bonus": 0, "total": 1_000_000}));
}

#[sqlx::test]
async fn a_tier_without_play_refuses_bets_with_111_but_settles_wins_and_rollbacks(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    bluestar(&server, json!({})).await;
    let (status, key) =
        server.send(Method::POST, "/v1/operators/bluestar/provider-keys", Some(ADMIN_TOKEN), &[], None).await;
    assert_eq!(status, 201, "{key}");
    let secret = key["secret"].as_str().unwrap().to_owned();
    let (user_id, _) = player(&server, "ann@example.com").await;
    let staff = [BLUESTAR[0], ("idempotency-key", "fund")];
    let path = format!("/v1/players/{user_id}/deposits");
    server.send(Method::POST, &path, Some(ADMIN_TOKEN), &staff, Some(&json!({"amount": 1_000}))).await;
    let provider = "/v1/operators/bluestar/process";
    let request = |actions| json!({"user_id": user_id, "currency": "GBP", "game": "slots", "game_id": "r1", "actions": actions});
    // The new key reaches memory within a second.
    for _ in 0..100 {
        if server.process_at(provider, &secret, &request(vec![])).await.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // An open round from before the tier was lowered.
    set_tier(&server, &user_id, 1).await;
    let open = id();
    let (status, body) = server.process_at(provider, &secret, &request(vec![bet(open, 100)])).await;
    assert_eq!(status, 200, "{body}");
    set_tier(&server, &user_id, 0).await;

    let before = snapshot(&pool).await;
    let (status, body) =
        server.process_at(provider, &secret, &request(vec![win(id(), 5), bet(id(), 1)])).await;
    assert_error(status, &body, 422, 111);
    assert_eq!(snapshot(&pool).await, before);
    let (status, body) =
        server.process_at(provider, &secret, &request(vec![win(id(), 50), rollback(id(), open)])).await;
    assert_eq!((status.as_u16(), body["balance"].as_i64()), (200, Some(1_050)), "{body}");

    let changes = audited(&server, "player.kyc").await;
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[1]["before"], json!({"kyc_tier": 1}));
    assert_eq!(changes[1]["after"], json!({"kyc_tier": 0, "note": "documents checked"}));
    assert_eq!(changes[1]["actor"]["type"], "platform");
}

#[sqlx::test]
async fn the_default_operator_lets_every_tier_deposit_withdraw_and_play(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let default = [("x-operator", "default")];
    let mut body = registration("ann@example.com");
    body["currency"] = json!("USD");
    let (status, account) = server.send(Method::POST, "/v1/auth/register", None, &default, Some(&body)).await;
    assert_eq!(status, 201, "{account}");
    let user_id = account["user_id"].as_str().unwrap();
    let credentials = json!({"email": "ann@example.com", "password": PASSWORD});
    let (_, session) = server.send(Method::POST, "/v1/auth/login", None, &default, Some(&credentials)).await;
    let token = session["token"].as_str().unwrap();
    let headers = [default[0], ("idempotency-key", "d1")];
    let (status, body) = server
        .send(Method::POST, "/v1/me/deposits", Some(token), &headers, Some(&json!({"amount": 500})))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.process(&batch(user_id, vec![bet(id(), 100)])).await;
    assert_eq!((status.as_u16(), body["balance"].as_i64()), (200, Some(400)), "{body}");
    let headers = [default[0], ("idempotency-key", "w1")];
    let (status, body) = server
        .send(Method::POST, "/v1/me/withdrawals", Some(token), &headers, Some(&json!({"amount": 400})))
        .await;
    assert_eq!((status.as_u16(), body["balance"].as_i64()), (201, Some(0)), "{body}");
}

#[sqlx::test]
async fn a_kyc_change_needs_a_tier_of_0_to_2_and_a_note(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    bluestar(&server, json!({})).await;
    let (user_id, _) = player(&server, "ann@example.com").await;
    let path = format!("/v1/players/{user_id}/kyc");
    let before = snapshot(&pool).await;
    for (body, status_expected, code) in [
        (json!({"tier": 3, "note": "x"}), 400, 400),
        (json!({"tier": -1, "note": "x"}), 400, 400),
        (json!({"tier": 1}), 400, 400),
        (json!({"tier": 1, "note": "  "}), 400, 400),
        (json!({"tier": 1, "note": "x".repeat(1001)}), 400, 400),
        (json!({"tier": "1", "note": "x"}), 400, 400),
    ] {
        let (status, answer) =
            server.send(Method::PUT, &path, Some(ADMIN_TOKEN), &BLUESTAR, Some(&body)).await;
        assert_error(status, &answer, status_expected, code);
    }
    let body = json!({"tier": 1, "note": "passport"});
    let (status, answer) =
        server.send(Method::PUT, "/v1/players/nobody/kyc", Some(ADMIN_TOKEN), &BLUESTAR, Some(&body)).await;
    assert_error(status, &answer, 404, 101);
    let (status, answer) = server.send(Method::PUT, &path, Some(ADMIN_TOKEN), &[], Some(&body)).await;
    assert_error(status, &answer, 404, 101);
    assert_eq!(snapshot(&pool).await, before);
    let (status, answer) = server.send(Method::PUT, &path, Some(ADMIN_TOKEN), &BLUESTAR, Some(&body)).await;
    assert_eq!((status.as_u16(), answer), (200, json!({"user_id": user_id, "kyc_tier": 1})));
}

#[sqlx::test]
async fn staff_cannot_set_a_time_out_which_is_the_players_own(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    player_with_balance(&pool, "p1", "USD", 0).await;
    let before = snapshot(&pool).await;
    let (status, body) = server.admin_patch("/v1/players/p1", &json!({"status": "cooling_off"})).await;
    assert_error(status, &body, 400, 400);
    assert_eq!(snapshot(&pool).await, before);
}
