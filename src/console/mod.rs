//! The back-office console: a web page for staff, served by this binary at
//! `/console/`, on top of the JSON back-office API.
//!
//! - The page is one HTML file, a script and a stylesheet, committed as they
//!   are served and embedded in the binary ([`assets`]): no build step, no
//!   CDN, works offline.
//! - Staff sign in with email and password ([`session`]); the session is an
//!   HttpOnly, SameSite=Strict cookie (`Secure` behind TLS). With it the page
//!   calls the same `/v1/…` back-office routes a bearer token does, each
//!   request carrying the session's CSRF token in `X-CSRF-Token`: the
//!   back office's [`crate::staff::authenticate`] accepts either, and the
//!   route's permission is checked the same way for both.
//!
//! The routes here are the console's own, not part of the JSON API:
//! `GET /console/` and its assets, and `/console/api/sign-in`, `sign-out`
//! and `session`, which only the page calls.

pub mod assets;
pub mod session;

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::accounts::lockout::{self, Door, Failure};
use crate::audit::{self, Actor, Origin};
use crate::error::{AppError, AppResult};
use crate::http::JsonBody;
use crate::ops::observe::RequestId;
use crate::staff::permissions::{allows, Permission};
use crate::staff::{Identity, Role};
use crate::AppState;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "wallet_console";
/// The header every cookie-authenticated request carries its CSRF token in.
pub static X_CSRF_TOKEN: HeaderName = HeaderName::from_static("x-csrf-token");

/// The console's routes: the page, its assets, and its session endpoints.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(|| async { Redirect::permanent("/console/") }))
        .route("/console/", get(assets::index))
        .route("/console/assets/{file}", get(assets::asset))
        .route("/console/api/sign-in", post(sign_in))
        .route("/console/api/sign-out", post(sign_out))
        .route("/console/api/session", get(current))
}

/// The session cookie's value in `headers`, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// Whether the request's CSRF token is the one of session `token`.
fn csrf_matches(headers: &HeaderMap, token: &str) -> bool {
    let sent = headers.get(&X_CSRF_TOKEN).map(HeaderValue::as_bytes).unwrap_or_default();
    bool::from(sent.ct_eq(session::csrf_token(token).as_bytes()))
}

/// Who a request without a bearer token is, by its console session:
/// `Ok(None)` without a session cookie or with a dead session (401), and
/// [`AppError::CsrfRefused`] (403) when the CSRF token is missing or wrong,
/// whatever the method.
pub async fn cookie_identity(state: &AppState, headers: &HeaderMap) -> AppResult<Option<Identity>> {
    let Some(token) = session_cookie(headers) else { return Ok(None) };
    if !csrf_matches(headers, token) {
        return Err(AppError::CsrfRefused);
    }
    Ok(session::identity(&state.pool, token).await?.map(|(identity, _)| identity))
}

/// Whether the request came over TLS, as the proxy in front says.
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

fn cookie(headers: &HeaderMap, value: &str, max_age_seconds: i64) -> HeaderValue {
    let secure = if over_tls(headers) { "; Secure" } else { "" };
    let text = format!(
        "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_seconds}{secure}"
    );
    HeaderValue::from_str(&text).expect("a cookie of hex digits is a header value")
}

#[derive(Deserialize)]
struct Credentials {
    email: String,
    password: String,
}

/// What the page knows about its session.
#[derive(Serialize)]
pub struct SessionView {
    pub staff_id: Option<Uuid>,
    pub email: String,
    pub role: Role,
    /// The staff member's operator; `null` for platform staff.
    pub operator: Option<String>,
    /// What the role may do, by [`Permission::as_str`] name, on any operator
    /// in scope: the page shows nothing else, and the server refuses it anyway.
    pub permissions: Vec<&'static str>,
    /// The operators the page can switch between: every one for platform
    /// staff, the own one for operator staff.
    pub operators: Vec<OperatorView>,
    pub csrf_token: String,
    pub idle_minutes: i32,
}

#[derive(Serialize)]
pub struct OperatorView {
    pub code: String,
    pub name: String,
}

