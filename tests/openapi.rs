//! The OpenAPI document (`GET /openapi.json`) against the routes the service
//! declares: every served route is documented, every documented route is
//! served, and the document and its reference page are public.

mod common;

use std::collections::BTreeSet;

use common::*;
use reqwest::Method;
use serde_json::Value;
use sqlx::PgPool;
use wallet::openapi::normalise;

/// `(METHOD, path)` of every operation in `document`.
fn documented(document: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch", "head", "options", "trace"] {
            if item.get(method).is_some() {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

async fn served_document(server: &TestServer) -> Value {
    let response = server.client.get(server.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

#[sqlx::test]
async fn every_served_route_is_in_the_document_and_every_documented_one_is_served(pool: PgPool) {
    let server = TestServer::start(pool).await;
    let document = served_document(&server).await;
    let served: BTreeSet<(String, String)> = wallet::endpoints(&server.state)
        .iter()
        .map(|endpoint| (endpoint.method.to_string(), normalise(endpoint.path)))
        .collect();
    let documented = documented(&document);
    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes served but missing from the API document (add #[utoipa::path] to the handler and list \
         it in src/openapi.rs): {undocumented:?}"
    );
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(unserved.is_empty(), "routes in the API document that are not served: {unserved:?}");
    assert!(served.len() >= 44, "only {} routes declared", served.len());
}

#[sqlx::test]
async fn the_route_table_is_what_the_router_serves(pool: PgPool) {
    // A route added to the router without its table would be missed by the
    // test above: every declared route answers something other than the
    // unknown-route and unknown-method errors, and a path next to them does not.
    let server = TestServer::start(pool).await;
    for endpoint in wallet::endpoints(&server.state) {
        let path = endpoint.path.replace("{*file}", "index.html").replace('{', "x").replace('}', "");
        let method = Method::from_bytes(endpoint.method.as_str().as_bytes()).unwrap();
        let (status, body) = server.send(method.clone(), &path, None, &[], None).await;
        assert!(
            !(status == 404 && body["message"] == "no such route") && status != 405,
            "{method} {path} is declared but answers {status} {body}"
        );
    }
    let (status, body) = server.send(Method::GET, "/v1/not-a-route", None, &[], None).await;
    assert_error(status, &body, 404, 404);
}

#[sqlx::test]
async fn the_document_is_openapi_3_1_with_both_security_schemes_and_the_error_shape(pool: PgPool) {
    let server = TestServer::start(pool).await;
    let document = served_document(&server).await;
    assert_eq!(document["openapi"], "3.1.0");
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["hmac"]["type"], "apiKey");
    assert_eq!(schemes["hmac"]["in"], "header");
    assert_eq!(schemes["hmac"]["name"], "Authorization");
    assert_eq!(schemes["staff"]["scheme"], "bearer");
    assert_eq!(schemes["player"]["scheme"], "bearer");
    let error = &document["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["required"], serde_json::json!(["code", "message"]));
    // Every operation's security and its error answers.
    let process = &document["paths"]["/v1/process"]["post"];
    assert_eq!(process["security"][0]["hmac"], serde_json::json!([]));
    for status in ["400", "403", "404", "409", "413", "422", "429", "500", "503"] {
        assert!(process["responses"].get(status).is_some(), "/v1/process lacks {status}");
    }
    let player = &document["paths"]["/v1/players/{user_id}"]["get"];
    assert_eq!(player["security"][0]["staff"], serde_json::json!([]));
    for status in ["200", "401", "403", "404"] {
        assert!(player["responses"].get(status).is_some(), "GET /v1/players/{{user_id}} lacks {status}");
    }
    let me = &document["paths"]["/v1/me"]["get"];
    assert_eq!(me["security"][0]["player"], serde_json::json!([]));
    assert!(me["responses"]["401"]["description"].as_str().unwrap().contains("113"));
    // The links schemathesis follows.
    let created = &document["paths"]["/v1/players"]["post"]["responses"]["201"]["links"];
    assert_eq!(created["deposit"]["operationId"], "deposit");
    let login = &document["paths"]["/v1/auth/login"]["post"]["responses"]["200"]["links"];
    assert_eq!(login["me"]["operationId"], "me");
}

#[sqlx::test]
async fn the_reference_page_is_served_from_the_binary(pool: PgPool) {
    let server = TestServer::start(pool).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = client.get(server.url("/docs")).send().await.unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(response.headers()["location"], "/docs/");
    let page = client.get(server.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(!html.contains("https://"), "the page loads nothing from elsewhere");
    let init =
        client.get(server.url("/docs/swagger-initializer.js")).send().await.unwrap().text().await.unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
    let bundle = client.get(server.url("/docs/swagger-ui-bundle.js")).send().await.unwrap();
    assert_eq!(bundle.status(), 200);
    let (status, body) = server.send(Method::GET, "/docs/no-such-file.js", None, &[], None).await;
    assert_error(status, &body, 404, 404);
}

/// Every `$ref` string anywhere in `value`.
fn references<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                found.push(target);
            }
            map.values().for_each(|v| references(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, found)),
        _ => {}
    }
}

#[sqlx::test]
async fn every_reference_in_the_document_resolves(pool: PgPool) {
    let server = TestServer::start(pool).await;
    let document = served_document(&server).await;
    let mut found = Vec::new();
    references(&document, &mut found);
    assert!(found.len() > 50, "the document refers to its schemas");
    let dangling: BTreeSet<&str> = found
        .into_iter()
        .filter(|target| {
            let pointer = target.strip_prefix('#').unwrap_or(target);
            document.pointer(pointer).is_none()
        })
        .collect();
    assert!(dangling.is_empty(), "references to nothing: {dangling:?}");
}
