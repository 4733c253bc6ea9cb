//! Responsible gambling (API.md §9): limits checked and counted on every
//! bet and own deposit, raises that wait, staff who may only lower, and
//! time-outs and self-exclusions nobody can lift.
//!
//! Time passes by moving stored times back (a pending change's `pending_at`,
//! an exclusion's `status_until`): the service reads every time from the
//! database clock. Every refusal is compared with a whole-database snapshot,
//! and every test ends with a clean `reconcile`, which recomputes the
//! counters from the ledger.

mod common;

use common::bluestar::*;
use common::*;
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use wallet::ops::reconcile::reconcile;

/// A bluestar player of tier 1 (who may deposit and play) with 10,000 of
/// staff-deposited cash, and the provider key: user_id, token, secret.
async fn funded_player(server: &TestServer, rules: Value) -> (String, String, String) {
    bluestar(server, rules).await;
    let secret = bluestar_provider_key(server).await;
    let (user_id, token) = player(server, "ann@example.com").await;
    set_tier(server, &user_id, 1).await;
    let staff = [BLUESTAR[0], ("idempotency-key", "fund")];
    let path = format!("/v1/players/{user_id}/deposits");
    let (status, body) =
        server.send(Method::POST, &path, Some(ADMIN_TOKEN), &staff, Some(&json!({"amount": 10_000}))).await;
    assert_eq!(status, 201, "{body}");
    (user_id, token, secret)
}

async fn set_limits(server: &TestServer, token: &str, limits: Value) -> (StatusCode, Value) {
    as_player(server, Method::PUT, "/v1/me/limits", token, Some(&limits)).await
}

async fn play(server: &TestServer, secret: &str, user_id: &str, actions: Vec<Value>) -> (StatusCode, Value) {
    server.process_at(BLUESTAR_PROCESS, secret, &gbp(user_id, actions)).await
}

async fn assert_reconciles(pool: &PgPool) {
    let report = reconcile(pool).await.unwrap();
    assert!(report.ok, "{report:?}");
}

#[sqlx::test]
async fn a_new_or_lower_limit_applies_at_once_and_a_raise_or_removal_waits(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (_, token, _) = funded_player(&server, json!({"limit_increase_delay_hours": 24})).await;
    let (status, view) =
        set_limits(&server, &token, json!({"loss": {"week": 500}, "wager": {"day": 2_000, "month": 9_000}}))
            .await;
    assert_eq!(status, 200, "{view}");
    let week = &view["loss"]["week"];
    assert_eq!(
        (week["amount"].as_i64(), week["used"].as_i64(), week["remaining"].as_i64()),
        (Some(500), Some(0), Some(500))
    );
    assert_eq!(week["pending"], Value::Null);
    let (start, end) = (week["period_start"].as_str().unwrap(), week["period_end"].as_str().unwrap());
    let start = chrono::DateTime::parse_from_rfc3339(start).unwrap();
    let end = chrono::DateTime::parse_from_rfc3339(end).unwrap();
    assert_eq!(
        chrono::Datelike::weekday(&start.with_timezone(&chrono_tz::Europe::London)),
        chrono::Weekday::Mon
    );
    assert!((end - start).num_hours() >= 167 && (end - start).num_hours() <= 169, "a week in London");

    // A raise waits 24 hours; a lower request meanwhile cancels it.
    let (_, view) = set_limits(&server, &token, json!({"loss": {"week": 800}})).await;
    assert_eq!(view["loss"]["week"]["amount"], 500, "{view}");
    assert_eq!(view["loss"]["week"]["pending"]["amount"], 800);
    let effective = view["loss"]["week"]["pending"]["effective_at"].as_str().unwrap();
    let effective = chrono::DateTime::parse_from_rfc3339(effective).unwrap();
    let wait = effective.to_utc() - chrono::Utc::now();
    assert!(wait > chrono::TimeDelta::hours(23) && wait <= chrono::TimeDelta::hours(24), "{wait}");
    let (_, view) = set_limits(&server, &token, json!({"loss": {"week": 400}})).await;
    assert_eq!(
        view["loss"]["week"],
        json!({"amount": 400, "used": 0, "remaining": 400,
        "period_start": view["loss"]["week"]["period_start"], "period_end": view["loss"]["week"]["period_end"],
        "pending": null})
    );

    // A removal waits too, then takes over by itself.
    let (_, view) = set_limits(&server, &token, json!({"wager": {"day": null}})).await;
    assert_eq!(view["wager"]["day"]["pending"]["amount"], Value::Null, "{view}");
    assert_eq!(view["wager"]["day"]["amount"], 2_000);
    // Its time comes (the stored time moved back a day).
    sql(
        &pool,
        "UPDATE players SET limits = (SELECT jsonb_agg(CASE WHEN l ? 'pending_at' \
         THEN jsonb_set(l, '{pending_at}', to_jsonb(now() - interval '1 second')) ELSE l END) \
         FROM jsonb_array_elements(limits) l) WHERE limits IS NOT NULL",
    )
    .await;
    let (status, view) = as_player(&server, Method::GET, "/v1/me/limits", &token, None).await;
    assert_eq!(status, 200);
    assert_eq!(view["wager"].as_object().unwrap().keys().collect::<Vec<_>>(), ["month"], "{view}");

    let entries = audited(&server, "player.limits").await;
    assert_eq!(entries.len(), 4);
    assert_eq!(
        entries[1]["before"],
        json!({"loss.week": {"amount": 500, "pending_amount": null, "pending_at": null}})
    );
    assert_eq!(entries[1]["after"]["loss.week"]["pending_amount"], 800);
    assert_eq!(entries[0]["actor"]["type"], "player");
    assert_reconciles(&pool).await;
}