fn view(state: &AppState, identity: &Identity, email: String, token: &str) -> SessionView {
    let platform = identity.operator.is_none();
    let permissions = Permission::ALL
        .into_iter()
        .filter(|p| allows(identity.role, platform, *p))
        .map(Permission::as_str)
        .collect();
    let mut operators: Vec<OperatorView> = state
        .operators
        .all()
        .into_iter()
        .filter(|t| identity.operator.is_none_or(|own| own == t.id))
        .map(|t| OperatorView { code: t.code.clone(), name: t.document.name.clone() })
        .collect();
    operators.sort_by(|a, b| a.code.cmp(&b.code));
    SessionView {
        staff_id: identity.staff_id,
        email,
        role: identity.role,
        operator: identity.operator.and_then(|id| state.operators.by_id(id)).map(|t| t.code.clone()),
        permissions,
        operators,
        csrf_token: session::csrf_token(token),
        idle_minutes: session::IDLE_MINUTES,
    }
}

/// `POST /console/api/sign-in` `{"email","password"}` → **200** the session,
/// with its cookie. Only JSON is taken: a cross-site form cannot send it, so a
/// page elsewhere cannot sign a browser in to an account of its choosing.
async fn sign_in(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Credentials>,
) -> AppResult<Response> {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("application/json"));
    if !json {
        return Err(AppError::bad_request("content-type", "must be application/json"));
    }
    let (_, email_key) = crate::accounts::fields::email(&body.email)?;
    let target = session::sign_in_target(&state.pool, &email_key).await?;
    let request = Some(request_id);
    let staff = target.staff.as_ref().map(|(id, operator, _)| (*id, *operator));
    let attempt = lockout::Attempt {
        door: Door::Console { operator: staff.and_then(|(_, operator)| operator) },
        origin: Origin { actor: Actor::System, request_id: request.clone() },
        email_key: &email_key,
        target: match staff {
            Some((staff_id, _)) => audit::target("staff", staff_id),
            None => audit::target("email", &email_key),
        },
        max_failures: session::MAX_FAILURES,
    };
    let failure = |failure| attempt.failed(&state.pool, failure);
    if target.locked_until.is_some() {
        failure(Failure::Locked).await?;
        return Err(AppError::LoginLocked);
    }
    let stored = target.staff.as_ref().map(|(_, _, hash)| hash.clone());
    let matched = state.passwords.verify(body.password, stored).await?;
    let Some((staff_id, operator)) = staff.filter(|_| matched) else {
        failure(if staff.is_some() { Failure::WrongPassword } else { Failure::UnknownEmail }).await?;
        return Err(AppError::BadCredentials);
    };
    let token = session::new_token();
    session::open(&state.pool, staff_id, operator, &email_key, &token, request).await?;
    let Some((identity, email)) = session::identity(&state.pool, &token).await? else {
        return Err(AppError::internal(anyhow::anyhow!("a session just opened is not live")));
    };
    let max_age = i64::from(session::MAX_HOURS) * 3600;
    let mut response = Json(view(&state, &identity, email, &token)).into_response();
    response.headers_mut().insert(SET_COOKIE, cookie(&headers, &token, max_age));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `POST /console/api/sign-out` → **204**, the session ended and its cookie
/// cleared. Needs the session's CSRF token like every other request.
async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    let Some(token) = session_cookie(&headers) else { return Err(AppError::Unauthorized) };
    if !csrf_matches(&headers, token) {
        return Err(AppError::CsrfRefused);
    }
    session::end(&state.pool, token).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(SET_COOKIE, cookie(&headers, "", 0));
    Ok(response)
}

/// `GET /console/api/session` → **200** the session of the cookie (what the
/// page loads first, its CSRF token included), or **401**. A read with no
/// effect, so it needs no CSRF token: a page of another site cannot read
/// the answer, and a SameSite=Strict cookie is not sent from there anyway.
async fn current(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    let Some(token) = session_cookie(&headers) else { return Err(AppError::Unauthorized) };
    let Some((identity, email)) = session::identity(&state.pool, token).await? else {
        return Err(AppError::Unauthorized);
    };
    let mut response = Json(view(&state, &identity, email, token)).into_response();
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
