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
/// The browser page: own scripts, styles and fetches only; no inline script or style, no
/// plugins, no framing. `data:` images for the MFA enrolment's QR code. Its forms are sent by
/// script, never submitted: `form-action 'none'` keeps a password out of a URL if a script
/// fails. Trusted Types make any HTML-parsing sink (`innerHTML`, …) throw: server strings
/// can only ever become text.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";
/// Swagger UI (`/docs/`): own scripts, styles and fetches (it renders with innerHTML, so no
/// Trusted Types), plus the one `<style>` element Swagger UI 5.32.6 injects, allowed by its hash rather than by `'unsafe-inline'`. (A Swagger UI upgrade that
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
/// even though ours is not. Otherwise HSTS goes only on responses sent over our own TLS, and
/// never to a loopback name.
pub async fn security_headers(
    behind_tls_proxy: bool,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let hsts = (behind_tls_proxy || req.app_config().secure()) && !is_for_loopback_name(&req);
    let docs = req.path().starts_with("/docs/");
    let mut response = next.call(req).await?.map_into_boxed_body();
    apply(response.headers_mut(), hsts, docs);
    Ok(response)
}

/// `localhost` and `*.localhost` always mean this machine (RFC 6761). HSTS there would make
/// the browser refuse plain HTTP to every local project for the max-age. (IP literals get
/// it: browsers ignore HSTS from them, RFC 6797 section 8.1.) The host is the client's
/// choice, but so is the browser it pins: no one else's browser is affected.
fn is_for_loopback_name(req: &ServiceRequest) -> bool {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or_default();
    let name = host.split(':').next().unwrap_or_default();
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

fn apply(headers: &mut HeaderMap, hsts: bool, docs: bool) {
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
    if hsts {
        set(headers, header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
    // Responses may carry tokens and personal data: no cache may keep them unless a handler
    // said otherwise (static assets do).
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    headers.remove(header::SERVER);
}
