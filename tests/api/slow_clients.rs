//! Slow clients: a request body trickled in one small chunk at a time, or a request head
//! trickled one byte at a time, holds no connection for long, whatever the route answered,
//! while other clients keep being served and slow but busy connections are left alone.

use std::{
    collections::HashSet,
    convert::Infallible,
    sync::Arc,
    time::{Duration, Instant},
};

use actix_web::{
    App, HttpResponse, HttpServer,
    body::{MessageBody, SizedStream},
    dev::{ServiceRequest, ServiceResponse},
    middleware::{Next, from_fn},
    web::{self, Bytes},
};
use filmvault::security::{
    idle_connections::{IdleLimit, count_requests_in_progress},
    unread_body::close_after_unread_body,
};
use reqwest::StatusCode;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    task::JoinSet,
};
use tokio_rustls::TlsConnector;

use crate::{
    helpers::{TestApp, spawn_app_with, spawn_tls_app},
    monitoring::{metrics_as, sample},
};

/// `REQUEST_TIMEOUT_MS` for these tests: the time allowed for a head, and for a body.
const DEADLINE: Duration = Duration::from_secs(2);
/// Every connection must be closed this long after it opened (a body read to its deadline,
/// then the short linger that lets the answer reach the client) ...
const CLOSED_WITHIN: Duration = Duration::from_secs(3 * DEADLINE.as_secs());
/// ... and the test stops waiting here, so that it fails instead of hanging.
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);
const CHUNK_EVERY: Duration = Duration::from_secs(1);

/// The overrides every test here starts from: the short deadline, and a login limit that
/// answers all but the first trickled login with 429.
const OVERRIDES: [(&str, &str); 2] = [("REQUEST_TIMEOUT_MS", "2000"), ("RATE_LIMIT_AUTH", "1/min")];

/// A kind of trickled request: its head, and the answers it may get before the body ends.
struct Route {
    head: &'static str,
    answers: &'static [u16],
}

static ROUTES: [Route; 4] = [
    Route {
        head: "POST /no/such/route HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n",
        answers: &[404],
    },
    Route {
        // The first reaches the handler, whose body read times out; the limiter answers the rest.
        head: "POST /api/v1/auth/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
               Transfer-Encoding: chunked\r\n\r\n",
        answers: &[408, 429],
    },
    Route {
        head: "POST /api/v1/films HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
               Transfer-Encoding: chunked\r\n\r\n",
        answers: &[401],
    },
    Route {
        head: "GET /health/live HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n",
        answers: &[200],
    },
];

/// On the plain-HTTP listener of a TLS app: a page is redirected before any body is read; the
/// API is refused once its body (read for a refresh token to revoke) has had its deadline.
static ON_PLAIN_HTTP: [Route; 2] = [
    Route {
        head: "POST /static/index.html HTTP/1.1\r\nHost: localhost\r\n\
               Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        answers: &[301],
    },
    Route {
        head: "POST /api/v1/auth/refresh HTTP/1.1\r\nHost: localhost\r\n\
               Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        answers: &[403],
    },
];

/// What one trickling client saw.
#[derive(Debug)]
struct Trickled {
    status: Option<u16>,
    /// How long the server kept the connection open; `None` if it still was when we gave up.
    open_for: Option<Duration>,
}

/// Sends `head`, then one small chunk every second, never the last one, until the server
/// closes the connection (a read of 0 bytes or an error) or the test gives up.
async fn trickle<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, head: &str) -> Trickled {
    let opened = Instant::now();
    let mut answer = Vec::new();
    let mut buffer = [0; 1024];
    let mut chunks = tokio::time::interval(CHUNK_EVERY);
    let give_up = tokio::time::sleep(GIVE_UP_AFTER);
    tokio::pin!(give_up);
    let closed = match stream.write_all(head.as_bytes()).await {
        Err(_) => true,
        Ok(()) => loop {
            tokio::select! {
                read = stream.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => break true,
                    Ok(n) => answer.extend_from_slice(&buffer[..n]),
                },
                _ = chunks.tick() => {
                    if stream.write_all(b"1\r\n{\r\n").await.is_err() {
                        break true;
                    }
                }
                () = &mut give_up => break false,
            }
        },
    };
    Trickled {
        status: status_code(&answer),
        open_for: closed.then(|| opened.elapsed()),
    }
}

