//! Test harness: every test gets its own server on a free port with its own database, and
//! talks to it over real HTTP.
//!
//! The database is a SQLite file in a temporary directory, or, with
//! `TEST_DATABASE_URL=postgres://user:password@host:port/db`, a PostgreSQL database created
//! for the test through that URL (a random name, dropped when the test ends): the same suite
//! then runs on PostgreSQL.

use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, LazyLock, Mutex, Once,
        atomic::{AtomicU32, Ordering},
    },
};

use filmvault::{
    config::{LogFormat, Settings},
    db::{self, Connection},
    startup::Application,
    telemetry,
};
use reqwest::{Method, Response, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, PgPool, SqlitePool};
use tokio::sync::OnceCell;
use tracing_subscriber::fmt::MakeWriter;

/// Every test app and subcommand shares it, so none writes a development key file (on
/// PostgreSQL that would land in the working directory).
pub const TEST_DATA_ENCRYPTION_KEY: &str = "a4TWjStNTyrCXgb7SRVkBH58uXW8y1w2Gn1tWNrsXPc=";
pub const STRONG_PASSWORD: &str = "violet-kettle-umbrella-42";

/// Everything the test process logs, at TRACE level, in the JSON format production uses.
/// Set TEST_LOG=1 to see it on stdout instead (it is then not captured).
pub static LOGS: LazyLock<CapturedLogs> = LazyLock::new(|| {
    let logs = CapturedLogs::default();
    let installed = if std::env::var_os("TEST_LOG").is_some() {
        telemetry::subscriber("trace", LogFormat::Pretty, std::io::stdout)
            .map_err(anyhow::Error::from)
            .and_then(telemetry::init)
    } else {
        telemetry::subscriber("trace", LogFormat::Json, logs.clone())
            .map_err(anyhow::Error::from)
            .and_then(telemetry::init)
    };
    installed.expect("the test subscriber installs");
    logs
});

static INIT_LOGS: Once = Once::new();

/// An in-memory log sink, so a test reads exactly what the service logged.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = Self;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

pub struct TestApp {
    /// Plain HTTP (the HTTPS listener after `use_https`).
    pub address: String,
    /// `https://127.0.0.1:PORT` when the app serves TLS.
    pub https_address: Option<String>,
    /// PEM of the development CA that signed the app's certificate.
    pub ca_pem: Option<String>,
    /// The internal listener's port, when `METRICS_ADDR` is set.
    pub metrics_port: Option<u16>,
    client: reqwest::Client,
    /// Shared with every app started on the same database (`spawn_app_on`).
    pub database: Arc<TestDatabase>,
    tls_files: Option<tempfile::TempDir>,
    /// `MAIL_OUTBOX_DIR` unless the test set its own (without SMTP, mails are `.eml` files
    /// there), kept as long as the app.
    _mail_outbox: tempfile::TempDir,
}

pub struct TestUser {
    pub id: i64,
    pub username: String,
    pub password: String,
    pub token: String,
}

/// The database a test's apps run on; gone when the last of them is dropped.
pub struct TestDatabase {
    backend: Backend,
    /// For the test's own statements (`TestDatabase::connection`).
    pool: OnceCell<TestPool>,
}

enum Backend {
    Sqlite {
        path: PathBuf,
        url: String,
        _dir: tempfile::TempDir,
    },
    Postgres {
        url: String,
        /// `TEST_DATABASE_URL`, through which the database was created and is dropped.
        server: String,
        name: String,
    },
    /// The whole of a PostgreSQL server of the test's own, which goes away with it.
    PrivatePostgres { url: String },
}

