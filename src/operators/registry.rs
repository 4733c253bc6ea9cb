//! Every operator's configuration and provider keys, held in memory.
//!
//! The hot path and the public tenant page read operators from here, never
//! from the database: a lookup is a hash-map read of an immutable snapshot.
//! Three things keep the copy fresh, each loading an operator at most once at
//! a time (single flight) while readers go on with the copy they have
//! (stale-while-revalidate):
//!
//! 1. `NOTIFY wallet_operators` from PostgreSQL at the commit of any change
//!    (a trigger on `operators`): reloaded within milliseconds, on every
//!    instance listening.
//! 2. A safety net every `refresh_every`: one query compares every operator's
//!    revision with the copy's, so a notification lost while the listening
//!    connection was down is made good within that interval. Reconnecting
//!    runs the same comparison at once.
//! 3. Expiry: a copy older than `max_age` is reloaded in the background by
//!    the first reader that notices; everyone meanwhile reads the old copy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use sqlx::postgres::PgListener;
use sqlx::PgPool;

use super::document::{Document, DEFAULT_CODE};
use super::store::{self, StoredOperator};
use crate::error::AppResult;
use crate::ledger::PlayPolicy;
use crate::ops::metrics;
use crate::provider::signature::SigningKeys;

/// The channel the `operators_notify` trigger notifies.
pub const CHANNEL: &str = "wallet_operators";

/// One operator as this instance serves it.
#[derive(Debug)]
pub struct Tenant {
    pub id: i16,
    pub code: String,
    pub document: Document,
    pub version: i32,
    pub revision: i64,
    /// Its active provider keys (for `default`, also `HMAC_SECRETS`).
    pub keys: SigningKeys,
    /// What it allows bets, as the ledger checks it.
    pub policy: Arc<PlayPolicy>,
    loaded_at: Instant,
    refreshing: AtomicBool,
}

/// Lookups over one immutable set of tenants.
#[derive(Default)]
struct Snapshot {
    by_code: HashMap<String, Arc<Tenant>>,
    by_id: HashMap<i16, Arc<Tenant>>,
    by_domain: HashMap<String, Arc<Tenant>>,
}

impl Snapshot {
    fn with(&self, tenant: Arc<Tenant>) -> Snapshot {
        let mut tenants: Vec<Arc<Tenant>> =
            self.by_code.values().filter(|t| t.code != tenant.code).cloned().collect();
        tenants.push(tenant);
        Snapshot::of(tenants)
    }

    fn of(tenants: Vec<Arc<Tenant>>) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for tenant in tenants {
            for domain in &tenant.document.domains {
                snapshot.by_domain.insert(domain.clone(), tenant.clone());
            }
            snapshot.by_id.insert(tenant.id, tenant.clone());
            snapshot.by_code.insert(tenant.code.clone(), tenant);
        }
        snapshot
    }
}

/// How the registry keeps fresh.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    /// The safety net's interval.
    pub refresh_every: Duration,
    /// Copies older than this are reloaded when next read.
    pub max_age: Duration,
}

impl Default for Freshness {
    fn default() -> Freshness {
        Freshness { refresh_every: Duration::from_secs(5), max_age: Duration::from_secs(300) }
    }
}

/// Loads in flight, per operator code: `true` when another was asked for
/// while one ran (it then runs once more, so no change is missed).
type Loads = Mutex<HashMap<String, bool>>;

/// The in-memory operators of this instance.
pub struct Registry {
    pool: PgPool,
    snapshot: ArcSwap<Snapshot>,
    /// The `default` operator's keys from the environment.
    env_secrets: Vec<String>,
    freshness: Freshness,
    loads: Loads,
    load_count: AtomicU64,
}

