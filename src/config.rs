//! Settings read from the environment (and an optional `.env`), validated once at start.
//!
//! Every variable is parsed here and nowhere else, so a bad value stops the process with one
//! line naming the variable. The checks of production (TLS, CORS, the data key) live here
//! too: a misconfigured server never gets as far as binding a socket.

use std::{
    cell::RefCell,
    collections::{BTreeSet, HashMap},
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use actix_web::http::Uri;
use ipnet::IpNet;
use secrecy::SecretString;

pub use crate::crypto::DataKeySettings;
use crate::crypto::MAKE_DATA_KEY;

#[derive(Debug, thiserror::Error)]
#[error("{variable}: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

impl ConfigError {
    fn new(variable: &'static str, reason: impl Into<String>) -> Self {
        Self {
            variable,
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "development" => Ok(Self::Development),
            "production" => Ok(Self::Production),
            _ => Err("must be `development` or `production`".into()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pretty" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            _ => Err("must be `pretty` or `json`".into()),
        }
    }
}

/// `N/s`, `N/min` or `N/hour`: N requests per period, bursts of up to N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub count: u32,
    pub per: Duration,
}

impl Quota {
    pub const fn per_minute(count: u32) -> Self {
        Self {
            count,
            per: Duration::from_secs(60),
        }
    }

    /// Time for one request's worth of capacity to come back.
    pub fn replenish_interval(&self) -> Duration {
        self.per / self.count
    }
}

impl FromStr for Quota {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const HELP: &str = "must look like `5/min` (units: s, min, hour)";
        let (count, unit) = s.split_once('/').ok_or(HELP)?;
        let count: u32 = count.trim().parse().map_err(|_| HELP)?;
        if count == 0 {
            return Err("the count must be at least 1".into());
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(HELP.into()),
        };
        Ok(Self { count, per })
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.count, self.per.as_secs())
    }
}

#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    /// Every request, per client.
    pub global: Quota,
    /// Login, register and refresh, per client: the brute-force brake.
    pub auth: Quota,
    /// Login attempts per submitted username, whatever the client.
    pub login_per_username: Quota,
    /// Writes per user (whichever credential they present), or per client when anonymous.
    pub write: Quota,
}

/// Failed-login patterns that raise a security event (and lock, unless `lockout` is zero).
#[derive(Debug, Clone, Copy)]
pub struct SuspiciousLoginSettings {
    pub window: Duration,
    pub clients_per_username: usize,
    pub usernames_per_client: usize,
    pub lockout: Duration,
}

/// How long records are kept before the pruning task deletes them.
#[derive(Debug, Clone, Copy)]
pub struct RetentionSettings {
    /// Audit events older than this are deleted; younger ones cannot be.
    pub audit_days: u32,
    /// Refresh sessions whose every token has been revoked or expired for this long.
    pub spent_refresh_token_days: u32,
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub https_port: u16,
    /// How often the certificate and key files are checked for a new pair (also on SIGHUP).
    pub reload_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub issuer: String,
    pub audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// A session unused for longer ends (`auth::sessions`), within its refresh lifetime.
    pub session_idle_timeout: Duration,
    /// Sensitive actions need a login (`auth_time`) at most this old (`auth::StepUp`).
    pub step_up_max_age: Duration,
}

/// What one request, and all of them together, may take of the server.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub max_json_body_bytes: usize,
    pub password_hash_concurrency: usize,
    /// Requests admitted to password hashing at once (waiting for argon2, hashing, or
    /// finishing); the next get 503 at once.
    pub password_hash_queue: usize,
    pub max_in_flight_requests: usize,
    pub overload_queue_timeout: Duration,
    pub request_timeout: Duration,
    pub keep_alive: Duration,
    pub workers: usize,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    /// An `EnvFilter` directive (`RUST_LOG`), checked to parse.
    pub filter: String,
    pub format: LogFormat,
    pub file: Option<PathBuf>,
}

/// The state several instances share (`REDIS_URL`); `None` runs single-node, in memory.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// May hold a password.
    pub url: SecretString,
    /// Starts every key and the revocation channel: deployments can share one Redis.
    pub key_prefix: String,
    /// How long revocations are trusted from memory while the broadcast channel is not
    /// confirmed; past it, every token is checked against the database.
    pub max_staleness: Duration,
}

/// What `filmvault backup` encrypts to and `filmvault restore` decrypts with (docs/backup.md).
/// Serving needs none of it; each command says what it lacks.
#[derive(Debug, Clone, Default)]
pub struct BackupSettings {
    /// age X25519 public keys (`age1…`): the holder of a matching identity can restore, and
    /// the machine that makes the backups cannot.
    pub recipients: Vec<age::x25519::Recipient>,
    pub passphrase: Option<SecretString>,
    /// Where restore finds the age identities (`AGE-SECRET-KEY-1…`); read when used.
    pub identity_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub environment: Environment,
    pub host: IpAddr,
    pub port: u16,
    /// Secret: a PostgreSQL URL carries the database password.
    pub database_url: SecretString,
    pub redis: Option<RedisSettings>,
    /// Names this process in logs and metrics (`INSTANCE_ID`, default host name and pid).
    pub instance_id: String,
    pub jwt: JwtSettings,
    pub data_keys: DataKeySettings,
    pub cors_allowed_origins: Vec<String>,
    pub tls: Option<TlsSettings>,
    pub tls_terminated_by_proxy: bool,
    pub trusted_proxies: Vec<IpNet>,
    /// IPv6 addresses sharing this many leading bits are one client (32..=128).
    pub client_ipv6_prefix_len: u8,
    /// `scheme://host[:port]` clients use to reach the service: where plain HTTP redirects,
    /// whatever the request's `Host` header says.
    pub public_base_url: Option<String>,
    pub rate_limits: RateLimitSettings,
    pub suspicious_logins: SuspiciousLoginSettings,
    /// Repeated denials from one client within this window are one audit row, not one each.
    pub audit_denial_window: Duration,
    pub retention: RetentionSettings,
    /// The internal listener: a separate `/metrics` without a token, on loopback unless
    /// `internal_client_ca_path` guards it. The main listener's `/metrics` is for admins
    /// only either way.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// With it, the internal listener serves TLS (the `TLS_CERT_PATH` certificate) and only
    /// to clients presenting a certificate this CA issued.
    pub internal_client_ca_path: Option<PathBuf>,
    pub limits: LimitSettings,
    pub seed_demo_data: bool,
    /// Login waits until the account's email is verified (the mailed link).
    pub require_email_verification: bool,
    /// Admin routes refuse an administrator without confirmed MFA (403 `/problems/mfa-required`).
    pub require_admin_mfa: bool,
    pub logging: LogSettings,
    pub backup: BackupSettings,
    pub mail: MailSettings,
    /// Set variables that look like ours but that nothing reads (a misspelling leaves the
    /// default in place without a word otherwise); start-up warns about each.
    pub unknown_variables: Vec<UnknownVariable>,
}

