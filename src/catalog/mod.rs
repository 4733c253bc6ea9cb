//! The bonus catalog (API §10): the game catalog that files provider games
//! under categories, and the bonus campaigns whose terms grants are made with.
//!
//! - `games`: games in PostgreSQL and [`Games`], every operator's catalog in
//!   memory, which the provider hot path asks for a game's category.
//! - `campaigns`: campaign terms, their validation, and [`campaigns::find`],
//!   which the deposit and grant code reads terms with.
//!
//! Routes (admins only, `Permission::ManageBonuses`), each for the operator
//! the caller acts on and refused with 403 code 121 while that operator's
//! `bonuses` flag is off: `PUT`/`GET /v1/games…` and
//! `POST`/`GET`/`PATCH /v1/bonus/campaigns…`. Every change is audited in its
//! transaction.

pub mod campaigns;
pub mod games;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
#[allow(unused_imports)]
use serde_json::json;
use serde_json::Value;

use crate::audit::{self, Action};
use crate::domain::storable;
use crate::error::{AppError, AppResult};
use crate::http::{JsonBody, PathParams};
use crate::staff::{BackOffice, Caller, Permission};
use crate::AppState;
use campaigns::Campaign;
pub use games::Games;

/// The catalog's back-office routes.
pub fn routes() -> BackOffice {
    use Permission::ManageBonuses;
    BackOffice::default()
        .route(Method::PUT, "/v1/games/{game}", ManageBonuses, file_game)
        .route(Method::GET, "/v1/games", ManageBonuses, list_games)
        .route(Method::POST, "/v1/bonus/campaigns", ManageBonuses, create_campaign)
        .route(Method::GET, "/v1/bonus/campaigns", ManageBonuses, list_campaigns)
        .route(Method::GET, "/v1/bonus/campaigns/{code}", ManageBonuses, read_campaign)
        .route(Method::PATCH, "/v1/bonus/campaigns/{code}", ManageBonuses, patch_campaign)
}

/// An authorised caller acting on an operator whose `bonuses` flag is on
/// (its default, for staff have no country). Taken before the body, so a
/// route of an operator without bonuses answers 403 code 121 whatever it
/// was sent.
pub struct BonusesOn(pub Caller);

impl FromRequestParts<AppState> for BonusesOn {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let tenant = state.operators.by_id(caller.operator).ok_or(AppError::OperatorNotFound)?;
        if tenant.document.flag("bonuses", None) {
            Ok(BonusesOn(caller))
        } else {
            Err(AppError::FeatureDisabled("bonuses"))
        }
    }
}

fn json_of(value: &impl Serialize) -> AppResult<Value> {
    serde_json::to_value(value).map_err(AppError::internal)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"category": "slots"}))]
struct GameFiling {
    /// `^[a-z0-9_]{1,32}$`.
    category: String,
}

/// A game and the category it is filed under.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"game": "pragmatic:sweet-bonanza", "category": "slots"}))]
struct GameView {
    game: String,
    category: String,
}

/// `PUT /v1/games/{game}` `{"category"}`: files a provider's game string.
#[utoipa::path(put, path = "/v1/games/{game}", tag = "bonuses", operation_id = "file_game",
    params(("game" = String, Path, description = "The provider's `game` string, percent-encoded; 1 to 255 characters.", example = "pragmatic:sweet-bonanza")),
    request_body = GameFiling,
    responses(
        (status = 200, description = "Filed; every instance answers the new category within a second.", body = GameView),
        (status = 400, description = "A bad category or game, naming it.", body = crate::error::ErrorBody, example = json!({"code": 400, "message": "category: must match ^[a-z0-9_]{1,32}$"})),
        (status = 403, description = "The operator's `bonuses` flag is off (code 121).", body = crate::error::ErrorBody, example = json!({"code": 121, "message": "bonuses is disabled for this operator"})),
    ))]
async fn file_game(
    State(state): State<AppState>,
    BonusesOn(caller): BonusesOn,
    PathParams(game): PathParams<String>,
    JsonBody(body): JsonBody<GameFiling>,
) -> AppResult<Json<GameView>> {
    if !(1..=255).contains(&game.chars().count()) {
        return Err(AppError::bad_request("game", "must be 1 to 255 characters"));
    }
    storable(&game).map_err(|e| AppError::bad_request("game", e))?;
    if !games::is_category(&body.category) {
        return Err(AppError::bad_request("category", "must match ^[a-z0-9_]{1,32}$"));
    }
    let operator = caller.operator;
    let mut tx = state.pool.begin().await?;
    let filed = games::file(&mut tx, operator, &game, &body.category).await?;
    let view = GameView { game, category: body.category };
    if filed.changed {
        let entry =
            caller.origin.entry(Some(operator), Action::GameCategory, audit::target("game", &view.game));
        let entry = match filed.before {
            Some(before) => entry.before(json!({"game": view.game, "category": before})),
            None => entry,
        };
        audit::record(&mut tx, &entry.after(json_of(&view)?)).await?;
    }
    tx.commit().await?;
    // This instance's copy, without waiting for the notification.
    state.games.refresh(operator);
    Ok(Json(view))
}

