//! Player accounts: registration, login sessions, the player's own API
//! (`/v1/me`), the player's cashier, and KYC tiers.
//!
//! - `password`: Argon2id hashing on a bounded set of blocking threads.
//! - `fields`: what a registration's fields must be.
//! - `store`: accounts, sessions, login failures and tiers in SQL.
//!
//! Every route is for the operator the request resolves to (§6: `Host`,
//! else `X-Operator`). Player routes authenticate with [`PlayerSession`], a
//! bearer token of that operator; staff change tiers through the back office.
//! Money moves through [`players::store::move_money`], the function the back
//! office uses too, with the player's KYC tier as its gate.

pub mod fields;
pub mod lockout;
pub mod password;
pub mod store;
pub mod streams;

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
#[allow(unused_imports)]
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::{self, Actor, Origin};
use crate::domain::{EntryKind, UserId};
use crate::error::{AppError, AppResult};
use crate::http::{bearer_token, JsonBody, PathParams, QueryParams, Routes};
use crate::operators::registry::Tenant;
use crate::operators::TenantOf;
use crate::ops::observe::RequestId;
use crate::players::store::{BonusAsk, Requester};
use crate::players::{self, HistoryPage, Movement, PageQuery};
use crate::staff::{token_hash, BackOffice, Caller, Permission};
use crate::AppState;
use lockout::{Door, Failure};
use store::Presented;

/// The player-facing routes.
pub fn routes() -> Routes {
    Routes::default()
        .route(Method::POST, "/v1/auth/register", register)
        .route(Method::POST, "/v1/auth/login", login)
        .route(Method::POST, "/v1/auth/logout", logout)
        .route(Method::GET, "/v1/me", me)
        .route(Method::GET, "/v1/me/transactions", transactions)
        .route(Method::GET, "/v1/me/sessions", sessions)
        .route(Method::DELETE, "/v1/me/sessions/{session_id}", end_session)
        .route(Method::POST, "/v1/me/deposits", deposit)
        .route(Method::POST, "/v1/me/withdrawals", withdraw)
}

/// The KYC route of the back office.
pub fn back_office() -> BackOffice {
    BackOffice::default().route(Method::PUT, "/v1/players/{user_id}/kyc", Permission::ChangeKyc, set_kyc)
}

/// A request made with a live session's bearer token, for the operator the
/// request resolves to. A token of another operator, revoked or unknown is
/// 401; one past its idle or absolute end is 401 code 113. Checking and
/// marking the session seen is one statement.
pub struct PlayerSession {
    pub tenant: Arc<Tenant>,
    pub session_id: Uuid,
    pub player_id: i64,
    pub user_id: UserId,
    /// The player as the audit trail's actor, in this request.
    pub origin: Origin,
}

impl<S: Send + Sync> FromRequestParts<S> for PlayerSession
where
    AppState: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers).map(str::to_owned);
        PlayerSession::presenting(parts, state, token.as_deref()).await
    }
}

impl PlayerSession {
    /// The session of `token` (none: 401), for the operator `parts` resolve
    /// to: for routes that also take the token from elsewhere than the
    /// `Authorization` header (a browser's WebSocket cannot set it).
    pub async fn presenting<S: Send + Sync>(
        parts: &mut Parts,
        state: &S,
        token: Option<&str>,
    ) -> Result<Self, AppError>
    where
        AppState: FromRef<S>,
    {
        let TenantOf(tenant) = TenantOf::from_request_parts(parts, state).await?;
        let token = token.ok_or(AppError::Unauthorized)?;
        let pool = AppState::from_ref(state).pool;
        let idle = tenant.document.rules.session_idle_minutes;
        match store::authenticate(&pool, tenant.id, &token_hash(token), idle).await? {
            Presented::Live { session_id, player_id, user_id } => {
                let user_id = UserId::try_from(user_id).map_err(AppError::internal)?;
                let Ok(request_id) = RequestId::from_request_parts(parts, state).await;
                let origin = Origin::new(Actor::Player(user_id.to_string()), request_id);
                Ok(PlayerSession { tenant, session_id, player_id, user_id, origin })
            }
            Presented::Expired => Err(AppError::SessionExpired),
            Presented::Refused => Err(AppError::Unauthorized),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"email": "ann@example.com", "password": "correct horse battery",
    "currency": "USD", "country": "GB", "date_of_birth": "1990-05-17"}))]
