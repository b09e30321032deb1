//! Answers that keep something alive while actix-http writes them.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use actix_web::{
    body::{BodySize, BoxBody, MessageBody},
    web::Bytes,
};

/// `answer`, holding `kept` until actix-http drops it: once its last byte is handed to the
/// socket (or the connection ends).
pub fn hold_until_written<T: Unpin + 'static>(
    answer: impl MessageBody + 'static,
    kept: T,
) -> BoxBody {
    BoxBody::new(HeldUntilWritten {
        answer: answer.boxed(),
        _kept: kept,
    })
}

struct HeldUntilWritten<T> {
    answer: BoxBody,
    _kept: T,
}

impl<T: Unpin> MessageBody for HeldUntilWritten<T> {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.answer.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.answer).poll_next(cx)
    }
}
