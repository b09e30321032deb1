//! A request body that the answer did not need must not keep the connection open.
//!
//! Whoever answers before the body has arrived (a 404, a 401, a limiter's 429, a body read
//! that timed out with 408) leaves actix-http to deal with the rest when the answer is sent.
//! If nothing refers to the request body any more and it is chunked, actix-http keeps the
//! connection and reads the rest with no deadline (actix/actix-web#3936): one small chunk
//! every few seconds then holds a socket for ever, and a few hundred of them exhaust the
//! server's file descriptors. If the body is still referred to, actix-http answers with
//! `Connection: close` and reads for at most `client_disconnect_timeout` before closing.
//!
//! So the outermost middleware shares every request body between the handler and the answer,
//! which keeps its share until it has been written, error answers included. A body that was
//! read to its end is unaffected, and its connection stays open for the next request.

use std::{
    cell::RefCell,
    fmt,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use actix_web::{
    Error, HttpMessage, HttpResponse, ResponseError,
    body::{BoxBody, MessageBody},
    dev::{Payload, ServiceRequest, ServiceResponse},
    error::PayloadError,
    http::StatusCode,
    middleware::Next,
    web::Bytes,
};
use futures_util::Stream;

use crate::web::body::hold_until_written;

pub async fn close_after_unread_body(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let body = match req.take_payload() {
        Payload::None => return next.call(req).await.map(|res| res.map_into_boxed_body()),
        payload => SharedBody(Rc::new(RefCell::new(payload))),
    };
    req.set_payload(Payload::Stream {
        payload: Box::pin(body.clone()),
    });
    match next.call(req).await {
        Ok(response) => Ok(response.map_body(|_, answer| body.hold_until_written(answer))),
        Err(error) => Err(UnreadBodyError { error, body }.into()),
    }
}

/// The request body, read by the handler through one clone and kept by the answer in another.
#[derive(Clone)]
struct SharedBody(Rc<RefCell<Payload>>);

impl SharedBody {
    fn hold_until_written(&self, answer: impl MessageBody + 'static) -> BoxBody {
        hold_until_written(answer, self.clone())
    }
}

impl Stream for SharedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_next(cx)
    }
}

/// An error that reached the outermost middleware: actix-http renders it into the answer,
/// which must hold the request body as well.
struct UnreadBodyError {
    error: Error,
    body: SharedBody,
}

impl ResponseError for UnreadBodyError {
    fn status_code(&self) -> StatusCode {
        self.error.as_response_error().status_code()
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        self.error
            .error_response()
            .map_body(|_, answer| self.body.hold_until_written(answer))
    }
}

impl fmt::Debug for UnreadBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.error, f)
    }
}

impl fmt::Display for UnreadBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}
