//! Limits, time-outs and self-exclusions in SQL. Every change takes the
//! player's row lock first, as the hot path and the cashier do, so no bet or
//! payment in flight is judged by a half-made change; every change writes
//! its audit entry and its player event (`status`, `limits`) in its own
//! transaction, under that lock.

use std::collections::HashMap;

use chrono::{DateTime, Months, TimeDelta, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{Exclusion, Request, Who};
use crate::audit::{self, Action, Origin};
use crate::domain::{PlayerStatus, UserId};
use crate::error::{AppError, AppResult};
use crate::events::{self, Event, StatusEvent};
use crate::ledger::limits::{Guard, Limit, LimitKind, Period, Usage};
use crate::ledger::process::lock_players;
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
    let player = sqlx::query!(
        r#"SELECT limits AS "limits: Json<Vec<Limit>>", day_sums AS "day_sums: Usage",
                  week_sums AS "week_sums: Usage", month_sums AS "month_sums: Usage",
                  clock_timestamp() AS "now!"
           FROM players WHERE operator_id = $1 AND user_id = $2"#,
        operator,
        user_id.as_str(),
    )
    .fetch_optional(pool)
    .await?
    .ok_or(AppError::PlayerNotFound)?;
    let guard = Guard {
        limits: player.limits.map(|Json(limits)| limits).unwrap_or_default(),
        usage: [player.day_sums, player.week_sums, player.month_sums],
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
    let mut guard = player.guard.clone().unwrap_or_default();
    let (mut before, mut after) = (serde_json::Map::new(), serde_json::Map::new());
    for &(kind, period, requested) in &request.0 {
        let at = guard.limits.iter().position(|l| l.kind == kind && l.period == period);
        let current = at.map(|i| guard.limits[i]);
        let outcome = decide(who, kind, period, current.as_ref(), requested, now, delay)?;
        let name = format!("{kind}.{period}");
        match (outcome, at) {
            (Outcome::Keep, _) | (Outcome::Delete, None) => continue,
            (Outcome::Set(limit), Some(i)) => guard.limits[i] = limit,
            (Outcome::Set(limit), None) => guard.limits.push(limit),
            (Outcome::Delete, Some(i)) => {
                guard.limits.remove(i);
            }
        }
        before.insert(name.clone(), current.as_ref().map_or(Value::Null, audited));
        let now_set = guard.limits.iter().find(|l| l.kind == kind && l.period == period);
        after.insert(name, now_set.map_or(Value::Null, audited));
    }
    if before.is_empty() {
        tx.rollback().await?;
        return Ok((guard, now));
    }
    if player.guard.is_none() {
        // The first limit: count what the periods in progress already did.
        guard.usage =
            usage_from_ledger(&mut tx, &[player.id], zone, now).await?.remove(&player.id).unwrap_or_default();
    }
    let [day, week, month] = guard.usage;
    sqlx::query!(
        "UPDATE players SET limits = $2, day_sums = $3, week_sums = $4, month_sums = $5 WHERE id = $1",
        player.id,
        Json(&guard.limits) as _,
        day as _,
        week as _,
        month as _,
    )
    .execute(&mut *tx)
    .await?;
    let entry = origin
        .entry(Some(operator), Action::PlayerLimits, audit::target("player", user_id))
        .before(Value::Object(before))
        .after(Value::Object(after));
    audit::record(&mut tx, &entry).await?;
    let shown = serde_json::to_value(super::view(&guard, zone, now)).map_err(AppError::internal)?;
    events::log(&mut tx, player.id, now, &Event::Limits(shown)).await?;
    tx.commit().await?;
    Ok((guard, now))
}

fn audited(limit: &Limit) -> Value {
    json!({"amount": limit.amount, "pending_amount": limit.pending_amount, "pending_at": limit.pending_at})
}

/// The counters of the periods in progress at `now` for each of `player_ids`,
/// made from the ledger: what a player's first limit starts from. Run it
/// under the players' locks (or before they play at all), so that no
/// operation falls between the sums and the guard that keeps them.
pub async fn usage_from_ledger(
    conn: &mut PgConnection,
    player_ids: &[i64],
    zone: Tz,
    now: DateTime<Utc>,
) -> sqlx::Result<HashMap<i64, [Option<Usage>; 3]>> {
    let spans = Period::ALL.map(|period| period.span(zone, now));
    let rows = sqlx::query!(
        r#"SELECT p.id AS "player_id!", b.n AS "n!", s.deposited AS "deposited!", s.staked AS "staked!",
                  s.won AS "won!"
           FROM unnest($1::int8[]) AS p (id)
           CROSS JOIN unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS b (period_start, period_end, n)
           CROSS JOIN LATERAL limit_sums(p.id, b.period_start, b.period_end) AS s"#,
        player_ids,
        &spans.map(|s| s.start),
        &spans.map(|s| s.end),
    )
    .fetch_all(conn)
    .await?;
    let mut usage: HashMap<i64, [Option<Usage>; 3]> = HashMap::new();
    for row in rows {
        let index = usize::try_from(row.n - 1).unwrap_or(0).min(2);
        let span = spans[index];
        usage.entry(row.player_id).or_default()[index] = Some(Usage {
            period_start: span.start,
            period_end: span.end,
            deposited: row.deposited,
            staked: row.staked,
            won: row.won,
        });
    }
    Ok(usage)
}

/// The status a time-out or self-exclusion left.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct StatusView {
    #[schema(example = "cooling_off")]
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
    let event = Event::Status(StatusEvent { status, status_until: until });
    events::log(&mut tx, player.id, now, &event).await?;
    tx.commit().await?;
    Ok(StatusView { status: status.as_str(), status_until: until })
}
