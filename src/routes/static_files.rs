//! The browser page: HTML, stylesheet and ES modules compiled into the binary, so they are
//! served from any working directory and cannot be altered on disk. No inline script or
//! style: the page CSP (`script-src 'self'; style-src 'self'`) holds. No build step: the
//! modules under `static/js/` are the files the browser runs.

use actix_web::{HttpResponse, http::header, web};

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        (
            concat!("/static/", $path),
            $content_type,
            include_str!(concat!("../../static/", $path)),
        )
    };
}

const PAGES: [(&str, &str, &str); 10] = [
    asset!("index.html", HTML),
    asset!("app.css", CSS),
    asset!("js/main.js", JS),
    asset!("js/api.js", JS),
    asset!("js/ui.js", JS),
    asset!("js/account.js", JS),
    asset!("js/films.js", JS),
    asset!("js/keys.js", JS),
    asset!("js/mfa.js", JS),
    asset!("js/admin.js", JS),
];

pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, content_type, body) in PAGES {
        cfg.route(
            path,
            web::get().to(move || async move {
                HttpResponse::Ok()
                    .insert_header((header::CONTENT_TYPE, content_type))
                    .insert_header((header::CACHE_CONTROL, "no-cache"))
                    .body(body)
            }),
        );
    }
    cfg.route(
        "/static/",
        web::get().to(|| async {
            HttpResponse::Found()
                .insert_header((header::LOCATION, "/static/index.html"))
                .finish()
        }),
    );
}
