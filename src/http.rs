//! HTTP plumbing shared by every route: extractors whose rejections are
//! contract errors (JSON body, path and query parameters), back-office
//! authentication, JSON answers for unknown routes and methods, and the
//! table of routes outside the back office.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::routing::{on, MethodFilter};
use axum::Router;
use serde::de::DeserializeOwned;

use crate::error::AppError;
use crate::AppState;

/// One route: a method on a path, as axum writes it (`/v1/players/{user_id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
}

/// Routes outside the back office, each declared with its method so that the
/// service knows what it serves: the API document is checked against this
/// table (with the back office's, [`crate::staff::BackOffice`]) by
/// `tests/openapi.rs`. Declaring costs only at start-up.
#[derive(Default)]
pub struct Routes {
    router: Router<AppState>,
    endpoints: Vec<Endpoint>,
}

impl Routes {
    /// Adds `method path`, served by `handler`.
    pub fn route<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("routes use standard methods");
        self.router = self.router.route(path, on(filter, handler));
        self.endpoints.push(Endpoint { method, path });
        self
    }

    /// Applies `wrap` to the routes declared so far (a `route_layer`, say).
    pub fn wrap(mut self, wrap: impl FnOnce(Router<AppState>) -> Router<AppState>) -> Self {
        self.router = wrap(self.router);
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.endpoints.extend(other.endpoints);
        self
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}

/// A JSON body whose rejection is a contract error naming the bad field.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge
            } else {
                AppError::BadRequest("could not read the request body".into())
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Path parameters whose rejection is a contract error naming the path, not
/// axum's plain-text answer (`/v1/players/%FF` is not UTF-8, for one).
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParams(value)),
            Err(rejection) => Err(AppError::bad_request("path", rejection.body_text())),
        }
    }
}

/// Query parameters whose rejection is a contract error naming the query.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(QueryParams(value)),
            Err(rejection) => Err(AppError::bad_request("query", rejection.body_text())),
        }
    }
}

/// Deserialises `bytes` as one JSON value and nothing after it, naming the
/// field at fault in the error (`body` when the JSON itself is malformed).
///
/// Valid bodies, nearly all of them, are parsed once without tracking the
/// path; only a body that fails is parsed again to find the field to name.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    serde_json::from_slice(bytes).map_err(|_| json_rejection::<T>(bytes))
}

/// The error for a body that does not deserialise as a `T`.
fn json_rejection<T: DeserializeOwned>(bytes: &[u8]) -> AppError {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    let error = match serde_path_to_error::deserialize::<_, T>(&mut *deserializer) {
        Ok(_) => match deserializer.end() {
            Err(error) => return AppError::bad_request("body", error),
            Ok(()) => return AppError::bad_request("body", "could not be parsed"),
        },
        Err(error) => error,
    };
    let inner = error.inner();
    let path = error.path().to_string();
    let parent = if path == "." || path == "?" { None } else { Some(path) };
    let message = inner.to_string();
    let missing = message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next());
    let field = match (parent, missing) {
        // serde reports a missing field at its parent; name the field itself.
        (parent, Some(name)) => parent.map_or(name.to_string(), |p| format!("{p}.{name}")),
        (Some(path), None) if !inner.is_syntax() && !inner.is_eof() => path,
        _ => "body".to_string(),
    };
    AppError::bad_request(&field, error.into_inner())
}

/// The token of an `Authorization: Bearer <token>` header, if there is a
/// non-empty one.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

pub async fn route_not_found() -> AppError {
    AppError::RouteNotFound
}

pub async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}
