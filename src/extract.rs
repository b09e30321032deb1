//! Request body and query extractors that answer in our words.
//!
//! actix's `web::Json` reports serde's message, which can quote the submitted value (a
//! password, say) and never names the field. These extractors check the media type and size,
//! read the body with a deadline, deserialize with `serde_path_to_error` to know *which* field
//! failed, and describe the failure without echoing input.

use std::{future::Future, pin::Pin, time::Duration};

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, http::header, web};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// Body limits, registered once as app data.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    /// A client that trickles its body is cut off after this long (slowloris).
    pub read_timeout: Duration,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self {
            max_bytes: 16 * 1024,
            read_timeout: Duration::from_secs(10),
        }
    }
}

/// A JSON request body deserialized into `T`.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limits = req
            .app_data::<web::Data<BodyLimits>>()
            .map_or_else(BodyLimits::default, |limits| *limits.get_ref());
        let checked = check_media_type(req).and_then(|()| check_declared_length(req, limits));
        let mut payload = payload.take();
        Box::pin(async move {
            checked?;
            let body = tokio::time::timeout(limits.read_timeout, read_body(&mut payload, limits))
                .await
                .map_err(|_| ApiError::RequestTimeout)??;
            parse_json(&body).map(Json)
        })
    }
}

fn check_media_type(req: &HttpRequest) -> Result<(), ApiError> {
    let is_json = req.mime_type().ok().flatten().is_some_and(|mime| {
        mime.essence_str() == "application/json"
            && mime
                .get_param("charset")
                .is_none_or(|charset| charset.as_str().eq_ignore_ascii_case("utf-8"))
    });
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

fn check_declared_length(req: &HttpRequest, limits: BodyLimits) -> Result<(), ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(length) if length > limits.max_bytes => Err(ApiError::PayloadTooLarge {
            limit: limits.max_bytes,
        }),
        _ => Ok(()),
    }
}

async fn read_body(payload: &mut Payload, limits: BodyLimits) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::bad_request("The request body could not be read."))?;
        if body.len() + chunk.len() > limits.max_bytes {
            return Err(ApiError::PayloadTooLarge {
                limit: limits.max_bytes,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Every request body of this API is a JSON object. serde would also accept an array for a
/// struct (fields by position), which no client means; it is refused up front.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(ApiError::bad_request(
                "The request body is empty; send a JSON object.",
            ));
        }
        Some(b'{') => {}
        Some(_) => {
            return Err(ApiError::BadRequest {
                detail: "The request body must be a JSON object.".into(),
                errors: vec![FieldError::new("body", "must be a JSON object")],
            });
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        describe_json_error(&path, error.inner())
    })?;
    deserializer
        .end()
        .map_err(|_| ApiError::bad_request("The request body has data after the JSON value."))?;
    Ok(value)
}

fn describe_json_error(path: &str, error: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Data => {
            let (field, message) = describe_data_error(path, &error.to_string());
            ApiError::BadRequest {
                detail: "The JSON body does not have the expected shape.".into(),
                errors: vec![FieldError::new(field, message)],
            }
        }
        Category::Syntax | Category::Eof | Category::Io => ApiError::bad_request(format!(
            "The request body is not valid JSON (line {}, column {}).",
            error.line(),
            error.column()
        )),
    }
}

pub(crate) const MAX_ECHOED_FIELD_NAME: usize = 64;

/// serde's message is only used to pick our words: it names unknown and missing fields (which
/// come from the schema or are field *names*), and may quote values, which are never repeated.
fn describe_data_error(path: &str, serde_message: &str) -> (String, String) {
    let at_root = is_root(path);
    let quoted_name = || serde_message.split('`').nth(1).unwrap_or_default();
    let join = |name: &str| {
        if at_root {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    // "invalid type: string \"…\", expected i32 at line 1 column 9": serde's own words come
    // last, after the quoted value, which may itself contain "expected". A hint that still
    // holds a quote is not serde's (its type names have none) and is dropped.
    let expected = || {
        let (_, rest) = serde_message.rsplit_once(", expected ")?;
        let hint = rest.rsplit_once(" at line ").map_or(rest, |(hint, _)| hint);
        (!hint.contains(['"', '\'', '\\'])).then(|| hint.to_owned())
    };
    let (field, message) = if serde_message.starts_with("unknown field") {
        // The path already ends at the unknown key, except at the root of a query string.
        let field = if at_root {
            quoted_name().to_owned()
        } else {
            path.to_owned()
        };
        (field, "is not an accepted field".to_owned())
    } else if serde_message.starts_with("missing field") {
        (join(quoted_name()), "is required".to_owned())
    } else if serde_message.starts_with("duplicate field") {
        (join(quoted_name()), "appears more than once".to_owned())
    } else if serde_message.starts_with("invalid type")
        || serde_message.starts_with("invalid value")
    {
        let message = match expected() {
            Some(expected) => format!("has the wrong type or value (expected {expected})"),
            None => "has the wrong type or value".to_owned(),
        };
        (join_root(path), message)
    } else {
        (join_root(path), "is invalid".to_owned())
    };
    // Field names can come from the client (unknown keys): never echo more than a short name.
    (field.chars().take(MAX_ECHOED_FIELD_NAME).collect(), message)
}

/// serde_path_to_error's path of the value itself, not one of its fields.
fn is_root(path: &str) -> bool {
    path == "." || path.is_empty()
}

fn join_root(path: &str) -> String {
    if is_root(path) {
        "body".to_owned()
    } else {
        path.to_owned()
    }
}

/// Query string parameters deserialized into `T` (unknown parameters refused when `T` says
/// `deny_unknown_fields`).
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(parse_query(req.query_string()).map(Query))
    }
}

pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let message = error.inner().to_string();
        let (field, reason) = if message.starts_with("unknown field")
            || message.starts_with("missing field")
            || message.starts_with("duplicate field")
        {
            describe_data_error(".", &message)
        } else {
            (
                error
                    .path()
                    .to_string()
                    .chars()
                    .take(MAX_ECHOED_FIELD_NAME)
                    .collect(),
                "has an invalid value".to_owned(),
            )
        };
        ApiError::BadRequest {
            detail: "The query string is not valid.".into(),
            errors: vec![FieldError::new(field, reason)],
        }
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Film {
        name: String,
        year: Option<i32>,
    }

    fn errors_of(result: Result<Film, ApiError>) -> Vec<FieldError> {
        match result {
            Err(ApiError::BadRequest { errors, .. }) => errors,
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn an_unknown_field_is_named_and_refused() {
        let errors = errors_of(parse_json(br#"{"name":"Up","owner":1}"#));
        assert_eq!(
            errors,
            vec![FieldError::new("owner", "is not an accepted field")]
        );
    }

    #[test]
    fn a_missing_field_is_named() {
        let errors = errors_of(parse_json(br#"{"year":2009}"#));
        assert_eq!(errors, vec![FieldError::new("name", "is required")]);
    }

    #[test]
    fn a_wrongly_typed_value_is_described_without_being_echoed() {
        let errors = errors_of(parse_json(br#"{"name":"Up","year":"s3cr3t-value"}"#));
        assert_eq!(errors[0].field, "year");
        assert!(
            !errors[0].message.contains("s3cr3t"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn a_value_that_mimics_serde_is_not_taken_for_its_words() {
        for body in [
            br#"{"name":"Up","year":"x, expected s3cr3t"}"#.as_slice(),
            br#"{"name":"Up","year":"expected s3cr3t at line 1"}"#,
            br#"{"name":"Up","year":"s3cr3t\", expected i32"}"#,
        ] {
            let errors = errors_of(parse_json(body));
            assert_eq!(errors[0].field, "year");
            assert!(
                !errors[0].message.contains("s3cr3t"),
                "{}",
                errors[0].message
            );
        }
        let errors = errors_of(parse_json(br#"{"name":"Up","year":"2009"}"#));
        assert!(
            errors[0].message.contains("expected i32"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn a_duplicated_key_is_refused() {
        let errors = errors_of(parse_json(br#"{"name":"Up","name":"Down"}"#));
        assert_eq!(
            errors,
            vec![FieldError::new("name", "appears more than once")]
        );
    }

    #[test]
    fn syntax_errors_and_trailing_data_are_bad_requests() {
        for body in [
            &b"{"[..],
            b"{\"name\":\"Up\"} {}",
            b"   ",
            b"[1,2",
            b"[\"Up\", 2009]",
        ] {
            assert!(
                matches!(parse_json::<Film>(body), Err(ApiError::BadRequest { .. })),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn an_unknown_query_parameter_is_named() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Page {
            limit: Option<u32>,
        }
        match parse_query::<Page>("limit=5&admin=true") {
            Err(ApiError::BadRequest { errors, .. }) => {
                assert_eq!(
                    errors,
                    vec![FieldError::new("admin", "is not an accepted field")]
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_query::<Page>("limit=-1").is_err());
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #[test]
            fn any_body_is_either_parsed_or_a_400(body in proptest::collection::vec(any::<u8>(), 0..256)) {
                match parse_json::<Film>(&body) {
                    Ok(_) | Err(ApiError::BadRequest { .. }) => {}
                    Err(other) => prop_assert!(false, "unexpected {other:?}"),
                }
            }

            /// A wrongly typed value (a password sent as a number's place, say) is described
            /// without being repeated.
            #[test]
            fn wrongly_typed_values_are_never_echoed(secret in "[A-Za-z0-9]{12,40}") {
                let body = format!(r#"{{"name":"Up","year":"{secret}"}}"#);
                let Err(ApiError::BadRequest { errors, detail }) = parse_json::<Film>(body.as_bytes()) else {
                    return Err(TestCaseError::fail("a string year was accepted"));
                };
                prop_assert!(!detail.contains(&secret));
                prop_assert!(errors.iter().all(|e| !e.message.contains(&secret) && !e.field.contains(&secret)));
            }

            #[test]
            fn unknown_field_names_are_echoed_only_truncated(name in "[a-z]{1,200}") {
                let body = format!(r#"{{"name":"Up","{name}x":1}}"#);
                if let Err(ApiError::BadRequest { errors, .. }) = parse_json::<Film>(body.as_bytes()) {
                    prop_assert!(errors.iter().all(|e| e.field.chars().count() <= MAX_ECHOED_FIELD_NAME));
                }
            }
        }
    }
}
