//! Operators as live configuration (API.md §6): documents, provider keys,
//! tenant resolution and the in-memory copy every instance serves from.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use wallet::operators::registry::Freshness;

fn bluestar() -> Value {
    json!({"code": "bluestar", "name": "Bluestar Casino", "currencies": ["GBP"], "timezone": "Europe/London",
           "domains": ["bluestar.example"], "theme": {"primary": "#1a3c8f", "radius": "8px"},
           "features": {"casino": {"default": true, "countries": {"GB": false}}, "live_betting": true}})
}

async fn create_operator(server: &TestServer, document: &Value) -> Value {
    let (status, body) =
        server.send(Method::POST, "/v1/operators", Some(ADMIN_TOKEN), &[], Some(document)).await;
    assert_eq!(status, 201, "{body}");
    body
}

/// Polls `check` until it holds or `within` has passed; how long it took.
async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[sqlx::test]
async fn an_operator_is_created_read_and_patched_with_defaults_filled_in(pool: PgPool) {
    let server = TestServer::start(pool).await;
    let created = create_operator(&server, &bluestar()).await;
    assert_eq!(created["version"], 1);
    assert_eq!(created["rules"]["min_age"], 18, "omitted rules take the contract's values");
    assert_eq!(created["rules"]["kyc_tiers"]["1"]["deposit_lifetime_max"], 200_000);

    let (status, read) =
        server.send(Method::GET, "/v1/operators/bluestar", Some(ADMIN_TOKEN), &[], None).await;
    assert_eq!((status.as_u16(), &read), (200, &created));
    let (_, all) = server.send(Method::GET, "/v1/operators", Some(ADMIN_TOKEN), &[], None).await;
    let codes: Vec<&str> = all.as_array().unwrap().iter().map(|o| o["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["default", "bluestar"]);

    let patch = json!({"theme": {"radius": null, "accent": "#ff0"}, "rules": {"min_age": 21}});
    let (status, patched) = server
        .send(
            Method::PATCH,
            "/v1/operators/bluestar",
            Some(ADMIN_TOKEN),
            &[("if-match", "\"1\"")],
            Some(&patch),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["version"], 2);
    assert_eq!(patched["theme"], json!({"primary": "#1a3c8f", "accent": "#ff0"}), "null removes a member");
    assert_eq!(patched["rules"]["min_age"], 21);
    assert_eq!(patched["rules"]["session_idle_minutes"], 30, "members the patch does not name stay");

    let (status, body) = server
        .send(
            Method::PATCH,
            "/v1/operators/bluestar",
            Some(ADMIN_TOKEN),
            &[("if-match", "\"1\"")],
            Some(&patch),
        )
        .await;
    assert_error(status, &body, 412, 412);
}

#[sqlx::test]
async fn bad_documents_name_the_field_and_change_nothing(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    create_operator(&server, &bluestar()).await;
    let before = snapshot(&pool).await;
    let creations = [
        (json!({"code": "Blue Star", "name": "x", "currencies": ["GBP"]}), 400, "code"),
        (json!({"name": "x", "currencies": ["GBP"]}), 400, "code"),
        (json!({"code": "other", "currencies": ["GBP"]}), 400, "name"),
        (json!({"code": "other", "name": "x", "currencies": ["gbp"]}), 400, "currencies[0]"),
        (
            json!({"code": "other", "name": "x", "currencies": ["GBP"], "timezone": "Europe/Atlantis"}),
            400,
            "timezone",
        ),
        (
            json!({"code": "other", "name": "x", "currencies": ["GBP"], "features": {"casino": 1}}),
            400,
            "features.casino",
        ),
        (
            json!({"code": "other", "name": "x", "currencies": ["GBP"], "domains": ["bluestar.example"]}),
            409,
            "domains",
        ),
        (json!({"code": "bluestar", "name": "x", "currencies": ["GBP"]}), 409, "operator"),
    ];
    for (document, status, field) in creations {
        let (got, body) =
            server.send(Method::POST, "/v1/operators", Some(ADMIN_TOKEN), &[], Some(&document)).await;
        assert_eq!(got.as_u16(), status, "{document} → {body}");
        assert!(body["message"].as_str().unwrap().starts_with(field), "{document} → {body}");
    }
    let patches = [
        (json!({"currencies": []}), "currencies"),
        (json!({"code": "renamed"}), "code"),
        (json!({"rules": {"login_max_failures": 0}}), "rules.login_max_failures"),
        (json!({"features": {"bonuses": {"default": "yes"}}}), "features.bonuses"),
        (json!([1, 2]), "body"),
    ];
    for (patch, field) in patches {
        let (status, body) =
            server.send(Method::PATCH, "/v1/operators/bluestar", Some(ADMIN_TOKEN), &[], Some(&patch)).await;
        assert_eq!(status, 400, "{patch} → {body}");
        assert!(body["message"].as_str().unwrap().starts_with(field), "{patch} → {body}");
    }
    let (status, body) = server.send(Method::GET, "/v1/operators/nope", Some(ADMIN_TOKEN), &[], None).await;
    assert_error(status, &body, 404, 120);
    let (status, body) =
        server.send(Method::PATCH, "/v1/operators/nope", Some(ADMIN_TOKEN), &[], Some(&json!({}))).await;
    assert_error(status, &body, 404, 120);
    assert_eq!(snapshot(&pool).await, before, "no refusal changed anything");
}

#[sqlx::test]
async fn an_operators_provider_keys_sign_its_own_endpoint_for_its_own_players(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    create_operator(&server, &json!({"code": "acme", "name": "Acme", "currencies": ["USD"]})).await;
    let (status, key) =
        server.send(Method::POST, "/v1/operators/acme/provider-keys", Some(ADMIN_TOKEN), &[], None).await;
    assert_eq!(status, 201, "{key}");
    let secret = key["secret"].as_str().unwrap().to_owned();
    let (_, listed) =
        server.send(Method::GET, "/v1/operators/acme/provider-keys", Some(ADMIN_TOKEN), &[], None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&secret), "the secret is shown only once");

    // The same user id under two operators is two players.
    let new_player = json!({"user_id": "p1", "currency": "USD"});
    let acme = [("x-operator", "acme")];
    let (status, _) =
        server.send(Method::POST, "/v1/players", Some(ADMIN_TOKEN), &acme, Some(&new_player)).await;
    assert_eq!(status, 201);
    let (status, _) = server
        .send(
            Method::POST,
            "/v1/players/p1/deposits",
            Some(ADMIN_TOKEN),
            &[("x-operator", "acme"), ("idempotency-key", "k")],
            Some(&json!({"amount": 500})),
        )
        .await;
    assert_eq!(status, 201);
    // Acme's tier 0 may not play (the contract's default tiers).
    let verified = json!({"tier": 1, "note": "documents checked"});
    let (status, _) =
        server.send(Method::PUT, "/v1/players/p1/kyc", Some(ADMIN_TOKEN), &acme, Some(&verified)).await;
    assert_eq!(status, 200);

    // Keys reach the hot path within a second (the in-memory copy follows a NOTIFY).
    let path = "/v1/operators/acme/process";
    let signed = |amount: i64| batch("p1", vec![bet(id(), amount)]);
    let reached = eventually(Duration::from_secs(1), async || {
        server.process_at(path, &secret, &signed(1)).await.0 == 200
    })
    .await;
    assert!(reached.is_some(), "a new key signs within 1 s");
    let (status, body) = server.process_at(path, &secret, &signed(100)).await;
    assert_eq!((status.as_u16(), body["balance"].as_i64()), (200, Some(399)), "{body}");

    // HMAC_SECRETS sign only default's endpoints; default has no player p1.
    let (status, body) = server.process_at(path, SECRET, &signed(1)).await;
    assert_error(status, &body, 403, 403);
    let (status, body) = server.process(&signed(1)).await;
    assert_error(status, &body, 404, 101);
    let (status, body) = server.process_at("/v1/operators/ghost/process", &secret, &signed(1)).await;
    assert_error(status, &body, 404, 120);

    let key_id = key["key_id"].as_str().unwrap();
    let (status, _) = server
        .send(
            Method::DELETE,
            &format!("/v1/operators/acme/provider-keys/{key_id}"),
            Some(ADMIN_TOKEN),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 204);
    let refused = eventually(Duration::from_secs(1), async || {
        server.process_at(path, &secret, &signed(1)).await.0 == 403
    })
    .await;
    assert!(refused.is_some(), "a revoked key is refused within 1 s");
    let (_, listed) =
        server.send(Method::GET, "/v1/operators/acme/provider-keys", Some(ADMIN_TOKEN), &[], None).await;
    assert!(listed[0]["revoked_at"].is_string());
}

#[sqlx::test]
async fn a_change_through_one_instance_is_served_by_another_within_a_second(pool: PgPool) {
    // Two instances: each with its own pool, as two processes would have.
    let other_pool = PgPool::connect_with((*pool.connect_options()).clone()).await.unwrap();
    let a = TestServer::start(pool).await;
    let b = TestServer::start(other_pool).await;
    create_operator(&a, &bluestar()).await;
    let tenant = async |server: &TestServer| {
        server.send(Method::GET, "/v1/tenant?country=SE", None, &[("x-operator", "bluestar")], None).await
    };
    let seen = eventually(Duration::from_secs(1), async || tenant(&b).await.0 == 200).await;
    assert!(seen.is_some(), "instance B serves an operator created through A within 1 s");

    let patch = json!({"name": "Bluestar Royale", "features": {"live_betting": {"default": false, "countries": {"SE": true}}}});
    let (status, _) =
        a.send(Method::PATCH, "/v1/operators/bluestar", Some(ADMIN_TOKEN), &[], Some(&patch)).await;
    assert_eq!(status, 200);
    let took =
        eventually(Duration::from_secs(1), async || tenant(&b).await.1["name"] == "Bluestar Royale").await;
    assert!(took.is_some(), "instance B serves the change within 1 s");
    let (_, served) = tenant(&b).await;
    assert_eq!(served["features"]["live_betting"], true, "SE is an exception to the default");
    assert_eq!(served["features"]["casino"], true);
}

#[sqlx::test]
async fn hundreds_of_concurrent_readers_after_a_change_cause_one_load(pool: PgPool) {
    // The safety net is slowed down so that only the notification loads.
    let quiet = Freshness { refresh_every: Duration::from_secs(60), max_age: Duration::from_secs(300) };
    let server = TestServer::start_fresh(pool, quiet).await;
    create_operator(&server, &bluestar()).await;
    let registry = server.state.operators.clone();
    assert!(eventually(Duration::from_secs(1), async || registry.by_code("bluestar").is_some())
        .await
        .is_some());
    let loads = registry.loads();

    let patch = json!({"theme": {"primary": "#000000"}});
    let (status, _) =
        server.send(Method::PATCH, "/v1/operators/bluestar", Some(ADMIN_TOKEN), &[], Some(&patch)).await;
    assert_eq!(status, 200);
    let readers = (0..300)
        .map(|_| server.send(Method::GET, "/v1/tenant", None, &[("host", "bluestar.example:443")], None));
    let answers = futures::future::join_all(readers).await;
    assert!(answers.iter().all(|(status, _)| *status == 200));
    let fresh = async || registry.by_code("bluestar").unwrap().document.theme["primary"] == "#000000";
    assert!(eventually(Duration::from_secs(1), fresh).await.is_some());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(registry.loads() - loads, 1, "one load for the change, however many readers");
    let metrics = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("wallet_tenant_config_loads_total{operator=\"bluestar\"}"), "{metrics}");
}