fn status_code(answer: &[u8]) -> Option<u16> {
    std::str::from_utf8(answer.get(9..12)?).ok()?.parse().ok()
}

/// Runs `count` trickling clients spread over `routes`, opened by `connect`, and checks
/// each got an expected answer and was disconnected in time.
async fn assert_tricklers_are_cut_off<S, F>(
    count: usize,
    routes: &'static [Route],
    connect: impl Fn() -> F,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Future<Output = S> + Send + 'static,
{
    let mut clients = JoinSet::new();
    for i in 0..count {
        let route = &routes[i % routes.len()];
        let stream = connect();
        clients.spawn(async move { (route, trickle(stream.await, route.head).await) });
    }
    let mut late = Vec::new();
    while let Some(joined) = clients.join_next().await {
        let (route, trickled) = joined.unwrap();
        let status = trickled.status.unwrap_or_default();
        assert!(
            route.answers.contains(&status),
            "{:?} answered {trickled:?}",
            route.head.lines().next()
        );
        if trickled.open_for.is_none_or(|open| open > CLOSED_WITHIN) {
            late.push((status, trickled.open_for));
        }
    }
    assert!(
        late.is_empty(),
        "{} of {count} trickling connections were not closed within {CLOSED_WITHIN:?} \
         (status, open for): {:?}",
        late.len(),
        &late[..late.len().min(10)]
    );
}

/// Until `tricklers` is done, a well-behaved client keeps asking for the probe and a list,
/// and every answer must be a quick 200.
async fn while_serving_others(app: &TestApp, tricklers: impl Future<Output = ()>) {
    tokio::pin!(tricklers);
    let mut served = 0;
    loop {
        tokio::select! {
            () = &mut tricklers => break,
            () = serve_one_round(app) => served += 1,
        }
    }
    assert!(
        served >= 5,
        "only {served} rounds were served while others trickled"
    );
}

async fn serve_one_round(app: &TestApp) {
    for path in ["/health/live", "/api/v1/films"] {
        let started = Instant::now();
        let status = app.get(path, None).await.status();
        assert_eq!(status, StatusCode::OK, "{path} while others trickle");
        let took = started.elapsed();
        assert!(took < DEADLINE, "{path} took {took:?} while others trickle");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn three_hundred_trickled_bodies_are_all_cut_off_while_others_are_served() {
    let app = spawn_app_with(&OVERRIDES).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let tricklers = assert_tricklers_are_cut_off(300, &ROUTES, || {
        let address = address.clone();
        async move { TcpStream::connect(address).await.unwrap() }
    });
    while_serving_others(&app, tricklers).await;
}

#[tokio::test]
async fn trickled_bodies_over_https_are_cut_off_too() {
    let app = spawn_tls_app(&OVERRIDES).await;
    let address = app.https_socket_address();
    let connector = tls_connector(app.ca_pem.as_ref().unwrap());
    assert_tricklers_are_cut_off(40, &ROUTES, || {
        let (address, connector) = (address.clone(), connector.clone());
        async move {
            let tcp = TcpStream::connect(address).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            connector.connect(name, tcp).await.unwrap()
        }
    })
    .await;

    // The plain-HTTP listener answers before any route: a redirect, or a refusal.
    let plain = app.address.trim_start_matches("http://").to_owned();
    assert_tricklers_are_cut_off(10, &ON_PLAIN_HTTP, || {
        let plain = plain.clone();
        async move { TcpStream::connect(plain).await.unwrap() }
    })
    .await;
}

/// Each middleware of the app answers with a response; an error that escaped them all would
/// be rendered by actix-http itself, and that answer must close the connection as well.
#[tokio::test]
async fn an_error_that_escapes_every_middleware_closes_the_connection_too() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = HttpServer::new(|| {
        App::new()
            .wrap(from_fn(refuse_with_an_error))
            .wrap(from_fn(close_after_unread_body))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    let stream = TcpStream::connect(address).await.unwrap();
    let trickled = trickle(stream, ROUTES[0].head).await;
    assert_eq!(trickled.status, Some(403), "{trickled:?}");
    assert!(
        trickled.open_for.is_some_and(|open| open < CLOSED_WITHIN),
        "{trickled:?}"
    );
}

async fn refuse_with_an_error(
    _: ServiceRequest,
    _: Next<impl MessageBody>,
) -> Result<ServiceResponse, actix_web::Error> {
    Err(actix_web::error::ErrorForbidden("refused"))
}

#[tokio::test]
async fn a_chunked_body_sent_in_full_keeps_the_connection_alive() {
    let app = spawn_app_with(&OVERRIDES).await;
    let mut stream = TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    let body = r#"{"username":"nobody","password":"wrong"}"#;
    let login = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    stream.write_all(login.as_bytes()).await.unwrap();
    let first = read_answer(&mut stream).await;
    assert_eq!(
        status_code(&first),
        Some(401),
        "{}",
        String::from_utf8_lossy(&first)
    );
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let second = read_answer(&mut stream).await;
    assert_eq!(
        status_code(&second),
        Some(200),
        "the connection was kept for the next request"
    );
}

/// Reads until one answer (with a `Content-Length` body) has arrived.
async fn read_answer(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut answer = Vec::new();
    let mut buffer = [0; 4096];
    tokio::time::timeout(Duration::from_secs(5), async {
        while !answer_complete(&answer) {
            let n = stream.read(&mut buffer).await.unwrap();
            assert!(n > 0, "closed after {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buffer[..n]);
        }
    })
    .await
    .expect("an answer");
    answer
}

fn answer_complete(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>())
        })
        .and_then(Result::ok)
        .unwrap_or(0);
    body.len() >= length
}

fn tls_connector(ca_pem: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// For the head tests: a connection may go `KEEP_ALIVE_SECS` + `REQUEST_TIMEOUT_MS` (4 s)
/// without a request in progress. The keep-alive is long enough that a client on a loaded
/// machine sends its first trickled byte before actix-http's keep-alive timer ends the
/// connection: only the watch, which counts what it closes, may close these.
const SHORT_IDLE: [(&str, &str); 2] = [("KEEP_ALIVE_SECS", "3"), ("REQUEST_TIMEOUT_MS", "1000")];
const IDLE_LIMIT: Duration = Duration::from_secs(4);
/// How late after its idle limit a watched connection may be closed on a loaded machine.
const CLOSE_SLACK: Duration = Duration::from_secs(4);
/// A connection trickling a head must be closed this long after its last answer.
const IDLE_CLOSED_WITHIN: Duration = IDLE_LIMIT.saturating_add(CLOSE_SLACK);
const BYTE_EVERY: Duration = Duration::from_millis(500);
const IDLE_CLOSED_METRIC: &str = "http_idle_connections_closed_total";
const GOOD_REQUEST: &[u8] = b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n";

/// Makes one good request, then trickles the head of the next. `open_for` counts from the
/// first answer.
async fn trickle_the_next_head<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> Trickled {
    stream.write_all(GOOD_REQUEST).await.unwrap();
    let first = read_answer(&mut stream).await;
    Trickled {
        status: status_code(&first),
        ..trickle_a_head(stream).await
    }
}

/// Sends a request head one byte every 500 ms (an endless header value) until the server
/// closes the connection or the test gives up.
async fn trickle_a_head<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> Trickled {
    let started = Instant::now();
    let head = b"GET /health/live HTTP/1.1\r\nHost: test\r\nX-Slow: ";
    let mut next_bytes = head.iter().chain(std::iter::repeat(&b'a'));
    let mut bytes = tokio::time::interval(BYTE_EVERY);
    let mut buffer = [0; 1024];
    let give_up = tokio::time::sleep(GIVE_UP_AFTER);
    tokio::pin!(give_up);
    let closed = loop {
        tokio::select! {
            read = stream.read(&mut buffer) => {
                if matches!(read, Ok(0) | Err(_)) {
                    break true;
                }
            }
            _ = bytes.tick() => {
                let byte = next_bytes.next().unwrap_or(&b'a');
                if stream.write_all(&[*byte]).await.is_err() {
                    break true;
                }
            }
            () = &mut give_up => break false,
        }
    };
    Trickled {
        status: None,
        open_for: closed.then(|| started.elapsed()),
    }
}

/// Runs `count` clients that each trickle the head of their second request, and checks that
/// each got its first answer and was disconnected in time.
async fn assert_trickled_heads_are_cut_off<S, F>(count: usize, connect: impl Fn() -> F)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Future<Output = S> + Send + 'static,
{
    let mut clients = JoinSet::new();
    for _ in 0..count {
        let stream = connect();
        clients.spawn(async move { trickle_the_next_head(stream.await).await });
    }
    let mut late = Vec::new();
    while let Some(joined) = clients.join_next().await {
        let trickled = joined.unwrap();
        assert_eq!(
            trickled.status,
            Some(200),
            "the first request: {trickled:?}"
        );
        if trickled
            .open_for
            .is_none_or(|open| open > IDLE_CLOSED_WITHIN)
        {
            late.push(trickled.open_for);
        }
    }
    assert!(
        late.is_empty(),
        "{} of {count} connections trickling a head were not closed within {IDLE_CLOSED_WITHIN:?} \
         of their last answer (open for): {:?}",
        late.len(),
        &late[..late.len().min(10)]
    );
}

#[tokio::test]
async fn a_hundred_trickled_second_heads_are_all_cut_off_while_others_are_served() {
    let app = spawn_app_with(&SHORT_IDLE).await;
    let admin = app.new_admin().await;
    let closed = async || sample(&metrics_as(&app, &admin.token).await, IDLE_CLOSED_METRIC);
    let closed_before = closed().await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let tricklers = assert_trickled_heads_are_cut_off(100, || {
        let address = address.clone();
        async move { TcpStream::connect(address).await.unwrap() }
    });
    while_serving_others(&app, tricklers).await;
    // Counted for operators (the metric is process-wide: other tests' apps only add to it).
    let closed_after = closed().await;
    assert!(
        closed_after >= closed_before + 100.0,
        "the watch counted {} closes for 100 connections",
        closed_after - closed_before
    );
}

#[tokio::test]
async fn request_heads_trickled_over_https_are_cut_off_too() {
    let app = spawn_tls_app(&SHORT_IDLE).await;
    let address = app.https_socket_address();
    let connector = tls_connector(app.ca_pem.as_ref().unwrap());
    assert_trickled_heads_are_cut_off(50, || {
        let (address, connector) = (address.clone(), connector.clone());
        async move {
            let tcp = TcpStream::connect(address).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            connector.connect(name, tcp).await.unwrap()
        }
    })
    .await;
}

#[tokio::test]
async fn a_connection_kept_busy_with_a_request_every_half_second_is_never_cut() {
    // A keep-alive four times the pause between requests: a loaded machine's late answer must
    // not look like an idle client (with 1 s, one slow answer under CI's load closed it).
    let keep_alive = Duration::from_secs(2);
    let idle_limit = keep_alive + Duration::from_secs(1);
    let app = spawn_app_with(&[("KEEP_ALIVE_SECS", "2"), ("REQUEST_TIMEOUT_MS", "1000")]).await;
    let mut stream = TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    let started = Instant::now();
    let mut answered = 0;
    // Well past the idle limit, counted from when the connection opened.
    while started.elapsed() < 2 * idle_limit + Duration::from_secs(1) {
        stream.write_all(GOOD_REQUEST).await.unwrap();
        let answer = read_answer(&mut stream).await;
        assert_eq!(status_code(&answer), Some(200), "request {answered}");
        answered += 1;
        tokio::time::sleep(BYTE_EVERY).await;
    }
    assert!(
        answered >= 5,
        "only {answered} requests in {:?}",
        started.elapsed()
    );
}

/// The slow app's keep-alive and request timeout: an idle limit of 2 s.
const SLOW_APP_TIMEOUTS: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(1));
const SLOW_APP_CLOSED_WITHIN: Duration = SLOW_APP_TIMEOUTS
    .0
    .saturating_add(SLOW_APP_TIMEOUTS.1)
    .saturating_add(CLOSE_SLACK);

/// An app with the watch wired as in `startup.rs`, and routes slower than the idle limit.
fn spawn_slow_app() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (keep_alive, request_timeout) = SLOW_APP_TIMEOUTS;
    let idle_limit = IdleLimit::new(keep_alive, request_timeout);
    let server = HttpServer::new(|| {
        App::new()
            .route("/slow-handler", web::get().to(slow_handler))
            .route("/slow-answer", web::get().to(slow_answer))
            .wrap(from_fn(count_requests_in_progress))
    })
    .keep_alive(keep_alive)
    .client_request_timeout(request_timeout)
    .on_connect(move |connection, data| idle_limit.watch(connection, data))
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    address
}

const SLOW: Duration = Duration::from_secs(3);

async fn slow_handler() -> &'static str {
    tokio::time::sleep(SLOW).await;
    "done"
}

