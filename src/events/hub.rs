//! The hub: this instance's one listener on `player_events`, and the
//! streams of the players connected here.
//!
//! A notification carries ids only (`at/player_id:id,…`, `at` the events'
//! time in microseconds, which finds a ledger row by its key). The hub keeps those
//! of players with a stream here, reads their rows in one query and hands
//! each stream its events in id order through a bounded channel. A stream
//! whose channel is full is dropped rather than waited for: one slow client
//! must never hold up the others, nor make the hub buffer without bound. Its
//! client reconnects with `Last-Event-ID` and replays from the log.
//!
//! When the listening connection is lost, notifications sent meanwhile are
//! lost with it: after listening again, the hub reads every connected
//! player's events after the last one it delivered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::mpsc;

use super::{store, Logged};
use crate::ops::metrics;

/// The channel `notify_player_events` (migrations/0017) notifies.
pub const CHANNEL: &str = "player_events";

/// Events a stream may have waiting before it is dropped. A stream drains
/// its channel as fast as its client reads; 256 is minutes of a busy
/// player's play, and a few kilobytes of pointers per connection.
pub const BUFFER: usize = 256;

/// What each stream receives: an event as logged, shared by every stream
/// of its player.
pub type Delivery = Arc<Logged>;

/// The streams of one player, and the newest id the hub handed them.
struct Player {
    /// `None` until the first delivery or the first subscriber's look-up.
    cursor: Option<i64>,
    streams: Vec<(u64, mpsc::Sender<Delivery>)>,
}

/// This instance's streams, fed by one listener.
pub struct Hub {
    pool: PgPool,
    players: Mutex<HashMap<i64, Player>>,
    next_key: AtomicU64,
    buffer: usize,
    closed: AtomicBool,
}

/// One stream's registration: its receiver, and its place in the hub, given
/// back when dropped.
pub struct Subscription {
    pub receiver: mpsc::Receiver<Delivery>,
    /// The player's newest event id when the stream subscribed: where a
    /// stream that replays nothing starts.
    pub latest: i64,
    hub: Weak<Hub>,
    player_id: i64,
    key: u64,
}

impl Subscription {
    pub fn player_id(&self) -> i64 {
        self.player_id
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.forget(self.player_id, self.key);
        }
    }
}