#[sqlx::test]
async fn a_notification_lost_with_the_listener_is_made_good_by_the_safety_net(pool: PgPool) {
    let net = Freshness { refresh_every: Duration::from_millis(500), max_age: Duration::from_secs(300) };
    let server = TestServer::start_fresh(pool.clone(), net).await;
    create_operator(&server, &json!({"code": "acme", "name": "Acme", "currencies": ["USD"]})).await;
    let (_, key) =
        server.send(Method::POST, "/v1/operators/acme/provider-keys", Some(ADMIN_TOKEN), &[], None).await;
    let secret = key["secret"].as_str().unwrap().to_owned();
    let registry = server.state.operators.clone();
    let holds_key = async |count: usize| {
        registry
            .by_code("acme")
            .is_some_and(|t| format!("{:?}", t.keys) == format!("SigningKeys({count} active)"))
    };
    assert!(eventually(Duration::from_secs(1), async || holds_key(1).await).await.is_some());
    assert!(!secret.is_empty());

    // Cut the operators' listening connection, and revoke the key while it is gone.
    let terminated: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND query LIKE 'LISTEN%wallet_operators%') t",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(terminated, 1, "one operators listener per instance");
    sqlx::query("UPDATE provider_keys SET revoked_at = now()").execute(&pool).await.unwrap();
    sqlx::query("UPDATE operators SET revision = revision + 1 WHERE code = 'acme'")
        .execute(&pool)
        .await
        .unwrap();
    let took = eventually(Duration::from_millis(1_500), async || holds_key(0).await).await;
    assert!(took.is_some(), "the revoked key is dropped within the safety-net interval");
}

