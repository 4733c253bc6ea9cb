//! Overload protection: an overall rate limit, a per-player rate limit, a cap
//! on requests in flight, and a request timeout.
//!
//! The overall limit, the cap and the timeout wrap the provider and back-office
//! routes ([`protect`]); health and metrics stay outside so probes and scrapes
//! keep working under overload. The per-player limit needs the `user_id`, which
//! is only known once the signed body has been verified and parsed, so the
//! provider handler calls [`Limits::check_player`] right after parsing and
//! before touching the database: an unsigned flood never reaches it, and a
//! limited request costs no connection.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

use super::metrics;
use crate::config::{Protection, Rate};
use crate::domain::UserId;
use crate::error::AppError;
use crate::AppState;

/// The limiters of one instance. Limits are per instance: behind a load
/// balancer with N instances, a player may reach N times the configured rate.
pub struct Limits {
    overall: Option<DefaultDirectRateLimiter>,
    per_player: Option<DefaultKeyedRateLimiter<String>>,
    in_flight: Arc<Semaphore>,
    request_timeout: Duration,
}

fn quota(rate: Rate) -> Quota {
    Quota::per_second(rate.per_second).allow_burst(rate.burst)
}

impl Limits {
    pub fn new(protection: &Protection) -> Limits {
        Limits {
            overall: protection.overall.map(|r| RateLimiter::direct(quota(r))),
            per_player: protection.per_player.map(|r| RateLimiter::keyed(quota(r))),
            in_flight: Arc::new(Semaphore::new(protection.max_in_flight.min(Semaphore::MAX_PERMITS))),
            request_timeout: protection.request_timeout,
        }
    }

    /// 429 when this player sent more than their share.
    pub fn check_player(&self, user_id: &UserId) -> Result<(), AppError> {
        match &self.per_player {
            Some(limiter) if limiter.check_key(&user_id.as_str().to_owned()).is_err() => {
                metrics::record_rejection("player_rate");
                Err(AppError::RateLimited)
            }
            _ => Ok(()),
        }
    }

    /// Forgets players whose buckets are full again, bounding memory.
    fn forget_idle_players(&self) {
        if let Some(limiter) = &self.per_player {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Runs [`Limits::forget_idle_players`] every minute until the process ends.
pub fn spawn_maintenance(limits: Arc<Limits>) {
    tokio::spawn(async move {
        let mut every_minute = tokio::time::interval(Duration::from_secs(60));
        loop {
            every_minute.tick().await;
            limits.forget_idle_players();
        }
    });
}

/// Middleware: overall rate limit (429), in-flight cap (503 at once), and the
/// request timeout (503).
///
/// A timed-out request answers 503, not 500: dropping it rolls its transaction
/// back, or, if the commit had already reached the database, a retry with the
/// same ids answers the stored result. Either way a retry is safe, which is
/// exactly what 503 promises in the contract.
pub async fn protect(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limits = &state.limits;
    if limits.overall.as_ref().is_some_and(|l| l.check().is_err()) {
        metrics::record_rejection("global_rate");
        return AppError::RateLimited.into_response();
    }
    let Ok(_permit) = limits.in_flight.clone().try_acquire_owned() else {
        metrics::record_rejection("in_flight");
        return AppError::Overloaded.into_response();
    };
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::record_rejection("timeout");
            tracing::warn!(timeout_ms = limits.request_timeout.as_millis() as u64, "request timed out");
            AppError::TimedOut.into_response()
        }
    }
}