/// How the mail outbox is delivered (src/mail).
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `SMTP_URL` (`smtp://` or `smtps://`, credentials allowed). Without it (development
    /// only) mails are written as `.eml` files to `outbox_dir`.
    pub smtp_url: Option<SecretString>,
    /// `MAIL_FROM`: the sender of every mail.
    pub from: String,
    pub outbox_dir: PathBuf,
    /// A mail is dead-lettered after this many failed attempts.
    pub max_attempts: u32,
    /// The wait before the second attempt; doubled for each next one (up to an hour).
    pub retry_base: Duration,
    /// How often an idle worker looks for due mail.
    pub poll_interval: Duration,
}

const SMTP_NEEDS_TLS: &str = "must use TLS to the mail server in production (smtps://, or \
     smtp://…?tls=required for STARTTLS) unless the server is on loopback";

impl MailSettings {
    fn from_vars(vars: &Vars, production: bool) -> Result<Self, ConfigError> {
        let smtp_url = vars.get("SMTP_URL").map(str::to_owned);
        match &smtp_url {
            Some(url) => check_smtp_url(url, production)?,
            None if production => {
                return Err(ConfigError::new(
                    "SMTP_URL",
                    "is required in production (mails are only written to files in development)",
                ));
            }
            None => {}
        }
        let from = vars
            .get("MAIL_FROM")
            .unwrap_or("filmvault <no-reply@localhost>");
        if from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ConfigError::new(
                "MAIL_FROM",
                "must be an address, optionally with a name: `filmvault <no-reply@example.com>`",
            ));
        }
        Ok(Self {
            smtp_url: smtp_url.map(SecretString::from),
            from: from.to_owned(),
            outbox_dir: PathBuf::from(vars.get("MAIL_OUTBOX_DIR").unwrap_or("mail-outbox")),
            max_attempts: vars.parse_in_range("MAIL_MAX_ATTEMPTS", 8, 1..=50)?,
            retry_base: vars.millis_in_range("MAIL_RETRY_BASE_MS", 30_000, 10..=3_600_000)?,
            poll_interval: vars.millis_in_range("MAIL_POLL_INTERVAL_MS", 2_000, 10..=60_000)?,
        })
    }
}

/// `smtp://` or `smtps://` with a host; in production, TLS unless the host is loopback.
/// Errors never repeat the URL: it may carry the SMTP password.
fn check_smtp_url(raw: &str, production: bool) -> Result<(), ConfigError> {
    let invalid = || {
        ConfigError::new(
            "SMTP_URL",
            "must be smtp://host[:port] or smtps://host[:port] (credentials optional)",
        )
    };
    let url = url::Url::parse(raw).map_err(|_| invalid())?;
    let host = url.host().ok_or_else(invalid)?;
    let implicit_tls = match url.scheme() {
        "smtps" => true,
        "smtp" => false,
        _ => return Err(invalid()),
    };
    let starttls_required = url
        .query_pairs()
        .any(|(key, value)| key == "tls" && value == "required");
    let loopback = match host {
        // smtp: is not a scheme the URL standard knows, so an IPv4 host stays text.
        url::Host::Domain(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    if production && !implicit_tls && !starttls_required && !loopback {
        return Err(ConfigError::new("SMTP_URL", SMTP_NEEDS_TLS));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariable {
    pub name: String,
    /// The known variable whose name is closest, when one is a likely intent.
    pub closest: Option<String>,
}

impl Settings {
    /// Process environment over `.env` (if present): the environment always wins.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut vars = match find_dotenv() {
            Some(path) => read_dotenv(&path)?,
            None => HashMap::new(),
        };
        vars.extend(std::env::vars());
        Self::from_vars(vars)
    }

    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars = Vars::new(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        let environment = vars.parse_or("APP_ENV", Environment::Development)?;
        let production = environment == Environment::Production;
        let jwt = JwtSettings::from_vars(&vars)?;
        let data_keys = DataKeySettings::from_vars(&vars, production)?;
        let cors_allowed_origins = cors_allowed_origins(&vars, production)?;
        let tls = tls_settings(&vars)?;
        let tls_terminated_by_proxy = vars.parse_or("TLS_TERMINATED_BY_PROXY", false)?;
        let trusted_proxies = vars
            .get("TRUSTED_PROXIES")
            .map_or(Ok(Vec::new()), parse_networks)?;
        let proxy_terminates_tls = tls_terminated_by_proxy && !trusted_proxies.is_empty();
        if production && tls.is_none() && !proxy_terminates_tls {
            return Err(ConfigError::new("TLS_CERT_PATH", PRODUCTION_NEEDS_TLS));
        }
        let redis = redis_settings(&vars, production)?;
        let (metrics_addr, internal_client_ca_path) = internal_listener(&vars, tls.is_some())?;
        let mut settings = Self {
            environment,
            host: vars.parse_or("APP_HOST", IpAddr::from([127, 0, 0, 1]))?,
            port: vars.parse_or("APP_PORT", 8080)?,
            database_url: database_url(&vars)?,
            redis,
            instance_id: instance_id(&vars)?,
            jwt,
            data_keys,
            cors_allowed_origins,
            public_base_url: public_base_url(&vars, tls.is_some(), production)?,
            tls,
            tls_terminated_by_proxy,
            trusted_proxies,
            client_ipv6_prefix_len: vars.parse_in_range("CLIENT_IPV6_PREFIX_LEN", 64, 32..=128)?,
            rate_limits: RateLimitSettings::from_vars(&vars, production)?,
            suspicious_logins: SuspiciousLoginSettings::from_vars(&vars)?,
            audit_denial_window: vars.seconds_in_range("AUDIT_DENIAL_WINDOW_SECS", 60, 1..=3600)?,
            retention: RetentionSettings::from_vars(&vars)?,
            metrics_addr,
            internal_client_ca_path,
            limits: LimitSettings::from_vars(&vars)?,
            seed_demo_data: vars.parse_or("SEED_DEMO_DATA", !production)?,
            require_email_verification: vars.parse_or("REQUIRE_EMAIL_VERIFICATION", production)?,
            require_admin_mfa: vars.parse_or("REQUIRE_ADMIN_MFA", production)?,
            logging: LogSettings::from_vars(&vars, production)?,
            backup: BackupSettings::from_vars(&vars)?,
            mail: MailSettings::from_vars(&vars, production)?,
            unknown_variables: Vec::new(),
        };
        // Only now is every variable we know of read.
        settings.unknown_variables = vars.unknown();
        Ok(settings)
    }
}

impl JwtSettings {
    fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            issuer: vars.get("JWT_ISSUER").unwrap_or("filmvault").to_owned(),
            audience: vars
                .get("JWT_AUDIENCE")
                .unwrap_or("filmvault-api")
                .to_owned(),
            access_token_ttl: vars.seconds_in_range("ACCESS_TOKEN_TTL_SECS", 900, 60..=86_400)?,
            refresh_token_ttl: vars.seconds_in_range(
                "REFRESH_TOKEN_TTL_SECS",
                14 * 86_400,
                300..=90 * 86_400,
            )?,
            session_idle_timeout: vars.seconds_in_range(
                "SESSION_IDLE_TIMEOUT_SECS",
                3 * 86_400,
                2..=90 * 86_400,
            )?,
            step_up_max_age: vars.seconds_in_range("STEP_UP_MAX_AGE_SECS", 600, 1..=86_400)?,
        })
    }
}

