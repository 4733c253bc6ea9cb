//! The audit trail in SQL: writing an entry with its change, sealing pending
//! entries into the chain under the head's lock, reading pages of the trail,
//! and walking the whole chain to verify it.

use std::cmp::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};

use super::chain::{self, Content, Hash, GENESIS};
use super::{forbidden_key, Entry};
use crate::paging::{page, HistoryCursor};

/// Writes `entry` inside the caller's open transaction: it commits or rolls
/// back with the change it describes.
///
/// The entry waits in `audit_pending` until [`seal`] numbers and chains it
/// (within [`SEAL_INTERVAL`] while the service runs, and before any read of
/// the trail over HTTP). No writer waits for another: the chain head, which
/// orders every entry of every operator, is locked by the sealer alone, once
/// per batch. docs/ARCHITECTURE.md ("Audit trail") says why, with numbers.
pub async fn record(conn: &mut PgConnection, entry: &Entry) -> sqlx::Result<()> {
    debug_assert_eq!(
        [&entry.before, &entry.after].into_iter().flatten().find_map(forbidden_key),
        None,
        "an audit entry must not carry secrets, tokens or passwords"
    );
    sqlx::query!(
        r#"INSERT INTO audit_pending (operator_id, actor_type, actor_id, action, target, before, after, request_id)
           VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7::text::jsonb, $8)"#,
        entry.operator,
        entry.actor.kind(),
        entry.actor.id(),
        entry.action.as_str(),
        entry.target,
        entry.before.as_ref().map(Value::to_string),
        entry.after.as_ref().map(Value::to_string),
        entry.request_id,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// How often the running service seals what is pending.
pub const SEAL_INTERVAL: Duration = Duration::from_millis(50);

/// The most entries one seal takes from the queue.
pub const SEAL_BATCH: i64 = 10_000;

/// Numbers and chains the pending entries (at most `limit`, oldest first)
/// and appends them to the trail, in one transaction under the chain head's
/// row lock; returns how many. Several sealers, on any instances, take turns.
pub async fn seal(pool: &PgPool, limit: i64) -> sqlx::Result<usize> {
    let mut tx = pool.begin().await?;
    let head = sqlx::query!("SELECT seq, hash FROM audit_head FOR UPDATE").fetch_one(&mut *tx).await?;
    // Entries whose change has committed; one still in flight is sealed next time.
    let mut pending = sqlx::query!(
        r#"DELETE FROM audit_pending
           WHERE id IN (SELECT id FROM audit_pending ORDER BY id LIMIT $1)
           RETURNING id, at, operator_id, actor_type, actor_id, action, target,
                     before::text, after::text, request_id"#,
        limit,
    )
    .fetch_all(&mut *tx)
    .await?;
    if pending.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    pending.sort_unstable_by_key(|p| p.id);
    let mut previous = stored_hash(head.seq, &head.hash)?;
    let mut batch = Batch::default();
    for (seq, p) in (head.seq + 1..).zip(pending) {
        let (before, after) = (parse_json(p.before.as_deref())?, parse_json(p.after.as_deref())?);
        previous = chain::link(
            &previous,
            &Content {
                seq,
                at: p.at,
                operator: p.operator_id,
                actor_type: &p.actor_type,
                actor_id: p.actor_id.as_deref(),
                action: &p.action,
                target: &p.target,
                before: before.as_ref(),
                after: after.as_ref(),
                request_id: p.request_id.as_deref(),
            },
        );
        batch.seq.push(seq);
        batch.at.push(p.at);
        batch.operator.push(p.operator_id);
        batch.actor_type.push(p.actor_type);
        batch.actor_id.push(p.actor_id);
        batch.action.push(p.action);
        batch.target.push(p.target);
        batch.before.push(p.before);
        batch.after.push(p.after);
        batch.request_id.push(p.request_id);
        batch.hash.push(previous.to_vec());
    }
    let (sealed, last) = (batch.seq.len(), *batch.seq.last().expect("a non-empty batch"));
    sqlx::query_file!(
        "src/audit/seal.sql",
        &batch.seq,
        &batch.at,
        &batch.operator as &[Option<i16>],
        &batch.actor_type,
        &batch.actor_id as &[Option<String>],
        &batch.action,
        &batch.target,
        &batch.before as &[Option<String>],
        &batch.after as &[Option<String>],
        &batch.request_id as &[Option<String>],
        &batch.hash,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!("UPDATE audit_head SET seq = $1, hash = $2", last, &previous[..]).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(sealed)
}

/// Seals until nothing that has committed is pending: what a reader of the
/// trail does first, so that it sees every change committed before it asked.
pub async fn seal_all(pool: &PgPool) -> sqlx::Result<()> {
    while seal(pool, SEAL_BATCH).await? as i64 == SEAL_BATCH {}
    Ok(())
}

/// A sealed batch, one vector per column of `audit_log`, in chain order.
#[derive(Default)]
struct Batch {
    seq: Vec<i64>,
    at: Vec<DateTime<Utc>>,
    operator: Vec<Option<i16>>,
    actor_type: Vec<String>,
    actor_id: Vec<Option<String>>,
    action: Vec<String>,
    target: Vec<String>,
    before: Vec<Option<String>>,
    after: Vec<Option<String>>,
    request_id: Vec<Option<String>>,
    hash: Vec<Vec<u8>>,
}

/// While there is nothing to seal, the sealer waits twice as long each time,
/// up to this: an idle instance asks once a second, not twenty times.
const SEAL_IDLE_MAX: Duration = Duration::from_secs(1);

/// Seals every [`SEAL_INTERVAL`] while changes come in, for as long as the
/// process runs; a batch that came back full is followed at once by the
/// next, and an empty one lengthens the wait up to [`SEAL_IDLE_MAX`].
pub fn spawn_sealer(pool: PgPool) {
    tokio::spawn(async move {
        let mut wait = SEAL_INTERVAL;
        loop {
            match seal(&pool, SEAL_BATCH).await {
                Ok(n) if n as i64 == SEAL_BATCH => continue,
                Ok(0) => wait = (wait * 2).min(SEAL_IDLE_MAX),
                Ok(_) => wait = SEAL_INTERVAL,
                Err(error) => tracing::warn!(%error, "sealing the audit trail failed; trying again"),
            }
            tokio::time::sleep(wait).await;
        }
    });
}

/// JSONB as the database renders it (sqlx's `json` feature is off here, so
/// JSONB travels as text both ways).
pub fn parse_json(text: Option<&str>) -> sqlx::Result<Option<Value>> {
    text.map(serde_json::from_str).transpose().map_err(|e| sqlx::Error::Decode(e.into()))
}

/// A hash as stored: 32 bytes (the schema checks it), or a decode error.
fn stored_hash(seq: i64, bytes: &[u8]) -> sqlx::Result<Hash> {
    bytes
        .try_into()
        .map_err(|_| sqlx::Error::Decode(format!("audit hash of entry {seq} is not 32 bytes").into()))
}

/// One entry as stored, with its operator's code.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub operator_id: Option<i16>,
    pub operator_code: Option<String>,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub target: String,
    /// JSON text: see [`parse_json`].
    pub before: Option<String>,
    pub after: Option<String>,
    pub request_id: Option<String>,
    pub hash: Vec<u8>,
}

/// What a page of the trail is narrowed to; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub target: Option<String>,
    pub action: Option<String>,
    /// `[from, to)` over the entries' time.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// A page of `operator`'s entries newest first, and the platform-wide ones
/// too when `with_platform` (for platform staff), by keyset on `(at, seq)`.
pub async fn list(
    pool: &PgPool,
    operator: i16,
    with_platform: bool,
    filter: &Filter,
    limit: i64,
    after: Option<HistoryCursor>,
) -> sqlx::Result<(Vec<StoredEntry>, Option<HistoryCursor>)> {
    let mut tx = pool.begin().await?;
    // Planned for these parameters each time: a generic plan cannot drop the
    // `$3 IS NULL OR target = $3` test and would walk the time index to find
    // one target's entries instead of seeking to them.
    sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan").execute(&mut *tx).await?;
    let rows = sqlx::query_file_as!(
        StoredEntry,
        "src/audit/list.sql",
        operator,
        with_platform,
        filter.target,
        filter.action,
        filter.from,
        filter.to,
        after.map(|c| c.at()),
        after.map(|c| c.seq()).unwrap_or(0),
        limit + 1,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(page(rows, limit, |last| HistoryCursor::new(last.at, last.seq)))
}

/// What walking the chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every entry links to the one before and the head names the last.
    Intact { entries: i64, head: Hash },
    /// The first entry whose number, content or link is not what the chain
    /// says (an altered, inserted or removed entry, or a head that moved).
    Broken { first_bad_seq: i64 },
}

/// Recomputes every entry's hash in order, from the first, on one snapshot.
///
/// The chain is one for all operators, so this walks all of it. Rows are
/// streamed and only the previous hash is kept: memory stays constant
/// however long the trail is.
pub async fn verify(conn: &mut PgConnection) -> sqlx::Result<Verdict> {
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    let verdict = verify_snapshot(&mut tx).await?;
    tx.commit().await?;
    Ok(verdict)
}

/// [`verify`] inside a transaction the caller opened (with a snapshot that
/// lasts the whole transaction, for an answer that holds together).
pub async fn verify_snapshot(conn: &mut PgConnection) -> sqlx::Result<Verdict> {
    let mut previous = GENESIS;
    let mut expected = 1;
    {
        let mut rows = sqlx::query!(
            r#"SELECT seq, at, operator_id, actor_type, actor_id, action, target,
                      before::text, after::text, request_id, hash
               FROM audit_log ORDER BY seq"#
        )
        .fetch(&mut *conn);
        while let Some(row) = rows.try_next().await? {
            let before = parse_json(row.before.as_deref())?;
            let after = parse_json(row.after.as_deref())?;
            let content = Content {
                seq: row.seq,
                at: row.at,
                operator: row.operator_id,
                actor_type: &row.actor_type,
                actor_id: row.actor_id.as_deref(),
                action: &row.action,
                target: &row.target,
                before: before.as_ref(),
                after: after.as_ref(),
                request_id: row.request_id.as_deref(),
            };
            // A missing number is a removed entry: the first one missing is bad.
            if row.seq != expected || row.hash != chain::link(&previous, &content) {
                return Ok(Verdict::Broken { first_bad_seq: expected });
            }
            previous = stored_hash(row.seq, &row.hash)?;
            expected += 1;
        }
    }
    let head = sqlx::query!("SELECT seq, hash FROM audit_head").fetch_one(&mut *conn).await?;
    let entries = expected - 1;
    let first_bad_seq = match head.seq.cmp(&entries) {
        // The head names entries that are gone: the last ones were removed.
        Ordering::Greater => entries + 1,
        // Entries past the head were appended behind the writers' back.
        Ordering::Less => head.seq + 1,
        // The head disagrees with the last entry about its hash.
        Ordering::Equal if head.hash != previous => entries.max(1),
        Ordering::Equal => return Ok(Verdict::Intact { entries, head: previous }),
    };
    Ok(Verdict::Broken { first_bad_seq })
}