#[sqlx::test]
async fn the_audit_entry_shows_each_limit_changed_with_its_own_amounts(pool: PgPool) {
    let server = TestServer::start(pool).await;
    let (_, token, _) = funded_player(&server, json!({})).await;
    // Two of one kind and two of one period, so that no limit can pass for another.
    set_limits(&server, &token, json!({"loss": {"day": 100, "week": 500}, "wager": {"week": 900}})).await;
    let entries = audited(&server, "player.limits").await;
    assert_eq!(entries.len(), 1);
    let set = |amount: i64| json!({"amount": amount, "pending_amount": null, "pending_at": null});
    assert_eq!(entries[0]["before"], json!({"loss.day": null, "loss.week": null, "wager.week": null}));
    assert_eq!(
        entries[0]["after"],
        json!({"loss.day": set(100), "loss.week": set(500), "wager.week": set(900)})
    );
}

#[sqlx::test]
async fn staff_read_and_lower_limits_but_never_raise_or_remove_them(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (user_id, token, _) = funded_player(&server, json!({})).await;
    set_limits(&server, &token, json!({"deposit": {"day": 1_000}})).await;
    let path = format!("/v1/players/{user_id}/limits");
    let (status, view) = server.send(Method::GET, &path, Some(ADMIN_TOKEN), &BLUESTAR, None).await;
    assert_eq!((status.as_u16(), view["deposit"]["day"]["amount"].as_i64()), (200, Some(1_000)), "{view}");

    let before = snapshot(&pool).await;
    for change in [json!({"deposit": {"day": 1_001}}), json!({"deposit": {"day": null}})] {
        let (status, body) =
            server.send(Method::PUT, &path, Some(ADMIN_TOKEN), &BLUESTAR, Some(&change)).await;
        assert_error(status, &body, 403, 403);
    }
    assert_eq!(snapshot(&pool).await, before, "a refused change changed nothing");

    let lower = json!({"deposit": {"day": 600}, "wager": {"week": 5_000}});
    let (status, view) = server.send(Method::PUT, &path, Some(ADMIN_TOKEN), &BLUESTAR, Some(&lower)).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        (view["deposit"]["day"]["amount"].as_i64(), view["wager"]["week"]["amount"].as_i64()),
        (Some(600), Some(5_000))
    );
    let entries = audited(&server, "player.limits").await;
    assert_eq!(entries.last().unwrap()["actor"]["type"], "platform");

    // Roles: support and compliance may, finance and analysts may not.
    for (role, allowed) in [("support", true), ("compliance", true), ("finance", false), ("analyst", false)] {
        let staff =
            json!({"email": format!("{role}@bluestar.example"), "role": role, "operator": "bluestar"});
        let (_, member) = server.send(Method::POST, "/v1/staff", Some(ADMIN_TOKEN), &[], Some(&staff)).await;
        let staff_token = member["token"].as_str().unwrap();
        let (status, _) = server.send(Method::GET, &path, Some(staff_token), &[], None).await;
        assert_eq!(status == 200, allowed, "{role} reads limits");
        let (status, _) = server
            .send(Method::PUT, &path, Some(staff_token), &[], Some(&json!({"deposit": {"day": 500}})))
            .await;
        assert_eq!(status == 200, allowed, "{role} lowers limits");
    }
    assert_reconciles(&pool).await;
}

