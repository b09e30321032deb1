//! The browser test page, compiled into the binary so it is served from any working
//! directory and cannot be altered on disk. No inline script or style: the page CSP
//! (`script-src 'self'; style-src 'self'`) holds.

use actix_web::{HttpResponse, http::header, web};

const PAGES: [(&str, &str, &str); 3] = [
    (
        "/static/index.html",
        "text/html; charset=utf-8",
        include_str!("../../static/index.html"),
    ),
    (
        "/static/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/app.js"),
    ),
    (
        "/static/app.css",
        "text/css; charset=utf-8",
        include_str!("../../static/app.css"),
    ),
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
