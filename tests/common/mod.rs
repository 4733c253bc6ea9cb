//! Test harness: a real server on port 0 over a fresh test database, a client
//! that signs like a provider, and a snapshot of every table to prove that a
//! rejected request changed nothing.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod bluestar;

use std::net::SocketAddr;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;
use wallet::audit::{Actor, Origin};
use wallet::config::ConnectionLimits;
use wallet::domain::{Amount, Currency, EntryKind, UserId, DEFAULT_OPERATOR};
use wallet::operators::registry::Freshness;
use wallet::provider::signature::sign;
use wallet::{app, AppState};

pub const SECRET: &str = "test";
pub const ADMIN_TOKEN: &str = "admin";

pub struct TestServer {
    pub addr: SocketAddr,
    pub pool: PgPool,
    pub client: reqwest::Client,
    /// The state it serves, for its in-memory operators.
    pub state: AppState,
}

impl TestServer {
    pub async fn start(pool: PgPool) -> TestServer {
        TestServer::start_with(pool, ConnectionLimits::default()).await
    }

    /// A server whose connections are limited as given, served exactly as
    /// `wallet serve` serves.
    pub async fn start_with(pool: PgPool, limits: ConnectionLimits) -> TestServer {
        let state = AppState::new(pool.clone(), &[SECRET.to_string()], ADMIN_TOKEN).await;
        TestServer::serving(state, limits).await
    }

    /// A server whose operators keep fresh as `freshness` says.
    pub async fn start_fresh(pool: PgPool, freshness: Freshness) -> TestServer {
        let state = AppState::build(
            pool,
            &[SECRET.to_string()],
            ADMIN_TOKEN,
            None,
            &wallet::config::Protection::unlimited(),
            freshness,
        )
        .await;
        TestServer::serving(state, ConnectionLimits::default()).await
    }

