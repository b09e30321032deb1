//! Ed25519 for jsonwebtoken: the keys, and the only algorithm it may use.
//!
//! jsonwebtoken delegates its cryptography to a process-wide `CryptoProvider`; its built-in
//! ones link RSA (RUSTSEC-2023-0071) or aws-lc. We install one that knows Ed25519 (ring's, the
//! TLS stack's) and nothing else, so no other algorithm could verify even if the validation
//! settings were ever loosened.

use std::sync::Once;

use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey,
    crypto::{CryptoProvider, KeyUtils},
};

/// A token signing key: the PKCS#8 document of an Ed25519 key pair.
pub(super) fn encoding_key(pkcs8: &[u8]) -> EncodingKey {
    EncodingKey::from_ed_der(pkcs8)
}

/// A token verifying key: an Ed25519 public key (32 bytes).
pub(super) fn decoding_key(public_key: &[u8]) -> DecodingKey {
    DecodingKey::from_ed_der(public_key)
}

static EDDSA_ONLY: CryptoProvider = CryptoProvider {
    signer_factory: provider::signer,
    verifier_factory: provider::verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

pub(super) fn install_only_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Fails only if another provider was installed first, which would be a build mistake.
        assert!(
            EDDSA_ONLY.install_default().is_ok(),
            "another jsonwebtoken CryptoProvider was installed before ours"
        );
    });
}

mod provider {
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

    pub(super) fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
        only_eddsa(algorithm, key.family())?;
        let pair = Ed25519KeyPair::from_pkcs8(key.as_bytes())
            .map_err(|_| new_error(ErrorKind::InvalidEddsaKey))?;
        Ok(Box::new(Ed25519Signer(pair)))
    }

    pub(super) fn verifier(
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
    pub(in crate::auth) fn public_key(pkcs8: &[u8]) -> Option<[u8; 32]> {
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

pub(super) use provider::public_key;
