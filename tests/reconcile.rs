//! Reconciliation finds what it claims to find: a clean ledger passes, and
//! each kind of corruption is named by the check that owns it.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use sqlx::PgPool;
use tower::ServiceExt;
use uuid::Uuid;
use wallet::ops::reconcile::{reconcile, Report};
use wallet::provider::signature::sign;
use wallet::AppState;

fn service(pool: PgPool) -> Router {
    wallet::app(AppState::new(pool, &["test".to_string()], "admin"))
}

async fn call(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn provider(app: &Router, body: Value) -> Value {
    let body = body.to_string();
    let request = Request::post("/v1/process")
        .header("authorization", sign(b"test", body.as_bytes()))
        .body(Body::from(body))
        .unwrap();
    let (status, answer) = call(app, request).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

/// One player with a deposit, bets, a win, a rollback, a repeated rollback,
/// and a pre-rollback whose original arrives later.
async fn seed(pool: &PgPool) -> Router {
    let app = service(pool.clone());
    let admin = |request: axum::http::request::Builder| request.header("authorization", "Bearer admin");
    let create = admin(Request::post("/v1/players"))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"user_id":"rec-1","currency":"EUR"}"#))
        .unwrap();
    assert_eq!(call(&app, create).await.0, StatusCode::CREATED);
    let deposit = admin(Request::post("/v1/players/rec-1/deposits"))
        .header("content-type", "application/json")
        .header("idempotency-key", "opening")
        .body(Body::from(r#"{"amount":10000}"#))
        .unwrap();
    assert_eq!(call(&app, deposit).await.0, StatusCode::CREATED);

    let (bet, win, late) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let head = json!({"user_id": "rec-1", "currency": "EUR", "game": "slots"});
    let with = |game_id: &str, actions: Value| {
        let mut body = head.clone();
        body["game_id"] = json!(game_id);
        body["actions"] = actions;
        body
    };
    provider(
        &app,
        with(
            "r1",
            json!([
                {"action": "bet", "action_id": bet, "amount": 300},
                {"action": "win", "action_id": win, "amount": 500},
            ]),
        ),
    )
    .await;
    provider(
        &app,
        with(
            "r2",
            json!([
                {"action": "bet", "action_id": Uuid::new_v4(), "amount": 200},
                {"action": "rollback", "action_id": Uuid::new_v4(), "original_action_id": bet},
                {"action": "rollback", "action_id": Uuid::new_v4(), "original_action_id": bet},
                {"action": "rollback", "action_id": Uuid::new_v4(), "original_action_id": late},
            ]),
        ),
    )
    .await;
    provider(
        &app,
        with(
            "r3",
            json!([
                {"action": "bet", "action_id": late, "amount": 700},
            ]),
        ),
    )
    .await;
    app
}

fn failing(report: &Report) -> Vec<&'static str> {
    report.checks.iter().filter(|c| c.mismatches > 0).map(|c| c.name).collect()
}

#[sqlx::test]
async fn a_clean_ledger_reconciles_and_the_endpoint_says_so(pool: PgPool) {
    let app = seed(&pool).await;
    let report = reconcile(&pool).await.unwrap();
    assert!(report.ok, "{:?}", failing(&report));
    assert_eq!((report.players, report.ledger_rows), (1, 8));
    assert_eq!(report.total_balance, 10000 - 200 + 500);

    let request = Request::get("/v1/admin/reconciliation")
        .header("authorization", "Bearer admin")
        .body(Body::empty())
        .unwrap();
    let (status, answer) = call(&app, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["ok"], true);
    let anonymous = Request::get("/v1/admin/reconciliation").body(Body::empty()).unwrap();
    assert_eq!(call(&app, anonymous).await.0, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn a_balance_that_drifted_from_the_ledger_is_named(pool: PgPool) {
    let _app = seed(&pool).await;
    sqlx::query("UPDATE players SET balance = balance + 1").execute(&pool).await.unwrap();
    let report = reconcile(&pool).await.unwrap();
    assert!(!report.ok);
    assert_eq!(failing(&report), ["balance_equals_ledger_sum", "chain_ends_at_the_balance"]);
}

#[sqlx::test]
async fn a_lost_ledger_row_breaks_the_chain_and_the_registry(pool: PgPool) {
    let _app = seed(&pool).await;
    sqlx::query("DELETE FROM ledger WHERE seq = 3").execute(&pool).await.unwrap();
    let failed = failing(&reconcile(&pool).await.unwrap());
    for check in [
        "balance_equals_ledger_sum",
        "balance_chain_is_unbroken",
        "chain_ends_at_the_balance",
        "processed_actions_match_their_ledger_row",
    ] {
        assert!(failed.contains(&check), "{check} not in {failed:?}");
    }
}

#[sqlx::test]
async fn an_action_applied_twice_is_named(pool: PgPool) {
    let _app = seed(&pool).await;
    // A second effect of the first bet, chained correctly onto the balance:
    // only the exactly-once checks can see it.
    sqlx::query(
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
    .execute(&pool)
    .await
    .unwrap();
    let failed = failing(&reconcile(&pool).await.unwrap());
    assert!(failed.contains(&"action_took_effect_once"), "{failed:?}");
    assert!(failed.contains(&"ledger_actions_are_registered"), "{failed:?}");
    assert!(!failed.contains(&"balance_chain_is_unbroken"), "{failed:?}");
}

#[sqlx::test]
async fn rollups_that_disagree_with_the_actions_are_named(pool: PgPool) {
    let _app = seed(&pool).await;
    sqlx::query("UPDATE rtp_hourly SET total_bet = total_bet + 5").execute(&pool).await.unwrap();
    sqlx::query("DELETE FROM round_buckets").execute(&pool).await.unwrap();
    assert_eq!(
        failing(&reconcile(&pool).await.unwrap()),
        ["rtp_rollups_match_the_actions", "round_buckets_match_the_live_bets"]
    );
}

#[sqlx::test]
async fn a_reversal_the_registry_forgot_is_named(pool: PgPool) {
    let _app = seed(&pool).await;
    sqlx::query(
        "UPDATE actions SET reversed_by = NULL
         WHERE reversed_by IS NOT NULL AND tx_id IS NOT NULL AND kind = 'bet' AND amount = 300",
    )
    .execute(&pool)
    .await
    .unwrap();
    let failed = failing(&reconcile(&pool).await.unwrap());
    assert!(failed.contains(&"net_effect_of_each_bet_and_win"), "{failed:?}");
    assert!(failed.contains(&"rtp_rollups_match_the_actions"), "{failed:?}");
}

#[sqlx::test]
async fn a_daily_summary_that_disagrees_with_the_rollups_is_named(pool: PgPool) {
    let _app = seed(&pool).await;
    // Two days pass; the summariser seals the day the play happened on.
    for sql in [
        "UPDATE ledger SET created_at = created_at - interval '2 days'",
        "UPDATE actions SET processed_at = processed_at - interval '2 days' WHERE processed_at IS NOT NULL",
        "UPDATE rtp_hourly SET bucket = bucket - interval '2 days'",
        "UPDATE round_buckets SET bucket = bucket - interval '2 days'",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    let sealed = wallet::reports::summary::summarize(&pool).await.unwrap();
    assert!(sealed.days_sealed >= 1, "{sealed:?}");
    let report = reconcile(&pool).await.unwrap();
    assert!(report.ok, "{:?}", failing(&report));

    sqlx::query("UPDATE rtp_daily SET total_win = total_win + 1").execute(&pool).await.unwrap();
    sqlx::query("DELETE FROM rtp_daily_players").execute(&pool).await.unwrap();
    assert_eq!(
        failing(&reconcile(&pool).await.unwrap()),
        ["daily_summary_matches_the_rollups", "daily_players_match_the_rollups"]
    );
}