    async fn serving(state: AppState, limits: ConnectionLimits) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let forever = std::future::pending::<()>();
        let router = app(state.clone());
        tokio::spawn(async move { wallet::server::serve(listener, router, limits, forever).await.unwrap() });
        TestServer { addr, pool: state.pool.clone(), client: reqwest::Client::new(), state }
    }

    /// Any request: `token` as the bearer (if any), extra `headers`, a JSON body (if any).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        read(request.send().await.unwrap()).await
    }

    /// POSTs `body` to `path`, signed with `secret` as a provider signs.
    pub async fn process_at(&self, path: &str, secret: &str, body: &Value) -> (StatusCode, Value) {
        let bytes = serde_json::to_vec(body).unwrap();
        let request = self
            .client
            .post(self.url(path))
            .header("authorization", sign(secret.as_bytes(), &bytes))
            .body(bytes);
        read(request.send().await.unwrap()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs `body` to the provider endpoint, signed with the test secret.
    pub async fn process(&self, body: &Value) -> (StatusCode, Value) {
        let bytes = serde_json::to_vec(body).unwrap();
        self.process_raw(&bytes, Some(&sign(SECRET.as_bytes(), &bytes))).await
    }

    /// POSTs raw bytes with the given Authorization header (or none).
    pub async fn process_raw(&self, body: &[u8], authorization: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.client.post(self.url("/v1/process")).body(body.to_vec());
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        read(request.send().await.unwrap()).await
    }

    pub async fn admin_get(&self, path: &str) -> (StatusCode, Value) {
        read(self.client.get(self.url(path)).bearer_auth(ADMIN_TOKEN).send().await.unwrap()).await
    }

    pub async fn admin_post(
        &self,
        path: &str,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.post(self.url(path)).bearer_auth(ADMIN_TOKEN).json(body);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        read(request.send().await.unwrap()).await
    }

    /// PATCHes `body` to a back-office path.
    pub async fn admin_patch(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        read(self.client.patch(self.url(path)).bearer_auth(ADMIN_TOKEN).json(body).send().await.unwrap())
            .await
    }

    /// Balance as the provider API reports it.
    pub async fn balance(&self, user_id: &str, currency: &str) -> i64 {
        let (status, body) = self.process(&json!({"user_id": user_id, "currency": currency})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["balance"].as_i64().unwrap()
    }
}

async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// Creates a player funded by a recorded deposit, so the ledger balances.
pub async fn player_with_balance(pool: &PgPool, user_id: &str, currency: &str, balance: i64) {
    let user = UserId::try_from(user_id.to_string()).unwrap();
    let currency = Currency::try_from(currency.to_string()).unwrap();
    wallet::players::store::create_player(
        pool,
        DEFAULT_OPERATOR,
        &Origin::without_request(Actor::Platform),
        &user,
        &currency,
    )
    .await
    .unwrap();
    if balance > 0 {
        let amount = Amount::positive(balance).unwrap();
        wallet::players::store::move_money(
            pool,
            DEFAULT_OPERATOR,
            &Origin::without_request(Actor::Platform),
            wallet::players::store::Requester::Staff,
            &user,
            EntryKind::Deposit,
            amount,
            "seed",
            wallet::players::store::BonusAsk::Nothing,
        )
        .await
        .unwrap();
    }
}

/// The audit trail's entries, oldest first, as `GET /v1/audit` shows them.
#[track_caller]
pub fn audit_entries(page: &Value) -> Vec<Value> {
    let mut entries = page["data"].as_array().unwrap_or_else(|| panic!("not an audit page: {page}")).clone();
    entries.reverse();
    entries
}

/// Every row of every table, in a stable order: equal snapshots mean the
/// database is exactly as it was.
pub async fn snapshot(pool: &PgPool) -> Value {
    let mut tables = serde_json::Map::new();
    for (table, order) in [
        ("players", "id"),
        ("ledger", "player_id, seq"),
        ("actions", "action_id"),
        ("idempotency_keys", "player_id, idempotency_key"),
        ("rtp_hourly", "player_id, bucket, game"),
        ("round_buckets", "player_id, bucket, game, game_id"),
        ("operators", "id"),
        ("operator_domains", "domain"),
        ("provider_keys", "key_id"),
        ("staff", "staff_id"),
        ("audit_pending", "id"),
        ("audit_log", "seq"),
        ("audit_head", "seq"),
        ("accounts", "player_id"),
        ("player_sessions", "session_id"),
        ("login_failures", "operator_id, email_key"),
        ("games", "operator_id, game"),
        ("game_catalog_revisions", "operator_id"),
        ("bonus_campaigns", "id"),
    ] {
        let rows: Option<Value> =
            sqlx::query_scalar(&format!("SELECT json_agg(t ORDER BY {order}) FROM {table} t"))
                .fetch_one(pool)
                .await
                .unwrap();
        tables.insert(table.to_string(), rows.unwrap_or(Value::Null));
    }
    Value::Object(tables)
}

pub fn id() -> Uuid {
    Uuid::new_v4()
}

pub fn bet(action_id: Uuid, amount: i64) -> Value {
    json!({"action": "bet", "action_id": action_id, "amount": amount})
}

pub fn win(action_id: Uuid, amount: i64) -> Value {
    json!({"action": "win", "action_id": action_id, "amount": amount})
}

pub fn rollback(action_id: Uuid, original: Uuid) -> Value {
    json!({"action": "rollback", "action_id": action_id, "original_action_id": original})
}

/// A validated request of `actions` for `user_id` in USD, for tests that
/// call the ledger directly.
pub fn ledger_batch(user_id: &str, actions: Vec<wallet::ledger::Action>) -> wallet::ledger::Batch {
    wallet::ledger::Batch {
        user_id: UserId::try_from(user_id.to_string()).unwrap(),
        currency: Currency::try_from("USD".to_string()).unwrap(),
        game: Some("slots".into()),
        game_id: Some("r".into()),
        actions,
    }
}

/// `batch` as the ledger takes it from `/v1/process`: for operator `default`,
/// under no operator policy.
pub fn submitted(batch: wallet::ledger::Batch) -> wallet::ledger::Submission {
    wallet::ledger::Submission::open(wallet::domain::DEFAULT_OPERATOR, batch)
}

/// A provider request for `user_id` in USD.
pub fn batch(user_id: &str, actions: Vec<Value>) -> Value {
    json!({"user_id": user_id, "currency": "USD", "game": "acceptance:test", "game_id": "round-1", "actions": actions})
}

/// The tx_id answered for the `index`th action.
pub fn tx_id(body: &Value, index: usize) -> String {
    body["transactions"][index]["tx_id"].as_str().unwrap().to_string()
}

/// Asserts an error answer: status, `code`, and exactly `code` and `message` keys.
pub fn assert_error(status: StatusCode, body: &Value, expected_status: u16, expected_code: i64) {
    assert_eq!(status.as_u16(), expected_status, "{body}");
    assert_eq!(body["code"].as_i64(), Some(expected_code), "{body}");
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["code", "message"], "error body must be exactly code and message: {body}");
}
