//! The game catalog and bonus campaigns (API.md §10): validation, scoping,
//! the `bonuses` flag, the audit trail, and the in-memory catalog shared by
//! every instance.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use wallet::domain::DEFAULT_OPERATOR;

fn welcome() -> Value {
    json!({"code": "WELCOME100", "kind": "deposit_match", "match_percent": 100, "max_bonus": 10000,
           "min_deposit": 1000, "wagering_multiplier": 30,
           "contributions": {"slots": 100, "table": 10, "other": 0}, "max_bet": 500,
           "max_conversion_multiplier": 5, "valid_days": 30, "active": true})
}

async fn as_admin(server: &TestServer, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    let (status, body) = server.send(method, path, Some(ADMIN_TOKEN), &[], body).await;
    (status.as_u16(), body)
}

async fn staff_token(server: &TestServer, email: &str, role: &str, operator: Value) -> String {
    let body = json!({"email": email, "role": role, "operator": operator});
    let (status, body) = as_admin(server, Method::POST, "/v1/staff", Some(&body)).await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

async fn create_operator(server: &TestServer, code: &str) {
    let document = json!({"code": code, "name": code, "currencies": ["USD"]});
    let (status, body) = as_admin(server, Method::POST, "/v1/operators", Some(&document)).await;
    assert_eq!(status, 201, "{body}");
    wait_for(|| server.state.operators.by_code(code).is_some(), "the operator reaches memory").await;
}

async fn wait_for(mut condition: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while !condition() {
        assert!(Instant::now() < deadline, "{what} within a second");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn audited(server: &TestServer, action: &str) -> Vec<Value> {
    let (status, page) = as_admin(server, Method::GET, &format!("/v1/audit?action={action}"), None).await;
    assert_eq!(status, 200, "{page}");
    audit_entries(&page)
}

#[sqlx::test]
async fn a_campaign_is_created_read_listed_and_patched_with_each_change_audited(pool: PgPool) {
    let server = TestServer::start(pool).await;
    let (status, created) = as_admin(&server, Method::POST, "/v1/bonus/campaigns", Some(&welcome())).await;
    assert_eq!(status, 201, "{created}");
    let mut expected = welcome();
    expected["created_at"] = created["created_at"].clone();
    expected["updated_at"] = created["updated_at"].clone();
    assert_eq!(created, expected, "every term is answered as sent");

    let (status, read) = as_admin(&server, Method::GET, "/v1/bonus/campaigns/WELCOME100", None).await;
    assert_eq!((status, &read), (200, &created));
    let manual = json!({"code": "vip-gift", "kind": "manual", "max_bonus": 5000, "wagering_multiplier": 0,
                        "contributions": {}, "valid_days": 7});
    let (status, gift) = as_admin(&server, Method::POST, "/v1/bonus/campaigns", Some(&manual)).await;
    assert_eq!(status, 201, "{gift}");
    assert_eq!(
        (
            &gift["match_percent"],
            &gift["min_deposit"],
            &gift["max_bet"],
            &gift["max_conversion_multiplier"],
            &gift["active"]
        ),
        (&json!(0), &json!(0), &Value::Null, &Value::Null, &json!(true)),
        "omitted terms take their documented defaults: {gift}"
    );
    let (status, listed) = as_admin(&server, Method::GET, "/v1/bonus/campaigns", None).await;
    assert_eq!((status, listed), (200, json!([created, gift])));

    let patch =
        json!({"active": false, "max_bet": null, "contributions": {"table": 20}, "code": "WELCOME100"});
    let (status, patched) =
        as_admin(&server, Method::PATCH, "/v1/bonus/campaigns/WELCOME100", Some(&patch)).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!((&patched["active"], &patched["max_bet"]), (&json!(false), &Value::Null));
    assert_eq!(patched["contributions"], json!({"slots": 100, "table": 20, "other": 0}));
    assert_eq!(patched["max_bonus"], 10000, "terms the patch leaves out are kept");
    let (_, read) = as_admin(&server, Method::GET, "/v1/bonus/campaigns/WELCOME100", None).await;
    assert_eq!(read, patched);

    // A patch that changes nothing is answered and not audited.
    let (status, same) =
        as_admin(&server, Method::PATCH, "/v1/bonus/campaigns/WELCOME100", Some(&json!({"active": false})))
            .await;
    assert_eq!((status, &same), (200, &patched));

    let creates = audited(&server, "campaign.create").await;
    assert_eq!(creates.len(), 2);
    assert_eq!(creates[0]["target"], "campaign:WELCOME100");
    assert_eq!(creates[0]["after"], created);
    assert_eq!(creates[0]["actor"]["type"], "platform");
    let updates = audited(&server, "campaign.update").await;
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!((&updates[0]["before"], &updates[0]["after"]), (&created, &patched));
    assert_eq!(updates[0]["operator"], "default");
}

#[sqlx::test]
async fn every_bad_field_is_a_400_naming_it_and_changes_nothing(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (status, _) = as_admin(&server, Method::POST, "/v1/bonus/campaigns", Some(&welcome())).await;
    assert_eq!(status, 201);
    let with = |field: &str, value: Value| {
        let mut body = welcome();
        body["code"] = json!("NEW");
        match value {
            Value::Null if field != "max_bet" => {
                body.as_object_mut().unwrap().remove(field);
            }
            value => body[field] = value,
        }
        body
    };
    let refused = [
        ("code", json!("no spaces")),
        ("kind", json!("cashback")),
        ("match_percent", Value::Null),
        ("match_percent", json!(1001)),
        ("max_bonus", json!(-1)),
        ("max_bonus", json!(1_000_000_000_000_001_i64)),
        ("max_bonus", json!(10.5)),
        ("min_deposit", json!(-1)),
        ("wagering_multiplier", json!(1001)),
        ("contributions", json!({"Slots": 10})),
        ("contributions", json!({"slots": 101})),
        ("contributions", json!("slots")),
        ("max_bet", json!(0)),
        ("max_conversion_multiplier", json!(-1)),
        ("valid_days", json!(3651)),
        ("valid_days", json!(0)),
        ("active", json!(1)),
        ("surprise", json!(true)),
    ];
    let before = snapshot(&pool).await;
    for (field, value) in refused {
        let body = with(field, value.clone());
        let (status, answer) =
            server.send(Method::POST, "/v1/bonus/campaigns", Some(ADMIN_TOKEN), &[], Some(&body)).await;
        assert_error(status, &answer, 400, 400);
        let message = answer["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{field} = {value}: {message}");
    }
    // An exponent is not an amount, even when it is a whole number.
    let raw = r#"{"code":"E","kind":"manual","max_bonus":1e3,"wagering_multiplier":1,"contributions":{},"valid_days":1}"#;
    let response = server
        .client
        .post(server.url("/v1/bonus/campaigns"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert!(answer["message"].as_str().unwrap().starts_with("max_bonus"), "{answer}");

    let patches = [
        (json!({"code": "OTHER"}), "code"),
        (json!({"kind": "manual"}), "kind"),
        (json!({"max_bonus": null}), "max_bonus"),
        (json!({"valid_days": 0}), "valid_days"),
        (json!({"contributions": {"slots": -1}}), "contributions.slots"),
        (json!([1]), "body"),
    ];
    for (patch, field) in patches {
        let (status, answer) = server
            .send(Method::PATCH, "/v1/bonus/campaigns/WELCOME100", Some(ADMIN_TOKEN), &[], Some(&patch))
            .await;
        assert_error(status, &answer, 400, 400);
        assert!(answer["message"].as_str().unwrap().starts_with(field), "{patch}: {answer}");
    }
    assert_eq!(snapshot(&pool).await, before, "a refused request changes nothing");
}

#[sqlx::test]
async fn a_second_campaign_with_a_code_is_409_but_another_operator_may_use_it(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (status, _) = as_admin(&server, Method::POST, "/v1/bonus/campaigns", Some(&welcome())).await;
    assert_eq!(status, 201);
    let before = snapshot(&pool).await;
    let (status, answer) =
        server.send(Method::POST, "/v1/bonus/campaigns", Some(ADMIN_TOKEN), &[], Some(&welcome())).await;
    assert_error(status, &answer, 409, 409);
    assert_eq!(snapshot(&pool).await, before);

    create_operator(&server, "acme").await;
    let (status, answer) = server
        .send(
            Method::POST,
            "/v1/bonus/campaigns",
            Some(ADMIN_TOKEN),
            &[("x-operator", "acme")],
            Some(&welcome()),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
}

#[sqlx::test]
async fn only_admins_manage_the_catalog(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let before = snapshot(&pool).await;
    let filing = json!({"category": "slots"});
    for role in ["finance", "support", "compliance", "analyst"] {
        let token = staff_token(&server, &format!("{role}@example.com"), role, json!("default")).await;
        for (method, path, body) in [
            (Method::POST, "/v1/bonus/campaigns", Some(&welcome())),
            (Method::GET, "/v1/bonus/campaigns", None),
            (Method::GET, "/v1/bonus/campaigns/WELCOME100", None),
            (Method::PATCH, "/v1/bonus/campaigns/WELCOME100", Some(&filing)),
            (Method::PUT, "/v1/games/book", Some(&filing)),
            (Method::GET, "/v1/games", None),
        ] {
            let (status, answer) = server.send(method, path, Some(&token), &[], body).await;
            assert_error(status, &answer, 403, 403);
        }
    }
    let after = snapshot(&pool).await;
    assert_eq!(after["games"], before["games"]);
    assert_eq!(after["bonus_campaigns"], before["bonus_campaigns"]);
    let admin = staff_token(&server, "boss@example.com", "admin", json!("default")).await;
    let (status, answer) =
        server.send(Method::POST, "/v1/bonus/campaigns", Some(&admin), &[], Some(&welcome())).await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = server.send(Method::PUT, "/v1/games/book", Some(&admin), &[], Some(&filing)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(audited(&server, "game.category").await[0]["actor"]["type"], "staff");
}

#[sqlx::test]
async fn operator_staff_see_only_their_own_operators_campaigns_and_games(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    create_operator(&server, "acme").await;
    let (status, _) = as_admin(&server, Method::POST, "/v1/bonus/campaigns", Some(&welcome())).await;
    assert_eq!(status, 201);
    let (status, _) =
        as_admin(&server, Method::PUT, "/v1/games/book", Some(&json!({"category": "slots"}))).await;
    assert_eq!(status, 200);
    let acme = staff_token(&server, "boss@acme.example", "admin", json!("acme")).await;
    // X-Operator is ignored for operator staff.
    for headers in [vec![], vec![("x-operator", "default")]] {
        let (status, answer) =
            server.send(Method::GET, "/v1/bonus/campaigns/WELCOME100", Some(&acme), &headers, None).await;
        assert_error(status, &answer, 404, 404);
        let (status, answer) = server
            .send(
                Method::PATCH,
                "/v1/bonus/campaigns/WELCOME100",
                Some(&acme),
                &headers,
                Some(&json!({"active": false})),
            )
            .await;
        assert_error(status, &answer, 404, 404);
        let (status, listed) =
            server.send(Method::GET, "/v1/bonus/campaigns", Some(&acme), &headers, None).await;
        assert_eq!((status.as_u16(), listed), (200, json!([])));
        let (status, listed) = server.send(Method::GET, "/v1/games", Some(&acme), &headers, None).await;
        assert_eq!((status.as_u16(), listed), (200, json!([])));
    }
    let (_, read) = as_admin(&server, Method::GET, "/v1/bonus/campaigns/WELCOME100", None).await;
    assert_eq!(read["active"], true, "acme's admin changed nothing");
    // Platform staff name the operator with X-Operator.
    let (status, answer) = server
        .send(
            Method::GET,
            "/v1/bonus/campaigns/WELCOME100",
            Some(ADMIN_TOKEN),
            &[("x-operator", "acme")],
            None,
        )
        .await;
    assert_error(status, &answer, 404, 404);
}

#[sqlx::test]
async fn an_operator_without_bonuses_is_refused_with_code_121_on_every_route(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    create_operator(&server, "acme").await;
    let off = json!({"features": {"bonuses": false}});
    let (status, answer) = as_admin(&server, Method::PATCH, "/v1/operators/acme", Some(&off)).await;
    assert_eq!(status, 200, "{answer}");
    wait_for(
        || !server.state.operators.by_code("acme").unwrap().document.flag("bonuses", None),
        "the flag reaches memory",
    )
    .await;
    let acme = staff_token(&server, "boss@acme.example", "admin", json!("acme")).await;
    let before = snapshot(&pool).await;
    let filing = json!({"category": "slots"});
    for token in [acme.as_str(), ADMIN_TOKEN] {
        for (method, path, body) in [
            (Method::POST, "/v1/bonus/campaigns", Some(&welcome())),
            // Even a body that would be a 400.
            (Method::POST, "/v1/bonus/campaigns", Some(&json!({}))),
            (Method::GET, "/v1/bonus/campaigns", None),
            (Method::GET, "/v1/bonus/campaigns/WELCOME100", None),
            (Method::PATCH, "/v1/bonus/campaigns/WELCOME100", Some(&filing)),
            (Method::PUT, "/v1/games/book", Some(&filing)),
            (Method::GET, "/v1/games", None),
        ] {
            let (status, answer) =
                server.send(method.clone(), path, Some(token), &[("x-operator", "acme")], body).await;
            assert_error(status, &answer, 403, 121);
        }
    }
    assert_eq!(snapshot(&pool).await, before);
    // The operator's flag, not the platform's: default still has bonuses.
    let (status, _) = as_admin(&server, Method::POST, "/v1/bonus/campaigns", Some(&welcome())).await;
    assert_eq!(status, 201);
}

#[sqlx::test]
async fn a_game_filed_through_one_instance_is_categorised_by_another_within_a_second(pool: PgPool) {
    let first = TestServer::start(pool.clone()).await;
    let second = TestServer::start(pool.clone()).await;
    let game = "acme:book/of ra";
    let path = "/v1/games/acme%3Abook%2Fof%20ra";
    assert_eq!(&*second.state.games.category(DEFAULT_OPERATOR, Some(game)), "other", "unfiled");

    let (status, answer) = as_admin(&first, Method::PUT, path, Some(&json!({"category": "slots"}))).await;
    assert_eq!((status, answer), (200, json!({"game": game, "category": "slots"})));
    wait_for(|| &*second.state.games.category(DEFAULT_OPERATOR, Some(game)) == "slots", "the filing").await;
    assert_eq!(&*first.state.games.category(DEFAULT_OPERATOR, Some(game)), "slots");
    assert_eq!(&*second.state.games.category(DEFAULT_OPERATOR, None), "other", "no game named");
    assert_eq!(&*second.state.games.category(DEFAULT_OPERATOR, Some("acme:other")), "other");
    assert_eq!(&*second.state.games.category(DEFAULT_OPERATOR + 1, Some(game)), "other", "another operator");

    let (status, _) = as_admin(&first, Method::PUT, path, Some(&json!({"category": "table"}))).await;
    assert_eq!(status, 200);
    wait_for(|| &*second.state.games.category(DEFAULT_OPERATOR, Some(game)) == "table", "the change").await;
    // Filing it again under the same category changes nothing and is not audited.
    let (status, _) = as_admin(&first, Method::PUT, path, Some(&json!({"category": "table"}))).await;
    assert_eq!(status, 200);

    let entries = audited(&first, "game.category").await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0]["target"], format!("game:{game}"));
    assert_eq!((&entries[0]["before"], &entries[0]["after"]["category"]), (&Value::Null, &json!("slots")));
    assert_eq!(
        (&entries[1]["before"]["category"], &entries[1]["after"]["category"]),
        (&json!("slots"), &json!("table"))
    );
    let (status, listed) = as_admin(&second, Method::GET, "/v1/games", None).await;
    assert_eq!(status, 200);
    assert_eq!((&listed[0]["game"], &listed[0]["category"]), (&json!(game), &json!("table")));

    // A change made straight in the database reaches every instance too.
    sqlx::query("UPDATE games SET category = 'live' WHERE game = $1")
        .bind(game)
        .execute(&pool)
        .await
        .unwrap();
    wait_for(|| &*first.state.games.category(DEFAULT_OPERATOR, Some(game)) == "live", "a change in SQL")
        .await;
}

#[sqlx::test]
async fn a_bad_game_or_category_is_a_400_naming_it(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let before = snapshot(&pool).await;
    let long = format!("/v1/games/{}", "g".repeat(256));
    for (path, body, field) in [
        ("/v1/games/book", json!({"category": "Slots"}), "category"),
        ("/v1/games/book", json!({"category": "a".repeat(33)}), "category"),
        ("/v1/games/book", json!({"category": 7}), "category"),
        ("/v1/games/book", json!({}), "category"),
        ("/v1/games/book", json!({"category": "slots", "weight": 1}), "weight"),
        (long.as_str(), json!({"category": "slots"}), "game"),
        ("/v1/games/bo%00ok", json!({"category": "slots"}), "game"),
    ] {
        let (status, answer) = server.send(Method::PUT, path, Some(ADMIN_TOKEN), &[], Some(&body)).await;
        assert_error(status, &answer, 400, 400);
        assert!(answer["message"].as_str().unwrap().starts_with(field), "{path} {body}: {answer}");
    }
    assert_eq!(snapshot(&pool).await, before);
    let longest = format!("/v1/games/{}", "g".repeat(255));
    let (status, answer) =
        as_admin(&server, Method::PUT, &longest, Some(&json!({"category": "slots"}))).await;
    assert_eq!(status, 200, "{answer}");
}

#[sqlx::test]
async fn a_change_whose_notification_was_lost_is_found_by_comparing_revisions(pool: PgPool) {
    let freshness = wallet::operators::registry::Freshness {
        refresh_every: Duration::from_millis(100),
        ..Default::default()
    };
    let server = TestServer::start_fresh(pool.clone(), freshness).await;
    // The trigger is skipped, so nothing is notified; the revision is bumped by hand.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica").execute(&mut *tx).await.unwrap();
    sqlx::query("INSERT INTO games (operator_id, game, category) VALUES (1, 'quiet', 'slots')")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("INSERT INTO game_catalog_revisions (operator_id, revision) VALUES (1, 1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    wait_for(|| &*server.state.games.category(DEFAULT_OPERATOR, Some("quiet")) == "slots", "the safety net")
        .await;
}
