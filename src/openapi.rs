//! The OpenAPI 3.1 description, generated from the handlers' annotations and types so it
//! cannot drift from the code, and served at `/openapi.json` with Swagger UI at `/docs/`
//! (its assets are compiled into the binary: no CDN, which the CSP and offline use forbid).
//!
//! What every operation shares (the error contract, `X-Request-Id`, rate-limit headers) is
//! added here once, by `ServiceContract`, rather than repeated on each handler.

use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder,
        path::{Operation, ParameterIn},
        schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type},
        security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme},
    },
};

use crate::{
    routes, security::limits::MAX_URI_BYTES, telemetry::MAX_REQUEST_ID_LEN,
    web::problem::PROBLEM_JSON,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "filmvault",
        description = "The secure film API: a random film, likes and dislikes, and a catalogue \
                       anyone can read and signed-in users can add to. Every error is an RFC 9457 \
                       problem (`application/problem+json`) with the request id.",
        license(name = "GPL-3.0-or-later"),
    ),
    paths(
        routes::legacy::random_film_or_vote,
        routes::legacy::add_film,
        routes::legacy::add_film_head,
        routes::auth::register,
        routes::auth::login,
        routes::auth::login_mfa,
        routes::auth::refresh_tokens,
        routes::auth::logout,
        routes::account_links::verify_email,
        routes::account_links::resend_verification,
        routes::account_links::request_password_reset,
        routes::account_links::confirm_password_reset,
        routes::account_links::confirm_email,
        routes::users::me,
        routes::users::change_password,
        routes::users::change_email,
        routes::users::delete_account,
        routes::users::create_api_key,
        routes::users::list_api_keys,
        routes::users::revoke_api_key,
        routes::users::list_sessions,
        routes::users::end_session,
        routes::users::end_other_sessions,
        routes::mfa::enrol_totp,
        routes::mfa::confirm_totp,
        routes::mfa::disable_totp,
        routes::films::list_films,
        routes::films::random_film,
        routes::films::get_film,
        routes::films::create_film,
        routes::films::update_film,
        routes::films::delete_film,
        routes::films::cast_vote,
        routes::films::withdraw_vote,
        routes::my_votes::my_votes,
        routes::admin::list_users,
        routes::admin::update_user,
        routes::admin::list_audit_events,
        routes::admin::list_mails,
        routes::admin::list_user_sessions,
        routes::admin::end_user_sessions,
        routes::health::live,
        routes::health::ready,
        routes::well_known::jwks,
        crate::monitoring::metrics_for_admins,
    ),
    components(schemas(crate::web::problem::Problem, crate::error::FieldError)),
    modifiers(&ServiceContract),
    tags(
        (name = "seed", description = "The seed's original routes, kept for compatibility; \
                                       deprecated in favour of /api/v1/films"),
        (name = "auth", description = "Accounts and sessions"),
        (name = "users", description = "The caller's own account and API keys"),
        (name = "mfa", description = "The caller's second factor: TOTP and recovery codes"),
        (name = "films", description = "The catalogue and votes"),
        (name = "admin", description = "Administration (role admin)"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

/// Errors any operation may answer, with why.
const COMMON_ERRORS: [(&str, &str); 9] = [
    (
        "400",
        "Malformed request: query, path or body that does not parse (fields listed)",
    ),
    ("401", "Missing, malformed, expired or revoked credentials"),
    ("403", "Authenticated, but not allowed"),
    ("404", "No such route or resource"),
    ("414", "URL longer than 2 KiB"),
    ("429", "Rate limited; see Retry-After"),
    ("431", "Request headers larger than 16 KiB"),
    ("500", "Our fault; quote the request_id"),
    (
        "503",
        "Overloaded or the database or Redis unreachable (see Retry-After), or not ready",
    ),
];

/// Errors of operations that take a JSON body.
const BODY_ERRORS: [(&str, &str); 3] = [
    ("408", "The body did not arrive in time"),
    ("413", "Body larger than MAX_JSON_BODY_BYTES (16 KiB)"),
    ("415", "Body not sent as application/json"),
];

/// Errors of operations whose body or query has rules beyond its types.
const VALIDATION_ERROR: (&str, &str) = ("422", "Fields that break the rules (all listed)");

struct ServiceContract;

/// Largest value of a counter header (`X-RateLimit-*`, `Retry-After`): seconds or requests.
pub const MAX_HEADER_COUNT: u32 = u32::MAX;

/// Every response header the server sends, with its shape: a header an operation declares
/// gets this schema, so each is bounded in one place. A header not listed keeps the schema
/// its operation gave it (which the contract test holds to the same rules).
fn header_schema(name: &str) -> Option<ObjectBuilder> {
    let text = |max_length: usize| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(max_length))
    };
    let count = || {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(0))
            .maximum(Some(MAX_HEADER_COUNT))
    };
    Some(match name {
        "X-Request-Id" => text(MAX_REQUEST_ID_LEN),
        "X-RateLimit-Limit" | "X-RateLimit-Remaining" | "X-RateLimit-Reset" | "Retry-After" => {
            count()
        }
        // RFC 9745: `@` and a Unix time.
        "Deprecation" => text(21).pattern(Some("^@[0-9]{1,20}$")),
        "Location" | "Access-Control-Allow-Origin" => text(MAX_URI_BYTES),
        "Link" | "Allow" | "Vary" | "Access-Control-Expose-Headers" | "Sunset" => text(512),
        "ETag" | "RateLimit" | "RateLimit-Policy" => text(256),
        "Cache-Control" => text(64),
        "Idempotency-Replayed" => text(4).pattern(Some("^true$")),
        _ => return None,
    })
}