impl Registry {
    /// Loads every operator and starts the listener and the safety net.
    ///
    /// If the database cannot be read now, the registry starts with a
    /// stand-in `default` (revision 0, nothing configured) and the safety
    /// net loads the real operators as soon as it can; until then nothing
    /// that moves money can happen anyway.
    pub async fn start(pool: PgPool, env_secrets: &[String], freshness: Freshness) -> Arc<Registry> {
        let registry = Arc::new(Registry {
            pool,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            env_secrets: env_secrets.to_vec(),
            freshness,
            loads: Mutex::new(HashMap::new()),
            load_count: AtomicU64::new(0),
        });
        // A database that does not answer must not hold up the start for
        // the pool's whole acquire timeout.
        let first_load = tokio::time::timeout(Duration::from_secs(2), registry.reload_all()).await;
        if let Err(error) =
            first_load.map_err(|_| "timed out".to_string()).and_then(|r| r.map_err(|e| e.to_string()))
        {
            tracing::warn!(%error, "cannot load the operators yet; serving a stand-in default until the database answers");
            let stand_in = StoredOperator {
                id: crate::domain::DEFAULT_OPERATOR,
                code: DEFAULT_CODE.into(),
                document: Document::parse(
                    DEFAULT_CODE,
                    serde_json::json!({"name": "Default", "currencies": []}),
                )
                .expect("the stand-in document is valid"),
                version: 1,
                revision: 0,
                secrets: Vec::new(),
            };
            registry.snapshot.store(Arc::new(Snapshot::of(vec![registry.tenant(stand_in)])));
        }
        // Listening starts before the registry is handed out, so that no
        // change made after `start` returns can go unnoticed.
        let listener = match tokio::time::timeout(Duration::from_secs(2), connect_listener(&registry.pool))
            .await
        {
            Ok(Ok(listener)) => Some(listener),
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot listen for operator changes yet; retrying in the background");
                None
            }
            Err(_) => None,
        };
        tokio::spawn(listen(Arc::downgrade(&registry), listener));
        tokio::spawn(safety_net(Arc::downgrade(&registry)));
        registry
    }

    /// The operator `code`, as this instance holds it.
    pub fn by_code(self: &Arc<Self>, code: &str) -> Option<Arc<Tenant>> {
        let tenant = self.snapshot.load().by_code.get(code).cloned();
        tenant.inspect(|t| self.check_age(t))
    }

    /// The operator with id `id`.
    pub fn by_id(self: &Arc<Self>, id: i16) -> Option<Arc<Tenant>> {
        let tenant = self.snapshot.load().by_id.get(&id).cloned();
        tenant.inspect(|t| self.check_age(t))
    }

    /// The operator serving `domain` (lower case, no port).
    pub fn by_domain(self: &Arc<Self>, domain: &str) -> Option<Arc<Tenant>> {
        let tenant = self.snapshot.load().by_domain.get(domain).cloned();
        tenant.inspect(|t| self.check_age(t))
    }

    /// The operator every deployment has.
    pub fn default_tenant(self: &Arc<Self>) -> Arc<Tenant> {
        self.by_code(DEFAULT_CODE).expect("the migrations create the default operator")
    }

    /// Every operator, ordered by id.
    pub fn all(&self) -> Vec<Arc<Tenant>> {
        let mut tenants: Vec<Arc<Tenant>> = self.snapshot.load().by_code.values().cloned().collect();
        tenants.sort_by_key(|t| t.id);
        tenants
    }

    /// How many operator loads this instance made (all of them also counted
    /// in `wallet_tenant_config_loads_total`).
    pub fn loads(&self) -> u64 {
        self.load_count.load(Ordering::Relaxed)
    }

    /// Reloads `code` in the background, unless a load of it is running; if
    /// one is, that load runs once more when it ends, so it cannot miss a
    /// change committed while it read.
    pub fn refresh(self: &Arc<Self>, code: &str) {
        {
            let mut loads = self.loads.lock().expect("the loads map is never poisoned");
            if let Some(again) = loads.get_mut(code) {
                *again = true;
                return;
            }
            loads.insert(code.to_owned(), false);
        }
        let (registry, code) = (self.clone(), code.to_owned());
        tokio::spawn(async move {
            loop {
                if let Err(error) = registry.reload(&code).await {
                    tracing::warn!(operator = %code, %error, "could not reload an operator; serving the copy held");
                }
                let mut loads = registry.loads.lock().expect("the loads map is never poisoned");
                match loads.get_mut(&code) {
                    Some(again) if *again => *again = false,
                    _ => {
                        loads.remove(&code);
                        return;
                    }
                }
            }
        });
    }

    /// Loads `code` now and puts it in the snapshot.
    pub async fn reload(&self, code: &str) -> AppResult<()> {
        let loaded = store::load(&self.pool, code).await?;
        self.counted(code);
        if let Some(operator) = loaded {
            let tenant = self.tenant(operator);
            self.snapshot.rcu(|snapshot| snapshot.with(tenant.clone()));
        }
        Ok(())
    }

    async fn reload_all(&self) -> AppResult<()> {
        let operators = store::load_all(&self.pool).await?;
        operators.iter().for_each(|operator| self.counted(&operator.code));
        let tenants = operators.into_iter().map(|operator| self.tenant(operator)).collect();
        self.snapshot.store(Arc::new(Snapshot::of(tenants)));
        Ok(())
    }

    /// Reloads every operator whose revision differs from the copy's.
    async fn compare_revisions(self: &Arc<Self>) -> AppResult<()> {
        let revisions = store::revisions(&self.pool).await?;
        let snapshot = self.snapshot.load();
        for (code, revision) in revisions {
            if snapshot.by_code.get(&code).is_none_or(|t| t.revision != revision) {
                self.refresh(&code);
            }
        }
        Ok(())
    }

    fn counted(&self, code: &str) {
        self.load_count.fetch_add(1, Ordering::Relaxed);
        metrics::record_tenant_load(code);
    }

    fn tenant(&self, operator: StoredOperator) -> Arc<Tenant> {
        let mut secrets = operator.secrets;
        if operator.code == DEFAULT_CODE {
            secrets.extend(self.env_secrets.iter().cloned());
        }
        let policy = Arc::new(PlayPolicy {
            casino: operator.document.casino(),
            play_by_tier: operator.document.rules.play_by_tier(),
            zone: operator.document.zone(),
        });
        Arc::new(Tenant {
            id: operator.id,
            keys: SigningKeys::new(&secrets),
            code: operator.code,
            document: operator.document,
            version: operator.version,
            revision: operator.revision,
            policy,
            loaded_at: Instant::now(),
            refreshing: AtomicBool::new(false),
        })
    }

    fn check_age(self: &Arc<Self>, tenant: &Tenant) {
        if tenant.loaded_at.elapsed() > self.freshness.max_age
            && !tenant.refreshing.swap(true, Ordering::Relaxed)
        {
            self.refresh(&tenant.code);
        }
    }
}