impl DataKeySettings {
    fn from_vars(vars: &Vars, production: bool) -> Result<Self, ConfigError> {
        const CURRENT: &str = "DATA_ENCRYPTION_KEY";
        const PREVIOUS: &str = "DATA_ENCRYPTION_KEYS_PREVIOUS";
        let current = match vars.get(CURRENT) {
            Some(encoded) => Some(
                encoded
                    .parse()
                    .map_err(|reason| ConfigError::new(CURRENT, reason))?,
            ),
            None if production => {
                return Err(ConfigError::new(
                    CURRENT,
                    format!(
                        "must be set in production: 32 random bytes in base64, kept in a \
                         secret store; {MAKE_DATA_KEY}"
                    ),
                ));
            }
            None => None,
        };
        let previous = vars
            .get(PREVIOUS)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|encoded| !encoded.is_empty())
            .enumerate()
            .map(|(position, encoded)| {
                encoded.parse().map_err(|reason| {
                    ConfigError::new(PREVIOUS, format!("key {}: {reason}", position + 1))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { current, previous })
    }
}

impl RateLimitSettings {
    fn from_vars(vars: &Vars, production: bool) -> Result<Self, ConfigError> {
        Ok(Self {
            global: vars.parse_or("RATE_LIMIT_GLOBAL", Quota::per_minute(300))?,
            // Development leaves room for the README walkthrough and the Postman run,
            // twice each in a minute (five and four auth requests a run).
            auth: vars.parse_or(
                "RATE_LIMIT_AUTH",
                Quota::per_minute(if production { 5 } else { 30 }),
            )?,
            login_per_username: vars.parse_or(
                "RATE_LIMIT_LOGIN_PER_USERNAME",
                Quota {
                    count: 20,
                    per: Duration::from_secs(3600),
                },
            )?,
            write: vars.parse_or("RATE_LIMIT_WRITE", Quota::per_minute(60))?,
        })
    }
}

impl SuspiciousLoginSettings {
    fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            window: vars.seconds_in_range("SUSPICIOUS_LOGIN_WINDOW_SECS", 900, 10..=86_400)?,
            clients_per_username: vars.parse_in_range(
                "SUSPICIOUS_LOGIN_IPS_PER_USERNAME",
                5,
                2..=1000,
            )?,
            usernames_per_client: vars.parse_in_range(
                "SUSPICIOUS_LOGIN_USERNAMES_PER_IP",
                10,
                2..=1000,
            )?,
            lockout: vars.seconds_in_range("ACCOUNT_LOCKOUT_SECS", 900, 0..=86_400)?,
        })
    }
}

impl RetentionSettings {
    fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            audit_days: vars.parse_in_range("AUDIT_RETENTION_DAYS", 365, 1..=36_500)?,
            spent_refresh_token_days: vars.parse_in_range(
                "REFRESH_TOKEN_RETENTION_DAYS",
                30,
                1..=3650,
            )?,
        })
    }
}

impl LimitSettings {
    fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let available_cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Self {
            max_json_body_bytes: vars.parse_in_range(
                "MAX_JSON_BODY_BYTES",
                16 * 1024,
                256..=1024 * 1024,
            )?,
            password_hash_concurrency: vars.parse_in_range(
                "PASSWORD_HASH_CONCURRENCY",
                (available_cores / 2).max(1),
                1..=64,
            )?,
            password_hash_queue: vars.parse_in_range("PASSWORD_HASH_QUEUE", 64, 1..=10_000)?,
            max_in_flight_requests: vars.parse_in_range(
                "MAX_IN_FLIGHT_REQUESTS",
                256,
                1..=100_000,
            )?,
            overload_queue_timeout: vars.millis_in_range(
                "OVERLOAD_QUEUE_TIMEOUT_MS",
                500,
                0..=30_000,
            )?,
            request_timeout: vars.millis_in_range("REQUEST_TIMEOUT_MS", 10_000, 100..=120_000)?,
            keep_alive: vars.seconds_in_range("KEEP_ALIVE_SECS", 15, 1..=300)?,
            workers: vars.parse_in_range("WORKERS", available_cores, 1..=256)?,
        })
    }
}

impl LogSettings {
    fn from_vars(vars: &Vars, production: bool) -> Result<Self, ConfigError> {
        let default_format = if production {
            LogFormat::Json
        } else {
            LogFormat::Pretty
        };
        Ok(Self {
            filter: log_filter(vars)?,
            format: vars.parse_or("LOG_FORMAT", default_format)?,
            file: vars.get("LOG_FILE").map(PathBuf::from),
        })
    }
}