fn header(name: &str, description: &str) -> openapi::Header {
    HeaderBuilder::new()
        .schema(header_schema(name))
        .description(Some(description))
        .build()
}

fn problem_response(description: &str) -> RefOr<openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

fn operations(item: &mut openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

impl Modify for ServiceContract {
    fn modify(&self, api: &mut openapi::OpenApi) {
        add_security_schemes(api.components.get_or_insert_with(Default::default));
        for (path, item) in api.paths.paths.iter_mut() {
            let rate_limited = !path.starts_with("/health/");
            for operation in operations(item) {
                bound_path_ids(operation);
                add_error_responses(operation);
                for response in operation.responses.responses.values_mut() {
                    if let RefOr::T(response) = response {
                        add_response_headers(response, rate_limited);
                    }
                }
                for status in ["429", "503"] {
                    if let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status)
                    {
                        response.headers.insert(
                            "Retry-After".to_owned(),
                            header("Retry-After", "Seconds to wait before retrying").into(),
                        );
                    }
                }
            }
        }
    }
}

fn add_security_schemes(components: &mut openapi::Components) {
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "Access token from POST /api/v1/auth/login (15 min): an EdDSA (Ed25519) \
                     JWT, verified as RFC 8725 asks: the algorithm is pinned to EdDSA whatever \
                     the header says (`none`, HS256 and the rest are refused); the key is \
                     chosen by `kid` from our own key set only (`jku`, `x5u`, `jwk` headers \
                     are ignored, an unknown `kid` is refused); `exp`, `nbf`, `iat`, `iss`, \
                     `aud` and `sub` are required and checked, and the token's session and \
                     token version must not be revoked. The header's `typ` must be `at+jwt` \
                     (RFC 9068's explicit typing, RFC 8725 3.11): a JWT of any other type \
                     is refused, even signed by our key for our `iss`/`aud`. The public keys \
                     are at /.well-known/jwks.json.",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "api_key",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-API-Key",
            "fk_<12 hex>_<43 base64url> key from POST /api/v1/users/me/api-keys, limited to \
             its scopes: looked up by its public part, then its SHA-256 compared in constant \
             time; a revoked key, or one of a disabled account, is refused like an unknown one. \
             Sent over plain HTTP, it is revoked (see the HTTPS section of the README).",
        ))),
    );
}