#[sqlx::test]
async fn bad_limit_requests_are_400_naming_the_field_and_change_nothing(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (_, token, _) = funded_player(&server, json!({})).await;
    let before = snapshot(&pool).await;
    for (body, field) in [
        (json!({"bets": {"day": 1}}), "bets"),
        (json!({"loss": {"year": 1}}), "loss.year"),
        (json!({"loss": {"day": -1}}), "loss.day"),
        (json!({"loss": {"day": 1.5}}), "loss.day"),
        (json!({"loss": {"day": "100"}}), "loss.day"),
        (json!({"loss": {"day": 1_000_000_000_000_001_i64}}), "loss.day"),
        (json!({"loss": 100}), "loss"),
        (json!({}), "body"),
        (json!([]), "body"),
    ] {
        let (status, answer) = set_limits(&server, &token, body.clone()).await;
        assert_error(status, &answer, 400, 400);
        assert!(answer["message"].as_str().unwrap().starts_with(field), "{body} → {answer}");
    }
    assert_eq!(snapshot(&pool).await, before);
}

#[sqlx::test]
async fn a_bet_past_a_loss_or_wager_limit_is_105_and_wins_and_rollbacks_always_pass(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (user_id, token, secret) = funded_player(&server, json!({})).await;
    set_limits(&server, &token, json!({"loss": {"day": 200}, "wager": {"day": 300}})).await;

    let first = id();
    let (status, body) = play(&server, &secret, &user_id, vec![bet(first, 150)]).await;
    assert_eq!(status, 200, "{body}");
    let before = snapshot(&pool).await;
    let (status, body) = play(&server, &secret, &user_id, vec![win(id(), 5), bet(id(), 100)]).await;
    assert_error(status, &body, 422, 105);
    assert_eq!(body["message"], "the day's loss limit would be exceeded");
    assert_eq!(snapshot(&pool).await, before, "the whole request was refused");

    // A win earlier in the request offsets the loss it is checked against.
    let (status, body) = play(&server, &secret, &user_id, vec![win(id(), 200), bet(id(), 100)]).await;
    assert_eq!((status.as_u16(), body["balance"].as_i64()), (200, Some(9_950)), "{body}");
    let (status, body) = play(&server, &secret, &user_id, vec![bet(id(), 51)]).await;
    assert_error(status, &body, 422, 105);
    assert_eq!(body["message"], "the day's wager limit would be exceeded");

    // Rolling the first bet back gives its stake back to both limits.
    let (status, body) = play(&server, &secret, &user_id, vec![rollback(id(), first), bet(id(), 150)]).await;
    assert_eq!(status, 200, "{body}");
    let (_, view) = as_player(&server, Method::GET, "/v1/me/limits", &token, None).await;
    assert_eq!(view["wager"]["day"]["used"], 250, "{view}");
    assert_eq!(view["loss"]["day"]["used"], 50);
    assert_eq!(view["loss"]["day"]["remaining"], 150);

    // A pre-rollback and its late original count nowhere.
    let late = id();
    play(&server, &secret, &user_id, vec![rollback(id(), late)]).await;
    let (status, body) = play(&server, &secret, &user_id, vec![bet(late, 1_000)]).await;
    assert_eq!(status, 200, "{body}");
    let (_, view) = as_player(&server, Method::GET, "/v1/me/limits", &token, None).await;
    assert_eq!(view["wager"]["day"]["used"], 250, "{view}");
    assert_reconciles(&pool).await;
}

