//! The RTP reports against a brute-force aggregation over the raw ledger.
//!
//! History is played through the real hot path (`process_batch`), so the
//! rollups are exactly what production writes. Between phases of play the
//! whole database is moved back by whole hours, as if time had passed, which
//! spreads the history over many hour buckets while keeping every rollup row
//! in the bucket of the rows it summarises.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};
use http_body_util::BodyExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::PgPool;
use tower::ServiceExt;
use uuid::Uuid;

use wallet::audit::{Actor, Origin};
use wallet::domain::{Amount, Currency, EntryKind, UserId, DEFAULT_OPERATOR};
use wallet::ledger::{process_batch, Action, Batch};
use wallet::players::store as players;
use wallet::reports::summary;
use wallet::{app, AppState};

const TOKEN: &str = "admin";
const GAMES: [Option<&str>; 3] = [Some("slots"), Some("poker"), None];
const ROUNDS: [Option<&str>; 5] = [Some("r1"), Some("r2"), Some("r3"), Some("r4"), None];

async fn router(pool: &PgPool) -> Router {
    app(AppState::new(pool.clone(), &["test".to_string()], TOKEN).await)
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    let request =
        Request::get(uri).header("Authorization", format!("Bearer {TOKEN}")).body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn time(at: DateTime<Utc>) -> String {
    // '+' would read as a space in a query string; 'Z' needs no escaping.
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Players, and what was played, to draw the next request from.
struct History {
    pool: PgPool,
    rng: StdRng,
    players: Vec<(UserId, Currency)>,
    /// Players `0..active` start new rounds; the rest only see rollbacks.
    active: usize,
    /// Bets and wins processed so far, by player index.
    originals: Vec<(usize, Uuid, Action)>,
    /// Originals of pre-rollbacks that have not arrived yet.
    awaited: Vec<(usize, Uuid)>,
    sent: Vec<Batch>,
}

impl History {
    async fn new(pool: &PgPool, seed: u64) -> History {
        let mut history = History {
            pool: pool.clone(),
            rng: StdRng::seed_from_u64(seed),
            players: Vec::new(),
            active: 0,
            originals: Vec::new(),
            awaited: Vec::new(),
            sent: Vec::new(),
        };
        history.join(&[("ann", "USD"), ("bob", "USD"), ("cy", "EUR"), ("dee", "EUR"), ("eve", "BTC")]).await;
        history
    }

    /// Funded players who join the game.
    async fn join(&mut self, who: &[(&str, &str)]) {
        for (name, currency) in who {
            let user = UserId::try_from(name.to_string()).unwrap();
            let currency = Currency::try_from(currency.to_string()).unwrap();
            players::create_player(
                &self.pool,
                DEFAULT_OPERATOR,
                &Origin::without_request(Actor::Platform),
                &user,
                &currency,
            )
            .await
            .unwrap();
            players::move_money(
                &self.pool,
                DEFAULT_OPERATOR,
                &Origin::without_request(Actor::Platform),
                wallet::players::store::Requester::Staff,
                &user,
                EntryKind::Deposit,
                Amount::positive(10_000_000).unwrap(),
                "fund",
                wallet::players::store::BonusAsk::Nothing,
            )
            .await
            .unwrap();
            self.players.push((user, currency));
        }
        self.active = self.players.len();
    }

    /// Plays `phases` rounds of `steps` requests each, up to `max_gap` hours apart.
    async fn phases(&mut self, phases: usize, steps: usize, max_gap: i32) {
        for phase in 0..phases {
            if phase > 0 {
                let hours = self.rng.random_range(0..=max_gap);
                if hours > 0 {
                    self.age(hours).await;
                }
            }
            for _ in 0..steps {
                self.play().await;
            }
        }
    }

    fn amount(&mut self) -> Amount {
        Amount::try_from(self.rng.random_range(0..=1_000)).unwrap()
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.rng.random_range(0..from.len())]
    }

    /// One random request through the hot path. Refusals (say, a win rollback
    /// beyond the balance) are part of life and change nothing.
    async fn play(&mut self) {
        let roll: f64 = self.rng.random();
        let mut player = self.rng.random_range(0..self.active);
        let mut actions = Vec::new();
        if roll < 0.35 {
            actions.push(Action::Bet { id: Uuid::new_v4(), amount: self.amount() });
            if self.rng.random_bool(0.3) {
                actions.push(Action::Win { id: Uuid::new_v4(), amount: self.amount() });
            }
        } else if roll < 0.5 {
            actions.push(Action::Win { id: Uuid::new_v4(), amount: self.amount() });
        } else if roll < 0.68 && !self.originals.is_empty() {
            let (owner, original, _) = self.pick_original();
            player = owner;
            actions.push(Action::Rollback { id: Uuid::new_v4(), original });
        } else if roll < 0.78 {
            let original = Uuid::new_v4();
            self.awaited.push((player, original));
            actions.push(Action::Rollback { id: Uuid::new_v4(), original });
        } else if roll < 0.9 && !self.awaited.is_empty() {
            let index = self.rng.random_range(0..self.awaited.len());
            let (owner, id) = self.awaited.swap_remove(index);
            player = owner;
            let amount = self.amount();
            actions.push(if self.rng.random_bool(0.7) {
                Action::Bet { id, amount }
            } else {
                Action::Win { id, amount }
            });
        } else if !self.sent.is_empty() {
            // A provider retry: the same request again changes nothing.
            let batch = self.sent[self.rng.random_range(0..self.sent.len())].clone();
            let _ = process_batch(&self.pool, DEFAULT_OPERATOR, &batch).await;
            return;
        } else {
            return;
        }
        let (user_id, currency) = self.players[player].clone();
        let batch = Batch {
            user_id,
            currency,
            game: self.pick(&GAMES).map(str::to_string),
            game_id: self.pick(&ROUNDS).map(str::to_string),
            actions,
        };
        if process_batch(&self.pool, DEFAULT_OPERATOR, &batch).await.is_ok() {
            for action in &batch.actions {
                if !matches!(action, Action::Rollback { .. }) {
                    self.originals.push((player, action.id(), *action));
                }
            }
            self.sent.push(batch);
        }
    }

    fn pick_original(&mut self) -> (usize, Uuid, Action) {
        self.originals[self.rng.random_range(0..self.originals.len())]
    }

    /// Moves everything `hours` into the past, rollups included, as if that
    /// much time had passed since it was written.
    async fn age(&self, hours: i32) {
        let mut tx = self.pool.begin().await.unwrap();
        sqlx::query!("UPDATE ledger SET created_at = created_at - make_interval(hours => $1)", hours)
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query!(
            "UPDATE actions SET processed_at = processed_at - make_interval(hours => $1)
             WHERE processed_at IS NOT NULL",
            hours
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        // Moved in two steps, far away and back: a single in-place update
        // could collide with a row of the previous hour that has not moved yet.
        for shift in [hours + 100_000, -100_000] {
            sqlx::query!("UPDATE rtp_hourly SET bucket = bucket - make_interval(hours => $1)", shift)
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query!("UPDATE round_buckets SET bucket = bucket - make_interval(hours => $1)", shift)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
}

async fn random_history(pool: &PgPool, seed: u64, phases: usize, steps: usize, max_gap: i32) -> History {
    let mut history = History::new(pool, seed).await;
    history.phases(phases, steps, max_gap).await;
    history
}

fn figures(rounds: i64, bet: i64, win: i64, rb_bet: i64, rb_win: i64) -> Value {
    let rtp = (bet != 0).then(|| win as f64 / bet as f64);
    // Through text, as a client reads it (serde_json's float parsing is not
    // bit-exact, so both sides must take the same path).
    let rtp: Value = serde_json::from_str(&serde_json::to_string(&rtp).unwrap()).unwrap();
    json!({"rounds": rounds, "total_bet": bet, "total_win": win,
           "rolled_back_bet": rb_bet, "rolled_back_win": rb_win, "rtp": rtp})
}

fn with_key(mut row: Value, key: Value) -> Value {
    let mut out = key;
    out.as_object_mut().unwrap().append(row.as_object_mut().unwrap());
    out
}

async fn brute_users(
    pool: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    currency: Option<&str>,
    user_id: Option<&str>,
) -> Vec<Value> {
    sqlx::query!(
        r#"SELECT p.user_id, p.currency,
                  count(DISTINCT l.game_id) FILTER (WHERE l.kind = 'bet' AND a.reversed_by IS NULL) AS "rounds!",
                  coalesce(sum(l.amount) FILTER (WHERE l.kind = 'bet' AND a.reversed_by IS NULL), 0)::int8 AS "bet!",
                  coalesce(sum(l.amount) FILTER (WHERE l.kind = 'win' AND a.reversed_by IS NULL), 0)::int8 AS "win!",
                  coalesce(sum(l.amount) FILTER (WHERE l.kind = 'bet' AND a.reversed_by IS NOT NULL), 0)::int8 AS "rb_bet!",
                  coalesce(sum(l.amount) FILTER (WHERE l.kind = 'win' AND a.reversed_by IS NOT NULL), 0)::int8 AS "rb_win!"
           FROM ledger l
           JOIN actions a ON a.action_id = l.action_id
           JOIN players p ON p.id = l.player_id
           WHERE l.kind IN ('bet', 'win') AND l.created_at >= $1 AND l.created_at < $2
             AND ($3::text IS NULL OR p.currency = $3) AND ($4::text IS NULL OR p.user_id = $4)
           GROUP BY p.user_id, p.currency
           ORDER BY p.user_id, p.currency"#,
        from,
        to,
        currency,
        user_id
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|r| {
        with_key(
            figures(r.rounds, r.bet, r.win, r.rb_bet, r.rb_win),
            json!({"user_id": r.user_id, "currency": r.currency}),
        )
    })
    .collect()
}

async fn brute_casino(
    pool: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    currency: Option<&str>,
) -> Vec<Value> {
    sqlx::query!(
        r#"SELECT p.currency, count(DISTINCT l.player_id) AS "users!",
                  count(DISTINCT l.player_id || ':' || l.game_id)
                      FILTER (WHERE l.kind = 'bet' AND a.reversed_by IS NULL) AS "rounds!",
                  coalesce(sum(l.amount) FILTER (WHERE l.kind = 'bet' AND a.reversed_by IS NULL), 0)::int8 AS "bet!",
                  coalesce(sum(l.amount) FILTER (WHERE l.kind = 'win' AND a.reversed_by IS NULL), 0)::int8 AS "win!",
                  coalesce(sum(l.amount) FILTER (WHERE l.kind = 'bet' AND a.reversed_by IS NOT NULL), 0)::int8 AS "rb_bet!",
                  coalesce(sum(l.amount) FILTER (WHERE l.kind = 'win' AND a.reversed_by IS NOT NULL), 0)::int8 AS "rb_win!"
           FROM ledger l
           JOIN actions a ON a.action_id = l.action_id
           JOIN players p ON p.id = l.player_id
           WHERE l.kind IN ('bet', 'win') AND l.created_at >= $1 AND l.created_at < $2
             AND ($3::text IS NULL OR p.currency = $3)
           GROUP BY p.currency
           ORDER BY p.currency"#,
        from,
        to,
        currency,
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|r| {
        with_key(
            figures(r.rounds, r.bet, r.win, r.rb_bet, r.rb_win),
            json!({"currency": r.currency, "users": r.users}),
        )
    })
    .collect()
}

async fn brute_games(
    pool: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    currency: Option<&str>,
) -> Vec<Value> {
    sqlx::query!(
        r#"SELECT coalesce(l.game, '') AS "game!", p.currency,
                  count(DISTINCT l.player_id || ':' || l.game_id)
                      FILTER (WHERE l.kind = 'bet' AND a.reversed_by IS NULL) AS "rounds!",
                  coalesce(sum(l.amount) FILTER (WHERE l.kind = 'bet' AND a.reversed_by IS NULL), 0)::int8 AS "bet!",
                  coalesce(sum(l.amount) FILTER (WHERE l.kind = 'win' AND a.reversed_by IS NULL), 0)::int8 AS "win!",
                  coalesce(sum(l.amount) FILTER (WHERE l.kind = 'bet' AND a.reversed_by IS NOT NULL), 0)::int8 AS "rb_bet!",
                  coalesce(sum(l.amount) FILTER (WHERE l.kind = 'win' AND a.reversed_by IS NOT NULL), 0)::int8 AS "rb_win!"
           FROM ledger l
           JOIN actions a ON a.action_id = l.action_id
           JOIN players p ON p.id = l.player_id
           WHERE l.kind IN ('bet', 'win') AND l.created_at >= $1 AND l.created_at < $2
             AND ($3::text IS NULL OR p.currency = $3)
           GROUP BY 1, p.currency
           ORDER BY 1, p.currency"#,
        from,
        to,
        currency,
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|r| {
        let game = (!r.game.is_empty()).then_some(r.game);
        with_key(
            figures(r.rounds, r.bet, r.win, r.rb_bet, r.rb_win),
            json!({"game": game, "currency": r.currency}),
        )
    })
    .collect()
}

/// `GET /v1/reports/rtp/series` by brute force: the ledger's bets and wins
/// of the window binned by hour or UTC day.
async fn brute_series(
    pool: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: &str,
    currency: Option<&str>,
    game: Option<&str>,
) -> Value {
    let seconds = if bucket == "hour" { 3600.0 } else { 86_400.0 };
    let data: Vec<Value> = sqlx::query!(
        r#"SELECT date_bin(make_interval(secs => $4), l.created_at, '2000-01-01T00:00:00Z') AS "start!",
                  p.currency,
                  coalesce(sum(l.amount) FILTER (WHERE l.kind = 'bet' AND a.reversed_by IS NULL), 0)::int8 AS "bet!",
                  coalesce(sum(l.amount) FILTER (WHERE l.kind = 'win' AND a.reversed_by IS NULL), 0)::int8 AS "win!",
                  coalesce(sum(l.amount) FILTER (WHERE l.kind = 'bet' AND a.reversed_by IS NOT NULL), 0)::int8 AS "rb_bet!",
                  coalesce(sum(l.amount) FILTER (WHERE l.kind = 'win' AND a.reversed_by IS NOT NULL), 0)::int8 AS "rb_win!"
           FROM ledger l
           JOIN actions a ON a.action_id = l.action_id
           JOIN players p ON p.id = l.player_id
           WHERE l.kind IN ('bet', 'win') AND l.created_at >= $1 AND l.created_at < $2
             AND ($3::text IS NULL OR p.currency = $3)
             AND ($5::text IS NULL OR coalesce(l.game, '') = $5)
           GROUP BY 1, p.currency
           ORDER BY 1, p.currency"#,
        from,
        to,
        currency,
        seconds,
        game,
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|r| {
        let mut row = with_key(
            figures(0, r.bet, r.win, r.rb_bet, r.rb_win),
            json!({"start": r.start.to_rfc3339_opts(SecondsFormat::AutoSi, true), "currency": r.currency}),
        );
        row.as_object_mut().unwrap().remove("rounds");
        row
    })
    .collect();
    json!({"bucket": bucket, "data": data})
}

/// Every row of a paginated report, checking each page on the way.
async fn all_pages(app: &Router, base: &str, limit: usize) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut uri = format!("{base}&limit={limit}");
        if let Some(cursor) = &cursor {
            uri.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = get(app, &uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {page}");
        let data = page["data"].as_array().unwrap().clone();
        assert!(data.len() <= limit, "{uri} answered more than its limit");
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(data.len(), limit, "{uri}: only a last page may be short");
                cursor = Some(next.to_string());
                rows.extend(data);
            }
            None => {
                rows.extend(data);
                return rows;
            }
        }
    }
}

/// A window bound: anywhere around the data, on an hour, or exactly on (or a
/// microsecond off) the processing time of a stored bet or win.
fn bound(rng: &mut StdRng, times: &[DateTime<Utc>]) -> DateTime<Utc> {
    let (first, last) = (times[0], times[times.len() - 1]);
    let span = (last - first).num_microseconds().unwrap() + 3 * 3_600_000_000;
    let anywhere = first - TimeDelta::minutes(90) + TimeDelta::microseconds(rng.random_range(0..span));
    match rng.random_range(0..4) {
        0 => anywhere,
        1 => anywhere.duration_trunc(TimeDelta::hours(1)).unwrap(),
        2 => times[rng.random_range(0..times.len())],
        _ => times[rng.random_range(0..times.len())] + TimeDelta::microseconds(rng.random_range(-1..=1)),
    }
}

/// Compares all three reports with the brute-force aggregation for `count`
/// random windows around the history; returns how many held any data.
async fn assert_random_windows(pool: &PgPool, rng: &mut StdRng, count: usize) -> usize {
    let times: Vec<DateTime<Utc>> =
        sqlx::query_scalar!("SELECT created_at FROM ledger WHERE kind IN ('bet', 'win') ORDER BY created_at")
            .fetch_all(pool)
            .await
            .unwrap();
    let app = router(pool).await;
    let mut non_empty = 0;
    for i in 0..count {
        let (mut from, mut to) = (bound(rng, &times), bound(rng, &times));
        if i == 0 {
            // The whole history, which holds every sealed day.
            (from, to) = (times[0] - TimeDelta::days(1), times[times.len() - 1] + TimeDelta::seconds(1));
        }
        if from > to {
            std::mem::swap(&mut from, &mut to);
        }
        if from == to {
            to += TimeDelta::microseconds(1);
        }
        let currency = [None, Some("USD"), Some("EUR")][rng.random_range(0..3)];
        let user_id = [None, None, Some("bob")][rng.random_range(0..3)];
        let mut query = format!("from={}&to={}", time(from), time(to));
        if let Some(currency) = currency {
            query.push_str(&format!("&currency={currency}"));
        }
        let limit = rng.random_range(1..=4);

        let mut users_query = query.clone();
        if let Some(user_id) = user_id {
            users_query.push_str(&format!("&user_id={user_id}"));
        }
        let users = all_pages(&app, &format!("/v1/reports/rtp/users?{users_query}"), limit).await;
        let expected = brute_users(pool, from, to, currency, user_id).await;
        assert_eq!(users, expected, "users report for {users_query}");
        non_empty += usize::from(!expected.is_empty());

        let (status, casino) = get(&app, &format!("/v1/reports/rtp/casino?{query}")).await;
        assert_eq!(status, StatusCode::OK);
        let expected = brute_casino(pool, from, to, currency).await;
        assert_eq!(casino, json!({ "data": expected }), "casino report for {query}");

        let games = all_pages(&app, &format!("/v1/reports/rtp/games?{query}"), limit).await;
        let expected = brute_games(pool, from, to, currency).await;
        assert_eq!(games, expected, "games report for {query}");

        let bucket = ["hour", "day"][rng.random_range(0..2)];
        let game = [None, None, Some("slots"), Some("")][rng.random_range(0..4)];
        let mut series_query = format!("{query}&bucket={bucket}");
        if let Some(game) = game {
            series_query.push_str(&format!("&game={game}"));
        }
        let (status, series) = get(&app, &format!("/v1/reports/rtp/series?{series_query}")).await;
        assert_eq!(status, StatusCode::OK, "{series}");
        let expected = brute_series(pool, from, to, bucket, currency, game).await;
        assert_eq!(series, expected, "series for {series_query}");
    }
    non_empty
}

#[sqlx::test]
async fn every_report_equals_a_brute_force_aggregation_over_random_windows(pool: PgPool) {
    let mut history = random_history(&pool, 7, 12, 40, 3).await;
    let hours = sqlx::query_scalar!(r#"SELECT count(DISTINCT bucket) AS "n!" FROM rtp_hourly"#)
        .fetch_one(&pool)
        .await
        .unwrap();
    let split = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM round_buckets WHERE split"#)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(hours >= 5, "the history should span many hours, got {hours}");
    assert!(split > 0, "the history should hold rounds spanning hours");
    let non_empty = assert_random_windows(&pool, &mut history.rng, 60).await;
    assert!(non_empty > 20, "too few windows held any data: {non_empty}");
}

async fn late_rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM rtp_late"#).fetch_one(pool).await.unwrap()
}

/// Casino and games read sealed days from the daily summary: it must agree
/// with the ledger when sealed, after rollbacks change sealed days, and after
/// those changes are folded in.
#[sqlx::test]
async fn sealed_days_and_their_late_changes_keep_every_report_exact(pool: PgPool) {
    let mut history = History::new(&pool, 21).await;
    // Players who play on the first day only, so that only the sealed days'
    // bitmaps (and the journal, when their bets are rolled back) hold them.
    history.join(&[("fay", "USD"), ("gus", "EUR"), ("hal", "BTC")]).await;
    history.phases(1, 40, 0).await;
    history.active = 5;
    history.age(30).await;
    history.phases(9, 30, 30).await;
    let sealed = summary::summarize(&pool).await.unwrap();
    assert!(sealed.days_sealed >= 3, "the history should span days before today: {sealed:?}");
    assert_eq!(late_rows(&pool).await, 0, "sealing takes in the journal of the sealed days");
    let non_empty = assert_random_windows(&pool, &mut history.rng, 40).await;
    assert!(non_empty > 10, "too few windows held any data: {non_empty}");

    // More play: rollbacks reach bets of sealed days, which the journal records.
    for _ in 0..150 {
        history.play().await;
    }
    assert!(late_rows(&pool).await > 0, "some rollbacks should have reached sealed days");
    assert_random_windows(&pool, &mut history.rng, 40).await;

    let folded = summary::summarize(&pool).await.unwrap();
    assert!(folded.late_folded > 0, "{folded:?}");
    assert_eq!(late_rows(&pool).await, 0);
    assert_random_windows(&pool, &mut history.rng, 40).await;

    // A sealed day's bitmap cannot forget a player, so its rows cannot move.
    let moved =
        sqlx::query!("UPDATE rtp_hourly SET bucket = bucket - interval '1 hour'").execute(&pool).await;
    assert!(moved.is_err(), "moving rollup rows of sealed days must be refused");
}

#[sqlx::test]
async fn hour_aligned_long_windows_read_rollups_and_agree_with_the_ledger(pool: PgPool) {
    let _ = random_history(&pool, 11, 8, 40, 3).await;
    let app = router(&pool).await;
    let now = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap();
    for (from, to) in [
        (now - TimeDelta::days(2), now + TimeDelta::hours(2)),
        (now - TimeDelta::hours(5), now + TimeDelta::hours(1)),
        (now - TimeDelta::hours(30), now - TimeDelta::hours(3)),
    ] {
        let query = format!("from={}&to={}", time(from), time(to));
        let (_, casino) = get(&app, &format!("/v1/reports/rtp/casino?{query}")).await;
        assert_eq!(casino, json!({"data": brute_casino(&pool, from, to, None).await}));
        let users = all_pages(&app, &format!("/v1/reports/rtp/users?{query}"), 100).await;
        assert_eq!(users, brute_users(&pool, from, to, None, None).await);
        let games = all_pages(&app, &format!("/v1/reports/rtp/games?{query}"), 2).await;
        assert_eq!(games, brute_games(&pool, from, to, None).await);
        for bucket in ["hour", "day"] {
            let (status, series) =
                get(&app, &format!("/v1/reports/rtp/series?{query}&bucket={bucket}")).await;
            assert_eq!(status, StatusCode::OK, "{series}");
            assert_eq!(series, brute_series(&pool, from, to, bucket, None, None).await);
        }
    }
}

#[sqlx::test]
async fn a_series_needs_a_bucket_of_an_hour_or_a_day_and_a_bounded_span(pool: PgPool) {
    let app = router(&pool).await;
    let ok = "from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z";
    for (query, field) in [
        (ok.to_string(), "bucket"),
        (format!("{ok}&bucket=week"), "bucket"),
        ("from=2026-11-01T00:00:00Z&to=2027-11-02T00:00:00Z&bucket=hour".to_string(), "bucket"),
        (format!("{ok}&bucket=day&currency=us"), "currency"),
        ("to=2026-11-02T00:00:00Z&bucket=day".to_string(), "from"),
    ] {
        let (status, body) = get(&app, &format!("/v1/reports/rtp/series?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{field}:")), "{query}: {message}");
    }
    // A year by day is fine, and nothing was played.
    let (status, body) =
        get(&app, "/v1/reports/rtp/series?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z&bucket=day")
            .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"bucket": "day", "data": []})));
}

