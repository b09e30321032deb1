//! Access tokens: EdDSA (Ed25519) JWTs, following RFC 8725 (JWT Best Current Practices).
//!
//! * The algorithm is ours, never the token's: only EdDSA verifies, whatever the header
//!   says (`none`, HS256 with the public key as a secret, RS256...).
//! * The key is chosen by `kid` from our own key set (`signing_keys`), and nothing else in
//!   the header (`jku`, `x5u`, `jwk`, `x5c`) is ever looked at.
//! * Every registered claim is required and checked: `exp`, `nbf`, `iat`, `iss`, `aud`, `sub`.
//!
//! jsonwebtoken delegates its cryptography to a process-wide `CryptoProvider`; its built-in
//! ones link RSA (RUSTSEC-2023-0071) or aws-lc. We install one that knows Ed25519 (ring's, the
//! TLS stack's) and nothing else, so no other algorithm could verify even if the validation
//! settings were ever loosened.

use std::{
    sync::Once,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation,
    crypto::{CryptoProvider, KeyUtils},
};
use serde::{Deserialize, Serialize};

use super::signing_keys::SigningKeys;
use crate::{auth::Role, config::JwtSettings, crypto::Keyring, db::Database};

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
    keys: SigningKeys,
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
        install_eddsa_only_provider();
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
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(signer.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &signer.encoding)?;
        Ok(IssuedToken {
            token,
            expires_in: self.ttl,
        })
    }

    /// `None` for any token we did not issue or that is no longer valid; the reason is
    /// deliberately not told to the caller.
    pub async fn verify(&self, token: &str) -> Option<Claims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::EdDSA {
            tracing::debug!(alg = ?header.alg, "access token rejected: not EdDSA");
            return None;
        }
        let key = self.keys.verifying_key(header.kid.as_deref()?).await?;
        match jsonwebtoken::decode::<Claims>(token, &key, &self.validation) {
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

/// A token signing key: the PKCS#8 document of an Ed25519 key pair.
pub(super) fn encoding_key(pkcs8: &[u8]) -> EncodingKey {
    EncodingKey::from_ed_der(pkcs8)
}

/// A token verifying key: an Ed25519 public key (32 bytes).
pub(super) fn decoding_key(public_key: &[u8]) -> DecodingKey {
    DecodingKey::from_ed_der(public_key)
}

static EDDSA_ONLY: CryptoProvider = CryptoProvider {
    signer_factory: eddsa::signer,
    verifier_factory: eddsa::verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

fn install_eddsa_only_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Fails only if another provider was installed first, which would be a build mistake.
        assert!(
            EDDSA_ONLY.install_default().is_ok(),
            "another jsonwebtoken CryptoProvider was installed before ours"
        );
    });
}

mod eddsa {
    use jsonwebtoken::{
        AlgorithmFamily,
        crypto::{JwtSigner, JwtVerifier},
        errors::{ErrorKind, Result, new_error},
        signature::{Error as SignatureError, Signer, Verifier},
    };
    use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

    use super::*;

    pub(super) struct Ed25519Signer(Ed25519KeyPair);
    pub(super) struct Ed25519Verifier(Vec<u8>);

    fn only_eddsa(algorithm: &Algorithm, family: AlgorithmFamily) -> Result<()> {
        if *algorithm != Algorithm::EdDSA {
            return Err(new_error(ErrorKind::InvalidAlgorithm));
        }
        if family != AlgorithmFamily::Ed {
            return Err(new_error(ErrorKind::InvalidKeyFormat));
        }
        Ok(())
    }

    pub(in super::super) fn signer(
        algorithm: &Algorithm,
        key: &EncodingKey,
    ) -> Result<Box<dyn JwtSigner>> {
        only_eddsa(algorithm, key.family())?;
        let pair = Ed25519KeyPair::from_pkcs8(key.as_bytes())
            .map_err(|_| new_error(ErrorKind::InvalidEddsaKey))?;
        Ok(Box::new(Ed25519Signer(pair)))
    }

    pub(in super::super) fn verifier(
        algorithm: &Algorithm,
        key: &DecodingKey,
    ) -> Result<Box<dyn JwtVerifier>> {
        only_eddsa(algorithm, key.family())?;
        let public_key = key.try_get_as_bytes()?;
        if public_key.len() != 32 {
            return Err(new_error(ErrorKind::InvalidEddsaKey));
        }
        Ok(Box::new(Ed25519Verifier(public_key.to_vec())))
    }

    impl Signer<Vec<u8>> for Ed25519Signer {
        fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, SignatureError> {
            Ok(self.0.sign(message).as_ref().to_vec())
        }
    }

    impl Verifier<Vec<u8>> for Ed25519Verifier {
        fn verify(
            &self,
            message: &[u8],
            signature: &Vec<u8>,
        ) -> std::result::Result<(), SignatureError> {
            UnparsedPublicKey::new(&ED25519, &self.0)
                .verify(message, signature)
                .map_err(|_| SignatureError::new())
        }
    }

    impl JwtSigner for Ed25519Signer {
        fn algorithm(&self) -> Algorithm {
            Algorithm::EdDSA
        }
    }

    impl JwtVerifier for Ed25519Verifier {
        fn algorithm(&self) -> Algorithm {
            Algorithm::EdDSA
        }
    }

    /// The public half of a PKCS#8 Ed25519 key pair.
    pub(in super::super) fn public_key(pkcs8: &[u8]) -> Option<[u8; 32]> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).ok()?;
        pair.public_key().as_ref().try_into().ok()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_provider_refuses_every_algorithm_but_eddsa() {
            let hmac = EncodingKey::from_secret(b"k");
            for algorithm in [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256] {
                assert!(signer(&algorithm, &hmac).is_err(), "{algorithm:?}");
                let public = DecodingKey::from_ed_der(&[7; 32]);
                assert!(verifier(&algorithm, &public).is_err(), "{algorithm:?}");
            }
            // An HMAC secret is no Ed25519 key, even with the right algorithm.
            assert!(verifier(&Algorithm::EdDSA, &DecodingKey::from_secret(&[7; 32])).is_err());
        }
    }
}

pub(super) use eddsa::public_key;
