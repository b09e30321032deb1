//! Security headers on every response, errors and 404s included (the middleware sits outside
//! everything that can fail).

use actix_web::{
    Error,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::header::{self, HeaderMap, HeaderName, HeaderValue},
    middleware::Next,
};

/// A JSON API is never rendered: no sources at all, and never framed.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
/// The browser test page and the API docs: own scripts, styles and fetches only; no inline
/// script or style, no plugins, no framing, no form posts elsewhere.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";
/// Swagger UI (`/docs/`): the page policy, plus the one `<style>` element Swagger UI 5.32.6
/// injects, allowed by its hash rather than by `'unsafe-inline'`. (A Swagger UI upgrade that
/// changes it is caught by the browser test, which fails on any CSP violation.)
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";
/// Two years, subdomains included: browsers refuse plain HTTP to this host from then on.
pub const HSTS: &str = "max-age=63072000; includeSubDomains";
const PERMISSIONS_POLICY: &str = "accelerometer=(), camera=(), geolocation=(), gyroscope=(), \
     magnetometer=(), microphone=(), payment=(), usb=()";

/// `behind_tls_proxy`: a trusted proxy terminates TLS, so every client connection is HTTPS
/// even though ours is not. Otherwise HSTS goes only on responses sent over our own TLS.
pub async fn security_headers(
    behind_tls_proxy: bool,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let https = behind_tls_proxy || req.app_config().secure();
    let docs = req.path().starts_with("/docs/");
    let mut response = next.call(req).await?.map_into_boxed_body();
    apply(response.headers_mut(), https, docs);
    Ok(response)
}

fn apply(headers: &mut HeaderMap, https: bool, docs: bool) {
    let is_html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let set = |headers: &mut HeaderMap, name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        match (is_html, docs) {
            (true, true) => DOCS_CSP,
            (true, false) => PAGE_CSP,
            (false, _) => API_CSP,
        },
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(
        headers,
        HeaderName::from_static("permissions-policy"),
        PERMISSIONS_POLICY,
    );
    set(
        headers,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    if https {
        set(headers, header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
    // Responses may carry tokens and personal data: no cache may keep them unless a handler
    // said otherwise (static assets do).
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    headers.remove(header::SERVER);
}
