//! Back-office staff, their roles, and the one table of what each role may do.
//!
//! Every back-office route is declared through [`BackOffice::route`] with the
//! [`Permission`] it needs, so a route cannot be added without one. Each
//! request then passes two checks: [`authenticate`] (one layer over the whole
//! back office: who is calling, 401 otherwise) and the route's own
//! authorisation (may this caller do this, and on which operator: 403 or
//! 404 code 120 otherwise). Handlers receive the result as a [`Caller`].

pub mod permissions;
pub mod store;

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{HeaderName, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::{Json, Router};
use serde::Deserialize;
#[allow(unused_imports)]
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::audit::{Actor, Origin};
use crate::error::{AppError, AppResult};
use crate::http::{JsonBody, PathParams};
use crate::operators::document::is_code;
use crate::ops::observe::RequestId;
use crate::AppState;
pub use permissions::{Permission, Role};

/// The header platform staff name the operator they act on with.
pub static X_OPERATOR: HeaderName = HeaderName::from_static("x-operator");

/// Who is calling, before authorisation.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `None` for the bootstrap `ADMIN_TOKEN`.
    pub staff_id: Option<Uuid>,
    pub role: Role,
    /// `None` for platform staff.
    pub operator: Option<i16>,
}

/// An authorised back-office caller and the operator it acts on.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Identity,
    /// The operator in scope: the operator staff's own, or the one platform
    /// staff named with `X-Operator` (`default` when they named none).
    pub operator: i16,
    /// Who the audit trail says made a change, and in which request.
    pub origin: Origin,
}

impl Caller {
    pub fn is_platform(&self) -> bool {
        self.identity.operator.is_none()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Fail closed: a handler asking for a caller on a route that was not
        // declared through `BackOffice::route` gets no access at all.
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            AppError::internal(anyhow::anyhow!("a back-office handler runs outside BackOffice::route"))
        })
    }
}

/// One declared back-office route.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub permission: Permission,
}

/// The back office as a list of routes, each with its permission.
#[derive(Default)]
pub struct BackOffice {
    router: Router<AppState>,
    specs: Vec<RouteSpec>,
}

impl BackOffice {
    /// Adds `method path`, open to callers whose role has `permission`.
    pub fn route<H, T>(
        mut self,
        method: Method,
        path: &'static str,
        permission: Permission,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("back-office routes use standard methods");
        let guarded =
            on(filter, handler).route_layer(middleware::from_fn(move |request: Request, next: Next| {
                authorise(permission, request, next)
            }));
        self.router = self.router.route(path, guarded);
        self.specs.push(RouteSpec { method, path, permission });
        self
    }

    pub fn merge(mut self, other: BackOffice) -> Self {
        self.router = self.router.merge(other.router);
        self.specs.extend(other.specs);
        self
    }

    /// Every route declared, for tests and the API document.
    pub fn specs(&self) -> &[RouteSpec] {
        &self.specs
    }

    /// Every route declared, as methods and paths.
    pub fn endpoints(&self) -> Vec<crate::http::Endpoint> {
        self.specs.iter().map(|s| crate::http::Endpoint { method: s.method.clone(), path: s.path }).collect()
    }

    /// The router, with authentication in front of every route.
    pub fn into_router(self, state: AppState) -> Router<AppState> {
        self.router.route_layer(middleware::from_fn_with_state(state, authenticate))
    }
}

/// Layer over the back office: the bearer token, or else a console session
/// cookie with its CSRF token, names an identity; or 401 (403 for a cookie
/// without its CSRF token).
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let found = match crate::http::bearer_token(request.headers()) {
        Some(token) if bool::from(token.as_bytes().ct_eq(state.admin_token.as_bytes())) => {
            Ok(Some(Identity { staff_id: None, role: Role::Admin, operator: None }))
        }
        Some(token) => store::find_by_token(&state.pool, &token_hash(token)).await,
        // The console's session cookie, with its CSRF token.
        None => crate::console::cookie_identity(&state, request.headers()).await,
    };
    let identity = match found {
        Ok(found) => found,
        Err(error) => return error.into_response(),
    };
    match identity {
        Some(identity) => {
            request.extensions_mut().insert(identity);
            request.extensions_mut().insert(state.operators.clone());
            next.run(request).await
        }
        None => AppError::Unauthorized.into_response(),
    }
}

/// Route layer: may the identity do `permission`, and on which operator.
async fn authorise(permission: Permission, mut request: Request, next: Next) -> Response {
    let (Some(identity), Some(registry)) = (
        request.extensions().get::<Identity>().cloned(),
        request.extensions().get::<Arc<crate::operators::registry::Registry>>().cloned(),
    ) else {
        return AppError::internal(anyhow::anyhow!("back-office route without authentication"))
            .into_response();
    };
    if !permissions::allows(identity.role, identity.operator.is_none(), permission) {
        return AppError::Forbidden.into_response();
    }
    let operator = match identity.operator {
        Some(own) => own,
        None => {
            let named = request.headers().get(&X_OPERATOR).map(|v| v.to_str().unwrap_or("\u{0}"));
            match named {
                None => crate::domain::DEFAULT_OPERATOR,
                Some(code) => match registry.by_code(code) {
                    Some(tenant) => tenant.id,
                    None => return AppError::OperatorNotFound.into_response(),
                },
            }
        }
    };
    let actor = match identity.staff_id {
        Some(staff_id) => Actor::Staff(staff_id.to_string()),
        None => Actor::Platform,
    };
    let request_id = request.extensions().get::<RequestId>().map(|RequestId(id)| id.clone());
    let origin = Origin { actor, request_id };
    request.extensions_mut().insert(Caller { identity, operator, origin });
    next.run(request).await
}