const PRODUCTION_NEEDS_TLS: &str = "production needs TLS: set TLS_CERT_PATH and TLS_KEY_PATH, \
     or TLS_TERMINATED_BY_PROXY=true with TRUSTED_PROXIES";

/// Both paths or neither. `HTTPS_PORT` and `TLS_RELOAD_INTERVAL_SECS` are read either way,
/// so a set one is never reported as unknown.
fn tls_settings(vars: &Vars) -> Result<Option<TlsSettings>, ConfigError> {
    let https_port = vars.parse_or("HTTPS_PORT", 8443)?;
    let reload_interval = vars.seconds_in_range("TLS_RELOAD_INTERVAL_SECS", 60, 1..=86_400)?;
    match (vars.get("TLS_CERT_PATH"), vars.get("TLS_KEY_PATH")) {
        (Some(cert), Some(key)) => Ok(Some(TlsSettings {
            cert_path: cert.into(),
            key_path: key.into(),
            https_port,
            reload_interval,
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::new(
            "TLS_KEY_PATH",
            "must be set when TLS_CERT_PATH is",
        )),
        (None, Some(_)) => Err(ConfigError::new(
            "TLS_CERT_PATH",
            "must be set when TLS_KEY_PATH is",
        )),
    }
}

/// Development allows the usual local front-end origins; production none unless listed, and
/// never a wildcard.
fn cors_allowed_origins(vars: &Vars, production: bool) -> Result<Vec<String>, ConfigError> {
    let origins = match vars.get("CORS_ALLOWED_ORIGINS") {
        Some(list) => parse_origins(list)?,
        None if production => Vec::new(),
        None => vec![
            "http://localhost:3000".to_owned(),
            "http://127.0.0.1:3000".to_owned(),
        ],
    };
    if production && origins.iter().any(|o| o == "*") {
        return Err(ConfigError::new(
            "CORS_ALLOWED_ORIGINS",
            "a wildcard origin is refused in production; list the trusted origins",
        ));
    }
    Ok(origins)
}

/// Required in production when we serve TLS ourselves (the redirect needs a target); with
/// TLS on it must be https, or the redirect would send clients back to plain HTTP.
fn public_base_url(
    vars: &Vars,
    serves_tls: bool,
    production: bool,
) -> Result<Option<String>, ConfigError> {
    let Some(raw) = vars.get("PUBLIC_BASE_URL") else {
        if production && serves_tls {
            return Err(ConfigError::new(
                "PUBLIC_BASE_URL",
                "must be set in production when TLS_CERT_PATH is: plain HTTP redirects there",
            ));
        }
        return Ok(None);
    };
    let origin = raw.parse::<Uri>().ok().and_then(|uri| {
        let scheme = match uri.scheme_str()? {
            "https" => "https",
            "http" if !serves_tls => "http",
            _ => return None,
        };
        let authority = uri.authority()?;
        let origin_only = !authority.as_str().contains('@')
            && !authority.host().is_empty()
            && matches!(uri.path(), "" | "/")
            && uri.query().is_none();
        origin_only.then(|| format!("{scheme}://{}", authority.as_str().to_ascii_lowercase()))
    });
    match origin {
        Some(origin) => Ok(Some(origin)),
        None => Err(ConfigError::new(
            "PUBLIC_BASE_URL",
            "must be https://host[:port] (no path, query or user; http:// only without TLS)",
        )),
    }
}

/// Without `REDIS_URL` every limit, lockout and revocation lives in one process's memory:
/// right for one instance, wrong for several, where limits multiply and a revoked token
/// keeps working on the other instances. PostgreSQL is what several instances run on, so a
/// production start on it must either share that state or say it runs alone.
fn redis_settings(vars: &Vars, production: bool) -> Result<Option<RedisSettings>, ConfigError> {
    let single_instance: bool = vars.parse_or("SINGLE_INSTANCE", false)?;
    let key_prefix = vars.get("REDIS_KEY_PREFIX").unwrap_or("filmvault");
    let max_staleness = Duration::from_millis(vars.parse_in_range(
        "REVOCATION_MAX_STALENESS_MS",
        2000,
        200..=60_000,
    )?);
    let Some(url) = vars.get("REDIS_URL") else {
        let on_postgres = ["postgres://", "postgresql://"].iter().any(|scheme| {
            vars.get("DATABASE_URL")
                .is_some_and(|url| url.starts_with(scheme))
        });
        if production && on_postgres && !single_instance {
            return Err(ConfigError::new(
                "REDIS_URL",
                "must be set in production on PostgreSQL: instances that do not share their \
                 rate limits, lockouts and revocations through Redis multiply every limit and \
                 keep revoked tokens working; set SINGLE_INSTANCE=true if exactly one instance \
                 ever runs",
            ));
        }
        return Ok(None);
    };
    if single_instance {
        return Err(ConfigError::new(
            "SINGLE_INSTANCE",
            "contradicts REDIS_URL: unset one of them",
        ));
    }
    // Never echo the URL: it may carry a password.
    if !url.starts_with("redis://") || redis::Client::open(url).is_err() {
        return Err(ConfigError::new(
            "REDIS_URL",
            "must be redis://[user:password@]host[:port][/db] (rediss:// is not built in: \
             reach Redis on a private network or through a TLS tunnel)",
        ));
    }
    if !is_short_name(key_prefix) {
        return Err(ConfigError::new(
            "REDIS_KEY_PREFIX",
            "must be 1 to 64 letters, digits, `-`, `_` or `.`",
        ));
    }
    Ok(Some(RedisSettings {
        url: SecretString::from(url.to_owned()),
        key_prefix: key_prefix.to_owned(),
        max_staleness,
    }))
}

/// 1 to 64 of `A-Z a-z 0-9 - _ .`: safe in a Redis key, a log field or a metric label.
fn is_short_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn instance_id(vars: &Vars) -> Result<String, ConfigError> {
    let Some(id) = vars.get("INSTANCE_ID") else {
        let host = rustix::system::uname();
        let host = host.nodename().to_string_lossy();
        return Ok(format!("{host}-{}", std::process::id()));
    };
    if !is_short_name(id) {
        return Err(ConfigError::new(
            "INSTANCE_ID",
            "must be 1 to 64 letters, digits, `-`, `_` or `.`",
        ));
    }
    Ok(id.to_owned())
}

fn database_url(vars: &Vars) -> Result<SecretString, ConfigError> {
    let url = vars.get("DATABASE_URL").unwrap_or("sqlite://filmvault.db");
    if ["sqlite:", "postgres://", "postgresql://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
    {
        return Ok(SecretString::from(url.to_owned()));
    }
    // Only a plain scheme name is repeated: what follows it may hold a password.
    let reason = match url.split_once("://") {
        Some((scheme, _))
            if scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+') =>
        {
            format!(
                "the `{scheme}` scheme is not supported: filmvault stores its data in SQLite or \
                 PostgreSQL; use a sqlite:// or postgres:// URL"
            )
        }
        _ => "must be a sqlite:// or postgres:// URL such as sqlite://filmvault.db".to_owned(),
    };
    Err(ConfigError::new("DATABASE_URL", reason))
}

/// A backup file is open to offline guessing for as long as it exists, each guess slowed
/// only by scrypt (about a second of one core).
pub const MIN_BACKUP_PASSPHRASE_CHARS: usize = 16;

impl BackupSettings {
    fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let recipients = vars
            .get("BACKUP_RECIPIENTS")
            .map_or(Ok(Vec::new()), parse_backup_recipients)?;
        let passphrase = vars.get("BACKUP_PASSPHRASE");
        if passphrase.is_some_and(|p| p.chars().count() < MIN_BACKUP_PASSPHRASE_CHARS) {
            return Err(ConfigError::new(
                "BACKUP_PASSPHRASE",
                format!(
                    "must be at least {MIN_BACKUP_PASSPHRASE_CHARS} characters: a few \
                     unrelated words, or prefer BACKUP_RECIPIENTS"
                ),
            ));
        }
        if passphrase.is_some() && !recipients.is_empty() {
            return Err(ConfigError::new(
                "BACKUP_PASSPHRASE",
                "set BACKUP_RECIPIENTS or BACKUP_PASSPHRASE, not both: age encrypts a file to \
                 public keys or to a passphrase, never to both",
            ));
        }
        Ok(Self {
            recipients,
            passphrase: passphrase.map(|p| SecretString::from(p.to_owned())),
            identity_file: vars.get("BACKUP_IDENTITY_FILE").map(PathBuf::from),
        })
    }
}

/// Comma-separated age public keys. An entry is never repeated in the error: a secret key
/// pasted here by mistake would reach the terminal and the logs.
fn parse_backup_recipients(list: &str) -> Result<Vec<age::x25519::Recipient>, ConfigError> {
    let entries: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            entry.parse().map_err(|_| {
                let which = format!("entry {} of {}", index + 1, entries.len());
                let reason = if entry.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
                    format!(
                        "{which} is an age secret key (an identity), which must never be \
                         here: put its public key (`age-keygen -y FILE`) here, keep the \
                         identity off this machine, and make a new one if it was exposed"
                    )
                } else {
                    format!("{which} is not an age X25519 public key (age1…)")
                };
                ConfigError::new("BACKUP_RECIPIENTS", reason)
            })
        })
        .collect()
}

