//! Access tokens: EdDSA (Ed25519) JWTs, following RFC 8725 (JWT Best Current Practices).
//!
//! * The algorithm is ours, never the token's: only EdDSA verifies, whatever the header
//!   says (`none`, HS256 with the public key as a secret, RS256...).
//! * The key is chosen by `kid` from our own key set (`signing_keys`), and nothing else in
//!   the header (`jku`, `x5u`, `jwk`, `x5c`) is ever looked at.
//! * Every registered claim is required and checked: `exp`, `nbf`, `iat`, `iss`, `aud`, `sub`.
//!
//! The cryptography is `eddsa`'s: a jsonwebtoken provider that knows Ed25519 and nothing else.

use std::time::Duration;

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{
    eddsa,
    signing_keys::SigningKeys,
    unix_now,
    verified_tokens::{Fingerprint, Verified, VerifiedTokens},
};
use crate::{auth::Role, config::JwtSettings, crypto::Keyring, db::Database};

/// RFC 9068's media type of a JWT access token, in the header's `typ`: explicit typing
/// (RFC 8725 3.11), so no other kind of JWT, whoever signed it, passes for an access token.
const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// `at+jwt`, or its full form `application/at+jwt`; media types compare without case.
fn is_access_token_type(typ: &str) -> bool {
    let short = typ
        .get(..12)
        .filter(|prefix| prefix.eq_ignore_ascii_case("application/"))
        .map_or(typ, |_| &typ[12..]);
    short.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id: what authorization uses.
    pub sub: String,
    /// The username, for display (a film's owner) without a lookup; usernames never change.
    pub name: String,
    pub role: Role,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: String,
    /// The user's token version when this token was issued; a newer version in the database
    /// (after disable, role or password change) makes this token worthless.
    pub ver: i64,
    /// The session (refresh-token family) this token belongs to; logging out of it, or reuse
    /// of one of its refresh tokens, makes this token worthless.
    pub sid: String,
    /// When the user last proved a credential (OIDC's `auth_time`): the start of the session,
    /// kept by every refresh, so step-up (`auth::StepUp`) can ask for a recent one. Absent in
    /// a token of an older release: read as 0, never recent.
    #[serde(default)]
    pub auth_time: u64,
}

impl Claims {
    pub fn user_id(&self) -> Option<i64> {
        self.sub.parse().ok()
    }
}

/// Who a token is issued to.
#[derive(Debug, Clone, Copy)]
pub struct TokenSubject<'a> {
    pub user_id: i64,
    pub username: &'a str,
    pub role: Role,
    pub token_version: i64,
}

#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: Duration,
}

pub struct JwtCodec {
    keys: SigningKeys,
    verified: VerifiedTokens<Claims>,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl JwtCodec {
    /// Reads the signing keys (creating the first one if the database has none).
    pub async fn load(
        settings: &JwtSettings,
        db: Database,
        keyring: &Keyring,
    ) -> anyhow::Result<Self> {
        eddsa::install_only_provider();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        // Issuer and verifier share one clock.
        validation.leeway = 0;
        Ok(Self {
            keys: SigningKeys::load(db, keyring, settings.access_token_ttl).await?,
            verified: VerifiedTokens::default(),
            validation,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            ttl: settings.access_token_ttl,
        })
    }

    /// The published keys (for `/.well-known/jwks.json`) and their refresh.
    pub fn keys(&self) -> &SigningKeys {
        &self.keys
    }

    /// Signed with the key the database names current now: a rotation made anywhere applies
    /// to this instance's next token.
    pub async fn issue(
        &self,
        keyring: &Keyring,
        subject: TokenSubject<'_>,
        session: &str,
        auth_time: u64,
    ) -> anyhow::Result<IssuedToken> {
        let signer = self.keys.current_signer(keyring).await?;
        let now = unix_now();
        let claims = Claims {
            sub: subject.user_id.to_string(),
            name: subject.username.to_owned(),
            role: subject.role,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            nbf: now,
            exp: now + self.ttl.as_secs(),
            jti: uuid::Uuid::new_v4().to_string(),
            ver: subject.token_version,
            sid: session.to_owned(),
            auth_time,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        header.kid = Some(signer.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &signer.encoding)?;
        Ok(IssuedToken {
            token,
            expires_in: self.ttl,
        })
    }

    /// `None` for any token we did not issue or that is no longer valid; the reason is
    /// deliberately not told to the caller. A token verified before is taken from memory
    /// while it is valid and its key still verifies (`verified_tokens`).
    pub async fn verify(&self, token: &str) -> Option<Claims> {
        let fingerprint = Fingerprint::of(token);
        let now = unix_now();
        if let Some(known) = self.verified.get(&fingerprint, now) {
            return self.keys.still_verifies(&known.kid).then_some(known.claims);
        }
        let verified = self.verify_signature(token).await?;
        let claims = verified.claims.clone();
        self.verified.insert(fingerprint, verified, now);
        Some(claims)
    }

    async fn verify_signature(&self, token: &str) -> Option<Verified<Claims>> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::EdDSA {
            tracing::debug!(alg = ?header.alg, "access token rejected: not EdDSA");
            return None;
        }
        if !header.typ.as_deref().is_some_and(is_access_token_type) {
            tracing::debug!(typ = ?header.typ, "access token rejected: not typed at+jwt");
            return None;
        }
        let kid = header.kid?;
        let key = self.keys.verifying_key(&kid).await?;
        match jsonwebtoken::decode::<Claims>(token, &key, &self.validation) {
            Ok(data) => Some(Verified {
                not_before: data.claims.nbf,
                expires_at: data.claims.exp,
                claims: data.claims,
                kid,
            }),
            Err(error) => {
                tracing::debug!(reason = ?error.kind(), "access token rejected");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_access_token_type_is_one() {
        for typ in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/AT+JWT",
        ] {
            assert!(is_access_token_type(typ), "{typ}");
        }
        for typ in [
            "JWT",
            "jwt",
            "",
            "at+jwt ",
            "application/jwt",
            "application/",
            "secevent+jwt",
        ] {
            assert!(!is_access_token_type(typ), "{typ}");
        }
    }
}
