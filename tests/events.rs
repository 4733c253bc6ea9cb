//! Real-time events (API.md §11): status and limits changes reach the
//! player's open streams (SSE and WebSocket) after they commit, in id order;
//! a stream reconnecting with `Last-Event-ID` gets exactly what came after;
//! an event committed through one instance reaches a stream held on
//! another; and a client that stops reading is dropped without holding up
//! anyone else.

mod common;

use std::time::Duration;

use common::bluestar::*;
use common::*;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use wallet::events::{self, Event, Hub, StatusEvent};

/// How long a test waits for an event that must come.
const PATIENCE: Duration = Duration::from_secs(5);

/// One event as a stream sent it.
#[derive(Debug, Clone, PartialEq)]
struct Received {
    id: i64,
    kind: String,
    data: Value,
}

/// An open `GET /v1/me/events`, read frame by frame.
struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    async fn open(server: &TestServer, token: &str, last_event_id: Option<&str>) -> Sse {
        let response = sse_request(server, Some(token), last_event_id).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Sse { response, buffer: String::new() }
    }

    /// The next event, or `None` if the stream ended or none came within `wait`.
    async fn next_within(&mut self, wait: Duration) -> Option<Received> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, None, None);
                for line in frame.lines() {
                    if let Some(value) = line.strip_prefix("id: ") {
                        id = Some(value.parse().unwrap());
                    } else if let Some(value) = line.strip_prefix("event: ") {
                        kind = Some(value.to_owned());
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(value).unwrap());
                    }
                }
                match (id, kind, data) {
                    (Some(id), Some(kind), Some(data)) => return Some(Received { id, kind, data }),
                    // A keep-alive comment.
                    _ => continue,
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await.ok()?.unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    async fn next(&mut self) -> Received {
        self.next_within(PATIENCE).await.expect("an event within 5 s")
    }

    /// Asserts that nothing more comes for a while.
    async fn assert_quiet(&mut self) {
        if let Some(extra) = self.next_within(Duration::from_millis(500)).await {
            panic!("an event that should not have come: {extra:?}");
        }
    }
}

async fn sse_request(
    server: &TestServer,
    token: Option<&str>,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request = server.client.get(server.url("/v1/me/events")).header(BLUESTAR[0].0, BLUESTAR[0].1);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    request.send().await.unwrap()
}

async fn time_out(server: &TestServer, token: &str, days: i64) {
    let (status, body) =
        as_player(server, Method::POST, "/v1/me/time-out", token, Some(&json!({"days": days}))).await;
    assert_eq!(status, 200, "{body}");
}