/// Plain read-write connections, for arranging and checking what HTTP cannot.
enum TestPool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl TestDatabase {
    /// A fresh, empty database: PostgreSQL if `TEST_DATABASE_URL` says so, else SQLite.
    pub async fn create() -> Arc<Self> {
        let backend = match std::env::var("TEST_DATABASE_URL") {
            Ok(server) => Backend::create_postgres(server).await,
            Err(_) => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let path = dir.path().join("filmvault.db");
                Backend::Sqlite {
                    url: format!("sqlite://{}", path.display()),
                    path,
                    _dir: dir,
                }
            }
        };
        Arc::new(Self {
            backend,
            pool: OnceCell::new(),
        })
    }

    /// The database at `url`, on a server the test started and stops (nothing to drop).
    pub fn on_private_server(url: String) -> Arc<Self> {
        Arc::new(Self {
            backend: Backend::PrivatePostgres { url },
            pool: OnceCell::new(),
        })
    }

    pub fn url(&self) -> &str {
        match &self.backend {
            Backend::Sqlite { url, .. }
            | Backend::Postgres { url, .. }
            | Backend::PrivatePostgres { url } => url,
        }
    }

    /// The SQLite file, for the checks that only make sense on one (`None` on PostgreSQL).
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Sqlite { path, .. } => Some(path),
            Backend::Postgres { .. } | Backend::PrivatePostgres { .. } => None,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(
            self.backend,
            Backend::Postgres { .. } | Backend::PrivatePostgres { .. }
        )
    }

    /// A connection of the test's own. Statements go through `filmvault::db`'s macros, so one
    /// literal serves both backends (or each is given its own).
    pub async fn connection(&self) -> Connection {
        let pool = self
            .pool
            .get_or_init(|| async {
                let url = self.url();
                if self.is_postgres() {
                    TestPool::Postgres(PgPool::connect(url).await.expect("the test connects"))
                } else {
                    TestPool::Sqlite(SqlitePool::connect(url).await.expect("the test connects"))
                }
            })
            .await;
        match pool {
            TestPool::Sqlite(pool) => Connection::Sqlite(pool.acquire().await.unwrap()),
            TestPool::Postgres(pool) => Connection::Postgres(pool.acquire().await.unwrap()),
        }
    }

    /// The audit events of `action`, oldest first.
    pub async fn audit_rows(&self, action: &str) -> Vec<AuditRow> {
        db::fetch_all!(
            &mut self.connection().await,
            "SELECT actor_id, target, outcome, reason, request_id, client_ip
             FROM audit_events WHERE action = $1 ORDER BY id",
            action
        )
        .await
        .expect("the audit table is readable")
    }

    /// Takes the database away from under its apps: the SQLite file is moved elsewhere, the
    /// PostgreSQL database dropped.
    pub async fn remove(&self) {
        match &self.backend {
            Backend::Sqlite { path, .. } => {
                std::fs::rename(path, path.with_extension("moved")).expect("the file moves");
            }
            Backend::Postgres { server, name, .. } => drop_postgres(server, name)
                .await
                .expect("the test database is dropped"),
            Backend::PrivatePostgres { .. } => panic!("a private server is stopped, not removed"),
        }
    }
}

/// Test databases are named `filmvault_test_<unix seconds>_<random>`: the time lets a later
/// run drop what an earlier one left behind.
const TEST_DATABASE_PREFIX: &str = "filmvault_test_";
/// No test runs this long: an older test database is a leftover (of a run that ended before
/// its last drops did, or was killed).
const LEFTOVER_AFTER_SECS: u64 = 15 * 60;

impl Backend {
    async fn create_postgres(server: String) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs();
        let random = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("{TEST_DATABASE_PREFIX}{now}_{}", &random[..12]);
        let mut connection = PgConnection::connect(&server)
            .await
            .expect("TEST_DATABASE_URL accepts connections");
        // A database name cannot be a bound parameter; this one is ours, made of hex digits.
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut connection)
            .await
            .expect("TEST_DATABASE_URL may create databases");
        let mut url = reqwest::Url::parse(&server).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        Self::Postgres {
            url: url.into(),
            server,
            name,
        }
    }
}

/// FORCE ends the connections the apps' pools still hold.
async fn drop_postgres(server: &str, name: &str) -> sqlx::Result<()> {
    let mut connection = PgConnection::connect(server).await?;
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut connection)
    .await?;
    Ok(())
}

