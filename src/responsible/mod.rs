//! Responsible gambling (§9): the player's deposit, loss and wager limits,
//! time-outs and self-exclusions, and the back office's view of limits.
//!
//! - `store`: changes under the player's row lock, audited.
//!
//! The rules themselves live with the money: `ledger::limits` checks and
//! counts every bet in the group-commit path and every own deposit in the
//! cashier, and `ledger::rules` refuses bets while an exclusion is in force.

pub mod store;

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::Method;
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoResponses, ToSchema};

use crate::accounts::PlayerSession;
use crate::domain::{Amount, UserId};
use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::{JsonBody, PathParams, Routes};
use crate::ledger::limits::{Guard, LimitKind, Period};
use crate::operators::document::Document;
use crate::staff::{BackOffice, Caller, Permission};
use crate::AppState;
use store::StatusView;

/// The player's own routes.
pub fn routes() -> Routes {
    Routes::default()
        .route(Method::GET, "/v1/me/limits", my_limits)
        .route(Method::PUT, "/v1/me/limits", set_my_limits)
        .route(Method::POST, "/v1/me/time-out", time_out)
        .route(Method::POST, "/v1/me/self-exclusion", self_exclusion)
}

/// The back office's routes: read and lower a player's limits.
pub fn back_office() -> BackOffice {
    BackOffice::default()
        .route(Method::GET, "/v1/players/{user_id}/limits", Permission::LowerLimits, player_limits)
        .route(Method::PUT, "/v1/players/{user_id}/limits", Permission::LowerLimits, lower_player_limits)
}

/// Who changes limits: the player may do anything (raises and removals
/// wait), staff may only lower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Player,
    Staff,
}

/// A limits request: `(kind, period, amount or None to remove)`, each named once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request(pub Vec<(LimitKind, Period, Option<i64>)>);

impl Request {
    /// Parses `{"deposit":{"day":A,"week":B,"month":C},"loss":{…},"wager":{…}}`,
    /// any subset, each amount in minor units or `null`; a problem is a 400
    /// naming the field.
    pub fn parse(body: &Value) -> AppResult<Request> {
        let kinds = body.as_object().ok_or_else(|| AppError::bad_request("body", "must be a JSON object"))?;
        let mut wanted = Vec::new();
        for (kind_name, periods) in kinds {
            let kind = LimitKind::ALL.into_iter().find(|k| k.as_str() == kind_name).ok_or_else(|| {
                AppError::bad_request(kind_name, "is not a limit; use deposit, loss or wager")
            })?;
            let periods = periods.as_object().ok_or_else(|| {
                AppError::bad_request(kind_name, "must be an object of day, week and month")
            })?;
            for (period_name, amount) in periods {
                let field = format!("{kind_name}.{period_name}");
                let period =
                    Period::ALL.into_iter().find(|p| p.as_str() == period_name).ok_or_else(|| {
                        AppError::bad_request(&field, "is not a period; use day, week or month")
                    })?;
                let amount = match amount {
                    Value::Null => None,
                    value => {
                        let amount =
                            value.as_i64().and_then(|n| Amount::try_from(n).ok()).ok_or_else(|| {
                                AppError::bad_request(
                                    &field,
                                    "must be an amount in minor units (0 ..= 10^15) or null",
                                )
                            })?;
                        Some(amount.minor_units())
                    }
                };
                wanted.push((kind, period, amount));
            }
        }
        if wanted.is_empty() {
            return Err(AppError::bad_request("body", "must name at least one limit"));
        }
        Ok(Request(wanted))
    }
}

/// A limits request, as the document describes it (the body is parsed by
/// [`Request::parse`], which names the field of any problem).
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only
pub struct LimitsRequest {
    deposit: Option<PeriodAmounts>,
    loss: Option<PeriodAmounts>,
    wager: Option<PeriodAmounts>,
}

/// An amount in minor units per period, or `null` to remove that limit.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only
pub struct PeriodAmounts {
    #[schema(minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    day: Option<i64>,
    #[schema(minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    week: Option<i64>,
    #[schema(minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    month: Option<i64>,
}

/// One limit as `GET …/limits` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitView {
    pub amount: i64,
    /// What the period has used: for `loss`, stakes minus wins, negative
    /// while the player is ahead.
    pub used: i64,
    pub remaining: i64,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub pending: Option<PendingView>,
}

/// A raise or removal waiting out the operator's delay.
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingView {
    /// `None`: the limit will be removed.
    pub amount: Option<i64>,
    pub effective_at: DateTime<Utc>,
}

