//! Operations: health, metrics, request observability, overload protection
//! and reconciliation.
//!
//! - `observe`: request ids, the per-request log line and request metrics.
//! - `limits`: rate limits, the in-flight cap and the request timeout.
//! - `metrics`: the Prometheus recorder and every metric's name.
//! - `reconcile`: proves balances, the ledger, the action registry and the
//!   report rollups agree (`wallet reconcile`, or a background run started
//!   with `POST /v1/admin/reconciliation`).

pub mod limits;
pub mod metrics;
pub mod observe;
pub mod reconcile;

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, Method, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use crate::http::Routes;
use crate::AppState;

/// Runs `task` at once and then every `period` until the process ends; a
/// failure is logged with `what` and retried at the next tick.
pub fn spawn_every<F, Fut, T, E>(period: Duration, what: &'static str, mut task: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send,
    E: Display,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        loop {
            ticks.tick().await;
            if let Err(error) = task().await {
                tracing::error!(error = %error, "could not {what}; will retry");
            }
        }
    });
}

/// Unauthenticated and outside the overload protection, so that probes and
/// scrapes keep answering while the service sheds load.
pub fn routes() -> Routes {
    Routes::default()
        .route(Method::GET, "/health/live", live)
        .route(Method::GET, "/health/ready", ready)
        .route(Method::GET, "/metrics", prometheus)
}

/// The document's view of a health answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // built with `json!`
struct Health {
    #[schema(example = "ready")]
    status: String,
}

#[utoipa::path(get, path = "/health/live", tag = "operations", operation_id = "health_live",
    responses((status = 200, description = "The process runs.", body = Health, example = json!({"status": "live"}))))]
async fn live() -> Json<Value> {
    Json(json!({"status": "live"}))
}

/// Ready while the database answers within a second.
#[utoipa::path(get, path = "/health/ready", tag = "operations", operation_id = "health_ready",
    responses(
        (status = 200, description = "The database answers.", body = Health, example = json!({"status": "ready"})),
        (status = 503, description = "The database did not answer within a second.", body = crate::error::ErrorBody,
            example = json!({"code": 503, "message": "database unavailable"})),
    ))]
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let probe = sqlx::query_scalar!(r#"SELECT 1 AS "one!""#).fetch_one(&state.pool);
    match tokio::time::timeout(Duration::from_secs(1), probe).await {
        Ok(Ok(_)) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        _ => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"code": 503, "message": "database unavailable"}))),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text format.", body = String, content_type = "text/plain")))]
async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics::render(&state.pool))
}
