//! `/.well-known/jwks.json`: the public keys that verify our access tokens (RFC 7517), so
//! another service can verify a token without being able to mint one.

use actix_web::{HttpResponse, http::header, web};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// Verifiers re-fetch this often, and at once when a token names a kid they do not know.
const CACHE_CONTROL: &str = "public, max-age=60";

#[derive(Serialize, ToSchema)]
pub struct JwkSet {
    /// The current key first, then retired keys whose tokens may not have expired yet.
    #[schema(max_items = 100)]
    pub keys: Vec<Jwk>,
}

/// An Ed25519 public key (RFC 8037).
#[derive(Serialize, ToSchema)]
pub struct Jwk {
    #[schema(example = "OKP", pattern = "^OKP$", max_length = 3)]
    pub kty: &'static str,
    #[schema(example = "Ed25519", pattern = "^Ed25519$", max_length = 7)]
    pub crv: &'static str,
    /// The public key, base64url without padding.
    #[schema(pattern = "^[A-Za-z0-9_-]{43}$", max_length = 43)]
    pub x: String,
    /// Matches the `kid` header of the tokens this key signed.
    #[schema(max_length = 64)]
    pub kid: String,
    #[schema(example = "EdDSA", pattern = "^EdDSA$", max_length = 5)]
    pub alg: &'static str,
    #[serde(rename = "use")]
    #[schema(example = "sig", pattern = "^sig$", max_length = 3)]
    pub use_: &'static str,
}

/// The public keys that verify access tokens (JWKS).
///
/// Tokens are EdDSA (Ed25519) JWTs; pick the key by the token's `kid`, accept no other
/// algorithm, and check `exp`, `nbf`, `iss` and `aud` (RFC 8725).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "operations",
    responses((status = 200, description = "The JSON Web Key Set", body = JwkSet)))]
pub(crate) async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    let keys = state
        .jwt
        .keys()
        .published()
        .into_iter()
        .map(|key| Jwk {
            kty: "OKP",
            crv: "Ed25519",
            x: URL_SAFE_NO_PAD.encode(&key.public_key),
            kid: key.kid,
            alg: "EdDSA",
            use_: "sig",
        })
        .collect();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL))
        .json(JwkSet { keys })
}
