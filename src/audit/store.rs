//! The audit trail in SQL: appending an entry under the chain head's lock,
//! reading pages of it, and walking the whole chain to verify it.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};

use super::chain::{self, Content, Hash, GENESIS};
use super::{forbidden_key, Entry};
use crate::players::store::{page, HistoryCursor};

/// Appends `entry` to the chain inside the caller's open transaction and
/// returns its number.
///
/// Call it as the last statement before the commit: it locks the chain head,
/// which every writer of every operator shares, and the lock is held until
/// the commit. Taken last, the serialised part of a change is this one
/// statement and the commit, however long the change itself took. The
/// entry's number, time (the database's clock) and hash are decided in the
/// statement, under the lock: the database hashes the canonical text this
/// side prepared around them, and [`verify`] recomputes it here.
pub async fn record(conn: &mut PgConnection, entry: &Entry) -> sqlx::Result<i64> {
    debug_assert_eq!(
        [&entry.before, &entry.after].into_iter().flatten().find_map(forbidden_key),
        None,
        "an audit entry must not carry secrets, tokens or passwords"
    );
    let content = Content {
        // Decided by the database under the head's lock: not read here.
        seq: 0,
        at: DateTime::UNIX_EPOCH,
        operator: entry.operator,
        actor_type: entry.actor.kind(),
        actor_id: entry.actor.id(),
        action: entry.action.as_str(),
        target: &entry.target,
        before: entry.before.as_ref(),
        after: entry.after.as_ref(),
        request_id: entry.request_id.as_deref(),
    };
    let [before_at, before_seq, after_seq] = chain::pieces(&content);
    sqlx::query_file_scalar!(
        "src/audit/append.sql",
        before_at,
        before_seq,
        after_seq,
        content.operator,
        content.actor_type,
        content.actor_id,
        content.action,
        content.target,
        content.before.map(Value::to_string),
        content.after.map(Value::to_string),
        content.request_id,
    )
    .fetch_one(&mut *conn)
    .await
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