async fn set_limits(server: &TestServer, token: &str, limits: Value) -> Value {
    let (status, body) = as_player(server, Method::PUT, "/v1/me/limits", token, Some(&limits)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// A bluestar player: user_id and token.
async fn bluestar_player(server: &TestServer) -> (String, String) {
    bluestar(server, json!({})).await;
    player(server, "ann@example.com").await
}

#[sqlx::test]
async fn a_limits_change_and_a_time_out_reach_an_open_stream_as_events_in_id_order(pool: PgPool) {
    let server = TestServer::start(pool).await;
    let (_, token) = bluestar_player(&server).await;
    let mut stream = Sse::open(&server, &token, None).await;

    let shown = set_limits(&server, &token, json!({"loss": {"day": 500}})).await;
    time_out(&server, &token, 7).await;

    let limits = stream.next().await;
    assert_eq!(limits.kind, "limits");
    assert_eq!(limits.data, shown, "the limits as GET /v1/me/limits shows them");
    let status = stream.next().await;
    assert_eq!(status.kind, "status");
    assert_eq!(status.data["status"], "cooling_off");
    assert!(status.data["status_until"].is_string(), "{}", status.data);
    assert!(status.id > limits.id, "{} then {}", limits.id, status.id);
    stream.assert_quiet().await;
}

#[sqlx::test]
async fn a_staff_block_and_unblock_reach_the_stream_as_status_events(pool: PgPool) {
    let server = TestServer::start(pool).await;
    let (user_id, token) = bluestar_player(&server).await;
    let mut stream = Sse::open(&server, &token, None).await;
    for status in ["blocked", "active"] {
        let path = format!("/v1/players/{user_id}");
        let body = json!({"status": status});
        let (code, answer) =
            server.send(Method::PATCH, &path, Some(ADMIN_TOKEN), &BLUESTAR, Some(&body)).await;
        assert_eq!(code, 200, "{answer}");
    }
    let (blocked, active) = (stream.next().await, stream.next().await);
    assert_eq!(
        (blocked.kind.as_str(), &blocked.data),
        ("status", &json!({"status": "blocked", "status_until": null}))
    );
    assert_eq!(
        (active.kind.as_str(), &active.data),
        ("status", &json!({"status": "active", "status_until": null}))
    );
    assert!(active.id > blocked.id);
}

#[sqlx::test]
async fn a_stream_opened_without_last_event_id_sends_only_new_events(pool: PgPool) {
    let server = TestServer::start(pool).await;
    let (_, token) = bluestar_player(&server).await;
    set_limits(&server, &token, json!({"wager": {"day": 900}})).await;
    let mut stream = Sse::open(&server, &token, None).await;
    set_limits(&server, &token, json!({"wager": {"day": 800}})).await;
    let event = stream.next().await;
    assert_eq!(event.data["wager"]["day"]["amount"], 800, "{event:?}");
    stream.assert_quiet().await;
}

#[sqlx::test]
async fn reconnecting_with_last_event_id_replays_exactly_the_later_events_once_each_in_order(pool: PgPool) {
    let server = TestServer::start(pool).await;
    let (_, token) = bluestar_player(&server).await;
    let mut first = Sse::open(&server, &token, None).await;
    for amount in [900, 800, 700, 600] {
        set_limits(&server, &token, json!({"deposit": {"week": amount}})).await;
    }
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(first.next().await);
    }
    drop(first);

    let mut resumed = Sse::open(&server, &token, Some(&seen[1].id.to_string())).await;
    assert_eq!(resumed.next().await, seen[2]);
    assert_eq!(resumed.next().await, seen[3]);
    // Live events follow the replay, none of them twice.
    set_limits(&server, &token, json!({"deposit": {"week": 500}})).await;
    let live = resumed.next().await;
    assert!(live.id > seen[3].id);
    assert_eq!(live.data["deposit"]["week"]["amount"], 500);
    resumed.assert_quiet().await;

    // From 0: everything of the last 24 hours.
    let mut all = Sse::open(&server, &token, Some("0")).await;
    let mut replayed = Vec::new();
    for _ in 0..5 {
        replayed.push(all.next().await);
    }
    assert_eq!(replayed[..4], seen[..]);
    assert_eq!(replayed[4], live);
    all.assert_quiet().await;
}

#[sqlx::test]
async fn events_older_than_a_day_are_not_replayed(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let (_, token) = bluestar_player(&server).await;
    set_limits(&server, &token, json!({"loss": {"month": 900}})).await;
    set_limits(&server, &token, json!({"loss": {"month": 800}})).await;
    sql(&pool, "UPDATE player_events SET at = at - interval '25 hours' WHERE id = (SELECT min(id) FROM player_events)")
        .await;
    let mut stream = Sse::open(&server, &token, Some("0")).await;
    assert_eq!(stream.next().await.data["loss"]["month"]["amount"], 800);
    stream.assert_quiet().await;
}

#[sqlx::test]
async fn a_websocket_receives_the_same_events_as_json_messages(pool: PgPool) {
    let server = TestServer::start(pool).await;
    let (_, token) = bluestar_player(&server).await;
    let mut sse = Sse::open(&server, &token, None).await;
    // The token in the query, as a browser sends it.
    let mut request = format!("ws://{}/v1/me/ws?token={token}", server.addr).into_client_request().unwrap();
    request.headers_mut().insert("x-operator", "bluestar".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();

    set_limits(&server, &token, json!({"loss": {"day": 300}})).await;
    time_out(&server, &token, 1).await;

    let mut messages = Vec::new();
    while messages.len() < 2 {
        let message = tokio::time::timeout(PATIENCE, socket.next()).await.unwrap().unwrap().unwrap();
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap();
            let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["data", "event", "id"], "{value}");
            messages.push(Received {
                id: value["id"].as_i64().unwrap(),
                kind: value["event"].as_str().unwrap().to_owned(),
                data: value["data"].clone(),
            });
        }
    }
    assert_eq!(messages, [sse.next().await, sse.next().await]);
    socket.close(None).await.unwrap();

    // A bearer header works too, and `last_event_id` replays.
    let mut request = format!("ws://{}/v1/me/ws?last_event_id={}", server.addr, messages[0].id)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert("x-operator", "bluestar".parse().unwrap());
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let message = tokio::time::timeout(PATIENCE, socket.next()).await.unwrap().unwrap().unwrap();
    let value: Value = serde_json::from_str(message.to_text().unwrap()).unwrap();
    assert_eq!(value["id"], messages[1].id);
    assert_eq!(value["event"], "status");
}

