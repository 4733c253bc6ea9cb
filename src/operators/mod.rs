//! Operators (whitelabel tenants) as live configuration.
//!
//! - `document`: the operator document, its validation and its flags.
//! - `store`: operators and provider keys in PostgreSQL.
//! - `registry`: every operator held in memory by every instance, refreshed
//!   by `LISTEN/NOTIFY` within milliseconds of a change.
//!
//! Routes: the operator CRUD and provider keys (platform admins), and the
//! public `GET /v1/tenant` every page of a brand's site reads.

pub mod document;
pub mod registry;
pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::header::{HOST, IF_MATCH};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
#[allow(unused_imports)]
use serde_json::json;
use serde_json::Value;
use uuid::Uuid;

use crate::audit::{self, Action};
use crate::error::{AppError, AppResult};
use crate::http::{JsonBody, PathParams, QueryParams, Routes};
use crate::staff::{BackOffice, Caller, Permission, X_OPERATOR};
use crate::AppState;
use document::{is_code, Document};
use registry::{Registry, Tenant};

/// The operator routes of the back office.
pub fn back_office() -> BackOffice {
    use Permission::{ManageOperators, ManageProviderKeys};
    BackOffice::default()
        .route(Method::POST, "/v1/operators", ManageOperators, create)
        .route(Method::GET, "/v1/operators", ManageOperators, list)
        .route(Method::GET, "/v1/operators/{code}", ManageOperators, read)
        .route(Method::PATCH, "/v1/operators/{code}", ManageOperators, patch)
        .route(Method::POST, "/v1/operators/{code}/provider-keys", ManageProviderKeys, create_key)
        .route(Method::GET, "/v1/operators/{code}/provider-keys", ManageProviderKeys, list_keys)
        .route(Method::DELETE, "/v1/operators/{code}/provider-keys/{key_id}", ManageProviderKeys, revoke_key)
}

/// The public routes.
pub fn routes() -> Routes {
    Routes::default().route(Method::GET, "/v1/tenant", tenant)
}

/// An operator document as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OperatorView {
    pub code: String,
    #[serde(flatten)]
    pub document: Document,
    pub version: i32,
}

fn view(operator: store::StoredOperator) -> OperatorView {
    OperatorView { code: operator.code, document: operator.document, version: operator.version }
}

/// Splits a request body into the operator code and the document proper.
fn take_code(body: &mut Value) -> AppResult<String> {
    let object =
        body.as_object_mut().ok_or_else(|| AppError::bad_request("body", "must be a JSON object"))?;
    let code = match object.remove("code") {
        Some(Value::String(code)) if is_code(&code) => code,
        Some(_) => return Err(AppError::bad_request("code", "must match ^[a-z0-9_-]{1,64}$")),
        None => return Err(AppError::bad_request("code", "is required")),
    };
    // A document read back and posted again carries its version: ignore it.
    object.remove("version");
    Ok(code)
}

#[utoipa::path(post, path = "/v1/operators", tag = "back office", operation_id = "create_operator",
    request_body(content = Object, description = "`code` and the operator document (docs/API.md §6).", example = json!({"code": "bluestar", "name": "Bluestar Casino", "currencies": ["GBP"], "timezone": "Europe/London", "domains": ["bluestar.example"], "theme": {"primary": "#1a3c8f"}})),
    responses(
        (status = 201, description = "Created, with every default filled in.", body = OperatorView),
        (status = 409, description = "The code exists, or a domain belongs to another operator.", body = crate::error::ErrorBody, example = json!({"code": 409, "message": "domains: bluestar.example belongs to another operator"})),
    ))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(mut body): JsonBody<Value>,
) -> AppResult<(StatusCode, Json<OperatorView>)> {
    let code = take_code(&mut body)?;
    let document = Document::parse(&code, body)?;
    let mut tx = state.pool.begin().await?;
    let (id, version) = store::create(&mut tx, &code, &document).await?;
    let created = OperatorView { code, document, version };
    let entry =
        caller.origin.entry(Some(id), Action::OperatorCreate, audit::target("operator", &created.code));
    audit::record(&mut tx, &entry.after(json(&created)?)).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)))
}

fn json(value: &impl Serialize) -> AppResult<Value> {
    serde_json::to_value(value).map_err(AppError::internal)
}

#[utoipa::path(get, path = "/v1/operators", tag = "back office", operation_id = "list_operators",
    responses((status = 200, description = "Every operator.", body = Vec<OperatorView>)))]
async fn list(State(state): State<AppState>) -> AppResult<Json<Vec<OperatorView>>> {
    Ok(Json(store::load_all(&state.pool).await?.into_iter().map(view).collect()))
}