/// `GET /v1/games`: the operator's whole catalog.
#[utoipa::path(get, path = "/v1/games", tag = "bonuses", operation_id = "list_games",
    responses(
        (status = 200, description = "Every game filed at the operator, by name; any other game is `other`.", body = Vec<games::FiledGame>,
            example = json!([{"game": "pragmatic:sweet-bonanza", "category": "slots", "updated_at": "2026-11-27T10:00:00Z"}])),
        (status = 403, description = "The operator's `bonuses` flag is off (code 121).", body = crate::error::ErrorBody, example = json!({"code": 121, "message": "bonuses is disabled for this operator"})),
    ))]
async fn list_games(
    State(state): State<AppState>,
    BonusesOn(caller): BonusesOn,
) -> AppResult<Json<Vec<games::FiledGame>>> {
    Ok(Json(games::list(&state.pool, caller.operator).await?))
}

/// A new campaign, as the document describes it (the body is parsed by
/// [`campaigns::parse_new`], which names the field of any problem).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // a schema only
#[schema(example = json!({"code": "WELCOME100", "kind": "deposit_match", "match_percent": 100, "max_bonus": 10000,
    "min_deposit": 1000, "wagering_multiplier": 30, "contributions": {"slots": 100, "table": 10, "other": 0},
    "max_bet": 500, "max_conversion_multiplier": 5, "valid_days": 30, "active": true}))]
struct NewCampaign {
    /// `^[A-Za-z0-9_-]{1,64}$`, unique at the operator.
    code: String,
    kind: campaigns::CampaignKind,
    /// 0..=1000; required for `deposit_match`, 0 when absent for `manual`.
    match_percent: Option<i32>,
    /// Minor units, 0..=10^15.
    max_bonus: i64,
    /// Minor units, 0..=10^15; default 0.
    min_deposit: Option<i64>,
    /// 0..=1000.
    wagering_multiplier: i32,
    /// Category (`^[a-z0-9_]{1,32}$`) → percent 0..=100.
    contributions: std::collections::BTreeMap<String, i16>,
    /// Minor units, 1..=10^15, or null (default): no cap.
    max_bet: Option<i64>,
    /// 0..=1000, or null (default): no cap.
    max_conversion_multiplier: Option<i32>,
    /// 1..=3650.
    valid_days: i32,
    /// Default true.
    active: Option<bool>,
}

fn campaign_not_found() -> AppError {
    AppError::CampaignNotFound
}

/// `POST /v1/bonus/campaigns`.
#[utoipa::path(post, path = "/v1/bonus/campaigns", tag = "bonuses", operation_id = "create_campaign",
    request_body = NewCampaign,
    responses(
        (status = 201, description = "Created, with every default filled in.", body = Campaign,
            example = json!({"code": "WELCOME100", "kind": "deposit_match", "match_percent": 100, "max_bonus": 10000,
                "min_deposit": 1000, "wagering_multiplier": 30, "contributions": {"other": 0, "slots": 100, "table": 10},
                "max_bet": 500, "max_conversion_multiplier": 5, "valid_days": 30, "active": true,
                "created_at": "2026-11-27T10:00:00Z", "updated_at": "2026-11-27T10:00:00Z"})),
        (status = 400, description = "A bad field, naming it.", body = crate::error::ErrorBody, example = json!({"code": 400, "message": "match_percent: is required for a deposit_match campaign"})),
        (status = 403, description = "The operator's `bonuses` flag is off (code 121).", body = crate::error::ErrorBody, example = json!({"code": 121, "message": "bonuses is disabled for this operator"})),
        (status = 409, description = "The operator has a campaign with this code.", body = crate::error::ErrorBody, example = json!({"code": 409, "message": "campaign WELCOME100 exists already"})),
    ))]
