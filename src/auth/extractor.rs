//! The one place that decides who is calling. Handlers declare what they need in their
//! signature (`Authenticated<Write>`, `Authenticated<AdminRead>`, `Session<Write>` for the
//! login session only, `StepUp<Write>` for a recent login, `MaybeAuthenticated`) and never
//! read an auth header themselves.

use std::{future::Future, marker::PhantomData, pin::Pin, time::Duration};

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, web};

use crate::{
    auth::{
        api_key,
        credentials::{self, Credential},
        jwt::Claims,
        mfa,
        principal::{Access, AuthMethod, Principal, Read, Scopes, Write},
        sessions::{SessionToken, SessionUse},
        unix_now,
    },
    error::ApiError,
    state::AppState,
    web::audit,
};

/// A caller that authenticated and holds access `A`: 401 without valid credentials, 403 when
/// they are valid but not enough.
pub struct Authenticated<A: Access = Read> {
    pub principal: Principal,
    access: PhantomData<A>,
}

impl<A: Access> std::ops::Deref for Authenticated<A> {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.principal
    }
}

/// A caller on their login session (a bearer access token) holding access `A`: for what an
/// API key must never do (manage keys, change the password, log out), whatever its scopes.
/// 401 without valid credentials, 403 for an API key or a caller without `A`.
pub struct Session<A: Access = Read> {
    pub principal: Principal,
    /// The login session (refresh-token family) of the access token.
    pub id: String,
    access: PhantomData<A>,
}

impl<A: Access> std::ops::Deref for Session<A> {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.principal
    }
}

/// A caller on their login session (`Session<A>`) whose user proved their credentials less
/// than `STEP_UP_MAX_AGE_SECS` ago (the access token's `auth_time`, which refreshes keep): for
/// what a stolen or long-lived session must not do alone (change the password, create an API
/// key, delete the account). 401 `reauthentication-required` for an older login, which a new
/// login cures; otherwise as `Session` (401 without credentials, 403 for an API key, which
/// proves no recent login and can never step up).
pub struct StepUp<A: Access = Write>(pub Session<A>);

impl<A: Access> std::ops::Deref for StepUp<A> {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0.principal
    }
}

/// Anonymous is fine, but credentials that are present must be valid: a bad token is a 401,
/// never silently "anonymous".
pub struct MaybeAuthenticated(pub Option<Principal>);

type LocalFuture<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

impl<A: Access + 'static> FromRequest for Authenticated<A> {
    type Error = ApiError;
    type Future = LocalFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let principal = MaybeAuthenticated(authenticate(&req).await?).require::<A>()?;
            require_admin_mfa::<A>(&req, &principal).await?;
            Ok(Self {
                principal,
                access: PhantomData,
            })
        })
    }
}

impl<A: Access + 'static> FromRequest for Session<A> {
    type Error = ApiError;
    type Future = LocalFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Session::of(&req).await })
    }
}

impl<A: Access> Session<A> {
    async fn of(req: &HttpRequest) -> Result<Self, ApiError> {
        let principal = MaybeAuthenticated(authenticate(req).await?).require::<A>()?;
        let AuthMethod::AccessToken { session, .. } = &principal.method else {
            return Err(ApiError::Forbidden);
        };
        require_admin_mfa::<A>(req, &principal).await?;
        Ok(Self {
            id: session.clone(),
            principal,
            access: PhantomData,
        })
    }

    /// When the session's user last proved their credentials.
    fn auth_time(&self) -> u64 {
        match self.principal.method {
            AuthMethod::AccessToken { auth_time, .. } => auth_time,
            AuthMethod::ApiKey { .. } => 0,
        }
    }
}

impl<A: Access + 'static> FromRequest for StepUp<A> {
    type Error = ApiError;
    type Future = LocalFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let session = Session::<A>::of(&req).await?;
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| anyhow::anyhow!("AppState is not registered"))?;
            let max_age = state.settings.jwt.step_up_max_age;
            if !is_recent(session.auth_time(), max_age) {
                tracing::info!(
                    user_id = session.user_id,
                    "refused: the action needs a more recent login"
                );
                return Err(ApiError::ReauthenticationRequired { max_age });
            }
            Ok(Self(session))
        })
    }
}

/// Proven at most `max_age` ago (a time ahead of our clock counts as now).
fn is_recent(auth_time: u64, max_age: Duration) -> bool {
    unix_now().saturating_sub(auth_time) <= max_age.as_secs()
}

impl FromRequest for MaybeAuthenticated {
    type Error = ApiError;
    type Future = LocalFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(&req).await.map(Self) })
    }
}

