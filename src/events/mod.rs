//! Real-time events (API §11): every change of a player's balance, bonus,
//! status or limits, streamed to the player's front ends over Server-Sent
//! Events (`GET /v1/me/events`) and WebSocket (`GET /v1/me/ws`).
//!
//! - `store`: the per-player event log in SQL. Each change writes its event
//!   in its own transaction, under the player's wallet lock, so an event
//!   exists exactly when its change committed and a player's ids follow
//!   commit order. The `balance` event of a hot-path commit is the
//!   player's last ledger row of it, numbered from the events' sequence, so
//!   a bet writes one row; every other event is a row of `player_events`
//!   (written with [`log`]). The view `player_event_log` reads both.
//! - `hub`: one `LISTEN player_events` per instance; the statement that
//!   writes events notifies their ids, delivered at commit, and the hub
//!   hands them to the streams of the players connected here through
//!   bounded channels.
//!
//! The streams themselves are player routes, in `accounts::streams`.
//!
//! A stream subscribes to the hub first, then replays the log after the
//! client's `Last-Event-ID`, then sends what the hub delivers, skipping any
//! id it has sent already: the replay and the live events overlap, never
//! leave a gap. `docs/ARCHITECTURE.md`, "Real-time events", says why.

pub mod hub;
pub mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::PlayerStatus;
pub use hub::{Hub, Subscription};
pub use store::log;

/// A change to tell the player about, as [`log`] writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Balance(BalanceEvent),
    Bonus(BonusEvent),
    Status(StatusEvent),
    /// The player's limits as `GET /v1/me/limits` answers them.
    Limits(serde_json::Value),
}

impl Event {
    /// Its `kind` in the log, and its name on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Balance(_) => "balance",
            Event::Bonus(_) => "bonus",
            Event::Status(_) => "status",
            Event::Limits(_) => "limits",
        }
    }

    /// What the stream sends as its data.
    pub fn body(&self) -> serde_json::Result<serde_json::Value> {
        match self {
            Event::Balance(body) => serde_json::to_value(body),
            Event::Bonus(body) => serde_json::to_value(body),
            Event::Status(body) => serde_json::to_value(body),
            Event::Limits(body) => Ok(body.clone()),
        }
    }
}

/// `balance`: after every committed change of the balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BalanceEvent {
    pub cash: i64,
    pub bonus: i64,
    /// `cash + bonus`: what a game provider sees.
    pub total: i64,
    /// The transaction that changed it.
    pub tx_id: Uuid,
}

/// `bonus`: after every change of a bonus grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BonusEvent {
    pub bonus_id: Uuid,
    /// `active`, `completed`, `expired` or `forfeited`.
    pub status: String,
    pub balance: i64,
    pub wagered: i64,
    pub required: i64,
}

/// `status`: after a time-out, a self-exclusion, a block or an unblock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusEvent {
    pub status: PlayerStatus,
    /// When a time-out or self-exclusion ends; `null` otherwise.
    pub status_until: Option<DateTime<Utc>>,
}

/// An event as the log holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub player_id: i64,
    pub id: i64,
    pub kind: String,
    pub body: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_written_under_their_kind_with_their_body() {
        let status = Event::Status(StatusEvent { status: PlayerStatus::CoolingOff, status_until: None });
        assert_eq!(status.kind(), "status");
        assert_eq!(
            status.body().unwrap(),
            serde_json::json!({"status": "cooling_off", "status_until": null})
        );
        let limits = Event::Limits(serde_json::json!({"loss": {}}));
        assert_eq!(limits.kind(), "limits");
        assert_eq!(limits.body().unwrap(), serde_json::json!({"loss": {}}));
    }
}