#[utoipa::path(get, path = "/v1/operators/{code}", tag = "back office", operation_id = "read_operator",
    params(("code" = String, Path, description = "The operator's code.", example = "bluestar")),
    responses((status = 200, description = "The operator.", body = OperatorView), (status = 404, description = "No operator by that code (code 120).", body = crate::error::ErrorBody, example = json!({"code": 120, "message": "unknown operator"}))))]
async fn read(
    State(state): State<AppState>,
    PathParams(code): PathParams<String>,
) -> AppResult<Json<OperatorView>> {
    let operator = store::load(&state.pool, &code).await?.ok_or(AppError::OperatorNotFound)?;
    Ok(Json(view(operator)))
}

/// The version an `If-Match` header names: `"3"`, `W/"3"` or `3`.
fn if_match(headers: &HeaderMap) -> AppResult<Option<i32>> {
    let Some(value) = headers.get(IF_MATCH) else { return Ok(None) };
    let text = value.to_str().unwrap_or_default().trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse()
        .map(Some)
        .map_err(|_| AppError::bad_request("If-Match", "must be the document's version, as \"3\""))
}

/// `PATCH /v1/operators/{code}`: a JSON merge patch (RFC 7396) of the document.
#[utoipa::path(patch, path = "/v1/operators/{code}", tag = "back office", operation_id = "patch_operator",
    params(("code" = String, Path, description = "The operator's code.", example = "bluestar"), ("If-Match" = Option<String>, Header, description = "The version the patch is for: `\"3\"`, `W/\"3\"` or `3`.")),
    request_body(content = Object, content_type = "application/json", description = "A JSON merge patch (RFC 7396) of the document.",
        example = json!({"theme": {"primary": "#0b2a6f"}})),
    responses(
        (status = 200, description = "The operator as patched.", body = OperatorView),
        (status = 404, description = "No operator by that code (code 120).", body = crate::error::ErrorBody, example = json!({"code": 120, "message": "unknown operator"})),
        (status = 409, description = "A domain belongs to another operator.", body = crate::error::ErrorBody, example = json!({"code": 409, "message": "domains: bluestar.example belongs to another operator"})),
        (status = 412, description = "`If-Match` names another version.", body = crate::error::ErrorBody, example = json!({"code": 412, "message": "If-Match: the operator is at version 4"})),
    ))]
async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(code): PathParams<String>,
    headers: HeaderMap,
    JsonBody(patch): JsonBody<Value>,
) -> AppResult<Json<OperatorView>> {
    let expected = if_match(&headers)?;
    let Value::Object(mut patch) = patch else {
        return Err(AppError::bad_request("body", "a merge patch of an operator is a JSON object"));
    };
    match patch.remove("code") {
        None => {}
        Some(Value::String(same)) if same == code => {}
        Some(_) => return Err(AppError::bad_request("code", "cannot be changed")),
    }
    patch.remove("version");
    let mut tx = state.pool.begin().await?;
    let (id, mut current, version) = store::lock(&mut tx, &code).await?;
    if expected.is_some_and(|expected| expected != version) {
        return Err(AppError::PreconditionFailed(format!("the operator is at version {version}")));
    }
    let before = current.clone();
    json_patch::merge(&mut current, &Value::Object(patch));
    let document = Document::parse(&code, current)?;
    let version = store::update(&mut tx, id, &document).await?;
    let updated = OperatorView { code, document, version };
    let entry =
        caller.origin.entry(Some(id), Action::OperatorUpdate, audit::target("operator", &updated.code));
    audit::record(&mut tx, &entry.before(before).after(json(&updated)?)).await?;
    tx.commit().await?;
    Ok(Json(updated))
}

#[derive(Serialize, utoipa::ToSchema)]
struct NewKey {
    key_id: Uuid,
    /// 64 hex digits; shown only this once.
    secret: String,
}

#[utoipa::path(post, path = "/v1/operators/{code}/provider-keys", tag = "back office", operation_id = "create_provider_key",
    params(("code" = String, Path, description = "The operator's code.", example = "bluestar")),
    responses((status = 201, description = "A new provider key.", body = NewKey), (status = 404, description = "No operator by that code (code 120).", body = crate::error::ErrorBody, example = json!({"code": 120, "message": "unknown operator"}))))]
async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(code): PathParams<String>,
) -> AppResult<(StatusCode, Json<NewKey>)> {
    let mut tx = state.pool.begin().await?;
    let (id, _, _) = store::lock(&mut tx, &code).await?;
    let (key_id, secret) = store::create_key(&mut tx, id).await?;
    // The secret is not audited: the key's id says which key it was.
    let entry =
        caller.origin.entry(Some(id), Action::ProviderKeyCreate, audit::target("provider_key", key_id));
    audit::record(&mut tx, &entry.after(serde_json::json!({"key_id": key_id, "operator": code}))).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(NewKey { key_id, secret })))
}

