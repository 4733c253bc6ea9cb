//! Return-to-player reports per player, per game and for the whole casino,
//! over any `[from, to)` window of processing time.
//!
//! - `window`: parsing a window and splitting it into whole hours and edges.
//! - `store`: the queries, which read whole hours from the rollups and only
//!   the partial hours at the edges from the raw ledger.
//! - `summary`: daily summaries of the rollups for long windows.
//!
//! How the rollups stay exact is in docs/REPORTS.md.

pub mod store;
pub mod summary;
pub mod window;

use axum::extract::State;
use axum::http::Method;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
#[allow(unused_imports)]
use serde_json::json;
use utoipa::ToSchema;

use crate::domain::{storable, Currency, UserId};
use crate::error::{AppError, AppResult};
use crate::http::QueryParams;
use crate::paging::{page, PageQuery};
use crate::staff::{BackOffice, Caller, Permission};
use crate::AppState;
use store::Totals;
use window::Window;

pub fn routes() -> BackOffice {
    use Permission::ReadReports;
    BackOffice::default()
        .route(Method::GET, "/v1/reports/rtp/users", ReadReports, users)
        .route(Method::GET, "/v1/reports/rtp/casino", ReadReports, casino)
        .route(Method::GET, "/v1/reports/rtp/games", ReadReports, games)
        .route(Method::GET, "/v1/reports/rtp/series", ReadReports, series)
}

/// Every query parameter a report accepts; each report reads its own.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ReportQuery {
    /// RFC 3339; the window is `[from, to)`.
    #[param(required = true, value_type = String, format = DateTime, example = "2026-01-01T00:00:00Z")]
    from: Option<String>,
    #[param(required = true, value_type = String, format = DateTime, example = "2026-02-01T00:00:00Z")]
    to: Option<String>,
    #[param(pattern = "^[A-Z0-9]{3,10}$", example = "USD")]
    currency: Option<String>,
    /// Only this player (`/users`).
    #[param(min_length = 1, max_length = 255)]
    user_id: Option<String>,
    /// 1 to 1000, default 100 (`/users`, `/games`).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The `next_cursor` of the page before (`/users`, `/games`).
    cursor: Option<String>,
    bucket: Option<String>,
    game: Option<String>,
}

impl ReportQuery {
    fn window(&self) -> AppResult<Window> {
        Window::parse(self.from.as_deref(), self.to.as_deref())
    }

    fn currency(&self) -> AppResult<Option<Currency>> {
        self.currency
            .clone()
            .map(|c| Currency::try_from(c).map_err(|e| AppError::bad_request("currency", e)))
            .transpose()
    }

    fn page(&self) -> PageQuery {
        PageQuery { limit: self.limit.clone(), cursor: self.cursor.clone() }
    }

    /// The keys of the row after which the page starts, from an opaque cursor
    /// issued by the same report.
    fn cursor(&self, report: &str) -> AppResult<Option<(String, String)>> {
        self.cursor
            .as_deref()
            .map(|text| {
                Cursor::decode(text)
                    .filter(|c| c.report == report)
                    .map(|c| (c.key, c.currency))
                    .ok_or_else(|| AppError::bad_request("cursor", "is not a cursor this report issued"))
            })
            .transpose()
    }
}

/// Position after the last row of a page: the report it belongs to and the
/// row's sort key. Opaque to clients (base64url of JSON).
#[derive(Serialize, Deserialize)]
struct Cursor {
    report: String,
    key: String,
    currency: String,
}

impl Cursor {
    fn encode(report: &str, key: &str, currency: &str) -> String {
        let cursor =
            Cursor { report: report.to_string(), key: key.to_string(), currency: currency.to_string() };
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&cursor).expect("a cursor serialises"))
    }

    /// The cursor in `text`, if this service could have issued it: its keys
    /// are text the database can compare with.
    fn decode(text: &str) -> Option<Cursor> {
        let cursor: Cursor = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
        let storable_keys = storable(&cursor.key).is_ok() && storable(&cursor.currency).is_ok();
        storable_keys.then_some(cursor)
    }
}

/// The money columns every report row shares, with the ratio.
#[derive(Debug, Serialize, ToSchema)]
pub struct Figures {
    pub rounds: i64,
    pub total_bet: i128,
    pub total_win: i128,
    pub rolled_back_bet: i128,
    pub rolled_back_win: i128,
    /// `total_win / total_bet`, or null when nothing was bet.
    pub rtp: Option<f64>,
}

