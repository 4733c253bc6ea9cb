//! Property tests over the whole service: arbitrary bytes and arbitrary
//! text, sent through the real router to a real database, in the provider
//! body, report query strings, cursors and paths. Whatever arrives, the
//! answer is a 2xx or a 4xx in the contract's shape: never a 500, never a
//! panic, never a dropped connection.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use sqlx::migrate::MigrateDatabase;
use sqlx::{PgPool, Postgres};
use tower::ServiceExt;
use wallet::provider::signature::sign;
use wallet::AppState;

const SECRET: &str = "test";
const ADMIN: &str = "admin";

/// A fresh, migrated database of its own, dropped when the test ends.
struct FreshDatabase {
    url: String,
}

impl FreshDatabase {
    async fn create() -> FreshDatabase {
        let base = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@localhost:5432/wallet".into());
        let base = base.rsplit_once('/').map_or(base.as_str(), |(server, _)| server).to_string();
        let url = format!("{base}/wallet_fuzz_{}", uuid::Uuid::new_v4().simple());
        wallet::prepare_database(&url).await.unwrap();
        FreshDatabase { url }
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let url = self.url.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(Postgres::force_drop_database(&url))
        })
        .join();
    }
}

fn percent_encode(bytes: &[u8], keep: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || keep.contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs `cases` cases of `strategy`, each sent by `request`, and checks
/// every answer.
fn check<S: Strategy>(
    runtime: &tokio::runtime::Runtime,
    app: &Router,
    cases: u32,
    strategy: S,
    request: impl Fn(S::Value) -> Request<Body>,
) where
    S::Value: std::fmt::Debug,
{
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&strategy, |input| {
        let request = request(input);
        let target = request.uri().to_string();
        let (status, body) = runtime.block_on(async {
            let response = app.clone().oneshot(request).await.expect("the router always answers");
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null))
        });
        prop_assert!(status.as_u16() < 500, "{} answered {}: {}", target, status, body);
        if !status.is_success() {
            let keys: Vec<&String> = body.as_object().map(|o| o.keys().collect()).unwrap_or_default();
            prop_assert_eq!(keys, vec!["code", "message"], "{} answered {}: {}", target, status, body);
        }
        Ok::<(), TestCaseError>(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

fn signed(body: Vec<u8>) -> Request<Body> {
    Request::post("/v1/process")
        .header("authorization", sign(SECRET.as_bytes(), &body))
        .body(Body::from(body))
        .unwrap()
}

fn admin_get(uri: String) -> Request<Body> {
    Request::get(uri).header("authorization", format!("Bearer {ADMIN}")).body(Body::empty()).unwrap()
}

/// Any text, NULs and all, and now and then a value that names real data.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        ".{0,300}",
        Just("p1".to_string()),
        Just("USD".to_string()),
        Just(String::new())
    ]
}

fn amount() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        (0i64..1_000_000).prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!(1_000_000_000_000_000i64)),
        text().prop_map(Value::from),
    ]
}

fn action() -> impl Strategy<Value = Value> {
    let uuid = prop_oneof![
        any::<u128>().prop_map(|n| json!(uuid::Uuid::from_u128(n))),
        text().prop_map(Value::from)
    ];
    (
        prop_oneof![Just("bet".to_string()), Just("win".to_string()), Just("rollback".to_string()), text()],
        uuid.clone(),
        amount(),
        uuid,
    )
        .prop_map(|(kind, id, amount, original)| {
            let mut action = json!({"action": kind, "action_id": id});
            match kind.as_str() {
                "rollback" => action["original_action_id"] = original,
                _ => action["amount"] = amount,
            }
            action
        })
}

/// A provider request with every field sometimes absurd.
fn provider_request() -> impl Strategy<Value = Value> {
    (text(), text(), proptest::option::of(text()), proptest::option::of(text()), prop::collection::vec(action(), 0..4))
        .prop_map(|(user_id, currency, game, game_id, actions)| {
            json!({"user_id": user_id, "currency": currency, "game": game, "game_id": game_id, "actions": actions})
        })
}

/// A time as a report might be asked for: RFC 3339 from year 0000 to 9999
/// with any offset, or any text at all.
fn report_time() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            0u32..=9999,
            1u32..=12,
            1u32..=31,
            0u32..=23,
            0u32..=59,
            0u32..=59,
            0u32..1_000_000_000,
            -1439i32..=1439
        )
            .prop_map(|(y, mo, d, h, mi, s, ns, offset)| {
                let sign = if offset < 0 { '-' } else { '+' };
                let offset = offset.abs();
                format!(
                    "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ns:09}{sign}{:02}:{:02}",
                    offset / 60,
                    offset % 60
                )
            }),
        text(),
    ]
}