/// Every limit in force, by kind and period.
pub type LimitsView = BTreeMap<LimitKind, BTreeMap<Period, LimitView>>;

/// The view of `guard` at `now` in `zone`.
pub fn view(guard: &Guard, zone: Tz, now: DateTime<Utc>) -> LimitsView {
    let mut view = LimitsView::new();
    for limit in &guard.limits {
        let Some(amount) = limit.in_force(now) else { continue };
        let usage = guard.current(limit.period, zone, now);
        let used = usage.used(limit.kind);
        let clamp = |n: i128| i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX });
        let shown = LimitView {
            amount,
            used: clamp(used),
            remaining: clamp((i128::from(amount) - used).max(0)),
            period_start: usage.period_start,
            period_end: usage.period_end,
            pending: limit.pending(now).map(|(amount, effective_at)| PendingView { amount, effective_at }),
        };
        view.entry(limit.kind).or_default().insert(limit.period, shown);
    }
    view
}

/// The answers of the limits routes, for the API document.
#[derive(IntoResponses)]
#[response(status = 200, description = "The limits in force, by kind and period.",
    example = json!({"loss": {"day": {"amount": 150, "used": 100, "remaining": 50,
        "period_start": "2026-11-27T00:00:00Z", "period_end": "2026-11-28T00:00:00Z", "pending": null}}}))]
#[allow(dead_code)] // a document only
struct LimitsShown(#[to_schema] LimitsView);

#[derive(IntoResponses)]
#[response(status = 400, description = "A bad kind, period or amount, naming the field.",
    example = json!({"code": 400, "message": "loss.day: must be an amount in minor units (0 ..= 10^15) or null"}))]
#[allow(dead_code)] // a document only
struct BadLimits(ErrorBody<'static>);

#[derive(IntoResponses)]
#[response(status = 404, description = "No such player (code 101).",
    example = json!({"code": 101, "message": "Player is invalid"}))]
#[allow(dead_code)] // a document only
struct NoSuchPlayer(ErrorBody<'static>);

/// The answers of a time-out or self-exclusion, for the API document.
#[derive(IntoResponses)]
#[allow(dead_code)] // a document only
enum ExclusionAnswers {
    #[response(status = 200, description = "In force now; every other session of the player ended.",
        example = json!({"status": "cooling_off", "status_until": "2026-12-04T10:00:00Z"}))]
    InForce(StatusView),
    #[response(status = 400, description = "A value the contract does not offer: a time-out's `days`, \
        a self-exclusion's `months`.",
        example = json!({"code": 400, "message": "days: must be 1, 7, 30, 60 or 90"}))]
    NotOffered(ErrorBody<'static>),
    #[response(status = 409, description = "One in force ends later (code 131): it cannot be shortened.",
        example = json!({"code": 131, "message": "a self_excluded in force (permanent) cannot be shortened or replaced by a shorter one"}))]
    Shorter(ErrorBody<'static>),
    #[response(status = 422, description = "The player is blocked (code 110).",
        example = json!({"code": 110, "message": "player is blocked or self-excluded"}))]
    Blocked(ErrorBody<'static>),
}

fn delay(document: &Document) -> TimeDelta {
    TimeDelta::hours(document.rules.limit_increase_delay_hours.into())
}

#[utoipa::path(
    get,
    path = "/v1/me/limits",
    tag = "responsible gambling",
    operation_id = "my_limits",
    responses(LimitsShown,)
)]
pub async fn my_limits(State(state): State<AppState>, session: PlayerSession) -> AppResult<Json<LimitsView>> {
    let (guard, now) = store::guard_of(&state.pool, session.tenant.id, &session.user_id).await?;
    Ok(Json(view(&guard, session.tenant.document.zone(), now)))
}

#[utoipa::path(put, path = "/v1/me/limits", tag = "responsible gambling", operation_id = "set_my_limits",
    request_body = LimitsRequest,
    responses(
        LimitsShown,
        BadLimits,
    ))]
pub async fn set_my_limits(
    State(state): State<AppState>,
    session: PlayerSession,
    JsonBody(body): JsonBody<Value>,
) -> AppResult<Json<LimitsView>> {
    let request = Request::parse(&body)?;
    let document = &session.tenant.document;
    let (guard, now) = store::set_limits(
        &state.pool,
        session.tenant.id,
        &session.origin,
        Who::Player,
        &session.user_id,
        &request,
        delay(document),
        document.zone(),
    )
    .await?;
    Ok(Json(view(&guard, document.zone(), now)))
}

fn user_id(raw: String) -> AppResult<UserId> {
    UserId::try_from(raw).map_err(|e| AppError::bad_request("user_id", e))
}

