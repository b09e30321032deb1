//! A fresh clone runs with zero setup; bad configuration stops it with one clear line.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use filmvault::db;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_app_on, spawn_app_with};

#[tokio::test]
async fn a_fresh_development_database_gets_the_demo_catalogue_once() {
    let app = spawn_app_with(&[("SEED_DEMO_DATA", "true")]).await;
    let page: Value = app
        .get("/api/v1/films?limit=100", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 20);
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"Frozen"));
    assert_eq!(page["items"][0]["studio"], "Disney");

    // A second start on the same database does not seed again.
    let first = spawn_app_with(&[("SEED_DEMO_DATA", "true")]).await;
    let token = {
        let user = first.new_user().await;
        user.token
    };
    first.create_film(&token, "Extra", "Somewhere").await;
    let second = spawn_app_on(&first.database, &[("SEED_DEMO_DATA", "true")]).await;
    let page: Value = second
        .get("/api/v1/films?limit=1", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 21);
}

fn run_binary(env: &[(&str, &str)]) -> std::process::Output {
    // A temporary working directory: no stray .env is read.
    let dir = tempfile::tempdir().unwrap();
    run_binary_in(dir.path(), env)
}

fn run_binary_in(dir: &Path, env: &[(&str, &str)]) -> std::process::Output {
    binary_in(dir, env).output().expect("the binary runs")
}

/// The binary with nothing but PATH and `env` in its environment, working in `dir`.
fn binary_in(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_filmvault"));
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// What a person sees when start-up fails: a non-zero exit and one message that names the
/// variable at fault and says what to do, printed once (on stderr, not again in the log).
#[test]
fn every_fatal_start_up_error_names_its_variable_and_the_remedy_once() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port().to_string();
    let cases = [
        (
            vec![("APP_PORT", busy_port.as_str())],
            "APP_PORT",
            "set APP_PORT to a free port",
        ),
        (
            vec![("DATABASE_URL", "mysql://films:hunter2-pw@db/films")],
            "DATABASE_URL",
            "the `mysql` scheme is not supported",
        ),
        (
            vec![(
                "DATABASE_URL",
                "sqlite:///nonexistent-filmvault-dir/films.db",
            )],
            "DATABASE_URL",
            "the directory /nonexistent-filmvault-dir does not exist; create it",
        ),
        (
            vec![("RUST_LOG", "info,sqlx=loud")],
            "RUST_LOG",
            "write levels like `info`",
        ),
    ];
    for (env, variable, remedy) in cases {
        let mut env = env;
        if variable != "APP_PORT" {
            env.push(("APP_PORT", "0"));
        }
        let output = run_binary(&env);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        assert!(!output.status.success(), "{env:?} started");
        assert_eq!(stderr.matches(remedy).count(), 1, "{env:?}: {stderr}");
        assert_eq!(
            stderr.matches(&format!("{variable}:")).count(),
            1,
            "{env:?}: {stderr}"
        );
        assert!(!stdout.contains(remedy), "printed twice: {stdout}");
        assert!(
            !stderr.contains("hunter2"),
            "a password is echoed: {stderr}"
        );
    }
}

/// A `.env` line that does not parse is reported by its line number in the file, and its
/// text (which may hold a secret) is not repeated.
#[test]
fn a_bad_env_file_line_is_reported_by_its_number_without_its_text() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "# filmvault\nAPP_PORT=0\n\nJWT_SECRET=my unquoted secret-phrase\nRUST_LOG=info\n",
    )
    .unwrap();
    let output = run_binary_in(dir.path(), &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("line 4 of "), "{stderr}");
    assert!(stderr.contains(".env is not NAME=value"), "{stderr}");
    assert!(
        !stderr.contains("secret-phrase"),
        "the line is echoed: {stderr}"
    );
}

/// The server's log up to the line that says where to go (at most 30 s of it); the server is
/// then stopped.
fn start_up_log(mut server: std::process::Child) -> Vec<String> {
    let stdout = server.stdout.take().unwrap();
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let done = line.contains("/static/index.html");
        seen.push(line);
        if done {
            break;
        }
    }
    server.kill().unwrap();
    server.wait().unwrap();
    seen
}

