//! Edge protection: what every request meets before a handler sees it.

pub mod client_ip;
pub mod headers;
pub mod rate_limit;