/// Six bytes, one every half second.
async fn slow_answer() -> HttpResponse {
    let bytes = futures_util::stream::unfold(0, |sent| async move {
        (sent < 6).then_some(())?;
        tokio::time::sleep(SLOW / 6).await;
        Some((Ok::<_, Infallible>(Bytes::from_static(b"x")), sent + 1))
    });
    HttpResponse::Ok().body(SizedStream::new(6, bytes))
}

#[tokio::test]
async fn a_slow_handler_and_a_slow_answer_keep_their_connection() {
    let address = spawn_slow_app();
    let mut stream = TcpStream::connect(address).await.unwrap();
    for path in ["/slow-handler", "/slow-answer"] {
        let started = Instant::now();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_answer(&mut stream).await;
        assert_eq!(status_code(&answer), Some(200), "{path}");
        assert!(
            started.elapsed() >= SLOW,
            "{path} was not slower than the idle limit"
        );
    }
    // The same connection, still watched: an idle one is cut as in the app.
    let trickled = trickle_the_next_head(stream).await;
    assert!(
        trickled
            .open_for
            .is_some_and(|open| open < SLOW_APP_CLOSED_WITHIN),
        "{trickled:?}"
    );
}

/// The app's side of its open connections (socket inodes): TCP sockets on local `port` that
/// are not the listener.
fn connection_sockets(port: u16) -> HashSet<u64> {
    const LISTEN: &str = "0A";
    let mut sockets = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let table = std::fs::read_to_string(table).unwrap_or_default();
        sockets.extend(table.lines().skip(1).filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit(':').next()?;
            let on_port = u16::from_str_radix(local_port, 16).ok()? == port;
            let inode: u64 = fields.get(9)?.parse().ok()?;
            (on_port && *fields.get(3)? != LISTEN && inode != 0).then_some(inode)
        }));
    }
    sockets
}