fn log_filter(vars: &Vars) -> Result<String, ConfigError> {
    let filter = vars.get("RUST_LOG").unwrap_or("info,sqlx=warn");
    tracing_subscriber::EnvFilter::try_new(filter).map_err(|error| {
        ConfigError::new(
            "RUST_LOG",
            format!(
                "is not a log filter ({error}); write levels like `info` or \
                 `info,filmvault=debug` (trace, debug, info, warn, error)"
            ),
        )
    })?;
    Ok(filter.to_owned())
}

/// `METRICS_ADDR` and `INTERNAL_CLIENT_CA_PATH`. Without a client CA the listener has no
/// authentication at all, so it may only listen on loopback, in every mode: a metrics
/// endpoint open to a network is refused rather than warned about, since a warning in a log
/// nobody reads does not close the port. With the CA, any address is allowed.
fn internal_listener(
    vars: &Vars,
    serves_tls: bool,
) -> Result<(Option<std::net::SocketAddr>, Option<PathBuf>), ConfigError> {
    let client_ca = vars.get("INTERNAL_CLIENT_CA_PATH").map(PathBuf::from);
    let Some(raw) = vars.get("METRICS_ADDR") else {
        return match client_ca {
            Some(_) => Err(ConfigError::new(
                "INTERNAL_CLIENT_CA_PATH",
                "guards the internal listener, which METRICS_ADDR opens: set METRICS_ADDR too",
            )),
            None => Ok((None, None)),
        };
    };
    let addr: std::net::SocketAddr = raw
        .parse()
        .map_err(|_| ConfigError::new("METRICS_ADDR", "must be an address like 127.0.0.1:9090"))?;
    if client_ca.is_some() && !serves_tls {
        return Err(ConfigError::new(
            "INTERNAL_CLIENT_CA_PATH",
            "needs TLS_CERT_PATH and TLS_KEY_PATH: the internal listener serves that certificate",
        ));
    }
    if client_ca.is_none() && !addr.ip().is_loopback() {
        return Err(ConfigError::new(
            "METRICS_ADDR",
            "must be a loopback address unless INTERNAL_CLIENT_CA_PATH is set: without client \
             certificates the internal listener has no authentication",
        ));
    }
    Ok((Some(addr), client_ca))
}

fn parse_origins(list: &str) -> Result<Vec<String>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .map(|origin| {
            let valid = origin == "*"
                || ((origin.starts_with("https://") || origin.starts_with("http://"))
                    && !origin.ends_with('/')
                    && !origin.contains(char::is_whitespace));
            if valid {
                Ok(origin.to_owned())
            } else {
                Err(ConfigError::new(
                    "CORS_ALLOWED_ORIGINS",
                    "each origin must be scheme://host[:port] without a trailing slash, or *",
                ))
            }
        })
        .collect()
}

fn parse_networks(list: &str) -> Result<Vec<IpNet>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    ConfigError::new(
                        "TRUSTED_PROXIES",
                        "must be a comma-separated list of IP addresses or CIDR networks",
                    )
                })
        })
        .collect()
}

/// `.env` in the working directory or the nearest parent that has one (where dotenvy looks),
/// so `cargo run` finds it from a subdirectory too.
fn find_dotenv() -> Option<PathBuf> {
    let here = std::env::current_dir().ok()?;
    here.ancestors()
        .map(|dir| dir.join(".env"))
        .find(|path| path.is_file())
}