#[test]
fn start_up_warns_about_a_misspelled_variable_and_says_where_to_go() {
    let dir = tempfile::tempdir().unwrap();
    let server = binary_in(
        dir.path(),
        &[
            ("APP_PORT", "0"),
            ("DATABASE_URL", "sqlite://filmvault.db"),
            ("JWT_ISUSER", "meant-to-be-the-issuer"),
            // Read before tokens were signed with Ed25519 keys: a warning, not a failure.
            ("JWT_SECRET", "a-leftover-hs256-secret-0123456789abcdef"),
            ("RUST_BACKTRACE", "1"),
        ],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let log = start_up_log(server);

    let warnings: Vec<&String> = log.iter().filter(|l| l.contains("JWT_ISUSER")).collect();
    assert_eq!(warnings.len(), 1, "{log:#?}");
    assert!(warnings[0].contains("WARN"), "{log:#?}");
    assert!(warnings[0].contains("did you mean JWT_ISSUER?"), "{log:#?}");
    let retired: Vec<&String> = log.iter().filter(|l| l.contains("JWT_SECRET")).collect();
    assert_eq!(retired.len(), 1, "{log:#?}");
    assert!(retired[0].contains("WARN") && retired[0].contains("no longer used"));
    assert!(!retired[0].contains("leftover"), "the value is logged");
    assert!(!warnings[0].contains("meant-to-be"), "the value is logged");
    assert!(
        !log.iter().any(|l| l.contains("RUST_BACKTRACE")),
        "the toolchain's variables are not ours: {log:#?}"
    );

    let listening = log.iter().find(|l| l.contains("filmvault is listening"));
    let port = listening
        .and_then(|l| l.split("http://127.0.0.1:").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .expect("the listening line has the address");
    let where_to_go = log.last().expect("the server logged");
    assert!(
        where_to_go.contains(&format!("http://127.0.0.1:{port}/static/index.html")),
        "{where_to_go}"
    );
    assert!(
        where_to_go.contains(&format!("http://127.0.0.1:{port}/docs/")),
        "{where_to_go}"
    );
}

#[test]
fn help_points_to_the_env_file_its_example_and_the_readme() {
    let dir = tempfile::tempdir().unwrap();
    let output = binary_in(dir.path(), &[]).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for mention in [".env file", ".env.example", "README"] {
        assert!(help.contains(mention), "{mention} missing from:\n{help}");
    }
}

#[test]
fn a_bad_variable_stops_the_server_with_one_line_naming_it() {
    let output = run_binary(&[("APP_PORT", "eighty")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("APP_PORT"), "{stderr}");
}

#[tokio::test]
async fn the_server_creates_its_database_and_applies_migrations() {
    let app = spawn_app_with(&[]).await;
    if let Some(path) = app.database.sqlite_path() {
        assert!(path.exists());
    }
    let response = app.get("/api/v1/films", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let tables: Vec<String> = db::fetch_scalars!(
        &mut app.db().await,
        sqlite: "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
        postgres: "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
    )
    .await
    .unwrap();
    for table in ["films", "users", "votes"] {
        assert!(tables.iter().any(|t| t == table), "{table} in {tables:?}");
    }
}

/// `.env.example` must stay true: it parses into valid settings, and every variable the
/// configuration reads is documented in it.
#[test]
fn the_example_environment_file_is_valid_and_documents_every_variable() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join(".env.example")).unwrap();
    let vars: Vec<(String, String)> = dotenvy::from_path_iter(root.join(".env.example"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let settings = filmvault::config::Settings::from_vars(vars).expect(".env.example is valid");
    assert_eq!(
        settings.unknown_variables,
        [],
        ".env.example sets variables nothing reads"
    );

    let config_source = std::fs::read_to_string(root.join("src/config.rs")).unwrap();
    let (config_code, _unit_tests) = config_source.split_once("#[cfg(test)]").unwrap();
    let read_by_config: std::collections::BTreeSet<&str> = config_code
        .split('"')
        .skip(1)
        .step_by(2)
        // `JWT_`-style prefixes (the unknown-variable check's) are not variables.
        .filter(|s| s.len() > 3 && !s.ends_with('_'))
        .filter(|s| s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
        .collect();
    assert!(read_by_config.contains("DATA_ENCRYPTION_KEY"));
    for name in read_by_config {
        let documented = example.lines().any(|line| {
            line.trim_start_matches("# ")
                .starts_with(&format!("{name}="))
        });
        assert!(
            documented,
            "{name} is read by src/config.rs but not documented in .env.example"
        );
    }
}

fn example_file(name: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join(name)).unwrap()
}

fn example_env_vars() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    dotenvy::from_path_iter(root.join(".env.example"))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The `KEY: value` pairs of the compose file's `environment:` block.
fn compose_environment() -> Vec<(String, String)> {
    let compose = example_file("docker-compose.yml");
    let mut lines = compose.lines().skip_while(|l| l.trim() != "environment:");
    let header = lines.next().expect("an environment block");
    let indent = |line: &str| line.len() - line.trim_start().len();
    lines
        .take_while(|line| indent(line) > indent(header))
        .filter_map(|line| line.trim().split_once(": "))
        .map(|(key, value)| (key.to_owned(), value.trim_matches('"').to_owned()))
        .collect()
}

#[test]
fn no_example_file_holds_a_usable_secret() {
    let example = example_env_vars();
    let key = example.iter().find(|(key, _)| key == "DATA_ENCRYPTION_KEY");
    assert!(
        key.is_none_or(|(_, value)| value.trim().is_empty()),
        ".env.example sets DATA_ENCRYPTION_KEY"
    );
    assert!(example_file(".env.example").contains("openssl rand -base64 32"));
    let settings = filmvault::config::Settings::from_vars(example).unwrap();
    assert!(settings.data_keys.current.is_none());

    let postman: Value = serde_json::from_str(&example_file("postman/environment.json")).unwrap();
    for entry in postman["values"].as_array().unwrap() {
        if entry["type"] == "secret" {
            assert_eq!(entry["value"], "", "postman secret {}", entry["key"]);
        }
    }
}

/// `cp .env.example .env && docker compose up` runs production (which then refuses to start
/// until a secret is set), never development with demo data.
#[test]
fn the_compose_file_runs_production_whatever_the_env_file_says() {
    let compose = compose_environment();
    assert!(
        compose.contains(&("APP_ENV".to_owned(), "production".to_owned())),
        "{compose:?}"
    );
    let mut effective = example_env_vars();
    effective.extend(compose);
    let error = filmvault::config::Settings::from_vars(effective).unwrap_err();
    assert_eq!(error.variable, "DATA_ENCRYPTION_KEY");
}
