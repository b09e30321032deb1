//! Reading credentials out of request headers: a pure function, so it can be fuzzed.
//!
//! Exactly one credential is accepted: a bearer token in `Authorization`, or an API key in
//! `X-API-Key`. Anything else present in those headers (two of them, another scheme, stray
//! characters) is an error, never "anonymous": a client that meant to authenticate must learn
//! that it did not.

use actix_web::http::header::{AUTHORIZATION, HeaderMap, HeaderName};

pub const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");
const MAX_CREDENTIAL_LEN: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    Bearer(&'a str),
    ApiKey(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// Present but not in a shape we accept.
    Malformed,
    /// Both a bearer token and an API key: which one should win is not ours to guess.
    Ambiguous,
}

pub fn from_headers(headers: &HeaderMap) -> Result<Option<Credential<'_>>, CredentialError> {
    let bearer = single_value(headers, &AUTHORIZATION)?
        .map(parse_authorization)
        .transpose()?;
    let api_key = single_value(headers, &API_KEY_HEADER)?
        .map(parse_api_key)
        .transpose()?;
    match (bearer, api_key) {
        (Some(_), Some(_)) => Err(CredentialError::Ambiguous),
        (Some(token), None) => Ok(Some(Credential::Bearer(token))),
        (None, Some(key)) => Ok(Some(Credential::ApiKey(key))),
        (None, None) => Ok(None),
    }
}

fn single_value<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a [u8]>, CredentialError> {
    let mut values = headers.get_all(name);
    let first = values.next();
    if values.next().is_some() {
        return Err(CredentialError::Malformed);
    }
    Ok(first.map(|v| v.as_bytes()))
}

/// `Bearer <token>`, the scheme case-insensitive (RFC 9110), the token in RFC 6750's
/// b64token alphabet.
pub fn parse_authorization(value: &[u8]) -> Result<&str, CredentialError> {
    let value = std::str::from_utf8(value).map_err(|_| CredentialError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(CredentialError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(CredentialError::Malformed);
    }
    let token = token.trim_start_matches(' ');
    let body = token.trim_end_matches('=');
    let valid = !body.is_empty()
        && token.len() <= MAX_CREDENTIAL_LEN
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        });
    if valid {
        Ok(token)
    } else {
        Err(CredentialError::Malformed)
    }
}

pub fn parse_api_key(value: &[u8]) -> Result<&str, CredentialError> {
    let value = std::str::from_utf8(value).map_err(|_| CredentialError::Malformed)?;
    let valid = !value.is_empty()
        && value.len() <= MAX_CREDENTIAL_LEN
        && value.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(value)
    } else {
        Err(CredentialError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    #[test]
    fn no_credential_headers_mean_anonymous() {
        assert_eq!(from_headers(&headers(&[])), Ok(None));
    }

    #[test]
    fn a_bearer_token_is_read_whatever_the_scheme_case() {
        for value in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER  abc.def.ghi",
        ] {
            let map = headers(&[("authorization", value)]);
            assert_eq!(
                from_headers(&map),
                Ok(Some(Credential::Bearer("abc.def.ghi"))),
                "{value}"
            );
        }
    }

    #[test]
    fn malformed_authorization_headers_are_errors_not_anonymous() {
        for value in [
            "Bearer",
            "Bearer ",
            "Basic dXNlcjpwYXNz",
            "Token abc",
            "Bearer abc def",
            "Bearer abc\"def",
            "Bearer ====",
            "abc.def.ghi",
        ] {
            let map = headers(&[("authorization", value)]);
            assert_eq!(
                from_headers(&map),
                Err(CredentialError::Malformed),
                "{value}"
            );
        }
    }

    #[test]
    fn two_authorization_headers_are_refused() {
        let map = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(from_headers(&map), Err(CredentialError::Malformed));
    }

    #[test]
    fn a_token_and_a_key_together_are_ambiguous() {
        let map = headers(&[("authorization", "Bearer a.b.c"), ("x-api-key", "fk_x")]);
        assert_eq!(from_headers(&map), Err(CredentialError::Ambiguous));
    }

    #[test]
    fn an_api_key_with_spaces_or_nothing_in_it_is_malformed() {
        for value in ["", "fk_ abc"] {
            let map = headers(&[("x-api-key", value)]);
            assert_eq!(
                from_headers(&map),
                Err(CredentialError::Malformed),
                "{value:?}"
            );
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        proptest! {
            /// Whatever the header holds, parsing never panics, and an accepted token is a
            /// plausible b64token taken from after a `Bearer` scheme.
            #[test]
            fn authorization_parsing_is_total_and_strict(value in proptest::collection::vec(any::<u8>(), 0..300)) {
                if let Ok(token) = parse_authorization(&value) {
                    let text = std::str::from_utf8(&value).unwrap();
                    prop_assert!(text[..6].eq_ignore_ascii_case("bearer"));
                    prop_assert!(!token.is_empty() && token.len() <= MAX_CREDENTIAL_LEN);
                    prop_assert!(!token.contains(' '));
                    prop_assert!(text.ends_with(token));
                }
            }

            #[test]
            fn well_formed_bearer_tokens_are_accepted(token in "[A-Za-z0-9._~+/-]{1,200}={0,2}") {
                let header = format!("Bearer {token}");
                prop_assert_eq!(parse_authorization(header.as_bytes()), Ok(token.as_str()));
            }

            #[test]
            fn api_key_headers_never_panic(value in proptest::collection::vec(any::<u8>(), 0..200)) {
                let _ = parse_api_key(&value);
            }
        }
    }
}
