//! The back-office console: its page, staff sign-in with a password, the
//! session cookie, the lockout, CSRF refusals and role refusals, over HTTP
//! against a real server and database.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

const PASSWORD: &str = "correct horse battery";

/// A staff member with a console password; its id.
async fn staff(server: &TestServer, email: &str, role: &str, operator: Value) -> String {
    let body = json!({"email": email, "role": role, "operator": operator, "password": PASSWORD});
    let (status, created) = server.admin_post("/v1/staff", &body, None).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created.get("password").is_none(), "{created}");
    created["staff_id"].as_str().unwrap().to_string()
}

/// A signed-in console: its cookie value and CSRF token.
struct Console {
    cookie: String,
    csrf: String,
    session: Value,
}

async fn sign_in_raw(
    server: &TestServer,
    email: &str,
    password: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = server
        .client
        .post(server.url("/console/api/sign-in"))
        .json(&json!({"email": email, "password": password}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn sign_in(server: &TestServer, email: &str) -> Console {
    let response = sign_in_raw(server, email, PASSWORD, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_string();
    let cookie = set_cookie.split(';').next().unwrap().strip_prefix("wallet_console=").unwrap().to_string();
    let session: Value = response.json().await.unwrap();
    Console { cookie, csrf: session["csrf_token"].as_str().unwrap().to_string(), session }
}

impl Console {
    /// A request with the session cookie, and the CSRF token unless `csrf` is false.
    async fn send(
        &self,
        server: &TestServer,
        method: Method,
        path: &str,
        csrf: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let cookie = format!("wallet_console={}", self.cookie);
        let mut all = vec![("cookie", cookie.as_str())];
        if let Some(token) = csrf {
            all.push(("x-csrf-token", token));
        }
        all.extend_from_slice(headers);
        server.send(method, path, None, &all, body).await
    }

    async fn call(
        &self,
        server: &TestServer,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        self.send(server, method, path, Some(&self.csrf.clone()), &[], body).await
    }
}

async fn last_audit(server: &TestServer, action: &str) -> Value {
    let (status, page) = server.admin_get(&format!("/v1/audit?action={action}&limit=1")).await;
    assert_eq!(status, StatusCode::OK);
    page["data"][0].clone()
}

#[sqlx::test]
async fn the_page_and_its_assets_are_served_from_the_binary(pool: PgPool) {
    let server = TestServer::start(pool).await;
    let page = server.client.get(server.url("/console/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(html.contains("/console/assets/app.js") && !html.contains("http"), "no outside resource");
    for (file, kind) in
        [("app.js", "text/javascript"), ("app.css", "text/css"), ("favicon.svg", "image/svg+xml")]
    {
        let asset = server.client.get(server.url(&format!("/console/assets/{file}"))).send().await.unwrap();
        assert_eq!(asset.status(), StatusCode::OK, "{file}");
        assert!(asset.headers()["content-type"].to_str().unwrap().starts_with(kind));
    }
    let (status, body) = server.send(Method::GET, "/console/assets/nothing.js", None, &[], None).await;
    assert_error(status, &body, 404, 404);
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(server.url("/console"))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.headers()["location"], "/console/");
}

#[sqlx::test]
async fn a_sign_in_sets_an_http_only_strict_cookie_secure_behind_tls_and_is_audited(pool: PgPool) {
    let server = TestServer::start(pool).await;
    let staff_id = staff(&server, "Root@Example.com", "admin", Value::Null).await;

    let response = sign_in_raw(&server, "root@example.com", PASSWORD, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("wallet_console=csn_"), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(flag), "{flag} missing from {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP on loopback: {cookie}");
    let session: Value = response.json().await.unwrap();
    assert_eq!(session["role"], "admin");
    assert_eq!(session["operator"], Value::Null);
    assert_eq!(session["email"], "Root@Example.com");
    assert!(session["permissions"].as_array().unwrap().contains(&json!("manage_operators")));
    assert_eq!(session["csrf_token"].as_str().unwrap().len(), 64);

    let behind_tls =
        sign_in_raw(&server, "root@example.com", PASSWORD, &[("x-forwarded-proto", "https")]).await;
    let cookie = behind_tls.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");

    let entry = last_audit(&server, "auth.login").await;
    assert_eq!(entry["target"], format!("staff:{staff_id}"));
    assert_eq!(entry["actor"], json!({"type": "staff", "id": staff_id}));
    assert_eq!(entry["after"]["via"], "console");
    let trail = server.admin_get("/v1/audit?limit=1000").await.1.to_string();
    assert!(!trail.contains("csn_") && !trail.contains(PASSWORD) && !trail.contains("argon2"));

    // Only JSON signs in: a cross-site form cannot send it.
    let form = server
        .client
        .post(server.url("/console/api/sign-in"))
        .header("content-type", "text/plain")
        .body(format!(r#"{{"email":"root@example.com","password":"{PASSWORD}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::BAD_REQUEST);
    assert!(form.headers().get("set-cookie").is_none());
}

#[sqlx::test]
async fn the_session_answers_the_page_until_sign_out_or_idle_expiry(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    staff(&server, "ann@example.com", "support", json!("default")).await;
    let console = sign_in(&server, "ann@example.com").await;
    let (status, session) = console.send(&server, Method::GET, "/console/api/session", None, &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(session["csrf_token"], console.session["csrf_token"]);
    assert_eq!(session["operator"], "default");
    assert_eq!(session["operators"], json!([{"code": "default", "name": "Default"}]));

    // Idle past 30 minutes: the session is over.
    sqlx::query("UPDATE console_sessions SET last_seen_at = now() - interval '31 minutes'")
        .execute(&pool)
        .await
        .unwrap();
    let (status, body) = console.send(&server, Method::GET, "/console/api/session", None, &[], None).await;
    assert_error(status, &body, 401, 401);
    let (status, body) = console.call(&server, Method::GET, "/v1/players?q=x", None).await;
    assert_error(status, &body, 401, 401);

    // Sign-out needs the CSRF token, then ends the session and clears the cookie.
    let console = sign_in(&server, "ann@example.com").await;
    let (status, body) =
        console.send(&server, Method::POST, "/console/api/sign-out", None, &[], Some(&json!({}))).await;
    assert_error(status, &body, 403, 403);
    let response = server
        .client
        .post(server.url("/console/api/sign-out"))
        .header("cookie", format!("wallet_console={}", console.cookie))
        .header("x-csrf-token", &console.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let (status, _) = console.send(&server, Method::GET, "/console/api/session", None, &[], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn failed_sign_ins_lock_the_email_for_fifteen_minutes_even_with_the_right_password(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let staff_id = staff(&server, "cash@example.com", "finance", json!("default")).await;

    let unknown = sign_in_raw(&server, "nobody@example.com", PASSWORD, &[]).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let unknown: Value = unknown.json().await.unwrap();
    for attempt in 1..=5 {
        let response = sign_in_raw(&server, "cash@example.com", "wrong password!", &[]).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "attempt {attempt}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, unknown, "one answer for an unknown email and a wrong password");
    }
    let failure = last_audit(&server, "auth.login_failed").await;
    assert_eq!(failure["target"], format!("staff:{staff_id}"));
    assert_eq!(failure["after"]["reason"], "wrong_password");
    assert_eq!(failure["after"]["failures"], 5);
    assert_eq!(failure["after"]["locked"], true);

    let locked = sign_in_raw(&server, "CASH@example.com", PASSWORD, &[]).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.headers().get("set-cookie").is_none());
    assert_eq!(last_audit(&server, "auth.login_failed").await["after"]["reason"], "locked");

    // Once the lockout is over, the right password signs in and clears the count.
    sqlx::query("UPDATE staff_login_failures SET locked_until = now() - interval '1 second', recent = '{}'")
        .execute(&pool)
        .await
        .unwrap();
    sign_in(&server, "cash@example.com").await;
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM staff_login_failures WHERE email_key = 'cash@example.com'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(left, 0);
}

#[sqlx::test]
async fn a_cookie_without_its_csrf_token_is_refused_and_changes_nothing(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    player_with_balance(&pool, "p1", "USD", 1_000).await;
    staff(&server, "cash@example.com", "finance", json!("default")).await;
    let console = sign_in(&server, "cash@example.com").await;
    let before = snapshot(&pool).await;
    let deposit = json!({"amount": 500});
    let key = [("idempotency-key", "console-1")];
    for csrf in [None, Some("0".repeat(64).as_str()), Some(console.cookie.as_str())] {
        let (status, body) =
            console.send(&server, Method::POST, "/v1/players/p1/deposits", csrf, &key, Some(&deposit)).await;
        assert_error(status, &body, 403, 403);
        assert!(body["message"].as_str().unwrap().contains("CSRF"), "{body}");
        let (status, _) = console.send(&server, Method::GET, "/v1/players/p1", csrf, &[], None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    assert_eq!(snapshot(&pool).await, before, "a refused request changed nothing");

    // Another session's token is no better.
    let other = sign_in(&server, "cash@example.com").await;
    let (status, _) = console
        .send(&server, Method::POST, "/v1/players/p1/deposits", Some(&other.csrf), &key, Some(&deposit))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, body) = console
        .send(&server, Method::POST, "/v1/players/p1/deposits", Some(&console.csrf), &key, Some(&deposit))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["balance"], 1_500);
}

#[sqlx::test]
async fn a_role_that_may_not_act_is_refused_through_the_console_too(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    player_with_balance(&pool, "p1", "USD", 1_000).await;
    staff(&server, "cash@example.com", "finance", json!("default")).await;
    staff(&server, "numbers@example.com", "analyst", json!("default")).await;
    let finance = sign_in(&server, "cash@example.com").await;
    let permissions = finance.session["permissions"].as_array().unwrap().clone();
    assert!(permissions.contains(&json!("move_money")) && !permissions.contains(&json!("change_status")));

    let (status, account) = finance.call(&server, Method::GET, "/v1/players/p1/account", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(account["balance"], json!({"cash": 1_000, "bonus": 0, "total": 1_000}));
    let before = snapshot(&pool).await;
    let (status, body) =
        finance.call(&server, Method::PATCH, "/v1/players/p1", Some(&json!({"status": "blocked"}))).await;
    assert_error(status, &body, 403, 403);
    let (status, body) = finance
        .call(&server, Method::PUT, "/v1/players/p1/limits", Some(&json!({"loss": {"day": 100}})))
        .await;
    assert_error(status, &body, 403, 403);
    assert_eq!(snapshot(&pool).await, before);

    let analyst = sign_in(&server, "numbers@example.com").await;
    assert_eq!(analyst.session["permissions"], json!(["read_reports"]));
    let (status, body) = analyst.call(&server, Method::GET, "/v1/players?q=p1", None).await;
    assert_error(status, &body, 403, 403);
    let (status, _) = analyst
        .call(
            &server,
            Method::GET,
            "/v1/reports/rtp/series?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&bucket=hour",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Operator staff act on their own operator whatever X-Operator says.
    let (status, body) =
        finance.send(&server, Method::GET, "/v1/operators", Some(&finance.csrf.clone()), &[], None).await;
    assert_error(status, &body, 403, 403);
}

#[sqlx::test]
async fn players_are_found_by_user_id_or_email_and_shown_with_their_account(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    player_with_balance(&pool, "p1", "USD", 1_000).await;
    let registered = server
        .send(
            Method::POST,
            "/v1/auth/register",
            None,
            &[("x-operator", "default")],
            Some(&json!({"email": "Ann@Example.com", "password": PASSWORD, "currency": "EUR",
                         "country": "GB", "date_of_birth": "1990-05-17"})),
        )
        .await
        .1;
    let ann = registered["user_id"].as_str().unwrap();
    let (status, _) = server
        .send(
            Method::POST,
            "/v1/auth/login",
            None,
            &[("x-operator", "default")],
            Some(&json!({"email": "ann@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, found) = server.admin_get("/v1/players?q=ANN@example.com").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        found,
        json!({"data": [{"user_id": ann, "email": "Ann@Example.com", "currency": "EUR", "status": "active",
                         "kyc_tier": 0}]})
    );
    let (_, found) = server.admin_get("/v1/players?q=p1").await;
    assert_eq!(found["data"][0]["email"], Value::Null);
    let (_, found) = server.admin_get("/v1/players?q=nobody").await;
    assert_eq!(found, json!({"data": []}));
    let (status, body) = server.admin_get("/v1/players?q=").await;
    assert_error(status, &body, 400, 400);

    let (status, account) = server.admin_get(&format!("/v1/players/{ann}/account")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(account["email"], "Ann@Example.com");
    assert_eq!(account["country"], "GB");
    assert_eq!(account["balance"], json!({"cash": 0, "bonus": 0, "total": 0}));
    assert_eq!(account["sessions"].as_array().unwrap().len(), 1);
    let (status, body) = server.admin_get("/v1/players/nobody/account").await;
    assert_error(status, &body, 404, 101);
}

#[sqlx::test]
async fn passwords_are_set_by_admins_end_sessions_and_sign_in_one_scope_per_email(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let staff_id = staff(&server, "ann@example.com", "support", json!("default")).await;
    let console = sign_in(&server, "ann@example.com").await;

    let (status, body) = server
        .send(
            Method::PUT,
            &format!("/v1/staff/{staff_id}/password"),
            Some(ADMIN_TOKEN),
            &[],
            Some(&json!({"password": "short"})),
        )
        .await;
    assert_error(status, &body, 400, 400);
    let (status, _) = server
        .send(
            Method::PUT,
            &format!("/v1/staff/{staff_id}/password"),
            Some(ADMIN_TOKEN),
            &[],
            Some(&json!({"password": "a brand new password"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = console.send(&server, Method::GET, "/console/api/session", None, &[], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a new password ends the sessions");
    assert_eq!(sign_in_raw(&server, "ann@example.com", PASSWORD, &[]).await.status(), 401);
    assert_eq!(sign_in_raw(&server, "ann@example.com", "a brand new password", &[]).await.status(), 200);
    assert_eq!(last_audit(&server, "staff.password").await["target"], format!("staff:{staff_id}"));

    // The same email as platform staff may exist, but only one of them signs in.
    let body = json!({"email": "ann@example.com", "role": "analyst", "password": PASSWORD});
    let (status, body) = server.admin_post("/v1/staff", &body, None).await;
    assert_error(status, &body, 409, 409);
    let (status, _) =
        server.admin_post("/v1/staff", &json!({"email": "ann@example.com", "role": "analyst"}), None).await;
    assert_eq!(status, StatusCode::CREATED);

    // A deleted staff member's session ends with it.
    let console = sign_in_raw(&server, "ann@example.com", "a brand new password", &[]).await;
    let cookie = console.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let (status, _) =
        server.send(Method::DELETE, &format!("/v1/staff/{staff_id}"), Some(ADMIN_TOKEN), &[], None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) =
        server.send(Method::GET, "/console/api/session", None, &[("cookie", &cookie)], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