impl Hub {
    /// A hub with `buffer` events per stream, listening on its own task for
    /// as long as it lives. Listening starts before the hub is handed out.
    pub async fn start(pool: PgPool, buffer: usize) -> Arc<Hub> {
        let hub = Arc::new(Hub {
            pool,
            players: Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(0),
            buffer,
            closed: AtomicBool::new(false),
        });
        let listener = match tokio::time::timeout(Duration::from_secs(2), connect_listener(&hub.pool)).await {
            Ok(Ok(listener)) => Some(listener),
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot listen for player events yet; retrying in the background");
                None
            }
            Err(_) => None,
        };
        tokio::spawn(listen(Arc::downgrade(&hub), listener));
        hub
    }

    /// Registers a stream of `player_id`'s events. Register before reading
    /// anything from the log, so that nothing committed meanwhile is missed.
    pub async fn subscribe(self: &Arc<Self>, player_id: i64) -> sqlx::Result<Subscription> {
        let (sender, receiver) = mpsc::channel(self.buffer);
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        if !self.closed.load(Ordering::Relaxed) {
            let mut players = self.players.lock().expect("the hub's map is never poisoned");
            let player =
                players.entry(player_id).or_insert_with(|| Player { cursor: None, streams: Vec::new() });
            player.streams.push((key, sender));
            metrics::record_event_streams(1.0);
        }
        let mut subscription =
            Subscription { receiver, latest: 0, hub: Arc::downgrade(self), player_id, key };
        let latest = store::latest_id(&self.pool, player_id).await?;
        if let Some(player) =
            self.players.lock().expect("the hub's map is never poisoned").get_mut(&player_id)
        {
            // A player new to the hub: a catch-up starts here. (A cursor the
            // hub holds already stays: its other streams may still be owed
            // events up to `latest` by notifications on their way.)
            player.cursor.get_or_insert(latest);
        }
        subscription.latest = latest;
        Ok(subscription)
    }

    /// Streams registered now, over every player.
    pub fn streams(&self) -> usize {
        self.players.lock().expect("the hub's map is never poisoned").values().map(|p| p.streams.len()).sum()
    }

    /// Ends every stream and refuses new ones: at shutdown, so that
    /// connections holding a stream can finish.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let mut players = self.players.lock().expect("the hub's map is never poisoned");
        let ended: usize = players.drain().map(|(_, p)| p.streams.len()).sum();
        metrics::record_event_streams(-(ended as f64));
    }

    fn forget(&self, player_id: i64, key: u64) {
        let mut players = self.players.lock().expect("the hub's map is never poisoned");
        if let Some(player) = players.get_mut(&player_id) {
            let before = player.streams.len();
            player.streams.retain(|(k, _)| *k != key);
            metrics::record_event_streams(-((before - player.streams.len()) as f64));
            if player.streams.is_empty() {
                players.remove(&player_id);
            }
        }
    }

    /// The events of `payloads` whose players have a stream here.
    fn wanted(&self, payloads: &[String]) -> Announced {
        let players = self.players.lock().expect("the hub's map is never poisoned");
        let mut wanted = Announced::default();
        for (at, player_id, id) in payloads.iter().flat_map(|payload| parse(payload)) {
            if players.contains_key(&player_id) {
                wanted.player_ids.push(player_id);
                wanted.ids.push(id);
                wanted.ats.push(at);
            }
        }
        wanted
    }

    /// Reads and delivers what `payloads` announced.
    async fn notified(&self, payloads: &[String]) -> sqlx::Result<()> {
        let wanted = self.wanted(payloads);
        if wanted.ids.is_empty() {
            return Ok(());
        }
        let events = store::by_ids(&self.pool, &wanted.player_ids, &wanted.ids, &wanted.ats).await?;
        self.deliver(events);
        Ok(())
    }

    /// Reads and delivers every connected player's events after its cursor.
    async fn catch_up(&self) -> sqlx::Result<()> {
        let (player_ids, cursors): (Vec<i64>, Vec<i64>) = {
            let players = self.players.lock().expect("the hub's map is never poisoned");
            players.iter().filter_map(|(id, p)| p.cursor.map(|cursor| (*id, cursor))).unzip()
        };
        if player_ids.is_empty() {
            return Ok(());
        }
        let events = store::since(&self.pool, &player_ids, &cursors).await?;
        tracing::info!(players = player_ids.len(), events = events.len(), "caught up on player events");
        self.deliver(events);
        Ok(())
    }

    /// Hands `events` (in id order) to their players' streams, each event
    /// at most once; a stream whose channel is full, or whose receiver is
    /// gone, is dropped.
    fn deliver(&self, events: Vec<Logged>) {
        let mut players = self.players.lock().expect("the hub's map is never poisoned");
        let (mut delivered, mut dropped, mut gone) = (0u64, 0u64, 0u64);
        for event in events {
            let player_id = event.player_id;
            let Some(player) = players.get_mut(&player_id) else { continue };
            if player.cursor.is_some_and(|cursor| event.id <= cursor) {
                continue;
            }
            player.cursor = Some(event.id);
            let event = Arc::new(event);
            player.streams.retain(|(_, stream)| match stream.try_send(event.clone()) {
                Ok(()) => {
                    delivered += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    dropped += 1;
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    gone += 1;
                    false
                }
            });
            if player.streams.is_empty() {
                players.remove(&player_id);
            }
        }
        drop(players);
        metrics::record_event_deliveries(delivered, dropped);
        metrics::record_event_streams(-((dropped + gone) as f64));
        if dropped > 0 {
            tracing::info!(dropped, "dropped event streams whose clients fell behind");
        }
    }
}

/// Events announced by notifications, as parallel arrays.
#[derive(Default)]
struct Announced {
    player_ids: Vec<i64>,
    ids: Vec<i64>,
    ats: Vec<DateTime<Utc>>,
}

