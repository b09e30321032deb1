//! A PostgreSQL server of a test's own, which the test may stop and start again: `initdb`
//! into a temporary folder, `postgres` on a free loopback port with trust authentication
//! (only the loopback reaches it, and only for the test's life). The server binaries are
//! Debian's, under `/usr/lib/postgresql/*/bin` (`PG_BIN` names another folder, as for
//! `deploy/lib/engines.sh`). PostgreSQL refuses to run as root: as root, the folder is given
//! to the `postgres` user and the server runs as that user.
//!
//! Without the binaries, CI fails the test; a developer's run skips it and says so on stderr.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rustix::process::{Pid, Signal, kill_process};

/// The system user Debian's package runs PostgreSQL as.
const SERVER_USER: &str = "postgres";
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct PostgresServer {
    bin: PathBuf,
    /// Holds `data/` and the Unix socket; removed when the server is dropped.
    dir: tempfile::TempDir,
    port: u16,
    process: Option<Child>,
}

impl PostgresServer {
    /// A fresh server, initialized and started; `None` (after saying why) when a developer
    /// has no PostgreSQL binaries.
    pub fn start() -> Option<Self> {
        let bin = match server_binaries() {
            Ok(bin) => bin,
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!("this test needs PostgreSQL in CI: {why}")
            }
            Err(why) => {
                eprintln!(
                    "SKIPPED (needs PostgreSQL): {why}; `apt-get install postgresql`, or set PG_BIN"
                );
                return None;
            }
        };
        let mut server = Self {
            bin,
            dir: server_dir(),
            port: free_port(),
            process: None,
        };
        server.initialize();
        server.restart();
        Some(server)
    }

    /// The superuser's URL (trust authentication: no password).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server on its data folder, as it was left, and waits until it accepts
    /// connections.
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "the server is already running");
        let mut command = self.as_server_user(&self.bin.join("postgres"));
        command
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            // A test server: a clean shutdown still writes everything, which is what the
            // test restarts from; fsync only guards against a crash of the machine.
            .args(["-c", "fsync=off", "-c", "shared_buffers=16MB"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.process = Some(command.spawn().expect("postgres starts"));
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.accepts_connections() {
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections in {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fast shutdown, as `pg_ctl stop` does by default: open sessions are ended (SQLSTATE
    /// 57P01), the data written out, the port closed.
    pub fn stop(&mut self) {
        self.signal_and_wait(Signal::INT);
    }

    fn signal_and_wait(&mut self, signal: Signal) {
        if let Some(mut process) = self.process.take() {
            // Ignored: the server may have ended already; `wait` reaps it either way.
            let _ = kill_process(Pid::from_child(&process), signal);
            process.wait().expect("postgres is reaped");
        }
    }

    fn accepts_connections(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", "1"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn initialize(&self) {
        let output = self
            .as_server_user(&self.bin.join("initdb"))
            .arg("-D")
            .arg(self.data())
            .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8"])
            .args(["--no-locale", "--no-sync"])
            .output()
            .expect("initdb runs");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `program` as the server's user when we are root (PostgreSQL refuses root), as
    /// ourselves otherwise; killed if the thread that started it ends first.
    fn as_server_user(&self, program: &Path) -> Command {
        let mut command = if rustix::process::geteuid().is_root() {
            let mut setpriv = Command::new("setpriv");
            setpriv
                .args([
                    "--reuid",
                    SERVER_USER,
                    "--regid",
                    SERVER_USER,
                    "--init-groups",
                ])
                .args(["--pdeathsig", "KILL", "--"])
                .arg(program);
            setpriv
        } else {
            Command::new(program)
        };
        command.current_dir(self.dir.path());
        command
    }
}

impl Drop for PostgresServer {
    /// Immediate shutdown: nothing is kept.
    fn drop(&mut self) {
        self.signal_and_wait(Signal::QUIT);
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb`, or `PG_BIN`.
fn server_binaries() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("PG_BIN") {
        return Ok(bin.into());
    }
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|error| format!("no /usr/lib/postgresql ({error})"))?;
    versions
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no server binaries under /usr/lib/postgresql/*/bin".to_owned())
}

/// A temporary folder the server's user owns. As root it is made under `/tmp`, which that
/// user can always pass through (a `TMPDIR` under `/root` would be closed to it).
fn server_dir() -> tempfile::TempDir {
    if !rustix::process::geteuid().is_root() {
        return tempfile::tempdir().expect("a temporary directory");
    }
    let dir = tempfile::tempdir_in("/tmp").expect("a temporary directory in /tmp");
    let chown = Command::new("chown")
        .arg(format!("{SERVER_USER}:"))
        .arg(dir.path())
        .status()
        .expect("chown runs");
    assert!(chown.success(), "the {SERVER_USER} user exists");
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}
