//! Hardening: request parsing and signature checking never panic and refuse
//! every bad input with a clean 4xx; overload protection answers at once.
//!
//! These need no database: the service is given a pool pointed at a listener
//! that accepts connections and never answers, so anything that reaches the
//! database waits, which is exactly what the protections must bound.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use proptest::prelude::*;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use tower::ServiceExt;
use wallet::config::{Protection, Rate};
use wallet::error::AppError;
use wallet::provider::signature::{parse_authorization, sign, SigningKeys};
use wallet::provider::wire::parse_batch;
use wallet::AppState;

const SECRET: &str = "test";

/// A "database" that accepts connections and never says a word.
fn silent_database() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            held.push(stream);
        }
    });
    format!("postgres://postgres@127.0.0.1:{port}/none")
}

async fn service(acquire_timeout: Duration, protection: &Protection) -> Router {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(acquire_timeout)
        .connect_lazy(&silent_database())
        .unwrap();
    wallet::app(AppState::new(pool, &[SECRET.to_string()], "admin").await.with_protection(protection))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn call(app: &Router, request: Request<Body>) -> (StatusCode, Value, axum::http::HeaderMap) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), headers)
}

fn process(body: Vec<u8>, authorization: Option<String>) -> Request<Body> {
    let mut request = Request::post("/v1/process").header("content-type", "application/json");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.body(Body::from(body)).unwrap()
}

/// JSON shaped like a provider request, with every field sometimes wrong.
fn request_like() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,300}".prop_map(Value::from),
        Just(json!("7c8affbf-53fd-4fcc-b1ca-18118c5dd287")),
        Just(json!("USD")),
        prop_oneof![Just("bet"), Just("win"), Just("rollback")].prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("action".to_string()),
                    Just("action_id".to_string()),
                    Just("amount".to_string()),
                    Just("original_action_id".to_string()),
                    "[a-z_]{1,8}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map(
        prop_oneof![
            Just("user_id".to_string()),
            Just("currency".to_string()),
            Just("game".to_string()),
            Just("game_id".to_string()),
            Just("finished".to_string()),
            Just("actions".to_string()),
        ],
        value,
        0..6,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsing_any_bytes_is_a_batch_or_a_400(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        match parse_batch(&body) {
            Ok(_) => {}
            Err(error) => prop_assert_eq!(error.status(), StatusCode::BAD_REQUEST),
        }
    }

    #[test]
    fn parsing_request_shaped_json_is_a_batch_or_a_400_naming_a_field(body in request_like()) {
        match parse_batch(body.to_string().as_bytes()) {
            Ok(batch) => prop_assert!(batch.actions.len() <= 100),
            Err(AppError::BadRequest(message)) => prop_assert!(message.contains(':'), "{}", message),
            Err(other) => prop_assert!(false, "not a 400: {:?}", other),
        }
    }

    #[test]
    fn any_authorization_header_parses_to_32_bytes_or_nothing(value in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Some(signature) = parse_authorization(&value) {
            prop_assert_eq!(signature.len(), 32);
        }
    }

    #[test]
    fn only_the_real_signature_verifies(
        secrets in prop::collection::vec(".{0,40}", 1..4),
        body in prop::collection::vec(any::<u8>(), 0..512),
        forged in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let keys = SigningKeys::new(&secrets);
        let real = parse_authorization(sign(secrets[0].as_bytes(), &body).as_bytes()).unwrap();
        prop_assert!(keys.verify(&body, &real));
        if forged != real {
            prop_assert!(!keys.verify(&body, &forged));
        }
    }

    #[test]
    fn unsigned_or_badly_signed_requests_are_403_whatever_they_carry(
        body in prop::collection::vec(any::<u8>(), 0..1024),
        header in proptest::option::of("[ -~]{0,100}"),
    ) {
        let (status, answer, _) = runtime().block_on(async {
            let app = service(Duration::from_millis(50), &Protection::unlimited()).await;
            call(&app, process(body, header)).await
        });
        prop_assert_eq!(status, StatusCode::FORBIDDEN);
        prop_assert_eq!(&answer["code"], &json!(403));
    }

    #[test]
    fn signed_requests_are_refused_with_a_4xx_before_the_database_or_reach_it(body in request_like()) {
        let body = body.to_string().into_bytes();
        let signature = sign(SECRET.as_bytes(), &body);
        let (status, answer, _) = runtime().block_on(async {
            let app = service(Duration::from_millis(50), &Protection::unlimited()).await;
            call(&app, process(body, Some(signature))).await
        });
        // 400 for anything malformed; a well-formed one goes to the database,
        // which here never answers: 503, never a panic or a 500.
        prop_assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::SERVICE_UNAVAILABLE,
            "{} {}", status, answer
        );
        prop_assert_eq!(&answer["code"], &json!(status.as_u16()));
    }
}

