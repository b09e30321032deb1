//! Access tokens: HS256 JWTs with the algorithm pinned, and every registered claim required
//! and checked (`exp`, `nbf`, `iat`, `iss`, `aud`, `sub`).
//!
//! jsonwebtoken delegates its cryptography to a process-wide `CryptoProvider`. The built-in
//! providers link RSA, ECDSA and EdDSA code (and the `rsa` crate brings RUSTSEC-2023-0071).
//! We install a provider that knows HS256 and nothing else: a token naming any other algorithm,
//! `none` included, cannot be verified even if the validation settings were ever loosened.

use std::{
    sync::Once,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation,
    crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils},
    errors::{ErrorKind, new_error},
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::{auth::Role, config::JwtSettings};

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
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl JwtCodec {
    pub fn new(settings: &JwtSettings) -> Self {
        install_hs256_only_provider();
        let secret = settings.secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        // Issuer and verifier share one clock.
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            ttl: settings.access_token_ttl,
        }
    }

    pub fn issue(&self, subject: TokenSubject<'_>, session: &str) -> anyhow::Result<IssuedToken> {
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
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok(IssuedToken {
            token,
            expires_in: self.ttl,
        })
    }

    /// `None` for any token we did not issue or that is no longer valid; the reason is
    /// deliberately not told to the caller.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Some(data.claims),
            Err(error) => {
                tracing::debug!(reason = ?error.kind(), "access token rejected");
                None
            }
        }
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

static HS256_ONLY: CryptoProvider = CryptoProvider {
    signer_factory: hs256::signer,
    verifier_factory: hs256::verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

fn install_hs256_only_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Fails only if another provider was installed first, which would be a build mistake.
        assert!(
            HS256_ONLY.install_default().is_ok(),
            "another jsonwebtoken CryptoProvider was installed before ours"
        );
    });
}

mod hs256 {
    use hmac::{Hmac, Mac};
    use jsonwebtoken::signature::{Error as SignatureError, Signer, Verifier};
    use sha2::Sha256;

    use super::*;

    type HmacSha256 = Hmac<Sha256>;

    pub(super) struct Hs256(HmacSha256);

    fn keyed(algorithm: &Algorithm, secret: &[u8]) -> jsonwebtoken::errors::Result<Hs256> {
        if *algorithm != Algorithm::HS256 {
            return Err(new_error(ErrorKind::InvalidAlgorithm));
        }
        HmacSha256::new_from_slice(secret)
            .map(Hs256)
            .map_err(|_| new_error(ErrorKind::InvalidKeyFormat))
    }

    pub(super) fn signer(
        algorithm: &Algorithm,
        key: &EncodingKey,
    ) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
        Ok(Box::new(keyed(algorithm, key.as_bytes())?))
    }

    pub(super) fn verifier(
        algorithm: &Algorithm,
        key: &DecodingKey,
    ) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
        Ok(Box::new(keyed(algorithm, key.try_get_as_bytes()?)?))
    }

    impl Signer<Vec<u8>> for Hs256 {
        fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, SignatureError> {
            let mut mac = self.0.clone();
            mac.update(message);
            Ok(mac.finalize().into_bytes().to_vec())
        }
    }

    impl Verifier<Vec<u8>> for Hs256 {
        /// `verify_slice` compares in constant time.
        fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), SignatureError> {
            let mut mac = self.0.clone();
            mac.update(message);
            mac.verify_slice(signature)
                .map_err(SignatureError::from_source)
        }
    }

    impl JwtSigner for Hs256 {
        fn algorithm(&self) -> Algorithm {
            Algorithm::HS256
        }
    }

    impl JwtVerifier for Hs256 {
        fn algorithm(&self) -> Algorithm {
            Algorithm::HS256
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use secrecy::SecretString;

    use super::*;

    fn codec(secret: &str) -> JwtCodec {
        JwtCodec::new(&JwtSettings {
            secret: SecretString::from(secret.to_owned()),
            issuer: "filmvault".into(),
            audience: "filmvault-api".into(),
            access_token_ttl: Duration::from_secs(900),
            refresh_token_ttl: Duration::from_secs(3600),
        })
    }

    const SUBJECT: TokenSubject<'static> = TokenSubject {
        user_id: 7,
        username: "seven",
        role: Role::User,
        token_version: 0,
    };

    #[test]
    fn a_token_round_trips_with_its_claims() {
        let codec = codec("a-test-secret-that-is-32-bytes-long!!");
        let issued = codec.issue(SUBJECT, "session").unwrap();
        let claims = codec.verify(&issued.token).unwrap();
        assert_eq!(claims.user_id(), Some(7));
        assert_eq!(claims.role, Role::User);
        assert_eq!(claims.exp - claims.iat, 900);
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let issued = codec("one-secret-that-is-32-bytes-long!!!!")
            .issue(SUBJECT, "session")
            .unwrap();
        assert!(
            codec("another-secret-32-bytes-long-too!!!!")
                .verify(&issued.token)
                .is_none()
        );
    }

    #[test]
    fn the_provider_refuses_every_algorithm_but_hs256() {
        let key = EncodingKey::from_secret(b"k");
        for algorithm in [Algorithm::HS384, Algorithm::RS256, Algorithm::ES256] {
            assert!(hs256::signer(&algorithm, &key).is_err(), "{algorithm:?}");
        }
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        let codec = codec("a-test-secret-that-is-32-bytes-long!!");
        let issued = codec.issue(SUBJECT, "session").unwrap();
        let payload = issued.token.split('.').nth(1).unwrap();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(codec.verify(&format!("{header}.{payload}.")).is_none());
    }
}