impl MaybeAuthenticated {
    /// For routes that are open to all but do more for an authenticated caller with `A`.
    pub fn require<A: Access>(self) -> Result<Principal, ApiError> {
        let principal = self.0.ok_or(ApiError::Unauthenticated)?;
        if A::permits(&principal) {
            Ok(principal)
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// Authenticates the caller before any extractor asks, for middleware that must know who
/// is calling (the write limit is the user's, whichever credential they present). Without a
/// valid credential the request stays anonymous here; the handler's extractor answers 401.
pub async fn identify(req: &HttpRequest) {
    // A refused credential is remembered for the extractor; an internal error is met again
    // (answered and logged) when the extractor asks.
    let _ = authenticate(req).await;
}

/// With `REQUIRE_ADMIN_MFA`, an administrator's access needs MFA on for the account (whatever
/// the credential: an API key of such an admin is refused the same): 403 `mfa-required`
/// until they enrol. Read from the database on each admin request, so confirming MFA opens
/// the admin routes at once, and turning it off closes them.
async fn require_admin_mfa<A: Access>(
    req: &HttpRequest,
    principal: &Principal,
) -> Result<(), ApiError> {
    if !A::ADMINISTRATION {
        return Ok(());
    }
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| anyhow::anyhow!("AppState is not registered"))?;
    if !state.settings.require_admin_mfa {
        return Ok(());
    }
    if mfa::is_enabled(&mut state.db.read().await?, principal.user_id).await? {
        Ok(())
    } else {
        Err(ApiError::MfaRequired)
    }
}

/// Marks a request whose credential was refused, so it is not checked twice.
#[derive(Clone, Copy)]
struct Rejected;

async fn authenticate(req: &HttpRequest) -> Result<Option<Principal>, ApiError> {
    // One resolution per request, however many extractors (and `identify`) ask.
    if let Some(principal) = req.extensions().get::<Principal>() {
        return Ok(Some(principal.clone()));
    }
    if req.extensions().contains::<Rejected>() {
        return Err(ApiError::Unauthenticated);
    }
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| anyhow::anyhow!("AppState is not registered"))?;
    match verify_credential(req, state).await {
        Ok(Some(principal)) => {
            audit::trail_of(req).authenticated(principal.user_id);
            req.extensions_mut().insert(principal.clone());
            Ok(Some(principal))
        }
        Err(ApiError::Unauthenticated) => {
            req.extensions_mut().insert(Rejected);
            Err(ApiError::Unauthenticated)
        }
        other => other,
    }
}

/// Counts the request as a use of its session, which ends it if it had gone idle.
async fn record_session_use(
    req: &HttpRequest,
    state: &AppState,
    user_id: i64,
    claims: &Claims,
) -> Result<(), ApiError> {
    let audit = audit::context_of(req);
    let session = claims.sid.as_str();
    let token = SessionToken {
        user_id,
        session_id: session,
        issued_at: i64::try_from(claims.iat).unwrap_or(i64::MAX),
    };
    match state
        .session_activity
        .record_use(&state.db, token, &audit)
        .await?
    {
        SessionUse::Active => Ok(()),
        SessionUse::Idle => {
            state.revocations.revoke_session(session).await;
            Err(ApiError::Unauthenticated)
        }
    }
}

async fn verify_credential(
    req: &HttpRequest,
    state: &AppState,
) -> Result<Option<Principal>, ApiError> {
    let credential =
        credentials::from_headers(req.headers()).map_err(|_| ApiError::Unauthenticated)?;
    let principal = match credential {
        None => return Ok(None),
        Some(Credential::Bearer(token)) => {
            let claims = state
                .jwt
                .verify(token)
                .await
                .ok_or(ApiError::Unauthenticated)?;
            let user_id = claims.user_id().ok_or(ApiError::Unauthenticated)?;
            if !state
                .revocations
                .permits(user_id, claims.ver, Some(&claims.sid))
                .await?
            {
                return Err(ApiError::Unauthenticated);
            }
            record_session_use(req, state, user_id, &claims).await?;
            Principal {
                user_id,
                username: claims.name,
                role: claims.role,
                scopes: Scopes::ALL,
                method: AuthMethod::AccessToken {
                    session: claims.sid,
                    auth_time: claims.auth_time,
                },
            }
        }
        Some(Credential::ApiKey(raw)) => {
            let key = api_key::parse(raw).ok_or(ApiError::Unauthenticated)?;
            let key = api_key::authenticate(&mut state.db.read().await?, key)
                .await?
                .ok_or(ApiError::Unauthenticated)?;
            if key.stale {
                api_key::touch(&state.db, key.key_id).await?;
            }
            Principal {
                user_id: key.user_id,
                username: key.username,
                role: key.role,
                scopes: key.scopes,
                method: AuthMethod::ApiKey { key_id: key.key_id },
            }
        }
    };
    Ok(Some(principal))
}