fn signed_balance_request(user_id: &str) -> Request<Body> {
    let body = json!({"user_id": user_id, "currency": "EUR"}).to_string().into_bytes();
    let signature = sign(SECRET.as_bytes(), &body);
    process(body, Some(signature))
}

fn rate(per_second: u32, burst: u32) -> Option<Rate> {
    Some(Rate { per_second: NonZeroU32::new(per_second).unwrap(), burst: NonZeroU32::new(burst).unwrap() })
}

#[tokio::test]
async fn a_player_over_their_rate_gets_429_before_the_database_while_others_go_on() {
    let protection = Protection { per_player: rate(1, 1), ..Protection::unlimited() };
    let app = service(Duration::from_millis(50), &protection).await;
    let (first, _, _) = call(&app, signed_balance_request("alice")).await;
    assert_eq!(first, StatusCode::SERVICE_UNAVAILABLE, "went to the database");
    let (second, answer, _) = call(&app, signed_balance_request("alice")).await;
    assert_eq!(second, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer["code"], 429);
    assert!(answer["message"].is_string());
    let (other, _, _) = call(&app, signed_balance_request("bob")).await;
    assert_eq!(other, StatusCode::SERVICE_UNAVAILABLE, "bob has his own budget");
}

#[tokio::test]
async fn the_overall_rate_limit_answers_429_but_leaves_health_and_metrics_alone() {
    let protection = Protection { overall: rate(1, 1), ..Protection::unlimited() };
    let app = service(Duration::from_millis(50), &protection).await;
    let unsigned = || process(b"{}".to_vec(), None);
    assert_eq!(call(&app, unsigned()).await.0, StatusCode::FORBIDDEN);
    let (limited, answer, _) = call(&app, unsigned()).await;
    assert_eq!(limited, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer, json!({"code": 429, "message": "too many requests"}));
    for path in ["/health/live", "/metrics", "/health/live"] {
        let request = Request::get(path).body(Body::empty()).unwrap();
        assert_eq!(call(&app, request).await.0, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn a_request_stuck_on_the_database_times_out_with_503() {
    let protection = Protection { request_timeout: Duration::from_millis(200), ..Protection::unlimited() };
    let app = service(Duration::from_secs(30), &protection).await;
    let started = std::time::Instant::now();
    let (status, answer, _) = call(&app, signed_balance_request("carol")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer["code"], 503);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test]
async fn requests_beyond_the_in_flight_cap_are_shed_at_once() {
    let protection =
        Protection { max_in_flight: 1, request_timeout: Duration::from_secs(3), ..Protection::unlimited() };
    let app = service(Duration::from_secs(30), &protection).await;
    let stuck = tokio::spawn({
        let app = app.clone();
        async move { call(&app, signed_balance_request("dave")).await.0 }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let (status, answer, _) = call(&app, signed_balance_request("erin")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer["code"], 503);
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(stuck.await.unwrap(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated_and_metrics_name_routes_not_paths() {
    let app = service(Duration::from_millis(50), &Protection::unlimited()).await;
    let request =
        Request::get("/health/live").header("x-request-id", "probe-42").body(Body::empty()).unwrap();
    let (_, _, headers) = call(&app, request).await;
    assert_eq!(headers["x-request-id"], "probe-42");
    let request = Request::get("/v1/players/someone%7CEUR").body(Body::empty()).unwrap();
    let (status, _, headers) = call(&app, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["x-request-id"].len(), 36);

    let (_, _, _) = call(&app, Request::get("/nowhere").body(Body::empty()).unwrap()).await;
    let response = app.clone().oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    let page = String::from_utf8(axum::body::to_bytes(response.into_body(), 1 << 22).await.unwrap().to_vec())
        .unwrap();
    for expected in [
        r#"route="/health/live""#,
        r#"route="/v1/players/{user_id}""#,
        r#"route="unmatched""#,
        r#"wallet_http_errors_total{route="/v1/players/{user_id}",code="401"}"#,
        "wallet_http_request_duration_seconds_bucket",
        "wallet_db_pool_connections",
        "wallet_http_requests_in_flight",
    ] {
        assert!(page.contains(expected), "{expected} missing from\n{page}");
    }
    assert!(!page.contains("someone"), "a user id leaked into a label");
}

#[test]
fn a_secret_active_twice_still_verifies_and_every_key_is_tried() {
    // The same secret twice (a rotation to the value already active) and the
    // matching key first, last or alone: each verifies.
    let body = br#"{"user_id":"alice","currency":"USD"}"#;
    let real = parse_authorization(sign(SECRET.as_bytes(), body).as_bytes()).unwrap();
    for secrets in [vec![SECRET, SECRET], vec![SECRET, "old"], vec!["old", SECRET], vec![SECRET]] {
        assert!(SigningKeys::new(&secrets).verify(body, &real), "{secrets:?}");
    }
    assert!(!SigningKeys::new(&["old", "older"]).verify(body, &real));
}
