//! What an event is about, in the one textual form the audit table stores (`user:7`).

use std::fmt;

use crate::{domain::username::Username, security::client_ip::ClientKey};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    User(i64),
    /// The name submitted at login, if it is a valid username (see `AuditTarget::login_name`).
    Username(Username),
    /// A submitted name that is not a valid username: it is not echoed.
    InvalidUsername,
    /// A client, by its address (an IPv6 client by its network).
    Client(ClientKey),
    Film(i64),
    ApiKey(i64),
    /// A login session (refresh-token family).
    Session(String),
    /// The request that was denied: its method and route pattern.
    Endpoint {
        method: String,
        route: String,
    },
}

impl AuditTarget {
    /// The target of a login attempt for `submitted`: echoed only if it is a valid username,
    /// so nothing odd reaches the log or the audit table.
    pub fn login_name(submitted: &str) -> Self {
        Username::parse(submitted.to_owned()).map_or(Self::InvalidUsername, Self::Username)
    }
}

impl fmt::Display for AuditTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{id}"),
            Self::Username(name) => write!(f, "username:{}", name.as_str()),
            Self::InvalidUsername => f.write_str("username:<invalid>"),
            Self::Client(client) => write!(f, "ip:{client}"),
            Self::Film(id) => write!(f, "film:{id}"),
            Self::ApiKey(id) => write!(f, "api_key:{id}"),
            Self::Session(family_id) => write!(f, "session:{family_id}"),
            Self::Endpoint { method, route } => write!(f, "{method} {route}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_their_stored_spelling() {
        for (target, stored) in [
            (AuditTarget::User(7), "user:7"),
            (AuditTarget::login_name("alice_1"), "username:alice_1"),
            (AuditTarget::login_name("al ice\n"), "username:<invalid>"),
            (
                AuditTarget::Client(ClientKey::V4([192, 0, 2, 7].into())),
                "ip:192.0.2.7",
            ),
            (AuditTarget::Film(3), "film:3"),
            (AuditTarget::ApiKey(4), "api_key:4"),
            (AuditTarget::Session("f00d".into()), "session:f00d"),
            (
                AuditTarget::Endpoint {
                    method: "GET".into(),
                    route: "/api/v1/users/me".into(),
                },
                "GET /api/v1/users/me",
            ),
        ] {
            assert_eq!(target.to_string(), stored);
        }
    }
}