#[sqlx::test]
async fn rolled_back_bets_and_late_originals_move_into_the_rolled_back_totals(pool: PgPool) {
    let history = History::new(&pool, 1).await;
    let (user_id, currency) = history.players[0].clone();
    let batch = |game_id: &str, actions: Vec<Action>| Batch {
        user_id: user_id.clone(),
        currency: currency.clone(),
        game: Some("slots".into()),
        game_id: Some(game_id.into()),
        actions,
    };
    let amount = |n| Amount::try_from(n).unwrap();
    let (bet, win, doomed, late_win) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    for request in [
        batch(
            "round-1",
            vec![Action::Bet { id: bet, amount: amount(100) }, Action::Win { id: win, amount: amount(250) }],
        ),
        batch("round-2", vec![Action::Bet { id: doomed, amount: amount(40) }]),
        batch("round-2", vec![Action::Rollback { id: Uuid::new_v4(), original: doomed }]),
        batch("round-3", vec![Action::Rollback { id: Uuid::new_v4(), original: late_win }]),
        batch("round-3", vec![Action::Win { id: late_win, amount: amount(7) }]),
    ] {
        process_batch(&pool, DEFAULT_OPERATOR, &request).await.unwrap();
    }
    let app = router(&pool).await;
    let from = Utc::now() - TimeDelta::hours(3);
    let to = Utc::now() + TimeDelta::hours(3);
    let (status, page) =
        get(&app, &format!("/v1/reports/rtp/users?from={}&to={}", time(from), time(to))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        page,
        json!({"data": [{"user_id": "ann", "currency": "USD", "rounds": 1, "total_bet": 100,
                         "total_win": 250, "rolled_back_bet": 40, "rolled_back_win": 7,
                         "rtp": 2.5}],
               "next_cursor": null})
    );
}

