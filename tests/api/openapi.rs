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
    let routes: BTreeSet<(String, String)> = report
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
        .collect();
    // A HEAD beside a GET is that GET without its body (RFC 9110 §9.3.2): the GET's
    // description is its description.
    routes
        .iter()
        .filter(|(path, method)| {
            method != "HEAD" || !routes.contains(&(path.clone(), "GET".to_owned()))
        })
        .cloned()
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
async fn every_problem_body_is_documented_as_problem_json() {
    let (document, operations) = described_operations().await;
    let mut wrong = Vec::new();
    for (path, method) in operations {
        let responses = &document["paths"][&path][method.to_lowercase()]["responses"];
        for (status, response) in responses.as_object().into_iter().flatten() {
            for (content_type, content) in response["content"].as_object().into_iter().flatten() {
                let is_problem = content["schema"]["$ref"] == "#/components/schemas/Problem";
                if is_problem && content_type != "application/problem+json" {
                    wrong.push(format!("{method} {path} {status}: {content_type}"));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "a problem documented as another type: {wrong:#?}"
    );
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

// The document as the security contract (issue 18, item 6): every value bounded, every header
// the server sends described, every protected operation's denials listed, and the bounds the
// ones the code enforces. These walk the whole served document, so a route added later is
// held to the same rules.

/// Every place in `node` that breaks the bounding rules, by JSON pointer.
fn unbounded(node: &Value, at: &str, found: &mut Vec<String>) {
    match node {
        Value::Object(object) => {
            let types: Vec<&str> = match &object.get("type") {
                Some(Value::String(one)) => vec![one.as_str()],
                Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            let has = |key: &str| object.contains_key(key);
            if types.contains(&"string") && !(has("maxLength") || has("pattern") || has("enum")) {
                found.push(format!("{at}: a string without maxLength, pattern or enum"));
            }
            if types.contains(&"integer") && !(has("format") && has("minimum") && has("maximum")) {
                found.push(format!(
                    "{at}: an integer without format, minimum and maximum"
                ));
            }
            if types.contains(&"array") && !has("maxItems") {
                found.push(format!("{at}: an array without maxItems"));
            }
            for (key, child) in object {
                let key = key.replace('~', "~0").replace('/', "~1");
                unbounded(child, &format!("{at}/{key}"), found);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                unbounded(child, &format!("{at}/{index}"), found);
            }
        }
        _ => {}
    }
}

/// Every operation of the document: (path, method, operation).
fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if ["get", "put", "post", "delete", "patch", "head"].contains(&method.as_str()) {
                found.push((path.clone(), method.clone(), operation.clone()));
            }
        }
    }
    found
}

#[actix_web::test]
async fn every_string_integer_and_array_in_the_document_is_bounded() {
    let (document, _) = described_operations().await;
    let mut found = Vec::new();
    unbounded(&document, "#", &mut found);
    assert!(
        found.is_empty(),
        "{} unbounded values, the first: {:#?}",
        found.len(),
        &found[..found.len().min(20)]
    );
}

#[actix_web::test]
async fn every_operation_documents_its_denials_and_the_headers_of_every_response() {
    let (document, _) = described_operations().await;
    for (path, method, operation) in operations(&document) {
        let responses = operation["responses"].as_object().unwrap();
        let protected = operation["security"]
            .as_array()
            .is_some_and(|schemes| !schemes.is_empty());
        let required: &[&str] = if protected {
            &["401", "403", "429"]
        } else {
            &["429"]
        };
        for status in required {
            assert!(
                responses.contains_key(*status),
                "{method} {path} does not document {status}"
            );
        }
        let rate_limited = !path.starts_with("/health/");
        for (status, response) in responses {
            let headers = &response["headers"];
            let mut expected = vec![
                "X-Request-Id",
                "Access-Control-Allow-Origin",
                "Access-Control-Expose-Headers",
                "Vary",
            ];
            if rate_limited {
                expected.extend([
                    "X-RateLimit-Limit",
                    "X-RateLimit-Remaining",
                    "X-RateLimit-Reset",
                ]);
            }
            if status == "429" || status == "503" {
                expected.push("Retry-After");
            }
            for name in expected {
                assert!(
                    headers[name]["schema"].is_object(),
                    "{method} {path} {status}: {name} is not documented"
                );
            }
        }
    }
}

/// What the server really sends, on a sample of answers, is documented for that operation and
/// status (a header added to the code without the document fails here).
#[tokio::test]
async fn the_headers_the_server_sends_are_the_documented_ones() {
    let origin = "https://client.example";
    let app = crate::helpers::spawn_app_with(&[("CORS_ALLOWED_ORIGINS", origin)]).await;
    let user = app.new_user().await;
    let film = app.create_film(&user.token, "Contract", "Tests").await;
    let film_path = format!("/api/v1/films/{}", film["id"]);
    let document: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    let samples = [
        (reqwest::Method::GET, "/api/v1/films", "/api/v1/films", None),
        (
            reqwest::Method::GET,
            film_path.as_str(),
            "/api/v1/films/{id}",
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/v1/films/999999",
            "/api/v1/films/{id}",
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/v1/users/me",
            "/api/v1/users/me",
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/v1/users/me",
            "/api/v1/users/me",
            Some(&user.token),
        ),
        (reqwest::Method::GET, "/", "/", None),
        (reqwest::Method::GET, "/health/live", "/health/live", None),
    ];
    // Headers every response may carry that are no part of the API's contract.
    let transport = [
        "content-type",
        "content-length",
        "date",
        "connection",
        "cache-control",
        "content-security-policy",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
        "permissions-policy",
        "cross-origin-opener-policy",
        "cross-origin-resource-policy",
        "cross-origin-embedder-policy",
        "www-authenticate",
        "strict-transport-security",
    ];
    for (method, url, path, token) in samples {
        let mut request = app.request(method.clone(), url).header("origin", origin);
        if let Some(token) = token {
            request = request.bearer(token);
        }
        let response = request.send().await;
        let status = response.status().as_u16().to_string();
        let documented = document["paths"][path][method.as_str().to_lowercase()]["responses"]
            [&status]["headers"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} {status} is not documented"))
            .keys()
            .map(|name| name.to_ascii_lowercase())
            .collect::<BTreeSet<_>>();
        assert!(
            response
                .headers()
                .contains_key("access-control-allow-origin"),
            "{method} {url}: the CORS sample did not get CORS headers"
        );
        for name in response.headers().keys() {
            let name = name.as_str();
            assert!(
                transport.contains(&name) || documented.contains(name),
                "{method} {path} {status} sends {name}, which the document does not describe"
            );
        }
    }
}

#[actix_web::test]
async fn the_token_schemes_say_how_a_token_is_validated() {
    let (document, _) = described_operations().await;
    let bearer = document["components"]["securitySchemes"]["bearer"]["description"]
        .as_str()
        .unwrap();
    for rule in [
        "RFC 8725", "EdDSA", "`kid`", "`iss`", "`aud`", "`exp`", "`typ`", "revoked",
    ] {
        assert!(
            bearer.contains(rule),
            "the bearer scheme does not say {rule}"
        );
    }
    let api_key = document["components"]["securitySchemes"]["api_key"]["description"]
        .as_str()
        .unwrap();
    for rule in ["SHA-256", "constant time", "revoked", "plain HTTP"] {
        assert!(
            api_key.contains(rule),
            "the API-key scheme does not say {rule}"
        );
    }
}

fn number(value: &Value) -> i64 {
    value
        .as_i64()
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

/// The document's bounds are the code's constants: change one without the other and this
/// fails.
#[actix_web::test]
async fn the_documented_bounds_are_the_constants_of_the_code() {
    use filmvault::{
        auth::{api_key::MAX_KEYS_PER_USER, sessions::MAX_LISTED},
        domain::{Page, film::ReleaseYear, user::NewPassword},
        telemetry::MAX_REQUEST_ID_LEN,
    };
    let (document, _) = described_operations().await;
    let schemas = &document["components"]["schemas"];
    let films = &document["paths"]["/api/v1/films"]["get"];
    let parameter = |name: &str| {
        films["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["schema"]
            .clone()
    };
    assert_eq!(number(&parameter("limit")["maximum"]), Page::MAX_LIMIT);
    assert_eq!(number(&parameter("offset")["maximum"]), Page::MAX_OFFSET);
    for page in ["FilmPage", "Paginated_UserProfile", "Paginated_StoredEvent"] {
        let properties = &schemas[page]["properties"];
        assert_eq!(
            number(&properties["items"]["maxItems"]),
            Page::MAX_LIMIT,
            "{page}"
        );
        assert_eq!(
            number(&properties["limit"]["maximum"]),
            Page::MAX_LIMIT,
            "{page}"
        );
        assert_eq!(
            number(&properties["offset"]["maximum"]),
            Page::MAX_OFFSET,
            "{page}"
        );
    }
    for schema in ["CreateFilmRequest", "Film"] {
        let year = &schemas[schema]["properties"]["year"];
        assert_eq!(number(&year["minimum"]), ReleaseYear::FIRST, "{schema}");
        assert_eq!(number(&year["maximum"]), ReleaseYear::LAST, "{schema}");
    }
    let password = &schemas["RegisterRequest"]["properties"]["password"];
    assert_eq!(
        number(&password["minLength"]),
        NewPassword::MIN_CHARS as i64
    );
    assert_eq!(
        number(&password["maxLength"]),
        NewPassword::MAX_CHARS as i64
    );
    assert_eq!(
        number(&schemas["ApiKeyList"]["properties"]["items"]["maxItems"]),
        MAX_KEYS_PER_USER
    );
    assert_eq!(
        number(&schemas["SessionList"]["properties"]["items"]["maxItems"]),
        MAX_LISTED
    );
    assert_eq!(
        number(&schemas["Problem"]["properties"]["request_id"]["maxLength"]),
        MAX_REQUEST_ID_LEN as i64
    );
    let request_id = &films["responses"]["200"]["headers"]["X-Request-Id"]["schema"];
    assert_eq!(number(&request_id["maxLength"]), MAX_REQUEST_ID_LEN as i64);
}

/// The text bounds have no constant of their own (they live in the domain types' `validate`):
/// the server itself is asked, at each documented bound and one past it.
#[tokio::test]
async fn the_server_enforces_the_documented_text_bounds_exactly() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let document: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    let film = &document["components"]["schemas"]["CreateFilmRequest"]["properties"];
    for field in ["name", "studio"] {
        let max = usize::try_from(number(&film[field]["maxLength"])).unwrap();
        for (length, accepted) in [(max, true), (max + 1, false)] {
            let mut body = serde_json::json!({ "name": "Bounds", "studio": "Bounds" });
            body[field] = Value::String("x".repeat(length));
            let response = app
                .post_json("/api/v1/films", &body, Some(&user.token))
                .await;
            if accepted {
                assert_eq!(
                    response.status(),
                    StatusCode::CREATED,
                    "{field} of {length}"
                );
            } else {
                let problem =
                    crate::helpers::assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY)
                        .await;
                assert_eq!(problem["errors"][0]["field"], field, "{field} of {length}");
            }
        }
    }
    let username = &document["components"]["schemas"]["RegisterRequest"]["properties"]["username"];
    let max = usize::try_from(number(&username["maxLength"])).unwrap();
    let too_long = app
        .register(&"u".repeat(max + 1), "violet-kettle-umbrella")
        .await;
    let problem = crate::helpers::assert_problem(too_long, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["errors"][0]["field"], "username");
    let longest = crate::helpers::unique_username("b");
    let longest = format!("{longest}{}", "u".repeat(max - longest.len()));
    assert_eq!(
        app.register(&longest, "violet-kettle-umbrella")
            .await
            .status(),
        StatusCode::ACCEPTED
    );
}
