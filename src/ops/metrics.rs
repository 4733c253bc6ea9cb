//! Prometheus metrics: one process-wide recorder, rendered by `GET /metrics`.
//!
//! Every metric the service records is named here, so that `docs/OPERATIONS.md`
//! and the code cannot drift apart without a reader noticing.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;

use crate::ledger::{Action, Batch};

/// `wallet_http_requests_total{method,route,status}`.
pub const HTTP_REQUESTS: &str = "wallet_http_requests_total";
/// `wallet_http_request_duration_seconds{method,route}`, a histogram.
pub const HTTP_DURATION: &str = "wallet_http_request_duration_seconds";
/// `wallet_http_errors_total{route,code}`: error answers by contract error code.
pub const HTTP_ERRORS: &str = "wallet_http_errors_total";
/// `wallet_http_requests_in_flight`.
pub const IN_FLIGHT: &str = "wallet_http_requests_in_flight";
/// `wallet_provider_actions_total{kind}`: actions in provider requests answered 200.
pub const ACTIONS: &str = "wallet_provider_actions_total";
/// `wallet_rejected_total{reason}`: requests refused by overload protection.
pub const REJECTED: &str = "wallet_rejected_total";
/// `wallet_db_pool_connections{state}`: open connections, idle or in use.
pub const POOL_CONNECTIONS: &str = "wallet_db_pool_connections";
/// `wallet_db_pool_max_connections`: the configured pool size.
pub const POOL_MAX: &str = "wallet_db_pool_max_connections";
/// `wallet_coalesced_group_size`: requests written together by one commit.
pub const GROUP_SIZE: &str = "wallet_coalesced_group_size";
/// `wallet_tenant_config_loads_total{operator}`: operator configurations this
/// instance read from the database (at start, after a change, after expiry).
pub const TENANT_LOADS: &str = "wallet_tenant_config_loads_total";
/// `wallet_events_delivered_total`: events handed to a player's stream on this instance.
pub const EVENTS_DELIVERED: &str = "wallet_events_delivered_total";
/// `wallet_event_streams_dropped_total`: streams ended because their client
/// fell a whole buffer behind.
pub const EVENT_STREAMS_DROPPED: &str = "wallet_event_streams_dropped_total";
/// `wallet_event_streams`: event streams (SSE and WebSocket) open on this instance.
pub const EVENT_STREAMS: &str = "wallet_event_streams";

const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder on first use and returns its handle.
///
/// A process has one recorder; if something else installed one first, this
/// instance still renders a (then empty) page instead of failing to start.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), LATENCY_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(GROUP_SIZE.into()), GROUP_BUCKETS))
            .expect("bucket lists are not empty");
        match builder.install_recorder() {
            Ok(handle) => handle,
            Err(error) => {
                tracing::warn!(%error, "a metrics recorder was already installed");
                PrometheusBuilder::new().build_recorder().handle()
            }
        }
    })
}

/// The Prometheus text page, with the pool gauges read at scrape time.
pub fn render(pool: &PgPool) -> String {
    let size = pool.size();
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(size);
    metrics::gauge!(POOL_CONNECTIONS, "state" => "idle").set(idle);
    metrics::gauge!(POOL_CONNECTIONS, "state" => "in_use").set(size - idle);
    metrics::gauge!(POOL_MAX).set(pool.options().get_max_connections());
    let handle = handle();
    handle.run_upkeep();
    handle.render()
}

/// One finished HTTP request. Every label comes from a closed set: `method`
/// from `observe::method_label`, `route` a route template or `unmatched`,
/// `status` a three-digit code.
pub fn record_request(method: &'static str, route: &str, status: u16, elapsed: Duration) {
    metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route.to_owned(),
        "status" => status.to_string())
    .increment(1);
    metrics::histogram!(HTTP_DURATION, "method" => method, "route" => route.to_owned())
        .record(elapsed.as_secs_f64());
}

/// One error answer, by the `code` of its body (100, 101, 403, 409, …).
pub fn record_error(route: &str, code: u16) {
    metrics::counter!(HTTP_ERRORS, "route" => route.to_owned(), "code" => code.to_string()).increment(1);
}

/// The actions of a provider request that was answered 200 (new or replayed).
pub fn record_actions(batch: &Batch) {
    let mut counts = [("bet", 0), ("win", 0), ("rollback", 0)];
    for action in &batch.actions {
        let kind = match action {
            Action::Bet { .. } => 0,
            Action::Win { .. } => 1,
            Action::Rollback { .. } => 2,
        };
        counts[kind].1 += 1;
    }
    for (kind, count) in counts.into_iter().filter(|(_, count)| *count > 0) {
        metrics::counter!(ACTIONS, "kind" => kind).increment(count);
    }
}

/// A request refused by overload protection: `global_rate`, `player_rate`,
/// `in_flight` or `timeout`.
pub fn record_rejection(reason: &'static str) {
    metrics::counter!(REJECTED, "reason" => reason).increment(1);
}

/// How many provider requests one coalesced commit carried. For the group
/// commit path: call it once per group written.
pub fn record_group_size(n: usize) {
    metrics::histogram!(GROUP_SIZE).record(n as f64);
}

/// One operator's configuration was read from the database.
pub fn record_tenant_load(operator: &str) {
    metrics::counter!(TENANT_LOADS, "operator" => operator.to_owned()).increment(1);
}

/// What one delivery of player events did: events handed to streams, and
/// streams dropped for being full.
pub fn record_event_deliveries(delivered: u64, dropped: u64) {
    if delivered > 0 {
        metrics::counter!(EVENTS_DELIVERED).increment(delivered);
    }
    if dropped > 0 {
        metrics::counter!(EVENT_STREAMS_DROPPED).increment(dropped);
    }
}

/// Event streams opened (positive) or ended (negative).
pub fn record_event_streams(change: f64) {
    if change != 0.0 {
        metrics::gauge!(EVENT_STREAMS).increment(change);
    }
}

/// Requests in flight: incremented on creation, decremented when dropped, so
/// a request abandoned by its client still leaves the gauge.
pub struct InFlight(());

impl InFlight {
    pub fn start() -> InFlight {
        metrics::gauge!(IN_FLIGHT).increment(1.0);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(IN_FLIGHT).decrement(1.0);
    }
}