#[sqlx::test]
async fn an_event_committed_through_one_instance_reaches_a_stream_held_on_another(pool: PgPool) {
    let a = TestServer::start(pool.clone()).await;
    let b = TestServer::start(pool).await;
    let (_, token) = bluestar_player(&a).await;
    for _ in 0..100 {
        if b.state.operators.by_code("bluestar").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut on_b = Sse::open(&b, &token, None).await;
    time_out(&a, &token, 30).await;
    let event = on_b.next().await;
    assert_eq!(event.kind, "status");
    assert_eq!(event.data["status"], "cooling_off");
}

#[sqlx::test]
async fn a_stream_that_stops_reading_is_dropped_while_another_of_the_player_gets_every_event(pool: PgPool) {
    let hub = Hub::start(pool.clone(), 4).await;
    let player_id = 7;
    let mut lagging = hub.subscribe(player_id).await.unwrap();
    let mut reading = hub.subscribe(player_id).await.unwrap();
    assert_eq!(hub.streams(), 2);
    let log_three = || async {
        let mut tx = pool.begin().await.unwrap();
        let event =
            Event::Status(StatusEvent { status: wallet::domain::PlayerStatus::Blocked, status_until: None });
        for _ in 0..3 {
            events::log(&mut tx, player_id, chrono::Utc::now(), &event).await.unwrap();
        }
        tx.commit().await.unwrap();
    };
    let mut received = Vec::new();
    log_three().await;
    for _ in 0..3 {
        received.push(tokio::time::timeout(PATIENCE, reading.receiver.recv()).await.unwrap().unwrap().id);
    }
    // The lagging stream holds three of its four; three more overflow it.
    log_three().await;
    for _ in 0..3 {
        received.push(tokio::time::timeout(PATIENCE, reading.receiver.recv()).await.unwrap().unwrap().id);
    }
    assert!(received.windows(2).all(|w| w[0] < w[1]), "{received:?}");
    let mut kept = Vec::new();
    while let Some(event) = tokio::time::timeout(PATIENCE, lagging.receiver.recv()).await.unwrap() {
        kept.push(event.id);
    }
    assert_eq!(kept, received[..4], "what it had room for, then the end of its stream");
    assert_eq!(hub.streams(), 1);
}

#[sqlx::test]
async fn after_its_listening_connection_is_lost_the_hub_catches_up_from_the_log(pool: PgPool) {
    let hub = Hub::start(pool.clone(), 16).await;
    let mut stream = hub.subscribe(9).await.unwrap();
    // An event whose notification never comes (as if sent while the hub
    // was not listening), then the listening connection lost.
    sql(&pool, r#"INSERT INTO player_events (player_id, at, kind, body) VALUES (9, now(), 'limits', '{"loss": {}}')"#)
        .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.receiver.recv()).await.is_err(),
        "nothing is delivered without a notification"
    );
    sql(
        &pool,
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
         WHERE query LIKE 'LISTEN%player_events%' AND datname = current_database()",
    )
    .await;
    let got = tokio::time::timeout(Duration::from_secs(10), stream.receiver.recv()).await.unwrap().unwrap();
    assert_eq!((got.kind.as_str(), &got.body), ("limits", &json!({"loss": {}})));

    // And it listens again.
    let mut tx = pool.begin().await.unwrap();
    events::log(&mut tx, 9, chrono::Utc::now(), &Event::Limits(json!({}))).await.unwrap();
    tx.commit().await.unwrap();
    let next = tokio::time::timeout(PATIENCE, stream.receiver.recv()).await.unwrap().unwrap();
    assert!(next.id > got.id);
}

