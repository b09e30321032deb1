//! The glue between actix-web and the rest of the service: how an `ApiError` becomes a
//! response, and how a request becomes an audit context. Nothing below `routes` needs actix.

pub mod audit;
pub mod body;
pub mod conditional;
pub mod problem;
