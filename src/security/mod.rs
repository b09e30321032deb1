//! Edge protection: what every request meets before a handler sees it.

pub mod client_ip;
pub mod cors;
pub mod headers;
pub mod idle_connections;
pub mod limits;
pub mod login_monitor;
pub mod login_throttle;
pub mod overload;
pub mod password_attempts;
pub mod plain_http;
pub mod rate_limit;
pub mod tls;
pub mod tls_reload;
pub mod unread_body;
