//! The OpenAPI 3.1 document of every route, served at `GET /openapi.json`,
//! and a reference page over it at `/docs` (Swagger UI, its assets compiled
//! into the binary: nothing is fetched at run time).
//!
//! The document is generated from the code: each handler carries a
//! `#[utoipa::path]` attribute next to it (its parameters, body, answers and
//! the errors only it gives), and the wire types derive `ToSchema`. What many
//! routes share is added here, from the route tables themselves, by
//! [`Surface`]: the security scheme and the errors every back-office route,
//! player route or provider route may answer (401, 403, 404 code 120, 429,
//! 503, …). `tests/openapi.rs` fails when a served route is missing from the
//! document, or a documented one is not served.
//!
//! The document is built once, on first use, and served as the same bytes.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{header, Method};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{json, Value};
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, OpenApi as Document, Ref, RefOr, Required, ResponseBuilder,
    SecurityRequirement, Type,
};
use utoipa::{Modify, OpenApi};

use crate::error::AppError;
use crate::http::Routes;

/// The document, with what [`Surface`] adds.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "wallet",
        description = "A real-money wallet and player-account service for online casinos. \
            Money is an integer number of minor units; timestamps are RFC 3339 in UTC; \
            every error body is exactly `{\"code\": <int>, \"message\": \"…\"}`, where `code` \
            is a wallet error code (100 insufficient funds, 101 unknown player, 102 rollback \
            of a rollback, 107 game forbidden, 110 player blocked, 111 KYC tier forbids, \
            106 over the bonus max bet, 113 session expired, 120 unknown operator, 121 feature \
            disabled, 122 a bonus is already active, 123 withdrawal needs forfeit_bonus, 124 bonus \
            not eligible, 130 under age, 154 currency mismatch) or else the HTTP status. The prose contract is docs/API.md."
    ),
    paths(
        crate::provider::process,
        crate::players::create_player,
        crate::players::get_player,
        crate::players::update_player,
        crate::players::deposit,
        crate::players::withdraw,
        crate::players::transactions,
        crate::accounts::set_kyc,
        crate::accounts::register,
        crate::accounts::login,
        crate::accounts::logout,
        crate::accounts::me,
        crate::accounts::transactions,
        crate::accounts::sessions,
        crate::accounts::end_session,
        crate::accounts::deposit,
        crate::accounts::withdraw,
        crate::bonus::my_bonuses,
        crate::bonus::forfeit_mine,
        crate::bonus::player_bonuses,
        crate::bonus::grant,
        crate::accounts::streams::events,
        crate::accounts::streams::ws,
        crate::responsible::my_limits,
        crate::responsible::set_my_limits,
        crate::responsible::time_out,
        crate::responsible::self_exclusion,
        crate::responsible::player_limits,
        crate::responsible::lower_player_limits,
        crate::reports::users,
        crate::reports::casino,
        crate::reports::games,
        crate::reports::series,
        crate::players::profile::search,
        crate::players::profile::account,
        crate::staff::set_password,
        crate::ops::reconcile::start_run,
        crate::ops::reconcile::latest_run,
        crate::ops::reconcile::one_run,
        crate::operators::create,
        crate::operators::list,
        crate::operators::read,
        crate::operators::patch,
        crate::operators::create_key,
        crate::operators::list_keys,
        crate::operators::revoke_key,
        crate::operators::tenant,
        crate::staff::create,
        crate::staff::list,
        crate::staff::delete,
        crate::audit::list,
        crate::audit::verify,
        crate::catalog::file_game,
        crate::catalog::list_games,
        crate::catalog::create_campaign,
        crate::catalog::list_campaigns,
        crate::catalog::read_campaign,
        crate::catalog::patch_campaign,
        crate::ops::live,
        crate::ops::ready,
        crate::ops::prometheus,
        openapi_json,
        reference_page,
        reference_index,
        reference_file,
    ),
    // Schemas that answer types (`IntoResponses`) refer to without registering them.
    components(schemas(crate::error::ErrorBody, crate::events::BalanceEvent, crate::events::BonusEvent, crate::events::StatusEvent, crate::responsible::PendingView, crate::responsible::store::StatusView)),
    modifiers(&Surface),
    tags(
        (name = "provider", description = "HMAC-signed batches of bets, wins and rollbacks (docs/API.md §1)."),
        (name = "back office", description = "Staff with a bearer token; what each role may call is docs/API.md §7."),
        (name = "player", description = "A brand's players: registration, sessions, their own account (docs/API.md §8)."),
        (name = "responsible gambling", description = "Limits, time-outs and self-exclusions (docs/API.md §9)."),
        (name = "bonuses", description = "The game catalog and bonus campaigns (docs/API.md §10)."),
        (name = "tenant", description = "What a brand's pages read (docs/API.md §6)."),
        (name = "operations", description = "Health, metrics and this document."),
    )
)]
struct ApiDoc;