struct Registration {
    #[schema(format = Email, min_length = 3, max_length = 254)]
    email: String,
    /// 10 to 128 characters, kept exactly as typed.
    #[schema(min_length = 10, max_length = 128)]
    password: String,
    /// One of the operator's currencies (`default` takes any).
    #[schema(pattern = "^[A-Z0-9]{3,10}$")]
    currency: String,
    /// ISO 3166-1 alpha-2, any case.
    #[schema(pattern = "^[A-Za-z]{2}$")]
    country: String,
    /// `YYYY-MM-DD`, not after today and not before 1900.
    #[schema(format = Date)]
    date_of_birth: String,
}

#[utoipa::path(post, path = "/v1/auth/register", tag = "player", operation_id = "register",
    request_body = Registration,
    responses(
        (status = 201, description = "Registered: KYC tier 0, active.", body = store::Registered),
        (status = 403, description = "Registration is off for the country (code 121).", body = crate::error::ErrorBody, example = json!({"code": 121, "message": "player_registration is disabled for this operator"})),
        (status = 409, description = "An account with this email exists at the operator.", body = crate::error::ErrorBody, example = json!({"code": 409, "message": "an account with this email exists"})),
        (status = 422, description = "Younger than the operator's `min_age` (code 130), or a currency the operator does not offer (code 154).", body = crate::error::ErrorBody, example = json!({"code": 130, "message": "the player is younger than the operator's minimum age of 18"})),
    ))]
async fn register(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
    request_id: RequestId,
    JsonBody(body): JsonBody<Registration>,
) -> AppResult<(StatusCode, Json<store::Registered>)> {
    let country = crate::operators::document::country(&body.country)?;
    if !tenant.document.flag("player_registration", Some(&country)) {
        return Err(AppError::FeatureDisabled("player_registration"));
    }
    let (email, email_key) = fields::email(&body.email)?;
    let password = fields::password(body.password)?;
    let currency = fields::currency(&tenant.document, body.currency)?;
    let date_of_birth = fields::date_of_birth(&body.date_of_birth, &tenant.document)?;
    let user_id = fields::new_user_id();
    let password_hash = state.passwords.hash(password).await?;
    let new =
        store::NewAccount { user_id, email, email_key, password_hash, currency, country, date_of_birth };
    let origin = Origin::new(Actor::Player(new.user_id.to_string()), request_id);
    let registered = store::register(&state.pool, tenant.id, &origin, &new).await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"email": "ann@example.com", "password": "correct horse battery"}))]
struct Credentials {
    email: String,
    password: String,
}

/// `POST /v1/auth/login`. An unknown email and a wrong password take the
/// same path, the same Argon2 work and the same answer; both count towards
/// the email's lockout, which is checked before any hashing.
#[utoipa::path(post, path = "/v1/auth/login", tag = "player", operation_id = "login",
    request_body = Credentials,
    responses(
        (status = 200, description = "A new session; the token is shown only this once.", body = store::NewSession),
        (status = 401, description = "Unknown email or wrong password: one answer for both.", body = crate::error::ErrorBody, example = json!({"code": 401, "message": "unknown email or wrong password"})),
        (status = 429, description = "The email is locked after too many failed logins.", body = crate::error::ErrorBody, example = json!({"code": 429, "message": "too many failed logins for this email, try again later"})),
    ))]
async fn login(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
    request_id: RequestId,
    JsonBody(body): JsonBody<Credentials>,
) -> AppResult<Json<store::NewSession>> {
    let rules = &tenant.document.rules;
    // A string that is no email has no account whoever sends it: 400 tells
    // nothing about which emails exist.
    let (_, email_key) = fields::email(&body.email)?;
    let target = store::login_target(&state.pool, tenant.id, &email_key).await?;
    let user_id = target.account.as_ref().map(|(_, user_id, _)| user_id.clone());
    let actor = match &user_id {
        Some(user_id) => Actor::Player(user_id.clone()),
        None => Actor::System,
    };
    let origin = Origin::new(actor, request_id);
    let attempt = lockout::Attempt {
        door: Door::Player { operator: tenant.id },
        origin: origin.clone(),
        email_key: &email_key,
        target: match &user_id {
            Some(user_id) => audit::target("player", user_id),
            None => audit::target("email", &email_key),
        },
        max_failures: rules.login_max_failures,
    };
    let failure = |failure| attempt.failed(&state.pool, failure);
    if target.locked_until.is_some() {
        failure(Failure::Locked).await?;
        return Err(AppError::LoginLocked);
    }
    let stored_hash = target.account.as_ref().map(|(_, _, hash)| hash.clone());
    let matched = state.passwords.verify(body.password, stored_hash).await?;
    match target.account {
        Some((player_id, user_id, _)) if matched => {
            let token = new_token();
            let session = store::open_session(
                &state.pool,
                tenant.id,
                &origin,
                player_id,
                &user_id,
                &email_key,
                token,
                rules.session_max_hours,
            )
            .await?;
            Ok(Json(session))
        }
        Some(_) => {
            failure(Failure::WrongPassword).await?;
            Err(AppError::BadCredentials)
        }
        None => {
            failure(Failure::UnknownEmail).await?;
            Err(AppError::BadCredentials)
        }
    }
}