/// A path `{id}` is a database id (a positive int64) or a session id (a UUID): bounded here
/// once, unless the operation bounded it itself.
fn bound_path_ids(operation: &mut Operation) {
    let path_parameters = operation
        .parameters
        .iter_mut()
        .flatten()
        .filter_map(|parameter| match parameter {
            RefOr::T(parameter) if parameter.parameter_in == ParameterIn::Path => Some(parameter),
            _ => None,
        });
    for parameter in path_parameters {
        let Some(RefOr::T(Schema::Object(schema))) = &mut parameter.schema else {
            continue;
        };
        match schema.schema_type {
            SchemaType::Type(Type::Integer) if schema.maximum.is_none() => {
                schema.format = Some(SchemaFormat::KnownFormat(KnownFormat::Int64));
                schema.minimum = Some(1.into());
                schema.maximum = Some(i64::MAX.into());
            }
            SchemaType::Type(Type::String) if schema.max_length.is_none() => {
                schema.pattern = Some("^[0-9a-f-]{36}$".to_owned());
                schema.max_length = Some(36);
            }
            _ => {}
        }
    }
}

/// The problem+json answers every operation can give, and those of a body or parameters,
/// unless the operation documents that status itself.
fn add_error_responses(operation: &mut openapi::path::Operation) {
    let has_body = operation.request_body.is_some();
    let has_parameters = operation
        .parameters
        .as_ref()
        .is_some_and(|parameters| !parameters.is_empty());
    let errors = COMMON_ERRORS
        .iter()
        .chain(if has_body { &BODY_ERRORS[..] } else { &[] })
        .chain((has_body || has_parameters).then_some(&VALIDATION_ERROR));
    for (status, description) in errors {
        operation
            .responses
            .responses
            .entry((*status).to_owned())
            .or_insert_with(|| problem_response(description));
    }
}

fn add_response_headers(response: &mut openapi::Response, rate_limited: bool) {
    response.headers.insert(
        "X-Request-Id".to_owned(),
        header("X-Request-Id", "This request's id, also in the log").into(),
    );
    for (name, description) in CORS_HEADERS {
        response
            .headers
            .insert(name.to_owned(), header(name, description).into());
    }
    if rate_limited {
        for (name, description) in RATE_LIMIT_HEADERS {
            response
                .headers
                .insert(name.to_owned(), header(name, description).into());
        }
    }
    // Headers the operation declared itself get their shape from the one table.
    for (name, declared) in &mut response.headers {
        if let (RefOr::T(declared), Some(schema)) = (declared, header_schema(name)) {
            declared.schema = Some(schema.into());
        }
    }
    // The same numbers in the IETF httpapi draft's structured fields.
    for (name, pattern, description) in [
        (
            "RateLimit-Policy",
            r#"^"(global|auth|write|legacy)";q=[0-9]{1,10};w=[0-9]{1,10}$"#,
            "The strictest limit passed, as `\"name\";q=<requests>;w=<seconds>` \
             (IETF httpapi ratelimit-headers draft)",
        ),
        (
            "RateLimit",
            r#"^"(global|auth|write|legacy)";r=[0-9]{1,10};t=[0-9]{1,10}$"#,
            "That limit's state, as `\"name\";r=<remaining>;t=<seconds until full>`: \
             X-RateLimit-Remaining and -Reset",
        ),
    ] {
        response.headers.insert(
            name.to_owned(),
            HeaderBuilder::new()
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .max_length(Some(64))
                        .pattern(Some(pattern)),
                ))
                .description(Some(description))
                .build()
                .into(),
        );
    }
}

/// Sent to a browser whose `Origin` is in `CORS_ALLOWED_ORIGINS` (`security::cors`).
const CORS_HEADERS: [(&str, &str); 3] = [
    (
        "Access-Control-Allow-Origin",
        "The request's Origin, only when it is in CORS_ALLOWED_ORIGINS",
    ),
    (
        "Access-Control-Expose-Headers",
        "The response headers a script of an allowed origin may read",
    ),
    ("Vary", "Origin (the CORS answer depends on it)"),
];

const RATE_LIMIT_HEADERS: [(&str, &str); 3] = [
    (
        "X-RateLimit-Limit",
        "Requests allowed in a burst by the strictest limit",
    ),
    ("X-RateLimit-Remaining", "Requests left in that burst"),
    (
        "X-RateLimit-Reset",
        "Seconds until the burst is fully available again",
    ),
];

static DOCUMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
});

/// `GET /openapi.json`: built once, served as is.
pub async fn serve_document() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.as_str())
}
