//! `create-admin` as an operator meets it: from a script (ADMIN_PASSWORD or a piped line), on a
//! terminal (asked twice, with retries), and through its help.

use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    STRONG_PASSWORD, TEST_DATA_ENCRYPTION_KEY, TestApp, output_of, spawn_app, unique_username,
};

/// `create-admin` on the app's database, with nothing else in its environment but `env`, the
/// password lines (if any) on a pipe.
async fn create_admin(app: &TestApp, username: &str, env: &[(&str, &str)], stdin: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_filmvault"));
    command
        .args(["create-admin", "--username", username, "--email"])
        .arg(format!("{username}@example.com"))
        .env_clear()
        .env("DATABASE_URL", app.database.url())
        .env("DATA_ENCRYPTION_KEY", TEST_DATA_ENCRYPTION_KEY)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied());
    output_of(command, stdin).await
}

async fn login_status(app: &TestApp, username: &str, password: &str) -> (StatusCode, Value) {
    let response = app
        .post_json(
            "/api/v1/auth/login",
            &json!({ "username": username, "password": password }),
            None,
        )
        .await;
    let status = response.status();
    let token = response.json::<Value>().await.unwrap()["access_token"].clone();
    let profile = match token.as_str() {
        Some(token) => app
            .get("/api/v1/users/me", Some(token))
            .await
            .json()
            .await
            .unwrap(),
        None => Value::Null,
    };
    (status, profile)
}

#[tokio::test]
async fn create_admin_reads_the_password_from_one_line_of_a_pipe() {
    let app = spawn_app().await;
    let username = unique_username("piped");
    let output = create_admin(
        &app,
        &username,
        &[],
        &format!("{STRONG_PASSWORD}\nignored\n"),
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (status, profile) = login_status(&app, &username, STRONG_PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(profile["role"], "admin");
}

/// From a script there is no one to ask again: a password that breaks the rules stops the
/// command, which says where the password came from and what the rules are, and creates
/// nobody.
#[tokio::test]
async fn create_admin_refuses_a_weak_password_naming_its_source_and_the_rules() {
    let app = spawn_app().await;
    let cases = [
        (
            vec![("ADMIN_PASSWORD", "short-pw")],
            "",
            "ADMIN_PASSWORD",
            "short-pw",
        ),
        (
            vec![],
            "password1234\n",
            "the password on standard input",
            "password1234",
        ),
    ];
    for (env, stdin, source, password) in cases {
        let username = unique_username("weak");
        let output = create_admin(&app, &username, &env, stdin).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{source}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(source), "{stderr}");
        assert!(stderr.contains("12 to 128 characters"), "{stderr}");
        assert!(stderr.contains("not a common password"), "{stderr}");
        assert!(
            !stderr.contains(password),
            "the password is echoed: {stderr}"
        );
        let (status, _) = login_status(&app, &username, password).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "an account was created");
    }
}

#[tokio::test]
async fn create_admin_with_nothing_on_standard_input_says_how_to_give_the_password() {
    let app = spawn_app().await;
    let output = create_admin(&app, &unique_username("empty"), &[], "").await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("standard input is empty"), "{stderr}");
    assert!(stderr.contains("ADMIN_PASSWORD"), "{stderr}");
}

/// On a terminal (a pseudo-terminal from util-linux `script`): the rules are shown, a weak
/// password and a mistyped repetition are each refused with a reason, and the third try
/// creates the account.
#[tokio::test]
async fn create_admin_on_a_terminal_asks_twice_and_lets_the_user_try_again() {
    let app = spawn_app().await;
    let username = unique_username("tty");
    let command = format!(
        "'{}' create-admin --username {username} --email {username}@example.com",
        env!("CARGO_BIN_EXE_filmvault")
    );
    let typed = format!(
        "short\n{STRONG_PASSWORD}\nmistyped-{STRONG_PASSWORD}\n{STRONG_PASSWORD}\n{STRONG_PASSWORD}\n"
    );
    let mut terminal = Command::new("timeout")
        .args([
            "30",
            "script",
            "--quiet",
            "--return",
            "--command",
            &command,
            "/dev/null",
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", app.database.url())
        .env("DATA_ENCRYPTION_KEY", TEST_DATA_ENCRYPTION_KEY)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("util-linux `script` (Debian's bsdutils) runs");
    terminal
        .stdin
        .take()
        .unwrap()
        .write_all(typed.as_bytes())
        .unwrap();
    let output = terminal.wait_with_output().unwrap();
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{screen}");

    let after = |text: &str, from: usize| {
        screen[from..]
            .find(text)
            .map(|at| from + at)
            .unwrap_or_else(|| panic!("{text:?} missing after byte {from} of:\n{screen}"))
    };
    let rules = after("12 to 128 characters, not a common password", 0);
    let too_short = after("That password must be 12 to 128 characters long.", rules);
    let repeat = after("Repeat it: ", too_short);
    let differ = after("The two entries differ; try again.", repeat);
    let repeat_again = after("Repeat it: ", differ);
    after(&format!("created administrator {username}"), repeat_again);
    let (status, profile) = login_status(&app, &username, STRONG_PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(profile["role"], "admin");
}

#[test]
fn create_admin_help_documents_the_password_sources_and_every_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_filmvault"))
        .args(["create-admin", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for text in [
        "ADMIN_PASSWORD",
        "asked twice on the terminal",
        "first line of standard input",
        "12 to 128 characters",
    ] {
        assert!(help.contains(text), "{text:?} missing from:\n{help}");
    }
    for (flag, explanation) in [
        ("--username <USERNAME>", "Login name: 3 to 32"),
        ("--email <EMAIL>", "email address"),
    ] {
        let line = help.lines().position(|l| l.trim() == flag);
        let next = line.and_then(|at| help.lines().nth(at + 1)).unwrap_or("");
        assert!(next.contains(explanation), "{flag} has no help:\n{help}");
    }
}

#[tokio::test]
async fn create_admin_refuses_a_password_containing_the_username() {
    let app = spawn_app().await;
    let username = unique_username("named");
    let password = format!("violet-{username}-kettle");
    let output = create_admin(&app, &username, &[("ADMIN_PASSWORD", &password)], "").await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("must not contain your username"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&password),
        "the password is echoed: {stderr}"
    );
    let (status, _) = login_status(&app, &username, &password).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an account was created");
}
