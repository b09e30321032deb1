//! Conditional requests (RFC 9110 §13): strong entity tags, `If-None-Match` on reads and
//! `If-Match` on writes.
//!
//! # Why a hash of the representation, not a row version
//!
//! A strong `ETag` must change whenever the bytes a client would receive change. A film's
//! bytes change through more than its own row's edits: votes move its counts, and its owner's
//! username comes from another table. A hash of the serialized body changes exactly when the
//! body does, for films and for list pages alike, with no column or trigger to keep in step.
//! It costs one SHA-256 over a body that is serialized anyway (about a microsecond for a film).
//!
//! [`Representation`] is that pair, body and tag, computed once: a cache can keep it and
//! answer revalidations without serializing or hashing again.
//!
//! # Why `If-Match` is checked inside the write's transaction
//!
//! The domain hands the film it has just locked (see `domain::film::lock`) to the caller's
//! precondition and writes only if it holds. Two editors who sent the same tag queue on the
//! row lock; the second one compares against the first one's result, and gets a 412.

use std::future::{Ready, ready};

use actix_web::{
    FromRequest, HttpRequest, HttpResponse,
    dev::Payload,
    http::{
        StatusCode,
        header::{self, HeaderName, HeaderValue},
    },
    web::Bytes,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::IntoParams;

use crate::error::{ApiError, FieldError};

/// Reads may be kept by the client, never by a shared cache, and are revalidated each time
/// (`no-cache` means "ask first"; the default for everything else stays `no-store`).
const REVALIDATE: &str = "private, no-cache";
/// 128 bits of SHA-256: no two representations of one resource will ever share a tag.
const TAG_BYTES: usize = 16;

/// A response body and its strong entity tag, computed together.
#[derive(Debug, Clone)]
pub struct Representation {
    body: Bytes,
    etag: HeaderValue,
}

impl Representation {
    pub fn json(value: &impl Serialize) -> Result<Self, ApiError> {
        let body = serde_json::to_vec(value).map_err(anyhow::Error::from)?;
        let digest = Sha256::digest(&body);
        let tag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(&digest[..TAG_BYTES]));
        let etag = HeaderValue::from_str(&tag).expect("quoted base64url is a valid header value");
        Ok(Self {
            body: body.into(),
            etag,
        })
    }

    /// The body's size in bytes (what a cache entry costs).
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// The `ETag` header value, quotes included.
    pub fn etag(&self) -> &HeaderValue {
        &self.etag
    }

    /// The answer to a read: 304 with the tag and no body when the client holds this
    /// representation already, else 200 with it.
    pub fn read_response(&self, condition: &IfNoneMatch) -> HttpResponse {
        let not_modified = condition.matches(self);
        let status = if not_modified {
            StatusCode::NOT_MODIFIED
        } else {
            StatusCode::OK
        };
        let mut response = HttpResponse::build(status);
        response
            .insert_header((header::ETAG, self.etag.clone()))
            .insert_header((header::CACHE_CONTROL, REVALIDATE));
        if not_modified {
            return response.finish();
        }
        response
            .content_type("application/json")
            .body(self.body.clone())
    }

    /// A 200 with the body alone: for an answer that is not this resource's state (`GET /`'s
    /// random film), which no tag may name.
    pub fn untagged_response(&self) -> HttpResponse {
        HttpResponse::Ok()
            .content_type("application/json")
            .body(self.body.clone())
    }

    /// The answer to a write that returns the resource's new state, with its new tag.
    pub fn write_response(&self, status: StatusCode) -> HttpResponse {
        HttpResponse::build(status)
            .insert_header((header::ETAG, self.etag.clone()))
            .content_type("application/json")
            .body(self.body.clone())
    }
}

/// `If-None-Match` as the API document describes it.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfNoneMatchHeader {
    /// `*` or entity tags from `ETag` (weak comparison): 304 if one is current.
    #[serde(rename = "If-None-Match")]
    #[param(
        max_length = 2048,
        pattern = r#"^(\*|(W/)?"[!#-~]*"( *, *(W/)?"[!#-~]*")*)$"#
    )]
    pub if_none_match: Option<String>,
}

/// `If-Match` as the API document describes it.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatchHeader {
    /// `*` or entity tags from `ETag` (strong comparison): 412, and nothing changes, unless
    /// one is current.
    #[serde(rename = "If-Match")]
    #[param(
        max_length = 2048,
        pattern = r#"^(\*|(W/)?"[!#-~]*"( *, *(W/)?"[!#-~]*")*)$"#
    )]
    pub if_match: Option<String>,
}