async fn create_campaign(
    State(state): State<AppState>,
    BonusesOn(caller): BonusesOn,
    JsonBody(body): JsonBody<Value>,
) -> AppResult<(StatusCode, Json<Campaign>)> {
    let (code, terms) = campaigns::parse_new(body)?;
    let operator = caller.operator;
    let mut tx = state.pool.begin().await?;
    let created = campaigns::create(&mut tx, operator, &code, &terms)
        .await?
        .ok_or_else(|| AppError::Conflict(format!("campaign {code} exists already")))?;
    let entry = caller.origin.entry(Some(operator), Action::CampaignCreate, audit::target("campaign", &code));
    audit::record(&mut tx, &entry.after(json_of(&created)?)).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `GET /v1/bonus/campaigns`.
#[utoipa::path(get, path = "/v1/bonus/campaigns", tag = "bonuses", operation_id = "list_campaigns",
    responses(
        (status = 200, description = "Every campaign of the operator, oldest first.", body = Vec<Campaign>),
        (status = 403, description = "The operator's `bonuses` flag is off (code 121).", body = crate::error::ErrorBody, example = json!({"code": 121, "message": "bonuses is disabled for this operator"})),
    ))]
async fn list_campaigns(
    State(state): State<AppState>,
    BonusesOn(caller): BonusesOn,
) -> AppResult<Json<Vec<Campaign>>> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(campaigns::list(&mut conn, caller.operator).await?))
}

/// `GET /v1/bonus/campaigns/{code}`.
#[utoipa::path(get, path = "/v1/bonus/campaigns/{code}", tag = "bonuses", operation_id = "read_campaign",
    params(("code" = String, Path, description = "The campaign's code.", example = "WELCOME100")),
    responses(
        (status = 200, description = "The campaign.", body = Campaign),
        (status = 403, description = "The operator's `bonuses` flag is off (code 121).", body = crate::error::ErrorBody, example = json!({"code": 121, "message": "bonuses is disabled for this operator"})),
        (status = 404, description = "No campaign by that code at the operator.", body = crate::error::ErrorBody, example = json!({"code": 404, "message": "no such bonus campaign"})),
    ))]
async fn read_campaign(
    State(state): State<AppState>,
    BonusesOn(caller): BonusesOn,
    PathParams(code): PathParams<String>,
) -> AppResult<Json<Campaign>> {
    let mut conn = state.pool.acquire().await?;
    let campaign =
        campaigns::find(&mut conn, caller.operator, &code).await?.ok_or_else(campaign_not_found)?;
    Ok(Json(campaign))
}

/// `PATCH /v1/bonus/campaigns/{code}`: a JSON merge patch of the terms.
#[utoipa::path(patch, path = "/v1/bonus/campaigns/{code}", tag = "bonuses", operation_id = "patch_campaign",
    params(("code" = String, Path, description = "The campaign's code.", example = "WELCOME100")),
    request_body(content = Object, content_type = "application/json",
        description = "A JSON merge patch (RFC 7396) of the campaign's terms; `code` and `kind` only with their current values.",
        example = json!({"active": false, "max_bet": null})),
    responses(
        (status = 200, description = "The campaign as patched. Grants made before keep their terms.", body = Campaign),
        (status = 400, description = "A bad field, or a change of `code` or `kind`, naming it.", body = crate::error::ErrorBody, example = json!({"code": 400, "message": "kind: cannot be changed"})),
        (status = 403, description = "The operator's `bonuses` flag is off (code 121).", body = crate::error::ErrorBody, example = json!({"code": 121, "message": "bonuses is disabled for this operator"})),
        (status = 404, description = "No campaign by that code at the operator.", body = crate::error::ErrorBody, example = json!({"code": 404, "message": "no such bonus campaign"})),
    ))]
async fn patch_campaign(
    State(state): State<AppState>,
    BonusesOn(caller): BonusesOn,
    PathParams(code): PathParams<String>,
    JsonBody(patch): JsonBody<Value>,
) -> AppResult<Json<Campaign>> {
    let operator = caller.operator;
    let mut tx = state.pool.begin().await?;
    let campaign = campaigns::lock(&mut tx, operator, &code).await?.ok_or_else(campaign_not_found)?;
    let terms = campaigns::patched(&campaign, patch)?;
    if terms == campaign.terms {
        return Ok(Json(campaign));
    }
    let updated = campaigns::update(&mut tx, &campaign, &terms).await?;
    let entry = caller.origin.entry(Some(operator), Action::CampaignUpdate, audit::target("campaign", &code));
    audit::record(&mut tx, &entry.before(json_of(&campaign)?).after(json_of(&updated)?)).await?;
    tx.commit().await?;
    Ok(Json(updated))
}