/// The document as served, built on first use.
pub fn document() -> &'static Value {
    static DOCUMENT: LazyLock<Value> = LazyLock::new(|| {
        let mut document = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
        spell_links(&mut document);
        open_flattened(&mut document);
        document
    });
    &DOCUMENT
}

/// A type that denies unknown fields gets `additionalProperties: false`; once
/// flattened into another (`allOf`, as the operator document is into
/// `OperatorView`), that would refuse the other's own fields: drop it there.
fn open_flattened(document: &mut Value) {
    fn refs_in_all_of(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Array(parts)) = map.get("allOf") {
                    for part in parts {
                        if let Some(Value::String(target)) = part.get("$ref") {
                            found.push(target.trim_start_matches("#/components/schemas/").to_string());
                        }
                    }
                }
                map.values().for_each(|v| refs_in_all_of(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| refs_in_all_of(v, found)),
            _ => {}
        }
    }
    let mut flattened = Vec::new();
    refs_in_all_of(document, &mut flattened);
    let Some(schemas) = document.pointer_mut("/components/schemas").and_then(Value::as_object_mut) else {
        return;
    };
    for name in flattened {
        if let Some(schema) = schemas.get_mut(&name).and_then(Value::as_object_mut) {
            schema.remove("additionalProperties");
        }
    }
}

/// utoipa 5 writes a link's fields in snake case (`operation_id`); OpenAPI
/// spells them in camel case.
fn spell_links(document: &mut Value) {
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else { return };
    let responses = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|operation| operation.get_mut("responses").and_then(Value::as_object_mut))
        .flat_map(|responses| responses.values_mut());
    for response in responses {
        let Some(links) = response.get_mut("links").and_then(Value::as_object_mut) else { continue };
        for link in links.values_mut().filter_map(Value::as_object_mut) {
            for (snake, camel) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(value) = link.remove(snake) {
                    link.insert(camel.to_string(), value);
                }
            }
        }
    }
}

/// The document as served: its JSON, rendered once.
fn document_bytes() -> Bytes {
    static JSON: LazyLock<Bytes> =
        LazyLock::new(|| Bytes::from(serde_json::to_vec(document()).expect("the document serialises")));
    JSON.clone()
}

/// `GET /openapi.json`, `GET /docs` and the page's files: public, outside
/// the overload protection like health and metrics.
pub fn routes() -> Routes {
    Routes::default()
        .route(Method::GET, "/openapi.json", openapi_json)
        .route(Method::GET, "/docs", reference_page)
        .route(Method::GET, "/docs/", reference_index)
        .route(Method::GET, "/docs/{*file}", reference_file)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", operation_id = "openapi_json",
    responses((status = 200, description = "The OpenAPI 3.1 document of every route.",
        content_type = "application/json", body = Object)))]
async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document_bytes()).into_response()
}

/// The API reference page; it lives at `/docs/`.
#[utoipa::path(get, path = "/docs", tag = "operations", operation_id = "reference_page",
    responses((status = 308, description = "To `/docs/`, the reference page.",
        headers(("location" = String, description = "`/docs/`")))))]
async fn reference_page() -> Redirect {
    Redirect::permanent("/docs/")
}

/// The reference page, from the binary.
#[utoipa::path(get, path = "/docs/", tag = "operations", operation_id = "reference_index",
    responses((status = 200, description = "The page.", body = String, content_type = "text/html")))]
async fn reference_index() -> Response {
    reference_file(Path(String::new())).await
}

/// The reference page's files, from the binary.
#[utoipa::path(get, path = "/docs/{file}", tag = "operations", operation_id = "reference_file",
    params(("file" = String, Path, description = "A file of the page; empty for the page itself.")),
    responses(
        (status = 200, description = "The file.", content(
            (String = "text/html"), (String = "text/css"), (String = "text/javascript"),
            (String = "image/png"))),
        (status = 404, description = "No such file.", body = crate::error::ErrorBody,
            example = json!({"code": 404, "message": "no such route"})),
    ))]
async fn reference_file(Path(file): Path<String>) -> Response {
    static CONFIG: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> = LazyLock::new(|| {
        // No validator badge: it would ask a server elsewhere to validate the document.
        Arc::new(utoipa_swagger_ui::Config::from("/openapi.json").validator_url("none"))
    });
    match utoipa_swagger_ui::serve(&file, CONFIG.clone()) {
        Ok(Some(found)) => {
            let content_type = if found.content_type == "application/javascript" {
                "text/javascript".to_string()
            } else {
                found.content_type
            };
            ([(header::CONTENT_TYPE, content_type)], found.bytes.into_owned()).into_response()
        }
        Ok(None) => AppError::RouteNotFound.into_response(),
        Err(error) => AppError::internal(anyhow::anyhow!("reference page: {error}")).into_response(),
    }
}