/// The variables of a `.env` file. A line that does not parse is reported by its number, not
/// its text: the text may hold a secret.
fn read_dotenv(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let unreadable = |error: &dyn fmt::Display| {
        ConfigError::new(
            ".env",
            format!("{} cannot be read: {error}", path.display()),
        )
    };
    dotenvy::from_path_iter(path)
        .map_err(|error| unreadable(&error))?
        .map(|entry| {
            entry.map_err(|error| match error {
                dotenvy::Error::LineParse(text, _) => ConfigError::new(
                    ".env",
                    format!(
                        "line {} of {} is not NAME=value; a value with spaces or `#` goes in \
                         quotes, and a quote needs its closing one",
                        line_number(path, &text).map_or("?".to_owned(), |n| n.to_string()),
                        path.display()
                    ),
                ),
                other => unreadable(&other),
            })
        })
        .collect()
}

/// Where the text dotenvy could not parse starts. Its first occurrence is the one that
/// failed: an identical earlier line would have failed first.
fn line_number(path: &Path, text: &str) -> Option<usize> {
    let contents = std::fs::read_to_string(path).ok()?;
    let start = contents.find(text)?;
    Some(contents[..start].matches('\n').count() + 1)
}

/// Prefixes that only this service's variables use, so a set variable starting with one is a
/// mistake. Prefixes that other software shares (`RUST_` with the toolchain, `HTTPS_` with
/// `HTTPS_PROXY`) are not listed; a typo there is still caught by its distance.
const OUR_PREFIXES: &[&str] = &[
    "APP_",
    "BACKUP_",
    "MAIL_",
    "SMTP_",
    "JWT_",
    "DATABASE_",
    "ACCESS_TOKEN_",
    "REFRESH_TOKEN_",
    "CORS_",
    "TLS_",
    "RATE_LIMIT_",
    "SUSPICIOUS_LOGIN_",
    "LOG_",
    "METRICS_",
    "REVOCATION_",
    "INTERNAL_",
];

/// Edits (insertions, deletions, substitutions, swaps) from a misspelled name to ours.
const MAX_TYPO_DISTANCE: usize = 2;

