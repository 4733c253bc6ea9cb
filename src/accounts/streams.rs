//! The player's event streams (API §11): `GET /v1/me/events` (Server-Sent
//! Events) and `GET /v1/me/ws` (WebSocket), over `events`' log and hub.
//!
//! A stream subscribes to the hub first, then replays the log after the
//! client's `Last-Event-ID`, then sends what the hub delivers, skipping any
//! id it has sent already: the replay and the live events overlap, never
//! leave a gap. `docs/ARCHITECTURE.md`, "Real-time events", says why.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRef, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::PlayerSession;
use crate::error::{AppError, AppResult};
use crate::events::{store, Logged, Subscription};
use crate::http::{bearer_token, QueryParams, Routes};
use crate::AppState;

/// Events a replay reads from the log at a time: a stream holds at most
/// this many in memory besides its channel.
const REPLAY_PAGE: i64 = 500;

/// How often an idle stream says it is alive (an SSE comment, a WebSocket
/// ping), so that proxies keep it open and a dead client is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A WebSocket message: `{"id": N, "event": "balance", "data": {…}}`.
#[derive(Serialize, ToSchema)]
pub struct WsMessage<'a> {
    /// Increasing per player (not contiguous); the `last_event_id` to resume from.
    id: i64,
    /// `balance`, `bonus`, `status` or `limits`.
    event: &'a str,
    #[schema(value_type = Object)]
    data: &'a serde_json::Value,
}

/// The routes of the player's streams. They are long-lived: outside the
/// request timeout and the in-flight cap, bounded by the connection cap.
pub fn routes() -> Routes {
    Routes::default().route(Method::GET, "/v1/me/events", events).route(Method::GET, "/v1/me/ws", ws)
}

/// Where a stream starts: after the id the client last received (a replay),
/// or at the newest event (new events only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    After(i64),
    New,
}

impl Start {
    /// `Last-Event-ID`, or `last_event_id`: a non-negative integer, or 400.
    pub fn parse(field: &str, value: Option<&str>) -> AppResult<Start> {
        let Some(value) = value else { return Ok(Start::New) };
        match value.parse::<i64>() {
            Ok(id) if id >= 0 && value.bytes().all(|b| b.is_ascii_digit()) => Ok(Start::After(id)),
            _ => Err(AppError::bad_request(field, "must be a non-negative integer event id")),
        }
    }
}

/// The events of a stream: the replay, then the live events, none twice,
/// in id order. Ends when the hub drops the stream (its client fell behind,
/// or the service is stopping) or the log cannot be read.
pub fn feed(state: &AppState, subscription: Subscription, start: Start) -> impl Stream<Item = Arc<Logged>> {
    struct Feed {
        pool: sqlx::PgPool,
        subscription: Subscription,
        last: i64,
        replaying: bool,
        page: VecDeque<Logged>,
    }
    let (last, replaying) = match start {
        Start::After(id) => (id, true),
        Start::New => (subscription.latest, false),
    };
    let feed = Feed { pool: state.pool.clone(), subscription, last, replaying, page: VecDeque::new() };
    stream::unfold(feed, |mut feed| async move {
        loop {
            if let Some(event) = feed.page.pop_front() {
                feed.last = event.id;
                return Some((Arc::new(event), feed));
            }
            if feed.replaying {
                let player_id = feed.subscription.player_id();
                match store::after(&feed.pool, player_id, feed.last, REPLAY_PAGE).await {
                    Ok(page) => {
                        feed.replaying = page.len() as i64 == REPLAY_PAGE;
                        feed.page = page.into();
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not replay player events; ending the stream");
                        return None;
                    }
                }
            }
            let event = feed.subscription.receiver.recv().await?;
            if event.id > feed.last {
                feed.last = event.id;
                return Some((event, feed));
            }
        }
    })
}

/// `GET /v1/me/events`.
#[utoipa::path(get, path = "/v1/me/events", tag = "player", operation_id = "me_events",
    params(("Last-Event-ID" = Option<String>, Header,
        description = "The id of the last event received: every later one of the last 24 hours is \
            sent first. Without it, only new events are sent.")),
    responses(
        (status = 200, content_type = "text/event-stream",
            description = "Server-Sent Events, one per change, in commit order: `id: <id>`, \
                `event: balance|bonus|status|limits`, `data: <JSON body>`; a comment every 15 s \
                when idle. The stream ends if the client falls 256 events behind: reconnect with \
                `Last-Event-ID`.",
            body = String,
            example = "id: 42\nevent: balance\ndata: {\"cash\":4900,\"bonus\":0,\"total\":4900,\"tx_id\":\"0190f1e2-7a1b-7c3d-8e4f-5a6b7c8d9e0f\"}\n\n"),
        (status = 400, description = "`Last-Event-ID` is not a non-negative integer.", body = crate::error::ErrorBody,
            example = json!({"code": 400, "message": "Last-Event-ID: must be a non-negative integer event id"})),
    ))]
