//! Staff, roles and operator scoping (API.md §7).

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use wallet::staff::permissions::allows;
use wallet::staff::Role;

async fn create_staff(
    server: &TestServer,
    token: &str,
    email: &str,
    role: &str,
    operator: Value,
) -> (u16, Value) {
    let body = json!({"email": email, "role": role, "operator": operator});
    let (status, body) = server.send(Method::POST, "/v1/staff", Some(token), &[], Some(&body)).await;
    (status.as_u16(), body)
}

async fn token_of(server: &TestServer, email: &str, role: &str, operator: Value) -> String {
    let (status, body) = create_staff(server, ADMIN_TOKEN, email, role, operator).await;
    assert_eq!(status, 201, "{body}");
    assert!(body["token"].as_str().unwrap().starts_with("stf_"));
    body["token"].as_str().unwrap().to_owned()
}

async fn create_operator(server: &TestServer, code: &str) {
    let document = json!({"code": code, "name": code, "currencies": ["USD"]});
    let (status, body) =
        server.send(Method::POST, "/v1/operators", Some(ADMIN_TOKEN), &[], Some(&document)).await;
    assert_eq!(status, 201, "{body}");
    // Wait until this instance serves it.
    for _ in 0..50 {
        if server.state.operators.by_code(code).is_some() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("operator {code} never reached memory");
}

/// A concrete path for a declared route.
fn concrete(path: &str) -> String {
    path.replace("{user_id}", "p1")
        .replace("{code}", "default")
        .replace("{key_id}", "0193a0a0-0000-7000-8000-000000000000")
        .replace("{staff_id}", "0193a0a0-0000-7000-8000-000000000000")
        .replace("{run_id}", "1")
        .replace("{game}", "walk%3Agame")
}

/// Who may call each back-office route, written out from API.md §7 on its
/// own, so that a change to the permission table or to a route's declared
/// permission fails here. A route missing from this list fails too.
fn contract_allows(method: &str, path: &str, role: Role, platform: bool) -> bool {
    use Role::*;
    const READERS: &[Role] = &[Admin, Finance, Support, Compliance];
    let (roles, platform_only): (&[Role], bool) = match (method, path) {
        ("POST", "/v1/players") => (&[Admin], false),
        ("GET", "/v1/players/{user_id}") | ("GET", "/v1/players/{user_id}/transactions") => (READERS, false),
        // The console's search and player page.
        ("GET", "/v1/players") | ("GET", "/v1/players/{user_id}/account") => (READERS, false),
        ("PATCH", "/v1/players/{user_id}") => (&[Admin, Support, Compliance], false),
        ("PUT", "/v1/players/{user_id}/kyc") => (&[Admin, Compliance], false),
        // §9: staff with the role read and lower limits.
        (_, "/v1/players/{user_id}/limits") => (&[Admin, Support, Compliance], false),
        ("POST", "/v1/players/{user_id}/deposits") | ("POST", "/v1/players/{user_id}/withdrawals") => {
            (&[Admin, Finance], false)
        }
        ("GET", "/v1/reports/rtp/series") => (&[Admin, Finance, Analyst], false),
        (_, p) if p.starts_with("/v1/reports/") => (&[Admin, Finance, Analyst], false),
        (_, p) if p.starts_with("/v1/audit") => (&[Admin, Compliance], false),
        (_, p) if p.starts_with("/v1/staff") => (&[Admin], false),
        // §10: a player's bonuses are read with the player; only admins grant one.
        ("GET", "/v1/players/{user_id}/bonuses") => (READERS, false),
        ("POST", "/v1/players/{user_id}/bonuses") => (&[Admin], false),
        // §10: the game catalog and bonus campaigns.
        (_, p) if p.starts_with("/v1/games") || p.starts_with("/v1/bonus/campaigns") => (&[Admin], false),
        (_, p) if p.starts_with("/v1/operators") || p.starts_with("/v1/admin/reconciliation") => {
            (&[Admin], true)
        }
        _ => panic!("{method} {path} is not in the contract's table of roles"),
    };
    roles.contains(&role) && (platform || !platform_only)
}

#[sqlx::test]
async fn every_back_office_route_answers_each_role_as_the_permission_table_says(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    player_with_balance(&pool, "p1", "USD", 1_000).await;
    let specs = wallet::back_office().specs().to_vec();
    assert!(specs.len() >= 20, "every back-office route is declared: {}", specs.len());
    let mut checked = 0;
    for role in Role::ALL {
        for platform in [true, false] {
            let operator = if platform { Value::Null } else { json!("default") };
            let email = format!("{}-{platform}@example.com", role.as_str());
            let token = token_of(&server, &email, role.as_str(), operator).await;
            for spec in &specs {
                let method = Method::from_bytes(spec.method.as_str().as_bytes()).unwrap();
                let path = concrete(spec.path);
                let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
                let headers = [("idempotency-key", "walk")];
                let (status, answer) =
                    server.send(method, &path, Some(&token), &headers, body.as_ref()).await;
                let allowed = contract_allows(spec.method.as_str(), spec.path, role, platform);
                assert_eq!(
                    allowed,
                    allows(role, platform, spec.permission),
                    "the table disagrees with §7: {} {}",
                    spec.method,
                    spec.path
                );
                let what = format!(
                    "{} {} as {} (platform: {platform}) → {status} {answer}",
                    spec.method,
                    spec.path,
                    role.as_str()
                );
                if allowed {
                    assert!(status != 403 && status != 401 && status != 500, "{what}");
                } else {
                    assert_error(status, &answer, 403, 403);
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, specs.len() * Role::ALL.len() * 2);
    let (status, body) = server.send(Method::GET, "/v1/players/p1", None, &[], None).await;
    assert_error(status, &body, 401, 401);
    let (status, body) = server.send(Method::GET, "/v1/players/p1", Some("stf_nobody"), &[], None).await;
    assert_error(status, &body, 401, 401);
}

#[sqlx::test]
async fn operator_staff_see_only_their_own_operator(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    create_operator(&server, "acme").await;
    player_with_balance(&pool, "home-player", "USD", 1_000).await;
    let acme_admin = token_of(&server, "boss@acme.example", "admin", json!("acme")).await;
    let default_support = token_of(&server, "help@default.example", "support", json!("default")).await;

    // Another operator's player is 404 to them, whatever X-Operator says.
    for headers in [vec![], vec![("x-operator", "default")]] {
        let (status, body) =
            server.send(Method::GET, "/v1/players/home-player", Some(&acme_admin), &headers, None).await;
        assert_error(status, &body, 404, 101);
    }
    let (status, _) =
        server.send(Method::GET, "/v1/players/home-player", Some(&default_support), &[], None).await;
    assert_eq!(status, 200);

    // The same user id is a new player at acme.
    let new_player = json!({"user_id": "home-player", "currency": "USD"});
    let (status, body) =
        server.send(Method::POST, "/v1/players", Some(&acme_admin), &[], Some(&new_player)).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server
        .send(
            Method::POST,
            "/v1/players",
            Some(&acme_admin),
            &[],
            Some(&json!({"user_id": "eur", "currency": "EUR"})),
        )
        .await;
    assert_error(status, &body, 422, 154);
    let (_, seen) = server.send(Method::GET, "/v1/players/home-player", Some(&acme_admin), &[], None).await;
    assert_eq!(seen["balance"], 0);

    // Staff: their own only, and never platform staff.
    let (status, body) =
        create_staff(&server, &acme_admin, "cash@acme.example", "finance", json!("default")).await;
    assert_error(reqwest::StatusCode::from_u16(status).unwrap(), &body, 403, 403);
    let (status, created) =
        create_staff(&server, &acme_admin, "cash@acme.example", "finance", Value::Null).await;
    assert_eq!((status, &created["operator"]), (201, &json!("acme")), "{created}");
    let (status, body) =
        create_staff(&server, &acme_admin, "cash@acme.example", "analyst", Value::Null).await;
    assert_error(reqwest::StatusCode::from_u16(status).unwrap(), &body, 409, 409);
    let (_, listed) = server.send(Method::GET, "/v1/staff", Some(&acme_admin), &[], None).await;
    let emails: Vec<&str> = listed.as_array().unwrap().iter().map(|s| s["email"].as_str().unwrap()).collect();
    assert_eq!(emails, ["boss@acme.example", "cash@acme.example"]);
    assert!(!listed.to_string().contains("stf_"), "tokens are never listed");

    let (_, all) = server.send(Method::GET, "/v1/staff", Some(ADMIN_TOKEN), &[], None).await;
    let support_id = all.as_array().unwrap().iter().find(|s| s["email"] == "help@default.example").unwrap()
        ["staff_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) =
        server.send(Method::DELETE, &format!("/v1/staff/{support_id}"), Some(&acme_admin), &[], None).await;
    assert_error(status, &body, 404, 404);

    // Platform staff choose the operator; an unknown one is 404 code 120.
    let (status, body) = server
        .send(Method::GET, "/v1/players/home-player", Some(ADMIN_TOKEN), &[("x-operator", "acme")], None)
        .await;
    assert_eq!((status.as_u16(), &body["balance"]), (200, &json!(0)));
    let (status, body) = server
        .send(Method::GET, "/v1/players/home-player", Some(ADMIN_TOKEN), &[("x-operator", "ghost")], None)
        .await;
    assert_error(status, &body, 404, 120);
}

#[sqlx::test]
async fn a_deleted_staff_members_token_is_refused_at_once(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    player_with_balance(&pool, "p1", "USD", 10).await;
    let (_, created) =
        create_staff(&server, ADMIN_TOKEN, "gone@example.com", "support", json!("default")).await;
    let token = created["token"].as_str().unwrap();
    let (status, _) = server.send(Method::GET, "/v1/players/p1", Some(token), &[], None).await;
    assert_eq!(status, 200);
    let path = format!("/v1/staff/{}", created["staff_id"].as_str().unwrap());
    let (status, _) = server.send(Method::DELETE, &path, Some(ADMIN_TOKEN), &[], None).await;
    assert_eq!(status, 204);
    let (status, body) = server.send(Method::GET, "/v1/players/p1", Some(token), &[], None).await;
    assert_error(status, &body, 401, 401);
    let (status, _) = server.send(Method::DELETE, &path, Some(ADMIN_TOKEN), &[], None).await;
    assert_eq!(status, 404, "deleting twice finds no one");
    let stored: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT token_hash FROM staff").fetch_all(&pool).await.unwrap();
    assert!(
        stored.iter().all(|hash| hash.len() == 32 && !hash.starts_with(b"stf_")),
        "only hashes are stored"
    );
}

#[sqlx::test]
async fn bad_staff_requests_change_nothing(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let before = snapshot(&pool).await;
    for (body, status) in [
        (json!({"email": "x", "role": "admin"}), 400),
        (json!({"email": "a@b.example", "role": "boss"}), 400),
        (json!({"email": "a@b.example", "role": "admin", "operator": "ghost"}), 404),
        (json!({"email": "a@b.example", "role": "admin", "operator": "BAD CODE"}), 400),
        (json!({"email": "a@b.example", "role": "admin", "extra": 1}), 400),
    ] {
        let (got, answer) = server.send(Method::POST, "/v1/staff", Some(ADMIN_TOKEN), &[], Some(&body)).await;
        assert_eq!(got.as_u16(), status, "{body} → {answer}");
    }
    assert_eq!(snapshot(&pool).await, before);
}

#[sqlx::test]
async fn changes_to_operators_keys_and_staff_are_audited_with_their_actor_and_no_secret(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    create_operator(&server, "acme").await;
    let (_, key) =
        server.send(Method::POST, "/v1/operators/acme/provider-keys", Some(ADMIN_TOKEN), &[], None).await;
    let key_id = key["key_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/operators/acme/provider-keys/{key_id}");
    let (status, _) = server.send(Method::DELETE, &path, Some(ADMIN_TOKEN), &[], None).await;
    assert_eq!(status, 204);
    let (status, _) = server.send(Method::DELETE, &path, Some(ADMIN_TOKEN), &[], None).await;
    assert_eq!(status, 204, "revoking again is answered, and audited no more");
    let acme_admin = token_of(&server, "boss@acme.example", "admin", json!("acme")).await;
    let (_, clerk) = create_staff(&server, &acme_admin, "clerk@acme.example", "finance", Value::Null).await;
    let patch = json!({"name": "Acme Casino"});
    let (status, _) =
        server.send(Method::PATCH, "/v1/operators/acme", Some(ADMIN_TOKEN), &[], Some(&patch)).await;
    assert_eq!(status, 200);

    let (status, page) =
        server.send(Method::GET, "/v1/audit", Some(ADMIN_TOKEN), &[("x-operator", "acme")], None).await;
    assert_eq!(status, 200, "{page}");
    let entries = page["data"].as_array().unwrap();
    let actions: Vec<&str> = entries.iter().rev().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "operator.create",
            "provider_key.create",
            "provider_key.revoke",
            "staff.create",
            "staff.create",
            "operator.update"
        ]
    );
    let text = page.to_string();
    assert!(!text.contains(key["secret"].as_str().unwrap()), "no secret in the trail");
    assert!(
        !text.contains(clerk["token"].as_str().unwrap()) && !text.contains("stf_"),
        "no token in the trail"
    );
    let by_boss = entries.iter().find(|e| e["after"]["email"] == "clerk@acme.example").unwrap();
    let boss_id =
        server.send(Method::GET, "/v1/staff", Some(&acme_admin), &[], None).await.1[0]["staff_id"].clone();
    assert_eq!(by_boss["actor"], json!({"type": "staff", "id": boss_id}));
    let update = &entries[0];
    assert_eq!(
        (&update["before"]["name"], &update["after"]["name"]),
        (&json!("acme"), &json!("Acme Casino"))
    );
    let (_, verified) = server.send(Method::GET, "/v1/audit/verify", Some(ADMIN_TOKEN), &[], None).await;
    assert_eq!(verified["ok"], true, "{verified}");
}