/// Adds to each operation what its kind of route shares: security, the
/// `X-Operator` header, the errors of authentication, tenancy and overload,
/// and the links schemathesis (and readers) follow from one call to the next.
struct Surface;

/// What kind of route an operation is, by the table it was declared in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Provider,
    BackOffice,
    /// `/v1/auth/register`, `/v1/auth/login`, `/v1/tenant`: for a brand, no token.
    Brand,
    /// `/v1/me…` and logout: a player's session token.
    Player,
    /// Health, metrics and this document.
    Unprotected,
}

fn kind(method: &Method, path: &str, back_office: &HashSet<(Method, String)>) -> Kind {
    let unprotected: HashSet<String> =
        crate::unprotected_routes().endpoints().iter().map(|e| normalise(e.path)).collect();
    if back_office.contains(&(method.clone(), path.to_string())) {
        Kind::BackOffice
    } else if unprotected.contains(path) {
        Kind::Unprotected
    } else if path.ends_with("/process") {
        Kind::Provider
    } else if path.starts_with("/v1/me") || path == "/v1/auth/logout" {
        Kind::Player
    } else {
        Kind::Brand
    }
}

/// An axum path as OpenAPI writes it: `{*file}` is `{file}`.
pub fn normalise(path: &str) -> String {
    path.replace("{*", "{")
}

impl Modify for Surface {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "hmac",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`HMAC-SHA256 <hex>`: the hex HMAC-SHA256 of the raw request body (lower or upper \
                 case) with one of the operator's active provider secrets (`HMAC_SECRETS` for \
                 `/v1/process`). Verified over the bytes as received.",
            ))),
        );
        components.add_security_scheme(
            "staff",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A staff token (`stf_…`) or `ADMIN_TOKEN`."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "player",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A player's session token (`ply_…`) from `POST /v1/auth/login`."))
                    .build(),
            ),
        );
        provider_paths(doc);
        let back_office: HashSet<(Method, String)> = crate::back_office()
            .specs()
            .iter()
            .map(|spec| (spec.method.clone(), normalise(spec.path)))
            .collect();
        for (path, item) in doc.paths.paths.iter_mut() {
            let operations = [
                (Method::GET, &mut item.get),
                (Method::PUT, &mut item.put),
                (Method::POST, &mut item.post),
                (Method::DELETE, &mut item.delete),
                (Method::PATCH, &mut item.patch),
            ];
            for (method, operation) in operations {
                if let Some(operation) = operation {
                    shared(operation, kind(&method, path, &back_office));
                }
            }
        }
        links(doc);
    }
}

/// Adds what every route of `kind` shares to `operation`.
fn shared(operation: &mut Operation, kind: Kind) {
    let has_input = operation.request_body.is_some()
        || operation.parameters.as_ref().is_some_and(|p| !p.is_empty())
        || kind == Kind::Player;
    if operation.request_body.is_some() {
        error(operation, 413, "The body is larger than 64 KiB.", 413, "request body is larger than 64 KiB");
    }
    match kind {
        Kind::Provider => {
            security(operation, "hmac");
            error(
                operation,
                403,
                "Missing, malformed or wrong signature.",
                403,
                "missing or invalid signature",
            );
        }
        Kind::BackOffice => {
            security(operation, "staff");
            x_operator(
                operation,
                "The operator platform staff act on (default `default`); operator staff's is ignored.",
            );
            error(operation, 401, "Missing or unknown bearer token.", 401, "missing or invalid bearer token");
            error(operation, 403, "The caller's role may not do this.", 403, "your role does not allow this");
            error(operation, 404, "`X-Operator` names no operator (code 120).", 120, "unknown operator");
        }
        Kind::Brand | Kind::Player => {
            x_operator(
                operation,
                "The operator, when `Host` is not one of its domains. Neither: 404 code 120.",
            );
            error(
                operation,
                404,
                "No operator by `Host` or `X-Operator` (code 120).",
                120,
                "unknown operator",
            );
            if kind == Kind::Player {
                security(operation, "player");
                error(
                    operation,
                    401,
                    "Missing, unknown, revoked or another operator's token (401); a session past its \
                     idle or absolute end (code 113).",
                    113,
                    "session expired, log in again",
                );
            }
        }
        Kind::Unprotected => {}
    }
    if has_input || kind != Kind::Unprotected {
        error(
            operation,
            400,
            "A malformed body, parameter or header; the message names it.",
            400,
            "user_id: must be 1 to 255 characters",
        );
    }
    if kind != Kind::Unprotected {
        error(operation, 429, "Rate limited (per client or per player).", 429, "too many requests");
        error(
            operation,
            503,
            "Database unavailable, overloaded, timed out or contended: safe to retry with the same ids.",
            503,
            "database unavailable, safe to retry with the same ids",
        );
    }
    error(operation, 500, "Anything else; details only in the server log.", 500, "internal error");
}