#[sqlx::test]
async fn a_provider_bet_reaches_the_stream_as_a_balance_event(pool: PgPool) {
    let server = TestServer::start(pool).await;
    bluestar(&server, json!({})).await;
    let secret = bluestar_provider_key(&server).await;
    let (user_id, token) = player(&server, "ann@example.com").await;
    set_tier(&server, &user_id, 1).await;
    let staff = [BLUESTAR[0], ("idempotency-key", "fund")];
    let path = format!("/v1/players/{user_id}/deposits");
    let (status, body) =
        server.send(Method::POST, &path, Some(ADMIN_TOKEN), &staff, Some(&json!({"amount": 10_000}))).await;
    assert_eq!(status, 201, "{body}");
    let mut stream = Sse::open(&server, &token, None).await;

    let (status, answer) =
        server.process_at(BLUESTAR_PROCESS, &secret, &gbp(&user_id, vec![bet(id(), 250)])).await;
    assert_eq!(status, 200, "{answer}");

    let event = stream.next().await;
    assert_eq!(event.kind, "balance");
    assert_eq!(
        event.data,
        json!({"cash": 9_750, "bonus": 0, "total": 9_750, "tx_id": answer["transactions"][0]["tx_id"]})
    );

    // A bet's balance event is its ledger row, a limits event a row of the
    // event log: a replay merges them by id, each once, in commit order.
    set_limits(&server, &token, json!({"loss": {"day": 5_000}})).await;
    let batch = gbp(&user_id, vec![bet(id(), 100), bet(id(), 150)]);
    let (status, answer) = server.process_at(BLUESTAR_PROCESS, &secret, &batch).await;
    assert_eq!(status, 200, "{answer}");
    let live = [event.clone(), stream.next().await, stream.next().await];
    assert_eq!(live.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["balance", "limits", "balance"]);
    assert_eq!(live[2].data["cash"], 9_500, "one balance event for the batch, after its last action");
    assert_eq!(live[2].data["tx_id"], answer["transactions"][1]["tx_id"]);
    stream.assert_quiet().await;

    let mut replay = Sse::open(&server, &token, Some("0")).await;
    let deposit = replay.next().await;
    assert_eq!((deposit.kind.as_str(), &deposit.data["cash"]), ("balance", &json!(10_000)));
    for expected in &live {
        assert_eq!(&replay.next().await, expected);
    }
    replay.assert_quiet().await;
    let mut resumed = Sse::open(&server, &token, Some(&live[0].id.to_string())).await;
    assert_eq!(resumed.next().await, live[1]);
    assert_eq!(resumed.next().await, live[2]);
    resumed.assert_quiet().await;
}

#[sqlx::test]
async fn a_stream_without_a_token_is_401_and_a_bad_last_event_id_is_400(pool: PgPool) {
    let server = TestServer::start(pool).await;
    let (_, token) = bluestar_player(&server).await;
    let response = sse_request(&server, None, None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = sse_request(&server, Some("ply_not-a-session"), None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = server.send(Method::GET, "/v1/me/ws", None, &BLUESTAR, None).await;
    assert_error(status, &body, 401, 401);
    for bad in ["abc", "-1", "1.5", ""] {
        let response = sse_request(&server, Some(&token), Some(bad)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "Last-Event-ID {bad:?}");
        let body: Value = response.json().await.unwrap();
        assert_error(StatusCode::BAD_REQUEST, &body, 400, 400);
    }
    let path = format!("/v1/me/ws?token={token}&last_event_id=x");
    let mut request = server.client.get(server.url(&path)).header("x-operator", "bluestar");
    for (name, value) in [
        ("connection", "upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ] {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // Not an upgrade at all: 400 in the contract's shape.
    let (status, body) =
        server.send(Method::GET, &format!("/v1/me/ws?token={token}"), None, &BLUESTAR, None).await;
    assert_error(status, &body, 400, 400);
}