/// A session token: 256 random bits, hex, with a prefix that says what it is
/// (as staff tokens have theirs) so that a leaked one is easy to recognise.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("ply_{}", hex::encode(bytes))
}

#[utoipa::path(post, path = "/v1/auth/logout", tag = "player", operation_id = "logout",
    responses((status = 204, description = "The session is ended.")))]
async fn logout(State(state): State<AppState>, session: PlayerSession) -> AppResult<StatusCode> {
    store::revoke(&state.pool, session.player_id, session.session_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/me/sessions", tag = "player", operation_id = "me_sessions",
    responses((status = 200, description = "The live sessions, newest first.", body = Vec<store::SessionView>)))]
async fn sessions(
    State(state): State<AppState>,
    session: PlayerSession,
) -> AppResult<Json<Vec<store::SessionView>>> {
    let idle = session.tenant.document.rules.session_idle_minutes;
    Ok(Json(store::sessions(&state.pool, session.player_id, session.session_id, idle).await?))
}

#[utoipa::path(delete, path = "/v1/me/sessions/{session_id}", tag = "player", operation_id = "me_end_session",
    params(("session_id" = String, Path, description = "One of the player's sessions.")),
    responses(
        (status = 204, description = "Ended (also if it had ended already)."),
        (status = 404, description = "Not one of the player's sessions.", body = crate::error::ErrorBody, example = json!({"code": 404, "message": "no such session"})),
    ))]
async fn end_session(
    State(state): State<AppState>,
    session: PlayerSession,
    PathParams(raw): PathParams<String>,
) -> AppResult<StatusCode> {
    let session_id = Uuid::parse_str(&raw).map_err(|_| AppError::SessionNotFound)?;
    if store::revoke(&state.pool, session.player_id, session_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::SessionNotFound)
    }
}

/// `GET /v1/me`.
#[derive(Serialize, ToSchema)]
struct MeView {
    user_id: String,
    email: String,
    currency: String,
    country: Option<String>,
    kyc_tier: i16,
    #[schema(value_type = crate::domain::PlayerStatus)]
    status: String,
    /// When a time-out or self-exclusion ends.
    status_until: Option<DateTime<Utc>>,
    balance: Balance,
}

/// The balance as the player sees it: cash, the active bonus's balance and
/// their total, which is what a game provider sees.
#[derive(Serialize, ToSchema)]
struct Balance {
    cash: i64,
    bonus: i64,
    total: i64,
}

#[utoipa::path(get, path = "/v1/me", tag = "player", operation_id = "me",
    responses((status = 200, description = "The player's account and balance.", body = MeView,
        example = json!({"user_id": "3f0c2a8e-5d4b-4c1a-9e7f-2b6d8c0a1e53", "email": "ann@example.com",
            "currency": "USD", "country": "GB", "kyc_tier": 0, "status": "active", "status_until": null,
            "balance": {"cash": 4900, "bonus": 0, "total": 4900}}))))]
async fn me(State(state): State<AppState>, session: PlayerSession) -> AppResult<Json<MeView>> {
    let me = store::me(&state.pool, session.player_id).await?;
    Ok(Json(MeView {
        user_id: me.user_id,
        email: me.email,
        currency: me.currency,
        country: me.country,
        kyc_tier: me.kyc_tier,
        status: me.status,
        status_until: me.status_until,
        balance: Balance { cash: me.balance, bonus: me.bonus, total: me.balance + me.bonus },
    }))
}

#[utoipa::path(get, path = "/v1/me/transactions", tag = "player", operation_id = "me_transactions",
    params(PageQuery),
    responses((status = 200, description = "A page of the player's ledger, newest first.", body = HistoryPage)))]
async fn transactions(
    State(state): State<AppState>,
    session: PlayerSession,
    QueryParams(query): QueryParams<PageQuery>,
) -> AppResult<Json<HistoryPage>> {
    players::history_page(&state.pool, session.tenant.id, &session.user_id, &query).await
}

/// A cashier request. A deposit may name a `bonus_code`; a withdrawal while
/// a bonus is active must say `forfeit_bonus` (API §10).
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"amount": 5000, "bonus_code": "WELCOME100"}))]
struct CashierRequest {
    /// Minor units, more than 0.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_i64)]
    amount: i64,
    /// Deposits: the code of a deposit-match campaign.
    #[schema(max_length = 64)]
    bonus_code: Option<String>,
    /// Withdrawals: give up the active bonus (its balance is forfeited).
    #[serde(default)]
    forfeit_bonus: bool,
}