/// Only plain names are reported: a reported name is copied into the log.
fn looks_like_a_variable_name(name: &str) -> bool {
    name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The variables, and the names of those read so far.
struct Vars {
    values: HashMap<String, String>,
    read: RefCell<BTreeSet<String>>,
}

impl Vars {
    fn new(values: HashMap<String, String>) -> Self {
        Self {
            values,
            read: RefCell::default(),
        }
    }

    /// An empty value counts as unset, as it does in most shells' `.env` handling.
    fn get(&self, name: &str) -> Option<&str> {
        self.read.borrow_mut().insert(name.to_owned());
        self.values
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Set variables that nothing read and that start like ours (`JWT_ISUSER`) or are a typo
    /// away from one of ours (`DATABSE_URL`).
    fn unknown(&self) -> Vec<UnknownVariable> {
        let read = self.read.borrow();
        let mut unknown: Vec<UnknownVariable> = self
            .values
            .keys()
            .filter(|name| !read.contains(*name) && looks_like_a_variable_name(name))
            .filter_map(|name| {
                let upper = name.to_ascii_uppercase();
                let closest = read
                    .iter()
                    .map(|known| (strsim::damerau_levenshtein(&upper, known), known))
                    .min()
                    .filter(|(distance, _)| *distance <= MAX_TYPO_DISTANCE)
                    .map(|(_, known)| known.clone());
                let ours = OUR_PREFIXES.iter().any(|prefix| upper.starts_with(prefix));
                (ours || closest.is_some()).then(|| UnknownVariable {
                    name: name.clone(),
                    closest,
                })
            })
            .collect();
        unknown.sort_by(|a, b| a.name.cmp(&b.name));
        unknown
    }

    fn parse_or<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e| ConfigError::new(name, format!("invalid value ({e})"))),
        }
    }

    fn parse_in_range<T>(
        &self,
        name: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
        T::Err: fmt::Display,
    {
        let value = self.parse_or(name, default)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::new(
                name,
                format!("must be between {} and {}", range.start(), range.end()),
            ))
        }
    }

    fn seconds_in_range(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.parse_in_range(name, default, range)
            .map(Duration::from_secs)
    }

    fn millis_in_range(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.parse_in_range(name, default, range)
            .map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const DATA_KEY: &str = "4RAYrCO5S/Do/zlwqicsXYc7F5kb8i/G3OQdeyRUDA8=";

    fn production(extra: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut vars = vec![
            ("APP_ENV", "production"),
            ("DATA_ENCRYPTION_KEY", DATA_KEY),
            ("TLS_CERT_PATH", "/etc/filmvault/cert.pem"),
            ("TLS_KEY_PATH", "/etc/filmvault/key.pem"),
            ("SMTP_URL", "smtps://mail.example.com"),
        ];
        vars.extend_from_slice(extra);
        Settings::from_vars(vars)
    }

    #[test]
    fn a_fresh_environment_gives_safe_development_defaults() {
        let settings = Settings::from_vars(Vec::<(String, String)>::new()).unwrap();
        assert_eq!(settings.environment, Environment::Development);
        assert_eq!(settings.host, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(settings.port, 8080);
        assert_eq!(settings.jwt.access_token_ttl, Duration::from_secs(900));
    }

    #[test]
    fn production_requires_a_data_key_and_development_leaves_it_to_the_key_file() {
        let missing = production(&[("DATA_ENCRYPTION_KEY", "")]).unwrap_err();
        assert_eq!(missing.variable, "DATA_ENCRYPTION_KEY");
        assert!(
            missing.reason.contains("openssl rand -base64 32"),
            "{missing}"
        );
        let development = Settings::from_vars(Vec::<(String, String)>::new()).unwrap();
        assert!(development.data_keys.current.is_none());
        assert!(development.data_keys.previous.is_empty());
    }

    #[test]
    fn a_bad_data_key_is_named_and_never_echoed() {
        let short = "c2hvcnQta2V5";
        for (name, value, says) in [
            ("DATA_ENCRYPTION_KEY", short, "exactly 32 bytes"),
            ("DATA_ENCRYPTION_KEY", "not base64 at all!", "not base64"),
            (
                "DATA_ENCRYPTION_KEYS_PREVIOUS",
                &format!("{DATA_KEY}, {short}"),
                "key 2",
            ),
        ] {
            let err = Settings::from_vars([(name, value)]).unwrap_err();
            assert_eq!(err.variable, name, "{value}");
            assert!(err.reason.contains(says), "{err}");
            assert!(!err.to_string().contains(short), "the error echoes the key");
        }
        let settings = Settings::from_vars([
            ("DATA_ENCRYPTION_KEY", DATA_KEY),
            ("DATA_ENCRYPTION_KEYS_PREVIOUS", &format!(" {DATA_KEY} ,,")),
        ])
        .unwrap();
        assert!(settings.data_keys.current.is_some());
        assert_eq!(settings.data_keys.previous.len(), 1);
    }

    #[test]
    fn production_sends_mail_over_tls_unless_the_server_is_on_loopback() {
        let public = ("PUBLIC_BASE_URL", "https://films.example.com");
        let smtp = |url| production(&[public, ("SMTP_URL", url)]);
        let refused = smtp("smtp://mail.example.com:587").unwrap_err();
        assert_eq!(refused.variable, "SMTP_URL");
        assert!(refused.reason.contains("TLS"), "{refused}");
        let with_password = smtp("smtp://user:hunter2@mail.example.com").unwrap_err();
        assert!(
            !with_password.to_string().contains("hunter2"),
            "{with_password}"
        );
        assert_eq!(smtp("").unwrap_err().variable, "SMTP_URL", "required");
        assert_eq!(
            smtp("http://mail.example.com").unwrap_err().variable,
            "SMTP_URL"
        );
        for allowed in [
            "smtps://mail.example.com",
            "smtp://mail.example.com:587?tls=required",
            "smtp://127.0.0.1:1025",
            "smtp://[::1]:1025",
            "smtp://localhost:25",
            "smtp://127.0.0.2:25",
        ] {
            assert!(smtp(allowed).is_ok(), "{allowed}");
        }
        let development = Settings::from_vars([("SMTP_URL", "smtp://mail.example.com")]);
        assert!(development.is_ok(), "development may use a plain relay");
    }

    #[test]
    fn production_refuses_a_wildcard_origin() {
        let err = production(&[("CORS_ALLOWED_ORIGINS", "https://a.example, *")]).unwrap_err();
        assert_eq!(err.variable, "CORS_ALLOWED_ORIGINS");
    }

    /// Without client certificates the internal listener stays on loopback, in every mode;
    /// with them it may listen anywhere, and needs a server certificate to present.
    #[test]
    fn the_internal_listener_leaves_loopback_only_behind_mutual_tls() {
        let network = ("METRICS_ADDR", "10.0.0.5:9090");
        let client_ca = ("INTERNAL_CLIENT_CA_PATH", "/etc/filmvault/clients-ca.pem");
        let public = ("PUBLIC_BASE_URL", "https://films.example.com");
        let open = production(&[public, network]).unwrap_err();
        assert_eq!(open.variable, "METRICS_ADDR");
        let guarded = production(&[public, network, client_ca]).unwrap();
        assert_eq!(guarded.metrics_addr, Some("10.0.0.5:9090".parse().unwrap()));
        assert_eq!(
            guarded.internal_client_ca_path,
            Some(PathBuf::from("/etc/filmvault/clients-ca.pem"))
        );
        let without_tls = Settings::from_vars([network, client_ca]).unwrap_err();
        assert_eq!(without_tls.variable, "INTERNAL_CLIENT_CA_PATH");
        let without_listener = production(&[public, client_ca]).unwrap_err();
        assert_eq!(without_listener.variable, "INTERNAL_CLIENT_CA_PATH");
    }

    #[test]
    fn production_refuses_to_run_without_tls_unless_a_trusted_proxy_terminates_it() {
        let base = [
            ("APP_ENV", "production"),
            ("DATA_ENCRYPTION_KEY", DATA_KEY),
            ("SMTP_URL", "smtps://mail.example.com"),
        ];
        assert_eq!(
            Settings::from_vars(base).unwrap_err().variable,
            "TLS_CERT_PATH"
        );
        let mut proxy_without_list = base.to_vec();
        proxy_without_list.push(("TLS_TERMINATED_BY_PROXY", "true"));
        assert!(Settings::from_vars(proxy_without_list.clone()).is_err());
        proxy_without_list.push(("TRUSTED_PROXIES", "10.0.0.0/8"));
        assert!(Settings::from_vars(proxy_without_list).is_ok());
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (name, value) in [
            ("APP_PORT", "eighty"),
            ("APP_ENV", "staging"),
            ("RATE_LIMIT_AUTH", "5 per minute"),
            ("RATE_LIMIT_AUTH", "0/min"),
            ("ACCESS_TOKEN_TTL_SECS", "5"),
            ("TRUSTED_PROXIES", "10.0.0.0/33"),
            ("CORS_ALLOWED_ORIGINS", "example.com"),
            ("TLS_CERT_PATH", "only-the-cert.pem"),
            ("METRICS_ADDR", "0.0.0.0:9090"),
            ("TLS_RELOAD_INTERVAL_SECS", "0"),
            ("PUBLIC_BASE_URL", "films.example.com"),
            ("PUBLIC_BASE_URL", "https://films.example.com/path"),
            ("PUBLIC_BASE_URL", "https://user@films.example.com"),
            ("PUBLIC_BASE_URL", "https://films.example.com?x=1"),
            ("ACCOUNT_LOCKOUT_SECS", "-1"),
            ("CLIENT_IPV6_PREFIX_LEN", "31"),
            ("CLIENT_IPV6_PREFIX_LEN", "129"),
            ("AUDIT_DENIAL_WINDOW_SECS", "0"),
            ("AUDIT_RETENTION_DAYS", "0"),
            ("REFRESH_TOKEN_RETENTION_DAYS", "forever"),
        ] {
            let err = Settings::from_vars([(name, value)]).unwrap_err();
            let expected = if name == "TLS_CERT_PATH" {
                "TLS_KEY_PATH"
            } else {
                name
            };
            assert_eq!(err.variable, expected, "{name}={value}");
        }
    }

    #[test]
    fn the_public_url_is_an_https_origin_required_in_production_with_tls() {
        assert_eq!(
            production(&[]).unwrap_err().variable,
            "PUBLIC_BASE_URL",
            "missing"
        );
        let http = production(&[("PUBLIC_BASE_URL", "http://films.example.com")]);
        assert_eq!(http.unwrap_err().variable, "PUBLIC_BASE_URL", "plain http");
        let settings = production(&[("PUBLIC_BASE_URL", "https://Films.example.com:8443/")]);
        assert_eq!(
            settings.unwrap().public_base_url.as_deref(),
            Some("https://films.example.com:8443")
        );
    }

    #[test]
    fn production_on_postgresql_needs_redis_unless_it_says_it_runs_alone() {
        let postgres = ("DATABASE_URL", "postgres://filmvault@db.internal/filmvault");
        let proxy = [
            ("PUBLIC_BASE_URL", "https://films.example.com"),
            ("TRUSTED_PROXIES", "10.0.0.0/8"),
        ];
        let err = production(&[postgres, proxy[0], proxy[1]]).unwrap_err();
        assert_eq!(err.variable, "REDIS_URL");
        assert!(err.reason.contains("SINGLE_INSTANCE=true"), "{err}");
        // Another production variable may still be missing; REDIS_URL no longer is.
        let alone = production(&[postgres, proxy[0], proxy[1], ("SINGLE_INSTANCE", "true")]);
        assert!(alone.map_or_else(|e| e.variable != "REDIS_URL", |s| s.redis.is_none()));
        let shared = production(&[
            postgres,
            proxy[0],
            proxy[1],
            ("REDIS_URL", "redis://redis.internal:6379/0"),
        ]);
        assert!(shared.map_or_else(|e| e.variable != "REDIS_URL", |s| s.redis.is_some()));
        let sqlite_shared = production(&[
            proxy[0],
            proxy[1],
            ("REDIS_URL", "redis://redis.internal:6379/0"),
        ]);
        assert_eq!(
            sqlite_shared.unwrap().redis.unwrap().key_prefix,
            "filmvault"
        );
        // SQLite is one file on one machine: no such requirement.
        assert!(production(&[proxy[0], proxy[1]]).is_ok());
    }

    #[test]
    fn a_bad_redis_setting_names_its_variable_and_never_echoes_the_url() {
        for (vars, expected) in [
            (
                vec![("REDIS_URL", "http://user:hunter2-secret@redis:6379")],
                "REDIS_URL",
            ),
            (
                vec![("REDIS_URL", "rediss://user:hunter2-secret@redis:6379")],
                "REDIS_URL",
            ),
            (
                vec![
                    ("REDIS_URL", "redis://127.0.0.1"),
                    ("SINGLE_INSTANCE", "true"),
                ],
                "SINGLE_INSTANCE",
            ),
            (
                vec![
                    ("REDIS_URL", "redis://127.0.0.1"),
                    ("REDIS_KEY_PREFIX", "a b"),
                ],
                "REDIS_KEY_PREFIX",
            ),
            (
                vec![
                    ("REDIS_URL", "redis://127.0.0.1"),
                    ("REVOCATION_MAX_STALENESS_MS", "100"),
                ],
                "REVOCATION_MAX_STALENESS_MS",
            ),
            (vec![("INSTANCE_ID", "web 1")], "INSTANCE_ID"),
        ] {
            let err = Settings::from_vars(vars.clone()).unwrap_err();
            assert_eq!(err.variable, expected, "{vars:?}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        let settings = Settings::from_vars([("INSTANCE_ID", "web-1")]).unwrap();
        assert_eq!(settings.instance_id, "web-1");
        let default = Settings::from_vars(Vec::<(String, String)>::new()).unwrap();
        assert!(
            default
                .instance_id
                .ends_with(&format!("-{}", std::process::id()))
        );
    }

    #[test]
    fn a_misspelled_variable_is_reported_with_the_one_meant_and_foreign_ones_are_not() {
        let settings = Settings::from_vars([
            ("JWT_ISUSER", "x"),
            ("DATABSE_URL", "x"),
            ("APP_NAME", "x"),
            ("HTTPS_PORT", "8443"),
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("RUST_BACKTRACE", "1"),
            ("HOME", "/root"),
        ])
        .unwrap();
        let reported: Vec<(&str, Option<&str>)> = settings
            .unknown_variables
            .iter()
            .map(|u| (u.name.as_str(), u.closest.as_deref()))
            .collect();
        assert_eq!(
            reported,
            [
                ("APP_NAME", None),
                ("DATABSE_URL", Some("DATABASE_URL")),
                ("JWT_ISUSER", Some("JWT_ISSUER")),
            ]
        );
    }

    #[test]
    fn backup_keys_are_checked_and_a_secret_key_is_never_echoed() {
        let identity = age::x25519::Identity::generate();
        let secret = identity.to_string();
        let public = identity.to_public().to_string();
        for (vars, expected) in [
            (
                vec![("BACKUP_RECIPIENTS", format!("{public}, age1notakey"))],
                "BACKUP_RECIPIENTS",
            ),
            (
                vec![("BACKUP_RECIPIENTS", secret.expose_secret().to_owned())],
                "BACKUP_RECIPIENTS",
            ),
            (
                vec![("BACKUP_PASSPHRASE", "short words".to_owned())],
                "BACKUP_PASSPHRASE",
            ),
            (
                vec![
                    ("BACKUP_RECIPIENTS", public.clone()),
                    ("BACKUP_PASSPHRASE", "a long enough passphrase".to_owned()),
                ],
                "BACKUP_PASSPHRASE",
            ),
        ] {
            let err = Settings::from_vars(vars.clone()).unwrap_err();
            assert_eq!(err.variable, expected, "{err}");
            assert!(!err.to_string().contains(secret.expose_secret()), "{err}");
        }
        let settings = Settings::from_vars([("BACKUP_RECIPIENTS", format!(" {public} ,"))]);
        assert_eq!(settings.unwrap().backup.recipients.len(), 1);
    }

    #[test]
    fn quotas_parse_count_and_period() {
        assert_eq!("5/min".parse::<Quota>().unwrap(), Quota::per_minute(5));
        let per_second: Quota = "100/s".parse().unwrap();
        assert_eq!(per_second.replenish_interval(), Duration::from_millis(10));
        assert!("5/day".parse::<Quota>().is_err());
    }
}