fn security(operation: &mut Operation, scheme: &str) {
    operation.security = Some(vec![SecurityRequirement::new(scheme, Vec::<String>::new())]);
}

fn x_operator(operation: &mut Operation, description: &str) {
    let parameter = ParameterBuilder::new()
        .name("X-Operator")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String).examples([json!("default")])))
        .build();
    operation.parameters.get_or_insert_with(Vec::new).push(parameter);
}

/// Adds an error answer, or adds its case to the answer of that status the
/// handler already documents.
fn error(operation: &mut Operation, status: u16, description: &str, code: u16, message: &str) {
    let key = status.to_string();
    match operation.responses.responses.get_mut(&key) {
        Some(RefOr::T(response)) => {
            if !response.description.contains(description) {
                response.description = format!("{} {}", response.description, description);
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .example(Some(json!({"code": code, "message": message})))
                .build();
            let response =
                ResponseBuilder::new().description(description).content("application/json", content);
            operation.responses.responses.insert(key, RefOr::T(response.build()));
        }
    }
}

/// `/v1/process` is documented on its handler; the alias and the
/// per-operator path serve the same handler, so they get the same operation
/// under their own ids (the per-operator one with its `code`).
fn provider_paths(doc: &mut Document) {
    let Some(item) = doc.paths.paths.get("/v1/process").cloned() else { return };
    let mut alias = item.clone();
    if let Some(operation) = alias.post.as_mut() {
        operation.operation_id = Some("process_alias".into());
        operation.summary = Some("The same as `POST /v1/process`, under its older path.".into());
    }
    doc.paths.paths.insert("/aggregator/takehome/process".into(), alias);
    let mut per_operator = item;
    if let Some(operation) = per_operator.post.as_mut() {
        operation.operation_id = Some("process_operator".into());
        operation.summary = Some(
            "A batch for operator `code`, signed with one of its active provider keys (for `default`, \
             `HMAC_SECRETS` too)."
                .into(),
        );
        let code = ParameterBuilder::new()
            .name("code")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(
                "The operator's code; unknown is 404 code 120, before the signature is checked.",
            ))
            // `default`: the operator whose provider keys include `HMAC_SECRETS`.
            .schema(Some(ObjectBuilder::new().schema_type(Type::String).examples([json!("default")])))
            .build();
        operation.parameters.get_or_insert_with(Vec::new).insert(0, code);
        error(operation, 404, "No operator by that `code` (code 120).", 120, "unknown operator");
    }
    doc.paths.paths.insert("/v1/operators/{code}/process".into(), per_operator);
}

/// Links from an answer to the calls it enables: a player created →
/// deposit, read, history; a registration → login; a login → `/v1/me`.
fn links(doc: &mut Document) {
    let user_id = |target: &str, description: &str| {
        LinkBuilder::new()
            .operation_id(target)
            .parameter("user_id", "$response.body#/user_id")
            .description(description)
            .build()
    };
    add_link(doc, "create_player", "201", "deposit", user_id("deposit", "A deposit to the new player."));
    add_link(doc, "create_player", "201", "get_player", user_id("get_player", "The new player."));
    add_link(
        doc,
        "create_player",
        "201",
        "transactions",
        user_id("transactions", "The new player's history."),
    );
    add_link(doc, "deposit", "201", "transactions", user_id("transactions", "The history with the deposit."));
    let login = LinkBuilder::new()
        .operation_id("login")
        .request_body(Some(json!({"email": "$response.body#/email", "password": "$request.body#/password"})))
        .description("Log in with the account just registered.")
        .build();
    add_link(doc, "register", "201", "login", login);
    let me = LinkBuilder::new()
        .operation_id("me")
        .parameter("header.Authorization", "Bearer {$response.body#/token}")
        .description("The account of the session just opened.")
        .build();
    add_link(doc, "login", "200", "me", me);
}

fn add_link(doc: &mut Document, from: &str, status: &str, name: &str, link: utoipa::openapi::link::Link) {
    for item in doc.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            if operation.operation_id.as_deref() != Some(from) {
                continue;
            }
            if let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status) {
                response.links.insert(name.to_string(), RefOr::T(link.clone()));
            }
        }
    }
}
