//! Limits, time-outs and self-exclusions in SQL. Every change takes the
//! player's row lock first, as the hot path and the cashier do, so no bet or
//! payment in flight is judged by a half-made change; every change writes
//! its audit entry in its own transaction.

use chrono::{DateTime, Months, TimeDelta, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{Exclusion, Request, Who};
use crate::audit::{self, Action, Origin};
use crate::domain::{PlayerStatus, UserId};
use crate::error::{AppError, AppResult};
use crate::ledger::limits::{Guard, Limit, LimitKind, Period};
use crate::ledger::process::{load_guards, lock_players};
use crate::ledger::rules::{Player, Refusal};

/// A player locked for a change, with the database's clock.
async fn lock(
    conn: &mut PgConnection,
    operator: i16,
    user_id: &UserId,
) -> AppResult<(Player, DateTime<Utc>)> {
    let key = (operator, user_id.as_str().to_owned());
    let mut locked = lock_players(conn, std::slice::from_ref(&key)).await?;
    let player = locked.players.remove(&key).ok_or(AppError::PlayerNotFound)?;
    Ok((player, locked.now))
}

/// The player's limits and counters as they stand, and the database's clock.
pub async fn guard_of(pool: &PgPool, operator: i16, user_id: &UserId) -> AppResult<(Guard, DateTime<Utc>)> {
    let mut conn = pool.acquire().await?;
    let player = sqlx::query!(
        r#"SELECT id, limited, clock_timestamp() AS "now!" FROM players WHERE operator_id = $1 AND user_id = $2"#,
        operator,
        user_id.as_str(),
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(AppError::PlayerNotFound)?;
    let guard = match player.limited {
        true => load_guards(&mut conn, &[player.id]).await?.remove(&player.id).unwrap_or_default(),
        false => Guard::default(),
    };
    Ok((guard, player.now))
}

/// A limit after a request: unchanged, set, or gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Keep,
    Set(Limit),
    Delete,
}

/// What `who` asking for `requested` (an amount, or `None` to remove) does
/// to `current`, the limit of that kind and period (if any) at `now`. A new
/// or lower limit applies at once and cancels a waiting raise; a higher one
/// or a removal waits `delay`. Staff may only lower (or set a limit where
/// there was none): a raise or removal by staff is refused.
pub fn decide(
    who: Who,
    kind: LimitKind,
    period: Period,
    current: Option<&Limit>,
    requested: Option<i64>,
    now: DateTime<Utc>,
    delay: TimeDelta,
) -> AppResult<Outcome> {
    let in_force = current.and_then(|l| l.in_force(now));
    let at_once = |amount| Limit { kind, period, amount, pending_amount: None, pending_at: None };
    let outcome = match (in_force, requested) {
        (None, None) => return Ok(if current.is_some() { Outcome::Delete } else { Outcome::Keep }),
        (None, Some(amount)) => Outcome::Set(at_once(amount)),
        (Some(limit), Some(amount)) if amount <= limit => Outcome::Set(at_once(amount)),
        (Some(limit), requested) => {
            if who == Who::Staff {
                return Err(AppError::Forbidden);
            }
            if delay <= TimeDelta::zero() {
                requested.map_or(Outcome::Delete, |amount| Outcome::Set(at_once(amount)))
            } else {
                Outcome::Set(Limit {
                    kind,
                    period,
                    amount: limit,
                    pending_amount: requested,
                    pending_at: Some(now + delay),
                })
            }
        }
    };
    Ok(outcome)
}

/// Applies a limits request under the player's lock. The first limit a
/// player sets turns the counters on, made from the ledger for the periods
/// in progress. Answers the limits and counters after the change.
#[allow(clippy::too_many_arguments)]
pub async fn set_limits(
    pool: &PgPool,
    operator: i16,
    origin: &Origin,
    who: Who,
    user_id: &UserId,
    request: &Request,
    delay: TimeDelta,
    zone: Tz,
) -> AppResult<(Guard, DateTime<Utc>)> {
    let mut tx = pool.begin().await?;
    let (player, now) = lock(&mut tx, operator, user_id).await?;
    let guard = player.guard.clone().unwrap_or_default();
    let mut changes = Vec::new();
    for &(kind, period, requested) in &request.0 {
        let current = guard.limits.iter().find(|l| l.kind == kind && l.period == period);
        match decide(who, kind, period, current, requested, now, delay)? {
            Outcome::Keep => {}
            outcome => changes.push((kind, period, current.copied(), outcome)),
        }
    }
    if changes.is_empty() {
        tx.rollback().await?;
        return Ok((guard, now));
    }
    if player.guard.is_none() {
        start_counting(&mut tx, &[player.id], zone, now).await?;
    }
    let (mut before, mut after) = (serde_json::Map::new(), serde_json::Map::new());
    for (kind, period, current, outcome) in &changes {
        let name = format!("{kind}.{period}");
        before.insert(name.clone(), current.as_ref().map_or(Value::Null, audited));
        match outcome {
            Outcome::Set(limit) => {
                after.insert(name, audited(limit));
                sqlx::query!(
                    r#"INSERT INTO player_limits (player_id, kind, period, amount, pending_amount, pending_at, updated_at)
                       VALUES ($1, $2, $3, $4, $5, $6, $7)
                       ON CONFLICT (player_id, kind, period) DO UPDATE
                       SET amount = excluded.amount, pending_amount = excluded.pending_amount,
                           pending_at = excluded.pending_at, updated_at = excluded.updated_at"#,
                    player.id,
                    kind.as_str(),
                    period.as_str(),
                    limit.amount,
                    limit.pending_amount,
                    limit.pending_at,
                    now,
                )
                .execute(&mut *tx)
                .await?;
            }
            Outcome::Delete | Outcome::Keep => {
                after.insert(name, Value::Null);
                sqlx::query!(
                    "DELETE FROM player_limits WHERE player_id = $1 AND kind = $2 AND period = $3",
                    player.id,
                    kind.as_str(),
                    period.as_str(),
                )
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    let entry = origin
        .entry(Some(operator), Action::PlayerLimits, audit::target("player", user_id))
        .before(Value::Object(before))
        .after(Value::Object(after));
    audit::record(&mut tx, &entry).await?;
    let (player, _) = lock(&mut tx, operator, user_id).await?;
    tx.commit().await?;
    Ok((player.guard.unwrap_or_default(), now))
}

fn audited(limit: &Limit) -> Value {
    json!({"amount": limit.amount, "pending_amount": limit.pending_amount, "pending_at": limit.pending_at})
}

/// Turns players' counters on: marks them limited and makes the counters
/// of the periods in progress from the ledger. Runs under the players'
/// locks (or before they play at all), so no operation falls between the
/// sums and the flag.
pub async fn start_counting(
    conn: &mut PgConnection,
    player_ids: &[i64],
    zone: Tz,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    let spans = Period::ALL.map(|period| period.span(zone, now));
    sqlx::query!(
        r#"WITH flag AS (UPDATE players SET limited = true WHERE id = ANY($1))
           INSERT INTO limit_usage (player_id, period, period_start, period_end, deposited, staked, won)
           SELECT p.id, b.period, b.period_start, b.period_end, s.deposited, s.staked, s.won
           FROM unnest($1::int8[]) AS p (id)
           CROSS JOIN unnest($2::text[], $3::timestamptz[], $4::timestamptz[]) AS b (period, period_start, period_end)
           CROSS JOIN LATERAL limit_sums(p.id, b.period_start, b.period_end) AS s
           ON CONFLICT (player_id, period) DO UPDATE
           SET period_start = excluded.period_start, period_end = excluded.period_end,
               deposited = excluded.deposited, staked = excluded.staked, won = excluded.won"#,
        player_ids,
        &Period::ALL.map(Period::as_str) as _,
        &spans.map(|s| s.start),
        &spans.map(|s| s.end),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The status a time-out or self-exclusion left.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusView {
    pub status: &'static str,
    pub status_until: Option<DateTime<Utc>>,
}

/// Starts a time-out or self-exclusion at once and ends every session of
/// the player but `keep`. One in force may be extended, never shortened
/// (409 code 131); a blocked player is refused (422 code 110).
pub async fn exclude(
    pool: &PgPool,
    operator: i16,
    origin: &Origin,
    user_id: &UserId,
    exclusion: Exclusion,
    keep: Uuid,
) -> AppResult<StatusView> {
    let mut tx = pool.begin().await?;
    let (player, now) = lock(&mut tx, operator, user_id).await?;
    let (status, until) = match exclusion {
        Exclusion::TimeOut { days } => (PlayerStatus::CoolingOff, Some(now + TimeDelta::days(days.into()))),
        Exclusion::SelfExclusion { months } => {
            let end = now.checked_add_months(Months::new(months)).ok_or_else(|| {
                AppError::internal(anyhow::anyhow!("a self-exclusion of {months} months passes the calendar"))
            })?;
            (PlayerStatus::SelfExcluded, Some(end))
        }
        Exclusion::Permanent => (PlayerStatus::SelfExcluded, None),
    };
    let in_force = player.status_at(now);
    if in_force == PlayerStatus::Blocked {
        return Err(Refusal::PlayerBlocked.into());
    }
    if in_force.is_exclusion() {
        let shorter = match (player.status_until, until) {
            (None, new) => new.is_some(), // permanent already
            (Some(_), None) => false,
            (Some(current), Some(new)) => new < current,
        };
        if shorter {
            let end =
                player.status_until.map_or("permanent".to_string(), |t| format!("until {}", t.to_rfc3339()));
            return Err(AppError::ExclusionInForce(format!(
                "a {} in force ({end}) cannot be shortened or replaced by a shorter one",
                in_force.as_str()
            )));
        }
    }
    sqlx::query!(
        r#"WITH ended AS (
               UPDATE player_sessions SET revoked_at = $4
               WHERE player_id = $1 AND session_id <> $5 AND revoked_at IS NULL AND expires_at > $4
           )
           UPDATE players SET status = $2, status_until = $3, updated_at = $4 WHERE id = $1"#,
        player.id,
        status.as_str(),
        until,
        now,
        keep,
    )
    .execute(&mut *tx)
    .await?;
    let entry = origin
        .entry(Some(operator), Action::PlayerExclusion, audit::target("player", user_id))
        .before(json!({"status": in_force.as_str(), "status_until": player.status_until}))
        .after(json!({"status": status.as_str(), "status_until": until}));
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(StatusView { status: status.as_str(), status_until: until })
}