/// Drops the databases of finished tests, one after the other, on a thread of its own. Not
/// in `Drop` itself: that runs on the test's runtime, and blocking it stalls the app's
/// connections, which PostgreSQL waits for before it drops a database. The first use also
/// drops what earlier runs left (the last few drops of a run die with its process).
static DROPPER: LazyLock<Mutex<std::sync::mpsc::Sender<(String, String)>>> = LazyLock::new(|| {
    let (sender, finished) = std::sync::mpsc::channel::<(String, String)>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let mut swept = false;
        for (server, name) in finished {
            if !swept {
                swept = true;
                runtime.block_on(drop_leftovers(&server));
            }
            if let Err(error) = runtime.block_on(drop_postgres(&server, &name)) {
                eprintln!("the test database {name} could not be dropped: {error}");
            }
        }
    });
    Mutex::new(sender)
});

async fn drop_leftovers(server: &str) {
    let Ok(mut connection) = PgConnection::connect(server).await else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE starts_with(datname, $1)")
            .bind(TEST_DATABASE_PREFIX)
            .fetch_all(&mut connection)
            .await
            .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    for name in names {
        let created: Option<u64> = name
            .strip_prefix(TEST_DATABASE_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse().ok());
        if created.is_some_and(|created| created + LEFTOVER_AFTER_SECS < now) {
            let _ = drop_postgres(server, &name).await;
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Backend::Postgres { server, name, .. } = &self.backend {
            let _ = DROPPER
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .send((server.clone(), name.clone()));
        }
    }
}

/// The defaults a test starts from: development mode, no demo films, limits high enough that
/// only the tests about limits meet them.
fn base_vars(database_url: &str) -> HashMap<String, String> {
    [
        ("APP_ENV", "development"),
        ("APP_HOST", "127.0.0.1"),
        ("APP_PORT", "0"),
        ("DATABASE_URL", database_url),
        ("DATA_ENCRYPTION_KEY", TEST_DATA_ENCRYPTION_KEY),
        ("SEED_DEMO_DATA", "false"),
        ("WORKERS", "2"),
        ("RATE_LIMIT_GLOBAL", "100000/s"),
        ("RATE_LIMIT_AUTH", "100000/s"),
        ("RATE_LIMIT_LOGIN_PER_USERNAME", "100000/s"),
        ("RATE_LIMIT_WRITE", "100000/s"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// An app serving HTTPS with a freshly generated development certificate (the `dev-cert`
/// subcommand's), and plain HTTP that redirects.
pub async fn spawn_tls_app(overrides: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("a temporary directory");
    filmvault::security::tls::write_dev_certificate(dir.path()).expect("a dev certificate");
    let cert = dir.path().join("localhost.crt").display().to_string();
    let key = dir.path().join("localhost.key").display().to_string();
    let ca_pem = std::fs::read_to_string(dir.path().join("dev-ca.crt")).expect("the CA");
    let mut vars = vec![
        ("TLS_CERT_PATH", cert.as_str()),
        ("TLS_KEY_PATH", key.as_str()),
        ("HTTPS_PORT", "0"),
    ];
    vars.extend_from_slice(overrides);
    let mut app = spawn_app_with(&vars).await;
    app.ca_pem = Some(ca_pem);
    app.tls_files = Some(dir);
    app
}

pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    spawn_app_on(&TestDatabase::create().await, overrides).await
}

/// Starts a server on an existing database: after another, for restart tests, or beside
/// others, as instances of one service.
pub async fn spawn_app_on(database: &Arc<TestDatabase>, overrides: &[(&str, &str)]) -> TestApp {
    INIT_LOGS.call_once(|| {
        LazyLock::force(&LOGS);
    });
    let mut vars = base_vars(database.url());
    let mail_outbox = tempfile::tempdir().expect("a temporary directory");
    vars.insert(
        "MAIL_OUTBOX_DIR".to_owned(),
        mail_outbox.path().display().to_string(),
    );
    for (key, value) in overrides {
        vars.insert((*key).to_owned(), (*value).to_owned());
    }
    let settings = Settings::from_vars(vars).expect("the test settings are valid");
    let application = Application::build(settings)
        .await
        .expect("the application builds");
    let port = application.port();
    let https_address = application
        .https_port()
        .map(|port| format!("https://127.0.0.1:{port}"));
    let metrics_port = application.metrics_port();
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        https_address,
        ca_pem: None,
        metrics_port,
        client: client(),
        database: database.clone(),
        tls_files: None,
        _mail_outbox: mail_outbox,
    }
}

/// Runs `command` to its end, its stdin written with `stdin`, on a blocking thread: the test's
/// runtime keeps serving the in-process app meanwhile. Waiting on the runtime's own thread
/// would deadlock whenever one of the app's tasks had just begun a write: its transaction
/// holds the database's write lock until the runtime polls it again, and the binary (a
/// migration, `create-admin`) waits for that lock.
pub async fn output_of(mut command: Command, stdin: &str) -> std::process::Output {
    use std::io::Write;
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary runs");
        let mut pipe = child.stdin.take().expect("a stdin pipe");
        pipe.write_all(stdin.as_bytes()).expect("stdin is written");
        drop(pipe);
        child.wait_with_output().expect("the binary ends")
    })
    .await
    .expect("the blocking thread ends")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("a reqwest client")
}

