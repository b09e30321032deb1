//! Black-box tests: each one starts the real application on a free port with its own SQLite
//! file and speaks HTTP to it. One binary, one file per area.

mod admin;
mod api_keys;
mod auth;
mod authz;
mod errors;
mod films;
mod health;
mod helpers;
mod legacy;
mod password;
mod sessions;
mod startup;
mod tokens;
mod validation;
