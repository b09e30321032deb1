//! A connection that goes too long without a request in progress is closed, whatever it is
//! still sending.
//!
//! actix-http bounds the head of the *first* request on a connection only
//! (`client_request_timeout`), and stops its keep-alive timer at the first byte of the next
//! one (actix-http 3.19, `h1/dispatcher.rs`). After one normal request, a client could send the
//! next head one byte a second and hold the connection, and a file descriptor, for ever; a few
//! thousand such clients exhaust the server's descriptors. It is the head-side twin of the body
//! drained for ever (actix/actix-web#3936, closed by `unread_body`).
//!
//! So every accepted connection gets a watchdog, which holds a duplicate of its socket and
//! shuts the socket down once the connection has had no request in progress for the keep-alive
//! time plus the request timeout (the time a client may stay silent, then the time it has to
//! send a head). actix-http's read then ends and it drops the connection. A request is in
//! progress from the moment its head is complete until its answer has been handed to the
//! socket, so a slow handler or a slowly read answer is never cut. The duplicate means the
//! descriptor number cannot be reused by another connection while the watchdog may still act
//! on it; it is closed when actix-http drops the connection (its data and its last answer).

use std::{
    any::Any,
    cell::Cell,
    os::fd::{AsFd, OwnedFd},
    rc::{Rc, Weak},
    time::Duration,
};

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::{
    Error,
    body::{BoxBody, MessageBody},
    dev::{Extensions, ServiceRequest, ServiceResponse},
    middleware::Next,
    rt::net::TcpStream,
};
use rustix::net::Shutdown;
use tokio::{
    task::AbortHandle,
    time::{Instant, sleep_until},
};

use crate::web::body::hold_until_written;

/// How long a connection may go without a request in progress.
#[derive(Clone, Copy, Debug)]
pub struct IdleLimit(Duration);

impl IdleLimit {
    pub fn new(keep_alive: Duration, request_timeout: Duration) -> Self {
        Self(keep_alive + request_timeout)
    }

    /// For `HttpServer::on_connect`: starts watching a newly accepted connection, plain or TLS.
    pub fn watch(self, connection: &dyn Any, data: &mut Extensions) {
        let Some(socket) = tcp_stream(connection) else {
            tracing::error!("a connection of an unknown type cannot be watched");
            return;
        };
        match socket.as_fd().try_clone_to_owned() {
            Ok(duplicate) => {
                data.insert(ConnectionWatch::start(duplicate, self.0));
            }
            Err(error) => {
                // Out of descriptors: a connection that cannot be watched is not served.
                tracing::warn!(%error, "closing a connection that cannot be watched");
                shut_down(socket);
            }
        }
    }
}

fn tcp_stream(connection: &dyn Any) -> Option<&TcpStream> {
    connection.downcast_ref::<TcpStream>().or_else(|| {
        connection
            .downcast_ref::<TlsStream<TcpStream>>()
            .map(|tls| tls.get_ref().0)
    })
}

/// Ends both directions of the connection; actix-http then reads its end and drops it. Data
/// already written is still delivered first.
fn shut_down(socket: impl AsFd) {
    if let Err(error) = rustix::net::shutdown(socket, Shutdown::Both) {
        tracing::debug!(%error, "the connection was closed already");
    }
}

/// Kept in each connection's data: ends the watchdog when actix-http drops the connection.
struct ConnectionWatch {
    connection: Rc<WatchedConnection>,
    watchdog: AbortHandle,
}

struct WatchedConnection {
    /// A duplicate of the connection's socket, closed when the last reference goes.
    socket: OwnedFd,
    requests_in_progress: Cell<usize>,
    idle_since: Cell<Instant>,
}

impl ConnectionWatch {
    fn start(socket: OwnedFd, limit: Duration) -> Self {
        let connection = Rc::new(WatchedConnection {
            socket,
            requests_in_progress: Cell::new(0),
            idle_since: Cell::new(Instant::now()),
        });
        let watchdog =
            actix_web::rt::spawn(close_when_idle(Rc::downgrade(&connection), limit)).abort_handle();
        Self {
            connection,
            watchdog,
        }
    }

    fn request_started(&self) -> RequestInProgress {
        let connection = &self.connection;
        connection
            .requests_in_progress
            .set(connection.requests_in_progress.get() + 1);
        RequestInProgress(connection.clone())
    }
}

impl Drop for ConnectionWatch {
    fn drop(&mut self) {
        self.watchdog.abort();
    }
}

async fn close_when_idle(connection: Weak<WatchedConnection>, limit: Duration) {
    while let Some(next_look) = connection.upgrade().and_then(|c| c.close_if_idle(limit)) {
        sleep_until(next_look).await;
    }
}

impl WatchedConnection {
    /// Shuts the socket down if it has been idle for `limit`; otherwise says when to look again.
    fn close_if_idle(&self, limit: Duration) -> Option<Instant> {
        let now = Instant::now();
        if self.requests_in_progress.get() > 0 {
            // Whatever finishes before then will be idle for `limit` after this at the earliest.
            return Some(now + limit);
        }
        let deadline = self.idle_since.get() + limit;
        if deadline > now {
            return Some(deadline);
        }
        shut_down(&self.socket);
        metrics::counter!("http_idle_connections_closed_total").increment(1);
        None
    }
}

/// Counts a request as in progress until its answer has been handed to the socket.
struct RequestInProgress(Rc<WatchedConnection>);

impl Drop for RequestInProgress {
    fn drop(&mut self) {
        let connection = &self.0;
        let in_progress = connection.requests_in_progress.get() - 1;
        connection.requests_in_progress.set(in_progress);
        if in_progress == 0 {
            connection.idle_since.set(Instant::now());
        }
    }
}

/// The middleware that tells each connection's watchdog when it has a request in progress.
/// An error that escapes it is rendered from a buffer by actix-http: the connection is then
/// idle already.
pub async fn count_requests_in_progress(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let in_progress = req
        .conn_data::<ConnectionWatch>()
        .map(ConnectionWatch::request_started);
    let response = next.call(req).await?;
    Ok(response.map_body(|_, answer| hold_until_written(answer, in_progress)))
}
