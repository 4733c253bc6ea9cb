//! Operator `bluestar` and its players, as the tests of player-facing
//! routes use them: a brand with its own domain, rules and provider key,
//! players who register and log in, and their cashier.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

use super::*;

pub const PASSWORD: &str = "correct horse battery";
pub const BLUESTAR: [(&str, &str); 1] = [("x-operator", "bluestar")];

/// Bluestar: GBP and EUR, the contract's default KYC tiers (0: nothing;
/// 1: deposit up to 200000 in a lifetime and play; 2: everything), and
/// `rules` merged over the defaults.
pub async fn bluestar(server: &TestServer, rules: Value) {
    let document = json!({"code": "bluestar", "name": "Bluestar", "currencies": ["GBP", "EUR"],
                          "timezone": "Europe/London", "domains": ["bluestar.example"], "rules": rules});
    let (status, body) =
        server.send(Method::POST, "/v1/operators", Some(ADMIN_TOKEN), &[], Some(&document)).await;
    assert_eq!(status, 201, "{body}");
    for _ in 0..100 {
        if server.state.operators.by_code("bluestar").is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("bluestar never reached memory");
}

pub fn registration(email: &str) -> Value {
    json!({"email": email, "password": PASSWORD, "currency": "GBP", "country": "GB",
           "date_of_birth": "1990-05-17"})
}

pub async fn register(server: &TestServer, body: &Value) -> (StatusCode, Value) {
    server.send(Method::POST, "/v1/auth/register", None, &BLUESTAR, Some(body)).await
}

pub async fn login(server: &TestServer, email: &str, password: &str) -> (StatusCode, Value) {
    let body = json!({"email": email, "password": password});
    server.send(Method::POST, "/v1/auth/login", None, &BLUESTAR, Some(&body)).await
}

/// Registers `email` at bluestar and logs in: its user_id and token.
pub async fn player(server: &TestServer, email: &str) -> (String, String) {
    let (status, body) = register(server, &registration(email)).await;
    assert_eq!(status, 201, "{body}");
    let (status, session) = login(server, email, PASSWORD).await;
    assert_eq!(status, 200, "{session}");
    (body["user_id"].as_str().unwrap().to_owned(), session["token"].as_str().unwrap().to_owned())
}

pub async fn as_player(
    server: &TestServer,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    server.send(method, path, Some(token), &BLUESTAR, body).await
}

pub async fn cashier(
    server: &TestServer,
    kind: &str,
    token: &str,
    key: &str,
    amount: i64,
) -> (StatusCode, Value) {
    let headers = [BLUESTAR[0], ("idempotency-key", key)];
    let body = json!({"amount": amount});
    server.send(Method::POST, &format!("/v1/me/{kind}"), Some(token), &headers, Some(&body)).await
}

pub async fn set_tier(server: &TestServer, user_id: &str, tier: i64) {
    let body = json!({"tier": tier, "note": "documents checked"});
    let path = format!("/v1/players/{user_id}/kyc");
    let (status, answer) = server.send(Method::PUT, &path, Some(ADMIN_TOKEN), &BLUESTAR, Some(&body)).await;
    assert_eq!(status, 200, "{answer}");
}

/// Bluestar's audit entries of `action`, oldest first.
pub async fn audited(server: &TestServer, action: &str) -> Vec<Value> {
    let path = format!("/v1/audit?action={action}&limit=1000");
    let (status, page) = server.send(Method::GET, &path, Some(ADMIN_TOKEN), &BLUESTAR, None).await;
    assert_eq!(status, 200, "{page}");
    audit_entries(&page)
}

pub async fn sql(pool: &PgPool, statement: &str) {
    sqlx::query(statement).execute(pool).await.unwrap();
}

/// A provider key of bluestar, once every instance serves it: its secret.
pub async fn bluestar_provider_key(server: &TestServer) -> String {
    let (status, key) =
        server.send(Method::POST, "/v1/operators/bluestar/provider-keys", Some(ADMIN_TOKEN), &[], None).await;
    assert_eq!(status, 201, "{key}");
    let secret = key["secret"].as_str().unwrap().to_owned();
    let probe = json!({"user_id": "nobody", "currency": "GBP"});
    for _ in 0..100 {
        if server.process_at(BLUESTAR_PROCESS, &secret, &probe).await.0 != 403 {
            return secret;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the new key never reached memory");
}

/// Bluestar's provider endpoint.
pub const BLUESTAR_PROCESS: &str = "/v1/operators/bluestar/process";

/// A provider request for a bluestar player in GBP.
pub fn gbp(user_id: &str, actions: Vec<Value>) -> Value {
    json!({"user_id": user_id, "currency": "GBP", "game": "slots", "game_id": "r1", "actions": actions})
}
