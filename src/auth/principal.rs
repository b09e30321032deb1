//! Who an authenticated caller is, and the access levels a route can require of them. Plain
//! data: the extractor (`auth::extractor`) makes a `Principal`, the domain reads it.

use crate::auth::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scopes {
    pub read: bool,
    pub write: bool,
}

impl Scopes {
    pub const ALL: Self = Self {
        read: true,
        write: true,
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// A bearer access token of the login session (refresh-token family) `session`, whose
    /// user proved their credentials at `auth_time` (unix seconds).
    AccessToken {
        session: String,
        auth_time: u64,
    },
    ApiKey {
        key_id: i64,
    },
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    pub scopes: Scopes,
    pub method: AuthMethod,
}

/// What a route requires of its caller, checked by the extractor before the handler runs.
pub trait Access {
    /// An administrator's access: with `REQUIRE_ADMIN_MFA`, only once they have MFA on.
    const ADMINISTRATION: bool = false;

    fn permits(principal: &Principal) -> bool;
}

/// Any authenticated caller with read access.
pub struct Read;
/// An authenticated caller allowed to change things.
pub struct Write;
/// An administrator reading.
pub struct AdminRead;
/// An administrator changing things.
pub struct AdminWrite;

impl Access for Read {
    fn permits(principal: &Principal) -> bool {
        principal.scopes.read
    }
}

impl Access for Write {
    fn permits(principal: &Principal) -> bool {
        principal.scopes.write
    }
}

impl Access for AdminRead {
    const ADMINISTRATION: bool = true;

    fn permits(principal: &Principal) -> bool {
        principal.role.is_admin() && principal.scopes.read
    }
}

impl Access for AdminWrite {
    const ADMINISTRATION: bool = true;

    fn permits(principal: &Principal) -> bool {
        principal.role.is_admin() && principal.scopes.write
    }
}