#[utoipa::path(get, path = "/v1/operators/{code}/provider-keys", tag = "back office", operation_id = "list_provider_keys",
    params(("code" = String, Path, description = "The operator's code.", example = "bluestar")),
    responses((status = 200, description = "The operator's keys, without secrets.", body = Vec<store::KeyView>), (status = 404, description = "No operator by that code (code 120).", body = crate::error::ErrorBody, example = json!({"code": 120, "message": "unknown operator"}))))]
async fn list_keys(
    State(state): State<AppState>,
    PathParams(code): PathParams<String>,
) -> AppResult<Json<Vec<store::KeyView>>> {
    let id = store::id_of(&state.pool, &code).await?.ok_or(AppError::OperatorNotFound)?;
    Ok(Json(store::list_keys(&state.pool, id).await?))
}

#[utoipa::path(delete, path = "/v1/operators/{code}/provider-keys/{key_id}", tag = "back office", operation_id = "revoke_provider_key",
    params(("code" = String, Path, description = "The operator's code.", example = "bluestar"), ("key_id" = String, Path, description = "The key's id.")),
    responses(
        (status = 204, description = "Revoked (also if it was already)."),
        (status = 404, description = "No operator by that code (code 120), or no such key (404).", body = crate::error::ErrorBody, example = json!({"code": 404, "message": "no such provider key"})),
    ))]
async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((code, key_id)): PathParams<(String, String)>,
) -> AppResult<StatusCode> {
    let key_id = Uuid::parse_str(&key_id).map_err(|_| AppError::KeyNotFound)?;
    let mut tx = state.pool.begin().await?;
    let (id, _, _) = store::lock(&mut tx, &code).await?;
    let before = store::revoke_key(&mut tx, id, key_id).await?.ok_or(AppError::KeyNotFound)?;
    if before.revoked_at.is_none() {
        let entry =
            caller.origin.entry(Some(id), Action::ProviderKeyRevoke, audit::target("provider_key", key_id));
        audit::record(&mut tx, &entry.before(json(&before)?)).await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The operator a player-facing request is for: the one whose `domains` hold
/// the request's `Host` (port ignored), else the one `X-Operator` names;
/// neither is 404 code 120. Read from memory.
pub struct TenantOf(pub Arc<Tenant>);

impl<S: Send + Sync> FromRequestParts<S> for TenantOf
where
    AppState: axum::extract::FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        resolve(&state.operators, &parts.headers).map(TenantOf).ok_or(AppError::OperatorNotFound)
    }
}

fn resolve(registry: &Arc<Registry>, headers: &HeaderMap) -> Option<Arc<Tenant>> {
    let host = headers.get(HOST).and_then(|h| h.to_str().ok()).map(|host| {
        let name = host.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()));
        name.map_or(host, |(name, _)| name).to_ascii_lowercase()
    });
    host.and_then(|host| registry.by_domain(&host)).or_else(|| {
        headers.get(&X_OPERATOR).and_then(|v| v.to_str().ok()).and_then(|code| registry.by_code(code))
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct TenantQuery {
    /// ISO 3166-1 alpha-2, any case: the flags are evaluated for it.
    #[param(pattern = "^[A-Za-z]{2}$", example = "GB")]
    country: Option<String>,
}

/// What a brand's pages read: served from memory.
#[derive(Serialize, utoipa::ToSchema)]
struct TenantView<'a> {
    code: &'a str,
    name: &'a str,
    #[schema(value_type = Vec<String>)]
    currencies: &'a [String],
    #[schema(value_type = BTreeMap<String, String>)]
    theme: &'a BTreeMap<String, String>,
    features: BTreeMap<String, bool>,
}

#[utoipa::path(get, path = "/v1/tenant", tag = "tenant", operation_id = "tenant",
    params(TenantQuery),
    responses((status = 200, description = "The brand: name, currencies, theme, and every flag for the country.", body = TenantView,
        example = json!({"code": "bluestar", "name": "Bluestar Casino", "currencies": ["GBP"],
            "theme": {"primary": "#1a3c8f"}, "features": {"bonuses": true, "casino": true, "player_registration": true}}))))]
async fn tenant(
    TenantOf(tenant): TenantOf,
    QueryParams(query): QueryParams<TenantQuery>,
) -> AppResult<Response> {
    let country = query.country.as_deref().map(document::country).transpose()?;
    let doc = &tenant.document;
    let view = TenantView {
        code: &tenant.code,
        name: &doc.name,
        currencies: &doc.currencies,
        theme: &doc.theme,
        features: doc.flags_for(country.as_deref()),
    };
    Ok(Json(view).into_response())
}
