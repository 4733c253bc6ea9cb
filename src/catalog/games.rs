//! The game catalog: which category each provider `game` string is filed
//! under, per operator, in PostgreSQL and in memory.
//!
//! Every bet with an active bonus asks [`Games::category`] for its game's
//! category, so the answer comes from memory: a hash-map read of an
//! immutable snapshot behind an `ArcSwap`, no lock and no query. The copy is
//! kept fresh the way the operator registry is (docs/ARCHITECTURE.md, "Game
//! catalog"): a trigger on `games` bumps the operator's catalog revision and
//! sends `NOTIFY wallet_games, '<operator id>'` in the transaction of the
//! change; every instance listening reloads that operator's catalog (one
//! query). A safety net compares revisions every `refresh_every`, and on
//! reconnecting, so a notification lost meanwhile is made good.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};

/// The channel the `games_notify` trigger notifies, with an operator id.
pub const CHANNEL: &str = "wallet_games";

/// The category of a game nobody filed.
pub const OTHER: &str = "other";

/// Whether `name` is a category: `^[a-z0-9_]{1,32}$`.
pub fn is_category(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// One operator's catalog as of one revision.
struct Catalog {
    revision: i64,
    categories: HashMap<Box<str>, Arc<str>>,
}

/// Operator id → its catalog. Operators without games are absent.
type Catalogs = HashMap<i16, Arc<Catalog>>;

/// The game catalogs of every operator, held in memory by this instance.
pub struct Games {
    pool: PgPool,
    catalogs: ArcSwap<Catalogs>,
    other: Arc<str>,
    refresh_every: Duration,
    /// Loads in flight, per operator: `true` when another was asked for
    /// while one ran (it then runs once more, so no change is missed).
    loads: Mutex<HashMap<i16, bool>>,
}

impl Games {
    /// Loads every catalog and starts listening for changes and the safety
    /// net. A database that cannot be read now leaves the catalogs empty
    /// (every game `other`) until the safety net loads them.
    pub async fn start(pool: PgPool, refresh_every: Duration) -> Arc<Games> {
        let games = Arc::new(Games {
            pool,
            catalogs: ArcSwap::from_pointee(Catalogs::new()),
            other: Arc::from(OTHER),
            refresh_every,
            loads: Mutex::new(HashMap::new()),
        });
        match tokio::time::timeout(Duration::from_secs(2), games.reload_all()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot load the game catalog yet; every game is `other` until it loads")
            }
            Err(_) => {
                tracing::warn!("loading the game catalog timed out; every game is `other` until it loads")
            }
        }
        // Listening starts before the catalog is handed out, so that no
        // change committed after `start` returns can go unnoticed.
        let listener = match tokio::time::timeout(Duration::from_secs(2), connect_listener(&games.pool)).await
        {
            Ok(Ok(listener)) => Some(listener),
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot listen for game catalog changes yet; retrying in the background");
                None
            }
            Err(_) => None,
        };
        tokio::spawn(listen(Arc::downgrade(&games), listener));
        tokio::spawn(safety_net(Arc::downgrade(&games)));
        games
    }

    /// The category `game` is filed under at `operator`; `other` when it is
    /// not filed or the request named no game.
    pub fn category(&self, operator: i16, game: Option<&str>) -> Arc<str> {
        game.and_then(|game| self.catalogs.load().get(&operator)?.categories.get(game).cloned())
            .unwrap_or_else(|| self.other.clone())
    }

    /// Reloads `operator`'s catalog in the background, unless a load of it is
    /// running; if one is, that load runs once more when it ends.
    pub fn refresh(self: &Arc<Self>, operator: i16) {
        {
            let mut loads = self.loads.lock().expect("the loads map is never poisoned");
            if let Some(again) = loads.get_mut(&operator) {
                *again = true;
                return;
            }
            loads.insert(operator, false);
        }
        let games = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = games.reload(operator).await {
                    tracing::warn!(operator, %error, "could not reload a game catalog; serving the copy held");
                }
                let mut loads = games.loads.lock().expect("the loads map is never poisoned");
                match loads.get_mut(&operator) {
                    Some(again) if *again => *again = false,
                    _ => {
                        loads.remove(&operator);
                        return;
                    }
                }
            }
        });
    }

    /// Loads `operator`'s catalog now and puts it in the snapshot.
    pub async fn reload(&self, operator: i16) -> sqlx::Result<()> {
        for (id, catalog) in load(&self.pool, Some(operator)).await? {
            self.put(id, catalog);
        }
        Ok(())
    }

    async fn reload_all(&self) -> sqlx::Result<()> {
        let loaded = load(&self.pool, None).await?;
        self.catalogs.store(Arc::new(loaded.into_iter().map(|(id, c)| (id, Arc::new(c))).collect()));
        Ok(())
    }

    /// Swaps in `catalog`, unless a newer one is held already.
    fn put(&self, operator: i16, catalog: Catalog) {
        let catalog = Arc::new(catalog);
        self.catalogs.rcu(|catalogs| {
            let mut next = Catalogs::clone(catalogs);
            if next.get(&operator).is_none_or(|held| held.revision <= catalog.revision) {
                next.insert(operator, catalog.clone());
            }
            next
        });
    }

    /// Reloads every catalog whose revision differs from the copy's.
    async fn compare_revisions(self: &Arc<Self>) -> sqlx::Result<()> {
        let revisions = sqlx::query!("SELECT operator_id, revision FROM game_catalog_revisions")
            .fetch_all(&self.pool)
            .await?;
        let catalogs = self.catalogs.load();
        for row in revisions {
            if catalogs.get(&row.operator_id).is_none_or(|held| held.revision != row.revision) {
                self.refresh(row.operator_id);
            }
        }
        Ok(())
    }
}