/// The operator's document, for its zone and delay.
fn document_of(
    state: &AppState,
    operator: i16,
) -> AppResult<std::sync::Arc<crate::operators::registry::Tenant>> {
    state.operators.by_id(operator).ok_or(AppError::OperatorNotFound)
}

#[utoipa::path(get, path = "/v1/players/{user_id}/limits", tag = "back office", operation_id = "player_limits",
    params(("user_id" = String, Path, description = "The player.")),
    responses(
        LimitsShown,
        NoSuchPlayer,
    ))]
pub async fn player_limits(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(raw): PathParams<String>,
) -> AppResult<Json<LimitsView>> {
    let user_id = user_id(raw)?;
    let tenant = document_of(&state, caller.operator)?;
    let (guard, now) = store::guard_of(&state.pool, caller.operator, &user_id).await?;
    Ok(Json(view(&guard, tenant.document.zone(), now)))
}

#[utoipa::path(put, path = "/v1/players/{user_id}/limits", tag = "back office", operation_id = "lower_player_limits",
    params(("user_id" = String, Path, description = "The player.")),
    request_body = LimitsRequest,
    responses(
        LimitsShown,
        BadLimits,
        NoSuchPlayer,
        (status = 403, description = "A raise or removal: staff may only lower (or set where there was none).", body = crate::error::ErrorBody, example = json!({"code": 403, "message": "forbidden"})),
    ))]
pub async fn lower_player_limits(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(raw): PathParams<String>,
    JsonBody(body): JsonBody<Value>,
) -> AppResult<Json<LimitsView>> {
    let user_id = user_id(raw)?;
    let request = Request::parse(&body)?;
    let tenant = document_of(&state, caller.operator)?;
    let zone = tenant.document.zone();
    let (guard, now) = store::set_limits(
        &state.pool,
        caller.operator,
        &caller.origin,
        Who::Staff,
        &user_id,
        &request,
        delay(&tenant.document),
        zone,
    )
    .await?;
    Ok(Json(view(&guard, zone, now)))
}

/// A time-out or self-exclusion the player takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exclusion {
    TimeOut { days: u32 },
    SelfExclusion { months: u32 },
    Permanent,
}

/// `{"days": 1|7|30|60|90}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeOut {
    #[schema(example = 7)]
    days: u32,
}

/// `{"months": 6|12|60}` or `{"permanent": true}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SelfExclusion {
    #[schema(example = 6)]
    months: Option<u32>,
    permanent: Option<bool>,
}

#[utoipa::path(post, path = "/v1/me/time-out", tag = "responsible gambling", operation_id = "time_out",
    request_body = TimeOut,
    responses(
        ExclusionAnswers,
    ))]
pub async fn time_out(
    State(state): State<AppState>,
    session: PlayerSession,
    JsonBody(body): JsonBody<TimeOut>,
) -> AppResult<Json<StatusView>> {
    if ![1, 7, 30, 60, 90].contains(&body.days) {
        return Err(AppError::bad_request("days", "must be 1, 7, 30, 60 or 90"));
    }
    exclude(&state, &session, Exclusion::TimeOut { days: body.days }).await
}

#[utoipa::path(post, path = "/v1/me/self-exclusion", tag = "responsible gambling", operation_id = "self_exclusion",
    request_body = SelfExclusion,
    responses(
        ExclusionAnswers,
    ))]
pub async fn self_exclusion(
    State(state): State<AppState>,
    session: PlayerSession,
    JsonBody(body): JsonBody<SelfExclusion>,
) -> AppResult<Json<StatusView>> {
    let exclusion = match (body.months, body.permanent) {
        (Some(months), None) if [6, 12, 60].contains(&months) => Exclusion::SelfExclusion { months },
        (Some(_), None) => return Err(AppError::bad_request("months", "must be 6, 12 or 60")),
        (None, Some(true)) => Exclusion::Permanent,
        (None, Some(false)) => return Err(AppError::bad_request("permanent", "must be true when given")),
        (None, None) | (Some(_), Some(_)) => {
            return Err(AppError::bad_request(
                "body",
                "give either months (6, 12 or 60) or \"permanent\": true",
            ))
        }
    };
    exclude(&state, &session, exclusion).await
}

async fn exclude(
    state: &AppState,
    session: &PlayerSession,
    exclusion: Exclusion,
) -> AppResult<Json<StatusView>> {
    let view = store::exclude(
        &state.pool,
        session.tenant.id,
        &session.origin,
        &session.user_id,
        exclusion,
        session.session_id,
    )
    .await?;
    Ok(Json(view))
}
