//! filmvault: the film API of the seed documents, rebuilt as a reference for a secure JSON API.
//!
//! `startup` assembles the application; everything else is one module per concern.
//!
//! No `unsafe` but the calls into the C library's allocator that `memory` explains (and, in
//! tests, the death signal of a child server).
#![deny(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod error;
pub mod extract;
pub mod mail;
pub mod memory;
pub mod monitoring;
pub mod openapi;
pub mod read_cache;
pub mod routes;
pub mod security;
pub mod startup;
pub mod state;
pub mod telemetry;
mod vocabulary;
pub mod web;