#[utoipa::path(post, path = "/v1/me/deposits", tag = "player", operation_id = "me_deposit",
    params(("Idempotency-Key" = String, Header, description = "1 to 255 characters; a repeat with the same key and amount answers the first time's answer.", example = "ann-1")), request_body = CashierRequest,
    responses(
        (status = 201, description = "Deposited.", body = crate::players::store::Payment),
        (status = 200, description = "A replay: the first answer.", body = crate::players::store::Payment),
        (status = 409, description = "The key was used with another amount or kind, or by the back office.", body = crate::error::ErrorBody, example = json!({"code": 409, "message": "Idempotency-Key was used for another request"})),
        (status = 422, description = "The KYC tier forbids deposits or the lifetime cap would be passed (code 111).", body = crate::error::ErrorBody, example = json!({"code": 111, "message": "the player's KYC tier does not allow this"})),
    ))]
async fn deposit(
    state: State<AppState>,
    session: PlayerSession,
    headers: HeaderMap,
    body: JsonBody<CashierRequest>,
) -> AppResult<Response> {
    cashier(state, session, headers, body, EntryKind::Deposit).await
}

#[utoipa::path(post, path = "/v1/me/withdrawals", tag = "player", operation_id = "me_withdraw",
    params(("Idempotency-Key" = String, Header, description = "1 to 255 characters; a repeat with the same key and amount answers the first time's answer.", example = "ann-1")), request_body = CashierRequest,
    responses(
        (status = 201, description = "Withdrawn.", body = crate::players::store::Payment),
        (status = 200, description = "A replay: the first answer.", body = crate::players::store::Payment),
        (status = 409, description = "The key was used with another amount or kind, or by the back office.", body = crate::error::ErrorBody, example = json!({"code": 409, "message": "Idempotency-Key was used for another request"})),
        (status = 422, description = "More than the cash balance (code 100), or the KYC tier forbids withdrawals (code 111).", body = crate::error::ErrorBody, example = json!({"code": 100, "message": "Player has not enough funds to process an action"})),
    ))]
async fn withdraw(
    state: State<AppState>,
    session: PlayerSession,
    headers: HeaderMap,
    body: JsonBody<CashierRequest>,
) -> AppResult<Response> {
    cashier(state, session, headers, body, EntryKind::Withdrawal).await
}

/// The player's own deposit or withdrawal: §2's idempotency, gated by the
/// player's KYC tier.
async fn cashier(
    State(state): State<AppState>,
    session: PlayerSession,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CashierRequest>,
    kind: EntryKind,
) -> AppResult<Response> {
    let movement = Movement {
        operator: session.tenant.id,
        origin: &session.origin,
        requester: Requester::Player(&session.tenant.document),
    };
    let ask = match (&body.bonus_code, body.forfeit_bonus) {
        (Some(code), _) if kind == EntryKind::Deposit => BonusAsk::Code(code),
        (_, true) if kind == EntryKind::Withdrawal => BonusAsk::Forfeit,
        _ => BonusAsk::Nothing,
    };
    movement.answer(&state.pool, &session.user_id, &headers, kind, body.amount, ask).await
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"tier": 1, "note": "passport checked"}))]
struct KycChange {
    #[schema(minimum = 0, maximum = 2)]
    tier: i16,
    /// 1 to 1000 characters, trimmed.
    note: String,
}

/// `PUT /v1/players/{user_id}/kyc` (admin, compliance).
#[utoipa::path(put, path = "/v1/players/{user_id}/kyc", tag = "back office", operation_id = "set_kyc",
    params(("user_id" = String, Path, description = "The player's id, percent-encoded.", example = "demo")), request_body = KycChange,
    responses((status = 200, description = "The player's tier.", body = store::KycView), (status = 404, description = "No such player (code 101).", body = crate::error::ErrorBody, example = json!({"code": 101, "message": "Player is invalid"}))))]
async fn set_kyc(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(raw): PathParams<String>,
    JsonBody(body): JsonBody<KycChange>,
) -> AppResult<Json<store::KycView>> {
    let user_id = UserId::try_from(raw).map_err(|e| AppError::bad_request("user_id", e))?;
    if !(0..=2).contains(&body.tier) {
        return Err(AppError::bad_request("tier", "must be 0, 1 or 2"));
    }
    let note = fields::note(body.note)?;
    let view =
        store::set_kyc_tier(&state.pool, caller.operator, &caller.origin, &user_id, body.tier, &note).await?;
    Ok(Json(view))
}
