//! Black-box tests: each one starts the real application on a free port with its own database
//! (a SQLite file, or a PostgreSQL database with `TEST_DATABASE_URL`; see `helpers`) and
//! speaks HTTP to it. One binary, one file per area.

mod account_deletion;
mod account_links;
mod admin;
mod api_keys;
mod architecture;
mod audit;
mod auth;
mod authz;
mod backup;
mod certificates;
mod cli;
mod clients;
mod cluster;
mod concurrency;
mod conditional;
mod cors;
mod crash;
mod cursors;
mod database_outage;
mod email_change;
mod encryption;
mod errors;
mod films;
mod head;
mod headers;
mod health;
mod helpers;
mod idempotency;
mod keys;
mod legacy;
mod limits;
mod logging;
mod login_storm;
mod mail;
mod mfa;
mod monitoring;
mod my_votes;
mod openapi;
mod password;
mod password_rules;
mod plain_http;
#[path = "../support/private_postgres.rs"]
mod private_postgres;
mod rate_limit;
mod read_cache;
mod session_list;
mod sessions;
mod slow_clients;
#[path = "../support/smtp_sink.rs"]
mod smtp_sink;
mod startup;
mod step_up;
#[path = "../support/test_redis.rs"]
mod test_redis;
mod tls;
mod tokens;
mod validation;