#[sqlx::test]
async fn an_own_deposit_past_a_deposit_limit_is_112_and_staff_deposits_do_not_count(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (user_id, token, _) = funded_player(&server, json!({})).await;
    set_limits(&server, &token, json!({"deposit": {"day": 1_000, "month": 5_000}})).await;
    let (status, body) = cashier(&server, "deposits", &token, "d1", 600).await;
    assert_eq!(status, 201, "{body}");
    let before = snapshot(&pool).await;
    let (status, body) = cashier(&server, "deposits", &token, "d2", 401).await;
    assert_error(status, &body, 422, 112);
    assert_eq!(body["message"], "the day's deposit limit would be exceeded");
    assert_eq!(snapshot(&pool).await, before);
    let (status, _) = cashier(&server, "deposits", &token, "d3", 400).await;
    assert_eq!(status, 201);

    let staff = [BLUESTAR[0], ("idempotency-key", "top-up")];
    let path = format!("/v1/players/{user_id}/deposits");
    let (status, _) =
        server.send(Method::POST, &path, Some(ADMIN_TOKEN), &staff, Some(&json!({"amount": 50_000}))).await;
    assert_eq!(status, 201, "a staff adjustment is not gated by limits");
    let (_, view) = as_player(&server, Method::GET, "/v1/me/limits", &token, None).await;
    assert_eq!(view["deposit"]["day"]["used"], 1_000, "{view}");
    assert_eq!(view["deposit"]["month"]["remaining"], 4_000);
    assert_reconciles(&pool).await;
}

#[sqlx::test]
async fn a_first_limit_counts_what_the_periods_in_progress_already_did(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (user_id, token, secret) = funded_player(&server, json!({})).await;
    cashier(&server, "deposits", &token, "d1", 700).await;
    let undone = id();
    play(&server, &secret, &user_id, vec![bet(id(), 300), bet(undone, 50), win(id(), 20)]).await;
    play(&server, &secret, &user_id, vec![rollback(id(), undone)]).await;

    let (_, view) =
        set_limits(&server, &token, json!({"wager": {"day": 500}, "deposit": {"week": 1_000}})).await;
    assert_eq!(view["wager"]["day"]["used"], 300, "{view}");
    assert_eq!(view["deposit"]["week"]["used"], 700);
    let (status, body) = play(&server, &secret, &user_id, vec![bet(id(), 201)]).await;
    assert_error(status, &body, 422, 105);
    let (status, body) = cashier(&server, "deposits", &token, "d2", 301).await;
    assert_error(status, &body, 422, 112);
    assert_reconciles(&pool).await;
}

#[sqlx::test]
async fn fifty_concurrent_bets_never_pass_a_wager_limit(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (user_id, token, secret) = funded_player(&server, json!({})).await;
    set_limits(&server, &token, json!({"wager": {"day": 1_000}})).await;
    let answers = join_all((0..50).map(|_| play(&server, &secret, &user_id, vec![bet(id(), 100)]))).await;
    let accepted = answers.iter().filter(|(status, _)| *status == 200).count();
    for (status, body) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_error(*status, body, 422, 105);
    }
    assert_eq!(accepted, 10, "exactly the limit's worth of bets");
    let (_, view) = as_player(&server, Method::GET, "/v1/me/limits", &token, None).await;
    assert_eq!(view["wager"]["day"]["used"], 1_000);
    assert_reconciles(&pool).await;
}

