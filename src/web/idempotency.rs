//! `Idempotency-Key` (IETF httpapi draft "The Idempotency-Key HTTP Header Field") for the POSTs
//! that create films: a client that retries after a timeout gets the first answer again, and
//! nothing is created twice.
//!
//! * A key is the caller's (their user id, whichever credential they present): another user's
//!   identical key is a different key. It is kept [`KEY_LIFETIME`] in the database, so every
//!   instance answers the same, and purged once expired (lazily on reuse, and hourly).
//! * The request is fingerprinted (route and parsed fields, so whitespace or key order do not
//!   matter). The same key with another fingerprint is 422; a key whose first request is still
//!   in flight is 409; once answered, a retry gets the stored status, `Location`, `ETag` and
//!   body, with `Idempotency-Replayed: true`.
//! * Claiming a key is one committed `INSERT … ON CONFLICT DO NOTHING`, so of two racing
//!   requests (even on two instances) exactly one proceeds. The answer is recorded in the same
//!   transaction as the film it reports: the film exists exactly when its answer does. A
//!   request that fails releases its claim; one that dies (crash, lost database) leaves a
//!   claim that another request may take over after [`STALE_CLAIM_AFTER`]. Each claim carries
//!   a random token and only its holder may record an answer, so a slow first request whose
//!   claim was taken over rolls back instead of creating a second film.
//! * Only successes are stored. A request refused as invalid is refused before the key is
//!   claimed: the draft leaves storing errors to the server ("MAY"), and remembering a
//!   refusal would only stop the client correcting its request under the same key.

use std::{future::Future, pin::Pin, time::Duration};

use actix_web::{
    FromRequest, HttpRequest, HttpResponse,
    body::MessageBody,
    dev::Payload,
    http::{
        StatusCode,
        header::{self, HeaderName, HeaderValue},
    },
};
use sha2::{Digest, Sha256};

use crate::{
    auth::unix_now_i64,
    db::{self, Database, Transaction},
    error::{ApiError, FieldError},
};

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// On a replayed answer: the client can tell it from the first.
pub const IDEMPOTENCY_REPLAYED: HeaderName = HeaderName::from_static("idempotency-replayed");
pub const MAX_KEY_CHARS: usize = 255;
/// How long a key and its answer are kept.
pub const KEY_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// A claim this old whose request never answered (the instance died) may be taken over: far
/// longer than any request may run (body deadline, database timeouts), short enough that a
/// client's retry soon succeeds.
pub const STALE_CLAIM_AFTER: Duration = Duration::from_secs(60);

/// The headers of an answer worth replaying; the others (request id, rate limits, security
/// headers) belong to the response they are on.
const REPLAYED_HEADERS: [HeaderName; 3] = [header::LOCATION, header::ETAG, header::CONTENT_TYPE];

/// The request's `Idempotency-Key`, if it sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(Option<String>);

impl IdempotencyKey {
    pub fn into_inner(self) -> Option<String> {
        self.0
    }

    /// The draft's value is a Structured Field String (`"…"`); the bare token that many
    /// clients send is accepted too. Either way: 1 to 255 visible ASCII characters, no
    /// quote or backslash (so no escapes to interpret).
    fn parse(value: &HeaderValue) -> Result<String, ApiError> {
        let raw = value.to_str().unwrap_or("\u{0}");
        let key = raw
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap_or(raw);
        let well_formed = (1..=MAX_KEY_CHARS).contains(&key.len())
            && key
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        if well_formed {
            Ok(key.to_owned())
        } else {
            Err(ApiError::BadRequest {
                detail: "The Idempotency-Key header is malformed.".into(),
                errors: vec![FieldError::new(
                    "Idempotency-Key",
                    "must be 1 to 255 visible ASCII characters without quotes or backslashes, \
                     optionally in double quotes",
                )],
            })
        }
    }
}

impl FromRequest for IdempotencyKey {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let mut values = req.headers().get_all(IDEMPOTENCY_KEY);
        let key = match (values.next(), values.next()) {
            (None, _) => Ok(Self(None)),
            (Some(value), None) => Self::parse(value).map(|key| Self(Some(key))),
            (Some(_), Some(_)) => Err(ApiError::bad_request(
                "Send one Idempotency-Key header, not several.",
            )),
        };
        std::future::ready(key)
    }
}