/// A request to the app under test, built from `TestApp::request`, sent by the app's client
/// (redirects not followed, 30-second timeout).
#[must_use = "a request does nothing until it is sent"]
pub struct TestRequest(reqwest::RequestBuilder);

impl TestRequest {
    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        Self(self.0.bearer_auth(token))
    }

    /// `X-API-Key: <key>`.
    pub fn api_key(self, key: &str) -> Self {
        self.header("x-api-key", key)
    }

    /// `X-Forwarded-For: <client_ip>`, as the trusted proxy would send it.
    pub fn forwarded_for(self, client_ip: &str) -> Self {
        self.header("x-forwarded-for", client_ip)
    }

    pub fn header(self, name: &str, value: impl AsRef<str>) -> Self {
        Self(self.0.header(name, value.as_ref()))
    }

    pub fn json<T: Serialize + ?Sized>(self, body: &T) -> Self {
        Self(self.0.json(body))
    }

    /// A raw body, for the tests about what is not JSON (no `Content-Type` is added).
    pub fn body(self, body: impl Into<reqwest::Body>) -> Self {
        Self(self.0.body(body))
    }

    pub async fn send(self) -> Response {
        self.0.send().await.expect("the request is sent")
    }
}

static NEXT_USER: AtomicU32 = AtomicU32::new(1);