#[sqlx::test]
async fn a_time_out_ends_other_sessions_and_stops_bets_and_deposits_but_not_withdrawals(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (user_id, token, secret) = funded_player(&server, json!({})).await;
    set_tier(&server, &user_id, 2).await;
    let open = id();
    play(&server, &secret, &user_id, vec![bet(open, 100)]).await;
    let (_, other) = login(&server, "ann@example.com", PASSWORD).await;
    let other = other["token"].as_str().unwrap();

    let (status, body) =
        as_player(&server, Method::POST, "/v1/me/time-out", &token, Some(&json!({"days": 7}))).await;
    assert_eq!((status.as_u16(), body["status"].as_str()), (200, Some("cooling_off")), "{body}");
    let (status, _) = as_player(&server, Method::GET, "/v1/me", other, None).await;
    assert_eq!(status, 401, "every other session ended");
    let (status, me) = as_player(&server, Method::GET, "/v1/me", &token, None).await;
    assert_eq!((status.as_u16(), me["status"].as_str()), (200, Some("cooling_off")));
    assert_eq!(me["status_until"], body["status_until"]);

    let before = snapshot(&pool).await;
    let (status, body) = play(&server, &secret, &user_id, vec![bet(id(), 1)]).await;
    assert_error(status, &body, 422, 110);
    let (status, body) = cashier(&server, "deposits", &token, "d1", 100).await;
    assert_error(status, &body, 422, 110);
    assert_eq!(snapshot(&pool).await, before);
    let (status, body) = cashier(&server, "withdrawals", &token, "w1", 100).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = play(&server, &secret, &user_id, vec![win(id(), 30), rollback(id(), open)]).await;
    assert_eq!((status.as_u16(), body["balance"].as_i64()), (200, Some(9_930)), "{body}");

    // Nobody lifts it: staff get 409 code 131, and a shorter one cannot replace it.
    let before = snapshot(&pool).await;
    let patch = format!("/v1/players/{user_id}");
    for status_wanted in ["active", "blocked"] {
        let body = json!({"status": status_wanted});
        let (status, answer) =
            server.send(Method::PATCH, &patch, Some(ADMIN_TOKEN), &BLUESTAR, Some(&body)).await;
        assert_error(status, &answer, 409, 131);
    }
    let (status, answer) =
        as_player(&server, Method::POST, "/v1/me/time-out", &token, Some(&json!({"days": 1}))).await;
    assert_error(status, &answer, 409, 131);
    assert_eq!(snapshot(&pool).await, before);
    // A longer one may.
    let body = json!({"months": 6});
    let (status, answer) =
        as_player(&server, Method::POST, "/v1/me/self-exclusion", &token, Some(&body)).await;
    assert_eq!((status.as_u16(), answer["status"].as_str()), (200, Some("self_excluded")), "{answer}");

    // It ends by itself.
    sqlx::query("UPDATE players SET status_until = now() - interval '1 second'")
        .execute(&pool)
        .await
        .unwrap();
    let (_, me) = as_player(&server, Method::GET, "/v1/me", &token, None).await;
    assert_eq!((me["status"].as_str(), &me["status_until"]), (Some("active"), &Value::Null));
    let (status, body) = play(&server, &secret, &user_id, vec![bet(id(), 1)]).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = server
        .send(Method::PATCH, &patch, Some(ADMIN_TOKEN), &BLUESTAR, Some(&json!({"status": "blocked"})))
        .await;
    assert_eq!(status, 200, "staff act again once it is over");

    let entries = audited(&server, "player.exclusion").await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["before"]["status"], "cooling_off");
    assert_eq!(entries[1]["after"]["status"], "self_excluded");
    assert_reconciles(&pool).await;
}