/// What a bearer token is stored as.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// `POST /v1/staff`, `GET /v1/staff`, `DELETE /v1/staff/{staff_id}`.
pub fn routes() -> BackOffice {
    BackOffice::default()
        .route(Method::POST, "/v1/staff", Permission::ManageStaff, create)
        .route(Method::GET, "/v1/staff", Permission::ManageStaff, list)
        .route(Method::DELETE, "/v1/staff/{staff_id}", Permission::ManageStaff, delete)
        .route(Method::PUT, "/v1/staff/{staff_id}/password", Permission::ManageStaff, set_password)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "cash@bluestar.example", "role": "finance", "operator": "bluestar"}))]
struct NewStaff {
    email: String,
    role: Role,
    /// An operator code; absent or null for platform staff.
    #[serde(default)]
    operator: Option<String>,
    /// A console sign-in password (10..=128 characters); absent: none.
    #[serde(default)]
    password: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

/// `PUT /v1/staff/{staff_id}/password` `{"password"}` → **204**: sets or
/// replaces a staff member's console password and ends its console sessions.
#[utoipa::path(put, path = "/v1/staff/{staff_id}/password", tag = "back office", operation_id = "set_staff_password",
    params(("staff_id" = String, Path, description = "The staff member.")),
    request_body = NewPassword,
    responses(
        (status = 204, description = "Set; the member's console sessions are ended."),
        (status = 400, description = "A password of 10 to 128 characters is required.", body = crate::error::ErrorBody, example = json!({"code": 400, "message": "password: must be 10 to 128 characters"})),
        (status = 404, description = "No such staff member in the caller's scope.", body = crate::error::ErrorBody, example = json!({"code": 404, "message": "no such staff member"})),
        (status = 409, description = "Another live staff member has a password for this email.", body = crate::error::ErrorBody, example = json!({"code": 409, "message": "another staff member with this email has a password"})),
    ))]
async fn set_password(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(raw): PathParams<String>,
    JsonBody(body): JsonBody<NewPassword>,
) -> AppResult<StatusCode> {
    let staff_id = Uuid::parse_str(&raw).map_err(|_| AppError::StaffNotFound)?;
    let password = crate::accounts::fields::password(body.password)?;
    let hash = state.passwords.hash(password).await?;
    let scope = caller.identity.operator;
    if crate::console::session::set_password(&state.pool, staff_id, scope, &hash, &caller.origin).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::StaffNotFound)
    }
}

#[utoipa::path(post, path = "/v1/staff", tag = "back office", operation_id = "create_staff",
    request_body = NewStaff,
    responses(
        (status = 201, description = "Created; the token is shown only this once.", body = store::NewStaffView),
        (status = 403, description = "An operator admin asked for staff of another operator or platform staff.", body = crate::error::ErrorBody, example = json!({"code": 403, "message": "your role does not allow this"})),
        (status = 404, description = "No operator by that code (code 120).", body = crate::error::ErrorBody, example = json!({"code": 120, "message": "unknown operator"})),
        (status = 409, description = "Live staff with this email exist at the operator.", body = crate::error::ErrorBody, example = json!({"code": 409, "message": "staff with this email exist"})),
    ))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<NewStaff>,
) -> AppResult<(StatusCode, Json<store::NewStaffView>)> {
    let email = body.email.trim().to_owned();
    if !(3..=254).contains(&email.len()) || !email.contains('@') || crate::domain::storable(&email).is_err() {
        return Err(AppError::bad_request("email", "must be an email address"));
    }
    let operator = match (&body.operator, caller.identity.operator) {
        (None, None) => None,
        (Some(code), None) => {
            if !is_code(code) {
                return Err(AppError::bad_request("operator", "must be an operator code"));
            }
            Some(state.operators.by_code(code).ok_or(AppError::OperatorNotFound)?.id)
        }
        // Operator admins make staff of their own operator only.
        (None, Some(own)) => Some(own),
        (Some(code), Some(own)) => match state.operators.by_code(code) {
            Some(tenant) if tenant.id == own => Some(own),
            _ => return Err(AppError::Forbidden),
        },
    };
    let password_hash = match body.password {
        Some(password) => Some(state.passwords.hash(crate::accounts::fields::password(password)?).await?),
        None => None,
    };
    let created =
        store::create(&state.pool, operator, &email, body.role, password_hash.as_deref(), &caller.origin)
            .await?;
    Ok((StatusCode::CREATED, Json(created.with_operator_code(&state.operators))))
}

#[utoipa::path(get, path = "/v1/staff", tag = "back office", operation_id = "list_staff",
    responses((status = 200, description = "Live staff the caller may see.", body = Vec<store::StaffView>)))]
async fn list(State(state): State<AppState>, caller: Caller) -> AppResult<Json<Vec<store::StaffView>>> {
    let staff = store::list(&state.pool, caller.identity.operator).await?;
    Ok(Json(staff.into_iter().map(|s| s.with_operator_code(&state.operators)).collect()))
}

#[utoipa::path(delete, path = "/v1/staff/{staff_id}", tag = "back office", operation_id = "delete_staff",
    params(("staff_id" = String, Path, description = "A staff member's id.")),
    responses(
        (status = 204, description = "Deleted: the token no longer works."),
        (status = 404, description = "No such staff member the caller may see.", body = crate::error::ErrorBody, example = json!({"code": 404, "message": "no such staff member"})),
    ))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(raw): PathParams<String>,
) -> AppResult<StatusCode> {
    let staff_id = Uuid::parse_str(&raw).map_err(|_| AppError::StaffNotFound)?;
    if store::delete(&state.pool, staff_id, caller.identity.operator, &caller.origin).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::StaffNotFound)
    }
}
