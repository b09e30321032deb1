//! `/api/v1/auth`: registration and login.

use std::fmt;

use actix_web::{HttpResponse, http::header, web};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use validator::Validate;

use crate::{
    auth::{Role, jwt::TokenSubject, password::Verification},
    domain::{
        text,
        user::{self, Email, NewPassword, NewUser, Username},
    },
    error::ApiError,
    extract::{ForField, Json},
    state::AppState,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/register").route(web::post().to(register)))
        .service(web::resource("/login").route(web::post().to(login)));
}

#[derive(Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[validate(custom(function = Username::validate))]
    pub username: String,
    #[serde(deserialize_with = "text::trimmed")]
    #[validate(custom(function = Email::validate))]
    pub email: String,
    #[validate(custom(function = NewPassword::validate))]
    pub password: String,
}

impl fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("username", &self.username)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl TryFrom<RegisterRequest> for NewUser {
    type Error = ApiError;

    fn try_from(request: RegisterRequest) -> Result<Self, ApiError> {
        request.validate()?;
        Ok(Self {
            username: Username::parse(request.username).for_field("username")?,
            email: Email::parse(request.email).for_field("email")?,
            password: NewPassword::parse(request.password).for_field("password")?,
        })
    }
}

#[derive(Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[validate(length(min = 1, max = 64))]
    pub username: String,
    #[validate(length(min = 1, max = NewPassword::MAX_CHARS))]
    pub password: String,
}

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
}

async fn register(
    state: web::Data<AppState>,
    Json(request): Json<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let new_user = NewUser::try_from(request)?;
    let profile = user::create(&state.db.writer, &state.passwords, new_user, Role::User).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, "/api/v1/users/me"))
        .json(profile))
}

/// Unknown user, wrong password and disabled account take the same path: one argon2
/// verification, then the same 401 body.
async fn login(
    state: web::Data<AppState>,
    Json(request): Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    request.validate()?;
    let account = user::find_credentials(&state.db.reader, &request.username).await?;
    let password = SecretString::from(request.password);
    let stored_hash = account.as_ref().map(|a| a.password_hash.clone());
    let verification = state
        .passwords
        .verify(password.clone(), stored_hash)
        .await?;
    let account = match (account, verification) {
        (Some(account), Verification::Valid { needs_rehash }) if !account.disabled => {
            if needs_rehash {
                let fresh = state.passwords.hash(password).await?;
                user::update_password_hash(&state.db.writer, account.id, &fresh).await?;
                tracing::info!(
                    user_id = account.id,
                    "password hash upgraded to current parameters"
                );
            }
            account
        }
        _ => return Err(ApiError::InvalidCredentials),
    };
    let issued = state.jwt.issue(TokenSubject {
        user_id: account.id,
        role: account.role,
        token_version: account.token_version,
    })?;
    Ok(HttpResponse::Ok().json(TokenResponse {
        access_token: issued.token,
        token_type: "Bearer",
        expires_in: issued.expires_in.as_secs(),
    }))
}