impl From<Totals> for Figures {
    fn from(t: Totals) -> Figures {
        // Floats only for the ratio; the amounts stay integers.
        let rtp = (t.total_bet != 0).then(|| t.total_win as f64 / t.total_bet as f64);
        Figures {
            rounds: t.rounds,
            total_bet: t.total_bet,
            total_win: t.total_win,
            rolled_back_bet: t.rolled_back_bet,
            rolled_back_win: t.rolled_back_win,
            rtp,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct UserRow {
    user_id: String,
    currency: String,
    #[serde(flatten)]
    figures: Figures,
}

#[derive(Serialize, ToSchema)]
struct CasinoRow {
    currency: String,
    users: i64,
    #[serde(flatten)]
    figures: Figures,
}

#[derive(Serialize, ToSchema)]
struct GameRow {
    /// null for bets and wins that came without a game.
    game: Option<String>,
    currency: String,
    #[serde(flatten)]
    figures: Figures,
}

#[derive(Serialize, ToSchema)]
struct Page<T> {
    data: Vec<T>,
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct Rows<T> {
    data: Vec<T>,
}

#[utoipa::path(get, path = "/v1/reports/rtp/users", tag = "back office", operation_id = "rtp_users",
    params(ReportQuery),
    responses((status = 200, description = "One row per player and currency, by `user_id`, `currency`.", body = Page<UserRow>)))]
async fn users(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<ReportQuery>,
) -> AppResult<Json<Page<UserRow>>> {
    let window = query.window()?;
    let currency = query.currency()?;
    let user_id = query
        .user_id
        .clone()
        .map(|u| UserId::try_from(u).map_err(|e| AppError::bad_request("user_id", e)))
        .transpose()?;
    let limit = query.page().limit()?;
    let after = query.cursor("users")?;
    let rows = store::users(
        &state.pool,
        caller.operator,
        &window,
        currency.as_ref().map(Currency::as_str),
        user_id.as_ref().map(UserId::as_str),
        after.as_ref().map(|(user_id, _)| user_id.as_str()),
        limit + 1,
    )
    .await?;
    let (rows, next) = page(rows, limit, |last| Cursor::encode("users", &last.user_id, &last.currency));
    Ok(Json(Page {
        data: rows
            .into_iter()
            .map(|r| UserRow { user_id: r.user_id, currency: r.currency, figures: r.totals.into() })
            .collect(),
        next_cursor: next,
    }))
}

#[utoipa::path(get, path = "/v1/reports/rtp/casino", tag = "back office", operation_id = "rtp_casino",
    params(ReportQuery),
    responses((status = 200, description = "One row per currency.", body = Rows<CasinoRow>)))]
async fn casino(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<ReportQuery>,
) -> AppResult<Json<Rows<CasinoRow>>> {
    let window = query.window()?;
    let currency = query.currency()?;
    let rows =
        store::casino(&state.pool, caller.operator, &window, currency.as_ref().map(Currency::as_str)).await?;
    Ok(Json(Rows {
        data: rows
            .into_iter()
            .map(|r| CasinoRow { currency: r.currency, users: r.users, figures: r.totals.into() })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/v1/reports/rtp/games", tag = "back office", operation_id = "rtp_games",
    params(ReportQuery),
    responses((status = 200, description = "One row per game and currency.", body = Page<GameRow>)))]
async fn games(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<ReportQuery>,
) -> AppResult<Json<Page<GameRow>>> {
    let window = query.window()?;
    let currency = query.currency()?;
    let limit = query.page().limit()?;
    let after = query.cursor("games")?;
    let rows = store::games(
        &state.pool,
        caller.operator,
        &window,
        currency.as_ref().map(Currency::as_str),
        after.as_ref().map(|(g, c)| (g.as_str(), c.as_str())),
        limit + 1,
    )
    .await?;
    let (rows, next) = page(rows, limit, |last| Cursor::encode("games", &last.game, &last.currency));
    Ok(Json(Page {
        data: rows
            .into_iter()
            .map(|r| GameRow {
                game: (!r.game.is_empty()).then_some(r.game),
                currency: r.currency,
                figures: r.totals.into(),
            })
            .collect(),
        next_cursor: next,
    }))
}

/// The most buckets one series may span.
pub const MAX_BUCKETS: i64 = 5000;

#[derive(Serialize, ToSchema)]
struct SeriesRow {
    /// The bucket's start; the first and last buckets may be cut by the window.
    start: chrono::DateTime<chrono::Utc>,
    currency: String,
    total_bet: i128,
    total_win: i128,
    rolled_back_bet: i128,
    rolled_back_win: i128,
    rtp: Option<f64>,
}

#[derive(Serialize, ToSchema)]
struct Series {
    bucket: &'static str,
    data: Vec<SeriesRow>,
}

/// `GET /v1/reports/rtp/series?from=&to=&bucket=hour|day[&currency=][&game=]`.
#[utoipa::path(get, path = "/v1/reports/rtp/series", tag = "back office", operation_id = "rtp_series",
    params(ReportQuery),
    responses(
        (status = 200, description = "One row per bucket with activity and currency, oldest first.", body = Series),
        (status = 400, description = "A bad window, bucket (hour or day, at most 5000 of them), currency or game.", body = crate::error::ErrorBody, example = json!({"code": 400, "message": "bucket: must be hour or day"})),
    ))]
async fn series(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<ReportQuery>,
) -> AppResult<Json<Series>> {
    let window = query.window()?;
    let currency = query.currency()?;
    let (bucket, seconds) = match query.bucket.as_deref() {
        Some("hour") => ("hour", 3600),
        Some("day") => ("day", 86_400),
        Some(_) => return Err(AppError::bad_request("bucket", "must be hour or day")),
        None => return Err(AppError::bad_request("bucket", "is required (hour or day)")),
    };
    let span = (window.to - window.from).num_seconds() / i64::from(seconds) + 2;
    if span > MAX_BUCKETS {
        return Err(AppError::bad_request(
            "bucket",
            format!("the window spans more than {MAX_BUCKETS} buckets; choose a shorter window or day"),
        ));
    }
    if let Some(game) = &query.game {
        if game.chars().count() > 255 {
            return Err(AppError::bad_request("game", "must be at most 255 characters"));
        }
        storable(game).map_err(|e| AppError::bad_request("game", e))?;
    }
    let rows = store::series(
        &state.pool,
        caller.operator,
        &window,
        seconds,
        currency.as_ref().map(Currency::as_str),
        query.game.as_deref(),
    )
    .await?;
    Ok(Json(Series {
        bucket,
        data: rows
            .into_iter()
            .map(|r| {
                let figures = Figures::from(r.totals);
                SeriesRow {
                    start: r.start,
                    currency: r.currency,
                    total_bet: figures.total_bet,
                    total_win: figures.total_win,
                    rolled_back_bet: figures.rolled_back_bet,
                    rolled_back_win: figures.rolled_back_win,
                    rtp: figures.rtp,
                }
            })
            .collect(),
    }))
}