#[sqlx::test]
async fn the_tenant_is_found_by_host_then_x_operator_and_flags_are_evaluated_per_country(pool: PgPool) {
    let server = TestServer::start(pool).await;
    create_operator(&server, &bluestar()).await;
    let by_host = async |host: &str, country: &str| {
        server
            .send(Method::GET, &format!("/v1/tenant?country={country}"), None, &[("host", host)], None)
            .await
    };
    assert!(eventually(Duration::from_secs(1), async || by_host("BlueStar.example:8080", "GB").await.0
        == 200)
    .await
    .is_some());
    let (_, gb) = by_host("bluestar.example", "GB").await;
    assert_eq!(
        gb,
        json!({"code": "bluestar", "name": "Bluestar Casino", "currencies": ["GBP"],
               "theme": {"primary": "#1a3c8f", "radius": "8px"},
               "features": {"bonuses": true, "casino": false, "live_betting": true, "player_registration": true}})
    );
    let (_, se) = by_host("bluestar.example", "se").await;
    assert_eq!(se["features"]["casino"], true);

    let (status, body) =
        server.send(Method::GET, "/v1/tenant", None, &[("x-operator", "default")], None).await;
    assert_eq!((status.as_u16(), &body["code"]), (200, &json!("default")));
    let (status, body) = server.send(Method::GET, "/v1/tenant", None, &[], None).await;
    assert_error(status, &body, 404, 120);
    let (status, body) = server.send(Method::GET, "/v1/tenant", None, &[("x-operator", "nope")], None).await;
    assert_error(status, &body, 404, 120);
    let (status, body) = by_host("bluestar.example", "GBR").await;
    assert_error(status, &body, 400, 400);
}