#[sqlx::test]
async fn bad_query_parameters_are_400_naming_the_field(pool: PgPool) {
    let app = router(&pool).await;
    let ok = "from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z";
    for (report, query, field) in [
        ("users", "to=2026-11-02T00:00:00Z".to_string(), "from"),
        ("casino", "from=yesterday&to=2026-11-02T00:00:00Z".to_string(), "from"),
        ("games", "from=2026-11-01T00:00:00Z".to_string(), "to"),
        ("users", "from=2026-11-01T00:00:00Z&to=2026-11-01".to_string(), "to"),
        ("casino", "from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z".to_string(), "to"),
        ("users", format!("{ok}&limit=0"), "limit"),
        ("games", format!("{ok}&limit=1001"), "limit"),
        ("users", format!("{ok}&limit=ten"), "limit"),
        ("users", format!("{ok}&cursor=not-a-cursor"), "cursor"),
        ("games", format!("{ok}&cursor=e30"), "cursor"),
        ("casino", format!("{ok}&currency=usd"), "currency"),
        ("users", format!("{ok}&user_id="), "user_id"),
    ] {
        let (status, body) = get(&app, &format!("/v1/reports/rtp/{report}?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{report}?{query}: {body}");
        assert_eq!(body["code"], 400);
        let message = body["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{report}?{query}: {message}");
    }
}

#[sqlx::test]
async fn a_cursor_from_one_report_is_refused_by_another(pool: PgPool) {
    let _ = random_history(&pool, 3, 1, 30, 3).await;
    let app = router(&pool).await;
    let from = Utc::now() - TimeDelta::hours(1);
    let to = Utc::now() + TimeDelta::hours(1);
    let query = format!("from={}&to={}&limit=1", time(from), time(to));
    let (_, page) = get(&app, &format!("/v1/reports/rtp/users?{query}")).await;
    let cursor = page["next_cursor"].as_str().expect("more than one player played");
    let (status, body) = get(&app, &format!("/v1/reports/rtp/games?{query}&cursor={cursor}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().starts_with("cursor"));
}

#[sqlx::test]
async fn reports_require_the_back_office_token(pool: PgPool) {
    let app = router(&pool).await;
    for report in ["users", "casino", "games"] {
        let request = Request::get(format!(
            "/v1/reports/rtp/{report}?from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z"
        ))
        .header("Authorization", "Bearer wrong")
        .body(Body::empty())
        .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}