/// `at/player_id:id,player_id:id,…` as `(at, player_id, id)`; a malformed
/// payload or pair is skipped (and logged).
fn parse(payload: &str) -> impl Iterator<Item = (DateTime<Utc>, i64, i64)> + '_ {
    let (at, pairs) = payload
        .split_once('/')
        .and_then(|(at, pairs)| Some((DateTime::from_timestamp_micros(at.parse().ok()?)?, pairs)))
        .unzip();
    if at.is_none() {
        tracing::warn!(payload, "a player_events notification that is not at/player_id:id,…");
    }
    let pairs = pairs.unwrap_or_default().split(',').filter(|pair| !pair.is_empty());
    pairs.filter_map(move |pair| {
        let parsed = pair.split_once(':').and_then(|(p, i)| Some((at?, p.parse().ok()?, i.parse().ok()?)));
        if parsed.is_none() {
            tracing::warn!(pair, "a player_events notification pair that is not player_id:id");
        }
        parsed
    })
}

/// Delivers what notifications announce, for as long as the hub lives.
async fn listen(hub: Weak<Hub>, mut listening: Option<PgListener>) {
    let Some(pool) = hub.upgrade().map(|h| h.pool.clone()) else { return };
    loop {
        let mut listener = match listening.take() {
            Some(listener) => listener,
            None => match connect_listener(&pool).await {
                Ok(listener) => {
                    // Listening again: what was notified while it was not is
                    // read from the log.
                    let Some(hub) = hub.upgrade() else { return };
                    if let Err(error) = hub.catch_up().await {
                        tracing::warn!(%error, "could not catch up on player events");
                    }
                    listener
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for player events; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if hub.strong_count() == 0 {
                        return;
                    }
                    continue;
                }
            },
        };
        loop {
            let received = listener.try_recv().await;
            let Some(hub) = hub.upgrade() else { return };
            match received {
                Ok(Some(first)) => {
                    // Whatever else has arrived is read with it, in one query.
                    let mut payloads = vec![first.payload().to_owned()];
                    while let Some(next) = listener.next_buffered() {
                        payloads.push(next.payload().to_owned());
                    }
                    if let Err(error) = hub.notified(&payloads).await {
                        tracing::warn!(%error, "could not read notified player events; catching up");
                        break;
                    }
                }
                Ok(None) => {
                    tracing::warn!("lost the connection listening for player events; listening again");
                    break;
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(error) => {
                    tracing::warn!(%error, "listening for player events failed; listening again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
            }
        }
        // A fresh connection, then the catch-up: in that order, so that
        // nothing committed in between is missed.
        drop(listener);
    }
}

async fn connect_listener(pool: &PgPool) -> sqlx::Result<PgListener> {
    let mut listener = PgListener::connect_with(&crate::listening_pool(pool)).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Deletes events past the retention window every ten minutes, in batches,
/// until the process ends.
pub fn spawn_purge(pool: PgPool) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(600));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let mut total = 0;
            loop {
                match store::purge_batch(&pool, 5_000).await {
                    Ok(0) => break,
                    Ok(n) => total += n,
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(error) => {
                        tracing::warn!(%error, "could not purge old player events");
                        break;
                    }
                }
            }
            if total > 0 {
                tracing::info!(deleted = total, "purged player events past retention");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::parse;
    use chrono::DateTime;

    #[test]
    fn a_notification_is_read_as_its_time_and_player_and_id_pairs_skipping_malformed_ones() {
        let at = DateTime::from_timestamp_micros(1_764_201_600_123_456).unwrap();
        let pairs: Vec<_> = parse("1764201600123456/7:10,8:11,x:1,9,10:12").collect();
        assert_eq!(pairs, [(at, 7, 10), (at, 8, 11), (at, 10, 12)]);
        assert_eq!(parse("1764201600123456/").count(), 0);
        assert_eq!(parse("").count(), 0);
        assert_eq!(parse("7:10,8:11").count(), 0, "without its time");
        assert_eq!(parse("soon/7:10").count(), 0);
    }
}