#[sqlx::test]
async fn casino_off_in_the_players_country_refuses_bets_but_settles_wins_and_rollbacks(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (status, _) = server
        .send(
            Method::PATCH,
            "/v1/operators/default",
            Some(ADMIN_TOKEN),
            &[],
            Some(&json!({"features": {"casino": {"default": true, "countries": {"GB": false}}}})),
        )
        .await;
    assert_eq!(status, 200);
    player_with_balance(&pool, "gb", "USD", 1_000).await;
    player_with_balance(&pool, "se", "USD", 1_000).await;
    sqlx::query("UPDATE players SET country = upper(user_id)").execute(&pool).await.unwrap();
    let open = id();
    let (status, _) = server.process(&batch("gb", vec![bet(open, 100)])).await;
    // The bet may beat the notification; what matters is what follows it.
    let refused = eventually(Duration::from_secs(1), async || {
        server.process(&batch("gb", vec![bet(id(), 1)])).await.1["code"] == 107
    })
    .await;
    assert!(refused.is_some(), "a bet from GB is refused once the change is served");
    let before = snapshot(&pool).await;
    let (status2, body) = server.process(&batch("gb", vec![win(id(), 5), bet(id(), 1)])).await;
    assert_error(status2, &body, 422, 107);
    assert_eq!(snapshot(&pool).await, before, "the whole request is refused");
    if status == 200 {
        let (status, body) = server.process(&batch("gb", vec![win(id(), 50), rollback(id(), open)])).await;
        assert_eq!(status, 200, "wins and rollbacks settle open rounds: {body}");
    }
    let (status, _) = server.process(&batch("se", vec![bet(id(), 1)])).await;
    assert_eq!(status, 200, "other countries play on");
}
