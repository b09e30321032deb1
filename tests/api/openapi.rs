//! The OpenAPI description: served, valid in shape, and complete. Every route the server
//! mounts must be described (and every description must be a real route), so the spec cannot
//! drift from the code.

use std::collections::BTreeSet;

use actix_web::{App, introspection::IntrospectionTree, test, web};
use filmvault::{config::Settings, security::rate_limit::Limiters, startup};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

/// Routes that are not API operations: the docs, the document itself and the test page.
fn is_documentation(path: &str) -> bool {
    path.starts_with("/docs") || path == "/openapi.json" || path.starts_with("/static")
}

async fn mounted_routes() -> BTreeSet<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("routes.db").display());
    let settings = Settings::from_vars([("DATABASE_URL", url.as_str())]).unwrap();
    let state = startup::build_state(settings).await.unwrap();
    let limiters = Limiters::new(&state.settings.rate_limits, None);
    let app = test::init_service(
        App::new()
            .app_data(state)
            .configure(|cfg| startup::mount_routes(cfg, &limiters))
            .route(
                "/__introspection",
                web::get()
                    .to(|tree: web::Data<IntrospectionTree>| async move { tree.report_as_json() }),
            ),
    )
    .await;
    let request = test::TestRequest::get()
        .uri("/__introspection")
        .to_request();
    let report: Vec<Value> = test::call_and_read_body_json(&app, request).await;
    report
        .iter()
        .filter(|item| item["full_path"] != "/__introspection")
        .flat_map(|item| {
            let path = item["full_path"].as_str().unwrap().to_owned();
            item["methods"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |m| (path.clone(), m.as_str().unwrap().to_owned()))
        })
        .filter(|(path, _)| !is_documentation(path))
        .collect()
}

async fn described_operations() -> (Value, BTreeSet<(String, String)>) {
    let app = spawn_app().await;
    let response = app.get("/openapi.json", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.unwrap();
    let operations = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "put", "post", "delete", "patch", "head"].contains(&k.as_str()))
                .map(move |method| (path.clone(), method.to_uppercase()))
        })
        .collect();
    (document, operations)
}

#[actix_web::test]
async fn every_mounted_route_is_described_and_every_description_is_mounted() {
    let mounted = mounted_routes().await;
    let (_, described) = described_operations().await;
    assert!(
        mounted.len() > 20,
        "the introspection found the routes: {mounted:?}"
    );
    let undocumented: Vec<_> = mounted.difference(&described).collect();
    assert!(
        undocumented.is_empty(),
        "routes without an OpenAPI description: {undocumented:?}"
    );
    let phantom: Vec<_> = described.difference(&mounted).collect();
    assert!(
        phantom.is_empty(),
        "described operations that do not exist: {phantom:?}"
    );
}

#[actix_web::test]
async fn every_operation_has_a_one_line_summary() {
    let (document, operations) = described_operations().await;
    for (path, method) in operations {
        let summary = &document["paths"][&path][method.to_lowercase()]["summary"];
        let summary = summary.as_str().unwrap_or_default();
        assert!(
            !summary.is_empty() && !summary.contains('\n'),
            "{method} {path}: the summary is one line, details go in the description: {summary:?}"
        );
    }
}

#[actix_web::test]
async fn the_document_is_openapi_3_1_with_both_security_schemes_and_problem_errors() {
    let (document, _) = described_operations().await;
    assert_eq!(document["openapi"], "3.1.0");
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    assert_eq!(schemes["api_key"]["in"], "header");

    let login = &document["paths"]["/api/v1/auth/login"]["post"]["responses"];
    let too_many = &login["429"];
    assert_eq!(
        too_many["content"]["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/Problem"
    );
    assert!(too_many["headers"]["Retry-After"].is_object());
    assert!(login["200"]["headers"]["X-RateLimit-Remaining"].is_object());
    assert!(
        login["422"].is_object(),
        "operations with a body document 422"
    );
    let create = &document["paths"]["/api/v1/films"]["post"];
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/CreateFilmRequest"
    );
    let film_request = &document["components"]["schemas"]["CreateFilmRequest"];
    assert_eq!(
        film_request["additionalProperties"], false,
        "unknown fields are refused"
    );
}

/// Routes that take `Session<…>` (login session only): an API key is refused there, so the
/// document must not offer it.
#[actix_web::test]
async fn session_only_operations_document_the_bearer_token_alone() {
    let (document, _) = described_operations().await;
    for (path, method) in [
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/users/me/password", "put"),
        ("/api/v1/users/me/api-keys", "get"),
        ("/api/v1/users/me/api-keys", "post"),
        ("/api/v1/users/me/api-keys/{id}", "delete"),
    ] {
        assert_eq!(
            document["paths"][path][method]["security"],
            serde_json::json!([{ "bearer": [] }]),
            "{method} {path}"
        );
    }
    assert_eq!(
        document["paths"]["/api/v1/users/me"]["get"]["security"],
        serde_json::json!([{ "bearer": [] }, { "api_key": [] }]),
    );
}

#[actix_web::test]
async fn the_docs_page_is_served_from_the_binary_under_a_strict_csp() {
    let app = spawn_app().await;
    let page = app.get("/docs/", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'")
            && csp.contains("style-src 'self' 'sha256-")
            && !csp.contains("unsafe"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(!html.contains("https://"), "assets from a CDN");
    assert!(!html.contains("<script>"), "inline script");
    for asset in [
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
        "/docs/swagger-initializer.js",
    ] {
        assert_eq!(
            app.get(asset, None).await.status(),
            StatusCode::OK,
            "{asset}"
        );
    }
    let initializer = app
        .get("/docs/swagger-initializer.js", None)
        .await
        .text()
        .await
        .unwrap();
    assert!(initializer.contains("/openapi.json"));
}

#[actix_web::test]
async fn the_test_page_has_no_inline_script_or_style_and_renders_values_as_text() {
    let app = spawn_app().await;
    let page = app.get("/static/index.html", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    for directive in [
        "default-src 'none'",
        "script-src 'self';",
        "style-src 'self';",
        "connect-src 'self';",
        "form-action 'none'",
        "require-trusted-types-for 'script'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>") && !html.contains("<style") && !html.contains(" style="));
    let handler_attribute = html.split(" on").skip(1).any(|rest| {
        let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
        name_len > 0 && rest[name_len..].starts_with('=')
    });
    assert!(!handler_attribute, "inline event handler attribute");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "another origin"
    );
    // Every module the page loads, found by following the imports from its entry point.
    let mut modules = vec!["main.js".to_owned()];
    let mut read = 0;
    while read < modules.len() {
        let response = app
            .get(&format!("/static/js/{}", modules[read]), None)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{}", modules[read]);
        let script = response.text().await.unwrap();
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(
                !script.contains(forbidden),
                "{forbidden} in {}",
                modules[read]
            );
        }
        for storage in [
            "localStorage",
            "sessionStorage",
            "document.cookie",
            "indexedDB",
        ] {
            assert!(
                !script.contains(storage),
                "tokens stay in memory: {}",
                modules[read]
            );
        }
        for import in script.split("from \"./").skip(1) {
            let name = import.split('"').next().unwrap().to_owned();
            if !modules.contains(&name) {
                modules.push(name);
            }
        }
        read += 1;
    }
    assert!(
        modules.len() >= 5,
        "the imports were not followed: {modules:?}"
    );
}

#[tokio::test]
async fn the_docs_address_without_its_slash_redirects_to_the_docs() {
    let app = spawn_app().await;
    let response = app.get("/docs", None).await;
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(response.headers()["location"], "/docs/");
}