pub fn unique_username(prefix: &str) -> String {
    format!("{prefix}_{}", NEXT_USER.fetch_add(1, Ordering::Relaxed))
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn https_url(&self, path: &str) -> String {
        format!(
            "{}{}",
            self.https_address.as_ref().expect("a TLS app"),
            path
        )
    }

    /// `127.0.0.1:PORT` of the HTTPS listener, for tests that speak TLS over a raw socket.
    pub fn https_socket_address(&self) -> String {
        let address = self.https_address.as_ref().expect("a TLS app");
        address.trim_start_matches("https://").to_owned()
    }

    /// A client that trusts exactly the app's development CA (nothing is disabled), limited to
    /// the given TLS versions.
    pub fn tls_client(
        &self,
        min: reqwest::tls::Version,
        max: reqwest::tls::Version,
    ) -> reqwest::Client {
        let ca =
            reqwest::Certificate::from_pem(self.ca_pem.as_ref().expect("a TLS app").as_bytes())
                .expect("the CA parses");
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .min_tls_version(min)
            .max_tls_version(max)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS client")
    }

    /// From now on `request`, `get`, `login` and the rest speak to the HTTPS listener (with a
    /// client that trusts the app's CA); returns the plain-HTTP address they used before.
    pub fn use_https(&mut self) -> String {
        let https = self.https_url("");
        self.client = self.tls_client(
            reqwest::tls::Version::TLS_1_2,
            reqwest::tls::Version::TLS_1_3,
        );
        std::mem::replace(&mut self.address, https)
    }

    /// The one way a test speaks to the app over plain HTTP: `get`, `post_json` and the rest
    /// are shorthands for it.
    pub fn request(&self, method: Method, path: &str) -> TestRequest {
        TestRequest(self.client.request(method, self.url(path)))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Response {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(token) = token {
            request = request.bearer(token);
        }
        request.send().await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.send(Method::GET, path, None, token).await
    }

    pub async fn post_json(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        self.send(Method::POST, path, Some(body), token).await
    }

    pub async fn put_json(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        self.send(Method::PUT, path, Some(body), token).await
    }

    pub async fn patch_json(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        self.send(Method::PATCH, path, Some(body), token).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        self.send(Method::DELETE, path, None, token).await
    }

    pub async fn register(&self, username: &str, password: &str) -> Response {
        self.post_json(
            "/api/v1/auth/register",
            &json!({
                "username": username,
                "email": format!("{username}@example.com"),
                "password": password,
            }),
            None,
        )
        .await
    }

    pub async fn login(&self, username: &str, password: &str) -> Response {
        self.post_json(
            "/api/v1/auth/login",
            &json!({ "username": username, "password": password }),
            None,
        )
        .await
    }

    /// A login that the trusted proxy forwards on behalf of `client_ip`.
    pub async fn login_from(&self, client_ip: &str, username: &str, password: &str) -> Response {
        self.request(Method::POST, "/api/v1/auth/login")
            .forwarded_for(client_ip)
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
    }

    pub async fn access_token(&self, username: &str, password: &str) -> String {
        let response = self.login(username, password).await;
        assert_eq!(response.status(), StatusCode::OK, "login of {username}");
        let body: Value = response.json().await.expect("a JSON body");
        body["access_token"]
            .as_str()
            .expect("an access token")
            .to_owned()
    }

    /// Logs in and returns `(access_token, refresh_token)`.
    pub async fn token_pair(&self, username: &str, password: &str) -> (String, String) {
        let response = self.login(username, password).await;
        assert_eq!(response.status(), StatusCode::OK, "login of {username}");
        let body: Value = response.json().await.expect("a JSON body");
        (
            body["access_token"]
                .as_str()
                .expect("an access token")
                .to_owned(),
            body["refresh_token"]
                .as_str()
                .expect("a refresh token")
                .to_owned(),
        )
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post_json(
            "/api/v1/auth/refresh",
            &json!({ "refresh_token": refresh_token }),
            None,
        )
        .await
    }

    /// Creates an API key for the owner of `token` and returns the response body (with `key`).
    pub async fn create_api_key(&self, token: &str, scopes: &[&str]) -> Value {
        let response = self
            .post_json(
                "/api/v1/users/me/api-keys",
                &json!({ "name": "test key", "scopes": scopes }),
                Some(token),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "API key creation");
        response.json().await.expect("a JSON body")
    }

    /// A new API key's secret, for `X-API-Key`.
    pub async fn api_key_secret(&self, token: &str, scopes: &[&str]) -> String {
        self.create_api_key(token, scopes).await["key"]
            .as_str()
            .expect("the key is shown once")
            .to_owned()
    }

    /// A fresh user, registered and logged in.
    pub async fn new_user(&self) -> TestUser {
        let username = unique_username("user");
        let response = self.register(&username, STRONG_PASSWORD).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "registration");
        let token = self.access_token(&username, STRONG_PASSWORD).await;
        TestUser {
            id: self.own_id(&token).await,
            token,
            username,
            password: STRONG_PASSWORD.to_owned(),
        }
    }

    /// Registers a new username with `email` and checks that the address counted as taken:
    /// the same 202 as any registration, and no account to log in to.
    pub async fn assert_email_taken(&self, email: &str) {
        let username = unique_username("again");
        let response = self
            .post_json(
                "/api/v1/auth/register",
                &json!({ "username": username, "email": email, "password": STRONG_PASSWORD }),
                None,
            )
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{email}");
        let login = self.login(&username, STRONG_PASSWORD).await;
        assert_eq!(
            login.status(),
            StatusCode::UNAUTHORIZED,
            "no account was created for the taken address {email}"
        );
    }

    /// The id of the account `token` belongs to (registration does not show it).
    pub async fn own_id(&self, token: &str) -> i64 {
        let response = self.get("/api/v1/users/me", Some(token)).await;
        assert_eq!(response.status(), StatusCode::OK, "the caller's profile");
        let profile: Value = response.json().await.expect("a JSON body");
        profile["id"].as_i64().expect("an id")
    }

    /// An administrator made the supported way: the binary's `create-admin` subcommand.
    pub async fn new_admin(&self) -> TestUser {
        let username = unique_username("admin");
        let mut command = Command::new(env!("CARGO_BIN_EXE_filmvault"));
        command
            .args(["create-admin", "--username", &username, "--email"])
            .arg(format!("{username}@example.com"))
            .env("DATABASE_URL", self.database.url())
            .env("ADMIN_PASSWORD", STRONG_PASSWORD)
            .env("DATA_ENCRYPTION_KEY", TEST_DATA_ENCRYPTION_KEY)
            .env("RUST_LOG", "warn");
        let output = output_of(command, "").await;
        assert!(
            output.status.success(),
            "create-admin failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let token = self.access_token(&username, STRONG_PASSWORD).await;
        let me: Value = self
            .get("/api/v1/users/me", Some(&token))
            .await
            .json()
            .await
            .expect("a profile");
        TestUser {
            id: me["id"].as_i64().expect("an id"),
            username,
            password: STRONG_PASSWORD.to_owned(),
            token,
        }
    }

    pub async fn create_film(&self, token: &str, name: &str, studio: &str) -> Value {
        let response = self
            .post_json(
                "/api/v1/films",
                &json!({ "name": name, "studio": studio }),
                Some(token),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "film creation");
        response.json().await.expect("a film")
    }

    /// Direct access to the app's database (see `TestDatabase::connection`).
    pub async fn db(&self) -> Connection {
        self.database.connection().await
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub actor_id: Option<i64>,
    pub target: Option<String>,
    pub outcome: String,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
}

impl AuditRow {
    /// How many denials a summary row stands for (`repeated N more times …`); 0 for a row
    /// recorded in full (which stands for itself).
    pub fn repeats(&self) -> u64 {
        self.reason
            .as_deref()
            .and_then(|reason| reason.strip_prefix("repeated "))
            .and_then(|rest| rest.split_whitespace().next())
            .map_or(0, |count| count.parse().expect("a count"))
    }
}

impl TestApp {
    pub async fn audit_rows(&self, action: &str) -> Vec<AuditRow> {
        self.database.audit_rows(action).await
    }

    /// Events without a transaction of their own are written by a background task; this
    /// waits (boundedly) until `count` rows of `action` are there, and returns them.
    pub async fn wait_for_audit(&self, action: &str, count: usize) -> Vec<AuditRow> {
        for _ in 0..200 {
            let rows = self.audit_rows(action).await;
            if rows.len() >= count {
                return rows;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        self.audit_rows(action).await
    }
}

/// Asserts an RFC 9457 problem body with the given status and returns it.
/// A numeric response header (rate-limit counters, `Retry-After`).
pub fn header_u64(response: &Response, name: &str) -> u64 {
    response.headers()[name].to_str().unwrap().parse().unwrap()
}

/// A 429 problem whose `Retry-After` is within the minute and equals `X-RateLimit-Reset`,
/// with nothing remaining, in the `X-` headers and the draft's `RateLimit`.
pub async fn assert_rate_limited(response: Response) {
    let retry_after = header_u64(&response, "retry-after");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(header_u64(&response, "x-ratelimit-remaining"), 0);
    assert_eq!(header_u64(&response, "x-ratelimit-reset"), retry_after);
    let draft_status = response.headers()["ratelimit"].to_str().unwrap();
    assert!(
        draft_status.ends_with(&format!(";r=0;t={retry_after}")),
        "{draft_status}"
    );
    let body = assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["type"], "/problems/rate-limited");
}

pub async fn assert_problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = response.json().await.expect("a JSON problem body");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].is_string() && body["type"].is_string() && body["detail"].is_string());
    assert_eq!(
        body["request_id"].as_str(),
        request_id.as_deref(),
        "the body quotes the X-Request-Id"
    );
    body
}

/// A problem body without the request id, which differs per request.
pub fn without_request_id(mut body: Value) -> Value {
    body.as_object_mut()
        .expect("an object")
        .remove("request_id");
    body
}