/// Reloads each operator named by a notification. Listening stops when the
/// registry is dropped.
async fn listen(registry: std::sync::Weak<Registry>, mut listening: Option<PgListener>) {
    let Some(pool) = registry.upgrade().map(|r| r.pool.clone()) else { return };
    let mut listener = loop {
        if let Some(listener) = listening.take() {
            break listener;
        }
        match connect_listener(&pool).await {
            Ok(listener) => {
                // Changes made before it listened are found by comparing revisions.
                if let Some(registry) = registry.upgrade() {
                    let _ = registry.compare_revisions().await;
                }
                break listener;
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for operator changes yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                if registry.strong_count() == 0 {
                    return;
                }
            }
        }
    };
    loop {
        let received = listener.try_recv().await;
        let Some(registry) = registry.upgrade() else { return };
        match received {
            Ok(Some(notification)) => registry.refresh(notification.payload()),
            // The connection was lost and is made again by the next receive:
            // whatever was notified meanwhile is found by comparing revisions.
            Ok(None) => {
                tracing::warn!("lost the connection listening for operator changes; comparing revisions");
                if let Err(error) = registry.compare_revisions().await {
                    tracing::warn!(%error, "could not compare operator revisions");
                }
            }
            // The service is shutting down: give the connection back.
            Err(sqlx::Error::PoolClosed) => return,
            Err(error) => {
                tracing::warn!(%error, "listening for operator changes failed; retrying");
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

/// Compares revisions every `refresh_every`, for as long as the registry lives.
async fn safety_net(registry: std::sync::Weak<Registry>) {
    let Some(every) = registry.upgrade().map(|r| r.freshness.refresh_every) else { return };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(registry) = registry.upgrade() else { return };
        if let Err(error) = registry.compare_revisions().await {
            tracing::warn!(%error, "could not compare operator revisions");
        }
    }
}