/// The catalogs of `operator` (or of every operator), each read with its
/// revision in one statement, so the two agree.
async fn load(pool: &PgPool, operator: Option<i16>) -> sqlx::Result<Vec<(i16, Catalog)>> {
    let rows = sqlx::query!(
        r#"SELECT r.operator_id, r.revision,
                  ARRAY(SELECT g.game FROM games g WHERE g.operator_id = r.operator_id ORDER BY g.game) AS "games!",
                  ARRAY(SELECT g.category FROM games g WHERE g.operator_id = r.operator_id ORDER BY g.game) AS "categories!"
           FROM game_catalog_revisions r
           WHERE $1::smallint IS NULL OR r.operator_id = $1"#,
        operator,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            // Games of one category share its name.
            let mut names: HashMap<String, Arc<str>> = HashMap::new();
            let categories = row
                .games
                .into_iter()
                .zip(row.categories)
                .map(|(game, category)| {
                    let shared = names.entry(category).or_insert_with_key(|name| Arc::from(name.as_str()));
                    (game.into_boxed_str(), shared.clone())
                })
                .collect();
            (row.operator_id, Catalog { revision: row.revision, categories })
        })
        .collect())
}

/// Reloads each operator named by a notification, for as long as the
/// catalog lives.
async fn listen(games: Weak<Games>, mut listening: Option<PgListener>) {
    let Some(pool) = games.upgrade().map(|g| g.pool.clone()) else { return };
    let mut listener = loop {
        if let Some(listener) = listening.take() {
            break listener;
        }
        match connect_listener(&pool).await {
            Ok(listener) => {
                // Changes made before it listened are found by comparing revisions.
                if let Some(games) = games.upgrade() {
                    let _ = games.compare_revisions().await;
                }
                break listener;
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for game catalog changes yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                if games.strong_count() == 0 {
                    return;
                }
            }
        }
    };
    loop {
        let received = listener.try_recv().await;
        let Some(games) = games.upgrade() else { return };
        match received {
            Ok(Some(notification)) => match notification.payload().parse::<i16>() {
                Ok(operator) => games.refresh(operator),
                Err(_) => {
                    let _ = games.compare_revisions().await;
                }
            },
            // The connection was lost and is made again by the next receive:
            // whatever was notified meanwhile is found by comparing revisions.
            Ok(None) => {
                tracing::warn!("lost the connection listening for game catalog changes; comparing revisions");
                if let Err(error) = games.compare_revisions().await {
                    tracing::warn!(%error, "could not compare game catalog revisions");
                }
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(error) => {
                tracing::warn!(%error, "listening for game catalog changes failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn connect_listener(pool: &PgPool) -> sqlx::Result<PgListener> {
    let mut listener = PgListener::connect_with(&crate::listening_pool(pool)).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Compares revisions every `refresh_every`, for as long as the catalog lives.
async fn safety_net(games: Weak<Games>) {
    let Some(every) = games.upgrade().map(|g| g.refresh_every) else { return };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(games) = games.upgrade() else { return };
        if let Err(error) = games.compare_revisions().await {
            tracing::warn!(%error, "could not compare game catalog revisions");
        }
    }
}

/// A filed game, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FiledGame {
    #[schema(example = "pragmatic:sweet-bonanza")]
    pub game: String,
    #[schema(example = "slots")]
    pub category: String,
    pub updated_at: DateTime<Utc>,
}

/// What filing a game did: its category before (`None`: it was not filed)
/// and whether anything changed.
pub struct Filed {
    pub before: Option<String>,
    pub changed: bool,
}

/// Files `game` under `category` at `operator`. Filing a game under the
/// category it has changes nothing (no revision, no notification).
pub async fn file(conn: &mut PgConnection, operator: i16, game: &str, category: &str) -> sqlx::Result<Filed> {
    let inserted = sqlx::query!(
        r#"INSERT INTO games (operator_id, game, category) VALUES ($1, $2, $3)
           ON CONFLICT (operator_id, game) DO NOTHING RETURNING game"#,
        operator,
        game,
        category,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if inserted.is_some() {
        return Ok(Filed { before: None, changed: true });
    }
    // It exists (committed, if another request just filed it): lock it and
    // read what it was, so the audit trail's `before` is exact.
    let before = sqlx::query_scalar!(
        "SELECT category FROM games WHERE operator_id = $1 AND game = $2 FOR UPDATE",
        operator,
        game
    )
    .fetch_one(&mut *conn)
    .await?;
    if before == category {
        return Ok(Filed { before: Some(before), changed: false });
    }
    sqlx::query!(
        "UPDATE games SET category = $3, updated_at = now() WHERE operator_id = $1 AND game = $2",
        operator,
        game,
        category,
    )
    .execute(&mut *conn)
    .await?;
    Ok(Filed { before: Some(before), changed: true })
}

/// Every game filed at `operator`, by name.
pub async fn list(pool: &PgPool, operator: i16) -> sqlx::Result<Vec<FiledGame>> {
    sqlx::query_as!(
        FiledGame,
        "SELECT game, category, updated_at FROM games WHERE operator_id = $1 ORDER BY game",
        operator
    )
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_follow_the_schema_pattern() {
        assert!(is_category("slots") && is_category("live_dealer") && is_category(&"a".repeat(32)));
        assert!(
            !is_category("") && !is_category("Slots") && !is_category("a-b") && !is_category(&"a".repeat(33))
        );
    }
}
