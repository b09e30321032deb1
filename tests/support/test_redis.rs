//! The Redis the tests use: `TEST_REDIS_URL` when set, else a private `redis-server` started
//! once per test process on a free port (so the README's `cargo test` needs no set-up beyond
//! the Debian package). Without either, CI fails the test; a developer's run skips it and says
//! so on stderr, naming the package to install.
//!
//! Shared by the library's unit tests and the black-box suite (`#[path]`-included by both).

use std::{
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    sync::{OnceLock, mpsc},
    time::{Duration, Instant},
};

/// The URL of the tests' Redis, or `None` (after saying why) when a developer has none.
pub fn test_redis_url() -> Option<String> {
    static PRIVATE: OnceLock<Result<String, String>> = OnceLock::new();
    if let Ok(url) = std::env::var("TEST_REDIS_URL") {
        return Some(url);
    }
    match PRIVATE.get_or_init(start_private_redis) {
        Ok(url) => Some(url.clone()),
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("these tests need Redis in CI: {why}")
        }
        Err(why) => {
            eprintln!(
                "SKIPPED (needs Redis): {why}; `apt-get install redis-server`, or set TEST_REDIS_URL"
            );
            None
        }
    }
}

/// Starts `redis-server` on a free loopback port from a thread that lives as long as the test
/// process: the server gets SIGKILL when that thread (so the process) ends.
fn start_private_redis() -> Result<String, String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|error| format!("no free port: {error}"))?
        .port();
    let (started, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe, and nothing else runs between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)
            });
        }
        match command.spawn() {
            Ok(mut server) => {
                let _ = started.send(Ok(()));
                let _ = server.wait();
            }
            Err(error) => {
                let _ = started.send(Err(format!("redis-server cannot start: {error}")));
            }
        }
    });
    outcome
        .recv()
        .map_err(|_| "the thread starting redis-server died".to_owned())??;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!(
                "redis-server did not listen on port {port} in 10 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(format!("redis://127.0.0.1:{port}"))
}
