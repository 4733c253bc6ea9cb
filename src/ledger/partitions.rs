//! Monthly ledger partitions, created ahead of time by the service itself.
//!
//! The ledger has no default partition: a row for a month without a partition
//! would fail its insert. So the service keeps the coming months covered, at
//! start and then hourly; `ensure_ledger_partitions` (in the migrations) is
//! idempotent and serialises concurrent callers with an advisory lock.

use std::time::Duration;

use chrono::{DateTime, Months, Utc};
use sqlx::PgPool;

/// How far ahead partitions exist at all times.
const MONTHS_AHEAD: u32 = 3;

/// Creates every missing monthly partition in `[from, to]`; returns how many were created.
pub async fn ensure_range(pool: &PgPool, from: DateTime<Utc>, to: DateTime<Utc>) -> sqlx::Result<i32> {
    let created = sqlx::query_scalar!(r#"SELECT ensure_ledger_partitions($1, $2) AS "created!""#, from, to)
        .fetch_one(pool)
        .await?;
    if created > 0 {
        tracing::info!(created, %from, %to, "created ledger partitions");
    }
    Ok(created)
}

/// Makes sure the current month and the next few have partitions.
pub async fn ensure_ahead(pool: &PgPool) -> sqlx::Result<i32> {
    let now = Utc::now();
    ensure_range(pool, now, now + Months::new(MONTHS_AHEAD)).await
}

/// Runs [`ensure_ahead`] every hour until the process ends.
pub fn spawn_maintenance(pool: PgPool) {
    crate::ops::spawn_every(Duration::from_secs(3600), "create ledger partitions", move || {
        let pool = pool.clone();
        async move { ensure_ahead(&pool).await }
    });
}