/// Runs `create` at most once per caller and `key`.
///
/// `create` does its writes in the transaction it is given and returns the answer; the answer
/// is recorded in that transaction, before it commits. `fingerprint` names everything that
/// makes two requests the same (route and parsed body).
pub async fn at_most_once<F>(
    db: &Database,
    user_id: i64,
    key: String,
    fingerprint: &[&[u8]],
    create: F,
) -> Result<HttpResponse, ApiError>
where
    F: for<'t> FnOnce(&'t mut Transaction) -> LocalFuture<'t, HttpResponse>,
{
    let claim = Claim {
        user_id,
        key,
        fingerprint: digest(fingerprint),
        token: uuid::Uuid::new_v4().as_bytes().to_vec(),
    };
    if let Some(earlier) = claim.take(db).await? {
        return earlier.replay(&claim);
    }
    let outcome = async {
        let mut tx = db.begin().await?;
        let response = create(&mut tx).await?;
        let (response, recorded) = Recorded::capture(response)?;
        claim.record(&mut tx, &recorded).await?;
        tx.commit().await?;
        Ok(response)
    }
    .await;
    if outcome.is_err() {
        claim.release(db).await;
    }
    outcome
}

pub type LocalFuture<'t, T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + 't>>;

fn digest(parts: &[&[u8]]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    for part in parts {
        // Length-prefixed: ("ab", "c") and ("a", "bc") differ.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().to_vec()
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

struct Claim {
    user_id: i64,
    key: String,
    fingerprint: Vec<u8>,
    token: Vec<u8>,
}

/// The row already holding a key.
#[derive(sqlx::FromRow)]
struct Earlier {
    fingerprint: Vec<u8>,
    status: Option<i64>,
    headers: Option<String>,
    body: Option<Vec<u8>>,
}

impl Claim {
    /// Claims the key for this request (`None`), or returns the row that holds it. An expired
    /// row, or a stale claim that never answered, is deleted first and the key claimed anew.
    async fn take(&self, db: &Database) -> Result<Option<Earlier>, ApiError> {
        let now = unix_now_i64();
        let mut tx = db.begin().await?;
        db::execute!(
            &mut tx,
            "DELETE FROM idempotency_keys
             WHERE user_id = $1 AND idem_key = $2
               AND (expires_at <= $3 OR (status IS NULL AND claimed_at <= $4))",
            self.user_id,
            self.key.as_str(),
            now,
            now.saturating_sub(secs(STALE_CLAIM_AFTER))
        )
        .await?;
        let claimed = db::execute!(
            &mut tx,
            "INSERT INTO idempotency_keys
                 (user_id, idem_key, fingerprint, claim_token, claimed_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_id, idem_key) DO NOTHING",
            self.user_id,
            self.key.as_str(),
            self.fingerprint.as_slice(),
            self.token.as_slice(),
            now,
            now.saturating_add(secs(KEY_LIFETIME))
        )
        .await?;
        let earlier = if claimed == 1 {
            None
        } else {
            Some(
                db::fetch_one!(
                    &mut tx,
                    "SELECT fingerprint, status, headers, body FROM idempotency_keys
                     WHERE user_id = $1 AND idem_key = $2",
                    self.user_id,
                    self.key.as_str()
                )
                .await?,
            )
        };
        tx.commit().await?;
        Ok(earlier)
    }

    /// Records the answer, if this request still holds the claim; otherwise the caller's
    /// transaction must not commit (another request took the key over).
    async fn record(&self, tx: &mut Transaction, recorded: &Recorded) -> Result<(), ApiError> {
        let headers = serde_json::to_string(&recorded.headers)
            .map_err(|error| ApiError::Internal(error.into()))?;
        let updated = db::execute!(
            tx,
            "UPDATE idempotency_keys SET status = $4, headers = $5, body = $6
             WHERE user_id = $1 AND idem_key = $2 AND claim_token = $3 AND status IS NULL",
            self.user_id,
            self.key.as_str(),
            self.token.as_slice(),
            i64::from(recorded.status),
            headers,
            recorded.body.as_slice()
        )
        .await?;
        if updated == 1 {
            Ok(())
        } else {
            Err(ApiError::IdempotencyKeyInFlight)
        }
    }

    /// Frees the key after a failed request, so a retry may run. If this fails too (the
    /// database is gone), the claim goes stale and is taken over later.
    async fn release(&self, db: &Database) {
        let released = async {
            let mut connection = db.write().await?;
            db::execute!(
                &mut connection,
                "DELETE FROM idempotency_keys
                 WHERE user_id = $1 AND idem_key = $2 AND claim_token = $3 AND status IS NULL",
                self.user_id,
                self.key.as_str(),
                self.token.as_slice()
            )
            .await
        }
        .await;
        if let Err(error) = released {
            tracing::warn!(%error, "an idempotency key could not be released; it will go stale");
        }
    }
}

impl Earlier {
    fn replay(self, claim: &Claim) -> Result<HttpResponse, ApiError> {
        if self.fingerprint != claim.fingerprint {
            return Err(ApiError::IdempotencyKeyReused);
        }
        let (Some(status), Some(headers), Some(body)) = (self.status, self.headers, self.body)
        else {
            return Err(ApiError::IdempotencyKeyInFlight);
        };
        let status = u16::try_from(status)
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a stored status is invalid")))?;
        let headers: Vec<(String, String)> =
            serde_json::from_str(&headers).map_err(|error| ApiError::Internal(error.into()))?;
        let mut response = HttpResponse::build(status);
        for header in headers {
            response.insert_header(header);
        }
        Ok(response
            .insert_header((IDEMPOTENCY_REPLAYED, "true"))
            .body(body))
    }
}

/// An answer as stored for replay.
struct Recorded {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    /// Reads the answer's body (small JSON, already in memory) and rebuilds the response.
    fn capture(response: HttpResponse) -> Result<(HttpResponse, Self), ApiError> {
        let headers = REPLAYED_HEADERS
            .iter()
            .filter_map(|name| {
                let value = response.headers().get(name)?.to_str().ok()?;
                Some((name.as_str().to_owned(), value.to_owned()))
            })
            .collect();
        let status = response.status();
        let (head, body) = response.into_parts();
        let body = body.try_into_bytes().map_err(|_| {
            ApiError::Internal(anyhow::anyhow!("a recorded answer's body is not in memory"))
        })?;
        let recorded = Self {
            status: status.as_u16(),
            headers,
            body: body.to_vec(),
        };
        Ok((head.set_body(body).map_into_boxed_body(), recorded))
    }
}

/// Deletes expired keys and their answers; returns how many went.
pub async fn purge_expired(db: &Database) -> sqlx::Result<u64> {
    let mut connection = db.write().await?;
    db::execute!(
        &mut connection,
        "DELETE FROM idempotency_keys WHERE expires_at <= $1",
        unix_now_i64()
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<String, ApiError> {
        IdempotencyKey::parse(&HeaderValue::from_bytes(raw.as_bytes()).unwrap())
    }

    #[test]
    fn keys_are_structured_strings_or_bare_tokens() {
        assert_eq!(parse("\"abc-123\"").unwrap(), "abc-123");
        assert_eq!(
            parse("8e03978e-40d5-43e8-bc93-6894a57f9324").unwrap().len(),
            36
        );
        assert!(parse(&"k".repeat(MAX_KEY_CHARS)).is_ok());
        for bad in ["", "\"\"", "a b", "a\\b", "\"a\"b\"", "\"abc", "é"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse(&"k".repeat(MAX_KEY_CHARS + 1)).is_err());
    }

    #[test]
    fn fingerprints_keep_their_parts_apart() {
        assert_ne!(digest(&[b"ab", b"c"]), digest(&[b"a", b"bc"]));
        assert_eq!(digest(&[b"a", b"b"]), digest(&[b"a", b"b"]));
    }
}