/// An `If-Match` or `If-None-Match` field: `*` or a list of entity tags.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    Any,
    Tags(Vec<EntityTag>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct EntityTag {
    weak: bool,
    /// Between the quotes.
    opaque: String,
}

impl EntityTag {
    /// Strong comparison (`If-Match`): both strong, same characters.
    fn strongly_matches(&self, etag: &HeaderValue) -> bool {
        !self.weak && quoted(&self.opaque) == etag.as_bytes()
    }

    /// Weak comparison (`If-None-Match`): same characters, either may be weak.
    fn weakly_matches(&self, etag: &HeaderValue) -> bool {
        quoted(&self.opaque) == etag.as_bytes()
    }
}

fn quoted(opaque: &str) -> Vec<u8> {
    [b"\"", opaque.as_bytes(), b"\""].concat()
}

/// `If-None-Match`, absent unless the client sent one.
#[derive(Debug, Clone, Default)]
pub struct IfNoneMatch(Option<Condition>);

impl IfNoneMatch {
    pub fn matches(&self, current: &Representation) -> bool {
        match &self.0 {
            None => false,
            Some(Condition::Any) => true,
            Some(Condition::Tags(tags)) => tags.iter().any(|tag| tag.weakly_matches(&current.etag)),
        }
    }
}

/// `If-Match`, absent unless the client sent one. Without it a write is unconditional.
#[derive(Debug, Clone, Default)]
pub struct IfMatch(Option<Condition>);

impl IfMatch {
    /// `Err(PreconditionFailed)` unless the resource's current state (`current`, as it would
    /// be sent) is one the client named (`*`: any, as the resource exists). Serialized and
    /// hashed only when tags were sent: a write without `If-Match` pays nothing here.
    pub fn check(&self, current: &impl Serialize) -> Result<(), ApiError> {
        let holds = match &self.0 {
            None | Some(Condition::Any) => true,
            Some(Condition::Tags(tags)) => {
                let current = Representation::json(current)?;
                tags.iter().any(|tag| tag.strongly_matches(&current.etag))
            }
        };
        holds.then_some(()).ok_or(ApiError::PreconditionFailed)
    }
}

impl FromRequest for IfNoneMatch {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(condition(req, header::IF_NONE_MATCH).map(Self))
    }
}

impl FromRequest for IfMatch {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(condition(req, header::IF_MATCH).map(Self))
    }
}

/// Every line of the field, joined as one list. A malformed field is a 400 naming it: acting
/// on a guess could overwrite an edit (`If-Match`) or hide one (`If-None-Match`).
fn condition(req: &HttpRequest, name: HeaderName) -> Result<Option<Condition>, ApiError> {
    let mut lines = req.headers().get_all(&name).peekable();
    if lines.peek().is_none() {
        return Ok(None);
    }
    let joined = lines
        .map(|line| line.to_str().ok())
        .collect::<Option<Vec<_>>>()
        .map(|lines| lines.join(","));
    joined
        .as_deref()
        .and_then(parse_condition)
        .map(Some)
        .ok_or_else(|| ApiError::BadRequest {
            detail: format!("`{name}` must be `*` or a list of quoted entity tags."),
            errors: vec![FieldError::new(
                name.as_str(),
                "must be `*` or entity tags such as \"abc\" or W/\"abc\", separated by commas",
            )],
        })
}

/// RFC 9110 §8.8.3: `*`, or `#entity-tag` where `entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE`.
fn parse_condition(field: &str) -> Option<Condition> {
    if field.trim() == "*" {
        return Some(Condition::Any);
    }
    let mut tags = Vec::new();
    let mut rest = field.trim_start_matches([' ', '\t', ',']);
    while !rest.is_empty() {
        let (weak, after_prefix) = match rest.strip_prefix("W/") {
            Some(after) => (true, after),
            None => (false, rest),
        };
        let inner = after_prefix.strip_prefix('"')?;
        let end = inner.find('"')?;
        let opaque = &inner[..end];
        if !opaque.bytes().all(is_etagc) {
            return None;
        }
        tags.push(EntityTag {
            weak,
            opaque: opaque.to_owned(),
        });
        let after_tag = inner[end + 1..].trim_start_matches([' ', '\t']);
        if !(after_tag.is_empty() || after_tag.starts_with(',')) {
            return None;
        }
        rest = after_tag.trim_start_matches([' ', '\t', ',']);
    }
    (!tags.is_empty()).then_some(Condition::Tags(tags))
}

/// `etagc = %x21 / %x23-7E / obs-text`; obs-text never reaches here (`to_str` refuses it).
fn is_etagc(byte: u8) -> bool {
    byte == 0x21 || (0x23..=0x7e).contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(weak: bool, opaque: &str) -> EntityTag {
        EntityTag {
            weak,
            opaque: opaque.into(),
        }
    }

    #[test]
    fn lists_of_strong_and_weak_tags_and_the_wildcard_parse() {
        assert_eq!(parse_condition(" * "), Some(Condition::Any));
        assert_eq!(
            parse_condition("\"a\", W/\"b\",\"c,d\" ,, \"\""),
            Some(Condition::Tags(vec![
                tag(false, "a"),
                tag(true, "b"),
                tag(false, "c,d"),
                tag(false, ""),
            ]))
        );
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            ",",
            "a",
            "\"a",
            "w/\"a\"",
            "\"a\" \"b\"",
            "\"a\"x",
            "*, \"a\"",
            "\"a b\"",
            "W/ \"a\"",
        ] {
            assert_eq!(parse_condition(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn if_match_compares_strongly_and_if_none_match_weakly() {
        let value = serde_json::json!({"id": 1});
        let current = Representation::json(&value).unwrap();
        let opaque = current
            .etag()
            .to_str()
            .unwrap()
            .trim_matches('"')
            .to_owned();
        let weak = Condition::Tags(vec![tag(true, &opaque)]);
        let strong = Condition::Tags(vec![tag(false, "other"), tag(false, &opaque)]);
        assert!(IfMatch(Some(weak.clone())).check(&value).is_err());
        assert!(IfMatch(Some(strong.clone())).check(&value).is_ok());
        assert!(IfNoneMatch(Some(weak)).matches(&current));
        assert!(IfNoneMatch(Some(strong)).matches(&current));
        assert!(!IfNoneMatch(None).matches(&current));
    }

    #[test]
    fn the_tag_changes_with_any_byte_of_the_body() {
        let one = Representation::json(&serde_json::json!({"likes": 1})).unwrap();
        let two = Representation::json(&serde_json::json!({"likes": 2})).unwrap();
        assert_ne!(one.etag(), two.etag());
    }
}
