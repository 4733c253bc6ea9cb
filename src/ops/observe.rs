//! Per-request observability: a request id, a tracing span, one log line and
//! the request metrics.
//!
//! The request id is taken from `X-Request-Id` when the caller sent a sane one
//! (1 to 128 visible ASCII characters), generated otherwise, and echoed in the
//! response; handlers receive it as [`RequestId`]. Only the method, route,
//! status, latency and id are logged: never headers or bodies, so no
//! signature, token or secret reaches the log.

use std::convert::Infallible;
use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use uuid::Uuid;

use super::metrics;
use crate::error::ErrorCode;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The caller's request id if it is safe to log and echo, else a fresh one.
pub fn request_id(presented: Option<&HeaderValue>) -> String {
    presented
        .and_then(|v| v.to_str().ok())
        .filter(|id| (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::new_v4().to_string())
}

/// The id of the request being handled, as logged and echoed: handlers take
/// it as an extractor to stamp what they record (audit entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Infallible;

    /// The id [`observe`] gave the request; a fresh one for a request that did
    /// not pass through it (a router assembled without it).
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<RequestId>().cloned().unwrap_or_else(|| RequestId(request_id(None))))
    }
}

/// The method as a metric label and log field: one of a closed set, so that
/// no request can mint label values (HTTP allows any token as a method).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware, outermost: sees every request, including refused ones.
pub async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let _in_flight = metrics::InFlight::start();
    let id = request_id(request.headers().get(&X_REQUEST_ID));
    let method = method_label(request.method());
    // The route pattern, not the path: bounded label values, no user ids.
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    request.extensions_mut().insert(RequestId(id.clone()));

    let mut response = next.run(request).instrument(span.clone()).await;

    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    metrics::record_request(method, &route, status, elapsed);
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>().copied() {
        metrics::record_error(&route, code);
    }
    span.in_scope(|| tracing::info!(status, latency_us = elapsed.as_micros() as u64, "request finished"));
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_request_id_is_kept_and_anything_else_replaced() {
        let kept = HeaderValue::from_static("abc-123");
        assert_eq!(request_id(Some(&kept)), "abc-123");
        let spaced = HeaderValue::from_static("a b");
        assert_ne!(request_id(Some(&spaced)), "a b");
        let long = HeaderValue::from_str(&"x".repeat(129)).unwrap();
        assert_eq!(request_id(Some(&long)).len(), 36);
        assert_eq!(request_id(None).len(), 36);
    }

    #[test]
    fn methods_outside_the_known_set_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        let invented = Method::from_bytes("X".repeat(60_000).as_bytes()).unwrap();
        assert_eq!(method_label(&invented), "other");
        assert_eq!(method_label(&Method::CONNECT), "other");
    }
}