fn cursor() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
        (prop_oneof![Just("users".to_string()), Just("games".to_string()), text()], text(), text())
            .prop_map(|(report, key, currency)| URL_SAFE_NO_PAD
                .encode(json!({"report": report, "key": key, "currency": currency}).to_string())),
        (any::<i64>(), any::<i64>())
            .prop_map(|(micros, seq)| URL_SAFE_NO_PAD.encode(format!("{micros}:{seq}"))),
        text(),
    ]
}

#[test]
fn arbitrary_input_anywhere_never_answers_500() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let database = runtime.block_on(FreshDatabase::create());
    let app = runtime.block_on(async {
        let pool = PgPool::connect(&database.url).await.unwrap();
        let app = wallet::app(AppState::new(pool.clone(), &[SECRET.to_string()], ADMIN).await);
        let create = Request::post("/v1/players")
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::from(r#"{"user_id":"p1","currency":"USD"}"#))
            .unwrap();
        assert_eq!(app.clone().oneshot(create).await.unwrap().status(), StatusCode::CREATED);
        let fund = Request::post("/v1/players/p1/deposits")
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("idempotency-key", "fund")
            .body(Body::from(r#"{"amount":1000000}"#))
            .unwrap();
        assert_eq!(app.clone().oneshot(fund).await.unwrap().status(), StatusCode::CREATED);
        app
    });

    // The provider endpoint: raw bytes, then request-shaped JSON, signed.
    check(&runtime, &app, 256, prop::collection::vec(any::<u8>(), 0..1024), signed);
    check(&runtime, &app, 512, provider_request(), |body| signed(body.to_string().into_bytes()));

    // Report query strings: raw bytes, then each parameter absurd in turn.
    let report = prop_oneof![Just("users"), Just("casino"), Just("games")];
    check(
        &runtime,
        &app,
        256,
        (report.clone(), prop::collection::vec(any::<u8>(), 0..256)),
        |(report, bytes)| {
            admin_get(format!("/v1/reports/rtp/{report}?{}", percent_encode(&bytes, b"=&-_.~")))
        },
    );
    let parameters = (
        report,
        report_time(),
        report_time(),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(cursor()),
    );
    check(&runtime, &app, 512, parameters, |(report, from, to, currency, user_id, limit, cursor)| {
        let mut query = format!(
            "from={}&to={}",
            percent_encode(from.as_bytes(), b"-_.~:"),
            percent_encode(to.as_bytes(), b"-_.~:")
        );
        for (name, value) in
            [("currency", currency), ("user_id", user_id), ("limit", limit), ("cursor", cursor)]
        {
            if let Some(value) = value {
                query.push_str(&format!("&{name}={}", percent_encode(value.as_bytes(), b"-_.~")));
            }
        }
        admin_get(format!("/v1/reports/rtp/{report}?{query}"))
    });

    // Player paths and history cursors.
    check(
        &runtime,
        &app,
        256,
        (
            prop::collection::vec(any::<u8>(), 1..64),
            proptest::option::of(cursor()),
            proptest::option::of(text()),
        ),
        |(user_id, cursor, limit)| {
            let mut uri = format!("/v1/players/{}/transactions?", percent_encode(&user_id, b"-_.~"));
            if let Some(cursor) = cursor {
                uri.push_str(&format!("cursor={}&", percent_encode(cursor.as_bytes(), b"-_.~")));
            }
            if let Some(limit) = limit {
                uri.push_str(&format!("limit={}", percent_encode(limit.as_bytes(), b"-_.~")));
            }
            admin_get(uri)
        },
    );
    check(&runtime, &app, 128, (prop::collection::vec(any::<u8>(), 1..64), text()), |(user_id, key)| {
        let mut request =
            Request::post(format!("/v1/players/{}/deposits", percent_encode(&user_id, b"-_.~")))
                .header("authorization", format!("Bearer {ADMIN}"));
        if let Ok(value) = axum::http::HeaderValue::from_bytes(key.as_bytes()) {
            request = request.header("idempotency-key", value);
        }
        request.body(Body::from(r#"{"amount":1}"#)).unwrap()
    });
    drop(app);
    drop(runtime);
}