pub async fn events(
    State(state): State<AppState>,
    session: PlayerSession,
    headers: HeaderMap,
) -> AppResult<Response> {
    let last_event_id = match headers.get("last-event-id") {
        Some(value) => {
            Some(value.to_str().map_err(|_| AppError::bad_request("Last-Event-ID", "must be ASCII"))?)
        }
        None => None,
    };
    let start = Start::parse("Last-Event-ID", last_event_id)?;
    let subscription = state.events.subscribe(session.player_id).await?;
    let stream = feed(&state, subscription, start).map(|event| {
        Ok::<_, Infallible>(
            SseEvent::default().id(event.id.to_string()).event(&event.kind).data(event.body.to_string()),
        )
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response())
}

/// A player's session from `Authorization: Bearer`, or else `?token=`.
pub struct StreamSession(pub PlayerSession);

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for StreamSession
where
    AppState: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = match bearer_token(&parts.headers) {
            Some(token) => Some(token.to_owned()),
            None => Query::<TokenQuery>::try_from_uri(&parts.uri).ok().and_then(|Query(q)| q.token),
        };
        let token = token.filter(|token| !token.is_empty());
        PlayerSession::presenting(parts, state, token.as_deref()).await.map(StreamSession)
    }
}

/// `GET /v1/me/ws`'s query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WsQuery {
    /// The session token, for clients that cannot send `Authorization`.
    #[allow(dead_code)] // read by `StreamSession`, before the handler runs
    token: Option<String>,
    /// The id of the last event received: every later one of the last 24 hours is sent first.
    last_event_id: Option<String>,
}

/// `GET /v1/me/ws`.
#[utoipa::path(get, path = "/v1/me/ws", tag = "player", operation_id = "me_ws",
    params(WsQuery),
    responses(
        (status = 101, description = "A WebSocket of JSON text messages, one per change, in commit \
            order. The socket is closed if the client falls 256 events behind: reconnect with \
            `last_event_id`.", body = WsMessage,
            example = json!({"id": 42, "event": "status", "data": {"status": "cooling_off", "status_until": "2026-12-04T10:00:00Z"}})),
        (status = 400, description = "Not a WebSocket upgrade, or `last_event_id` is not a non-negative integer.", body = crate::error::ErrorBody,
            example = json!({"code": 400, "message": "last_event_id: must be a non-negative integer event id"})),
    ))]
pub async fn ws(
    State(state): State<AppState>,
    StreamSession(session): StreamSession,
    QueryParams(query): QueryParams<WsQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> AppResult<Response> {
    let start = Start::parse("last_event_id", query.last_event_id.as_deref())?;
    let upgrade = upgrade.map_err(|rejection| AppError::bad_request("upgrade", rejection.body_text()))?;
    let subscription = state.events.subscribe(session.player_id).await?;
    let feed = feed(&state, subscription, start);
    Ok(upgrade.on_upgrade(move |socket| pump(socket, feed)))
}

/// Sends `feed` down `socket` until either ends.
async fn pump(mut socket: WebSocket, feed: impl Stream<Item = Arc<Logged>>) {
    let feed = std::pin::pin!(feed);
    let mut feed = feed;
    let mut pings = tokio::time::interval(KEEP_ALIVE);
    pings.tick().await;
    loop {
        tokio::select! {
            event = feed.next() => {
                let Some(event) = event else {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                };
                let message = WsMessage { id: event.id, event: &event.kind, data: &event.body };
                let text = serde_json::to_string(&message).expect("a JSON value serialises");
                if socket.send(Message::text(text)).await.is_err() {
                    return;
                }
            }
            received = socket.recv() => match received {
                // Pings are answered by the socket itself; anything else the client says is ignored.
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            _ = pings.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_last_event_id_is_a_non_negative_integer_or_nothing() {
        assert_eq!(Start::parse("f", None).unwrap(), Start::New);
        assert_eq!(Start::parse("f", Some("0")).unwrap(), Start::After(0));
        assert_eq!(Start::parse("f", Some("42")).unwrap(), Start::After(42));
        for bad in ["", "-1", "+1", "1.5", "abc", " 1", "99999999999999999999"] {
            assert!(Start::parse("f", Some(bad)).is_err(), "{bad:?} was accepted");
        }
    }
}