/// How many descriptors of this process (the app runs in it) refer to one of `sockets`,
/// whatever state those sockets are in now.
fn descriptors_of(sockets: &HashSet<u64>) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .filter(|inode| sockets.contains(inode))
        .count()
}

#[tokio::test]
async fn every_connection_gives_back_its_descriptors_when_it_ends() {
    // Long enough a keep-alive for every connection to be open at once.
    let app = spawn_app_with(&[("KEEP_ALIVE_SECS", "3"), ("REQUEST_TIMEOUT_MS", "1000")]).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
    let mut opening = JoinSet::new();
    for _ in 0..150 {
        let address = address.clone();
        opening.spawn(async move {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream.write_all(GOOD_REQUEST).await.unwrap();
            read_answer(&mut stream).await;
            stream
        });
    }
    let streams = opening.join_all().await;
    let sockets = connection_sockets(port);
    let open = descriptors_of(&sockets);
    assert!(
        sockets.len() >= 150 && open >= 150,
        "{} sockets and {open} descriptors for 150 open connections",
        sockets.len()
    );

    // One in three is closed by the client, one by actix-http's keep-alive, one by the watch.
    let mut ending = JoinSet::new();
    for (i, mut stream) in streams.into_iter().enumerate() {
        match i % 3 {
            0 => drop(stream),
            1 => {
                ending.spawn(async move {
                    let mut byte = [0; 1];
                    let silent = stream.read(&mut byte);
                    let _ = tokio::time::timeout(GIVE_UP_AFTER, silent).await;
                });
            }
            _ => {
                ending.spawn(async move {
                    trickle_a_head(stream).await;
                });
            }
        }
    }
    ending.join_all().await;

    let give_up = Instant::now() + GIVE_UP_AFTER;
    let mut left = descriptors_of(&sockets);
    while left > 0 && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = descriptors_of(&sockets);
    }
    assert_eq!(
        left, 0,
        "descriptors left of {open} once every connection ended"
    );
}