#[sqlx::test]
async fn a_permanent_self_exclusion_is_never_replaced_and_bad_requests_are_400(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (_, token, _) = funded_player(&server, json!({})).await;
    let before = snapshot(&pool).await;
    for (path, body) in [
        ("/v1/me/time-out", json!({"days": 2})),
        ("/v1/me/time-out", json!({})),
        ("/v1/me/self-exclusion", json!({"months": 7})),
        ("/v1/me/self-exclusion", json!({"permanent": false})),
        ("/v1/me/self-exclusion", json!({"months": 6, "permanent": true})),
        ("/v1/me/self-exclusion", json!({})),
    ] {
        let (status, answer) = as_player(&server, Method::POST, path, &token, Some(&body)).await;
        assert_error(status, &answer, 400, 400);
    }
    assert_eq!(snapshot(&pool).await, before);

    let permanent = json!({"permanent": true});
    let (status, body) =
        as_player(&server, Method::POST, "/v1/me/self-exclusion", &token, Some(&permanent)).await;
    assert_eq!((status.as_u16(), &body["status_until"]), (200, &Value::Null), "{body}");
    let before = snapshot(&pool).await;
    for (path, body) in
        [("/v1/me/self-exclusion", json!({"months": 60})), ("/v1/me/time-out", json!({"days": 90}))]
    {
        let (status, answer) = as_player(&server, Method::POST, path, &token, Some(&body)).await;
        assert_error(status, &answer, 409, 131);
    }
    assert_eq!(snapshot(&pool).await, before);
    let (status, _) =
        as_player(&server, Method::POST, "/v1/me/self-exclusion", &token, Some(&permanent)).await;
    assert_eq!(status, 200, "the same exclusion again shortens nothing");
}

#[sqlx::test]
async fn reconcile_finds_a_counter_that_differs_from_the_ledger(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (user_id, token, secret) = funded_player(&server, json!({})).await;
    set_limits(&server, &token, json!({"wager": {"week": 1_000}})).await;
    play(&server, &secret, &user_id, vec![bet(id(), 100)]).await;
    assert_reconciles(&pool).await;
    sql(&pool, "UPDATE players SET week_sums.staked = (week_sums).staked - 1 WHERE week_sums IS NOT NULL")
        .await;
    let report = reconcile(&pool).await.unwrap();
    let check = report.checks.iter().find(|c| c.name == "limit_counters_match_the_ledger").unwrap();
    assert_eq!(check.mismatches, 1, "{check:?}");
}

#[sqlx::test]
async fn the_database_refuses_limits_or_counters_that_break_their_rules(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (_, token, _) = funded_player(&server, json!({})).await;
    set_limits(&server, &token, json!({"wager": {"week": 1_000}, "loss": {"day": 500}})).await;
    let limits = [
        ("an amount past the range", "jsonb_set(limits, '{0,amount}', '1000000000000001')"),
        ("a waiting change that lowers", "jsonb_set(limits, '{0,pending_amount}', '1')"),
        ("an unknown kind", "jsonb_set(limits, '{0,kind}', '\"bets\"')"),
        ("a string amount", "jsonb_set(limits, '{0,amount}', '\"5\"')"),
        ("a waiting change without its time", "jsonb_set(limits, '{0,pending_amount}', '2000000')"),
        ("one kind and period twice", "limits || limits"),
        ("not a list", "'{}'"),
    ]
    .map(|(problem, edit)| (problem, format!("limits = {edit}"), "players_limits_check"));
    let sums = [
        ("a negative sum", "day_sums.staked = -1"),
        ("a period that ends as it starts", "day_sums.period_end = (day_sums).period_start"),
        ("a missing sum", "day_sums.won = NULL"),
        ("every field missing", "day_sums = ROW(NULL, NULL, NULL, NULL, NULL)"),
    ]
    .map(|(problem, edit)| (problem, edit.to_owned(), "players_sums_check"));
    for (problem, set, check) in limits.into_iter().chain(sums) {
        let refused = sqlx::query(&format!("UPDATE players SET {set} WHERE limits IS NOT NULL"))
            .execute(&pool)
            .await
            .unwrap_err();
        let constraint = refused.as_database_error().and_then(|e| e.constraint()).map(str::to_owned);
        assert_eq!(constraint.as_deref(), Some(check), "{problem}: {refused}");
    }
}
