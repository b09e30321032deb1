//! A real SMTP server for the mail tests: `tests/support/smtp_sink.py` (Debian's
//! `python3-aiosmtpd`), a private process per test on its own loopback port, that can be
//! stopped and started again on the same port. Without aiosmtpd, CI fails the test; a
//! developer's run skips it and says so on stderr, naming the package to install.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");

pub struct SmtpSink {
    port: u16,
    dir: tempfile::TempDir,
    server: Option<Child>,
}

impl SmtpSink {
    /// A running sink, or `None` (after saying why) when a developer has no aiosmtpd.
    pub fn start() -> Option<Self> {
        let mut sink = Self::stopped();
        match sink.run() {
            Ok(()) => Some(sink),
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!("these tests need an SMTP server in CI: {why}")
            }
            Err(why) => {
                eprintln!(
                    "SKIPPED (needs python3-aiosmtpd): {why}; `apt-get install python3-aiosmtpd`"
                );
                None
            }
        }
    }

    /// A sink not yet listening: its port refuses connections until [`Self::restart`].
    pub fn stopped() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        Self {
            port,
            dir: tempfile::tempdir().expect("a temporary directory"),
            server: None,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.run().expect("the SMTP sink starts again");
    }

    fn run(&mut self) -> Result<(), String> {
        let python = ["/usr/bin/python3", "python3"]
            .into_iter()
            .find(|python| PathBuf::from(python).exists())
            .unwrap_or("python3");
        let mut command = Command::new(python);
        command
            .arg(SCRIPT)
            .arg(self.port.to_string())
            .arg(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe, and nothing else runs between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)
            });
        }
        let mut server = command.spawn().map_err(|e| format!("{python}: {e}"))?;
        let mut ready = String::new();
        let stdout = server.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut ready)
            .map_err(|e| e.to_string())?;
        if ready.trim() != "ready" {
            let output = server.wait_with_output().map_err(|e| e.to_string())?;
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        self.server = Some(server);
        Ok(())
    }

    /// Every message received so far, whole, in the order received.
    pub fn messages(&self) -> Vec<String> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("the sink's directory")
            .map(|entry| entry.expect("an entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|path| std::fs::read_to_string(path).expect("a message"))
            .collect()
    }

    /// The messages once there are at least `count`, within `timeout`.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "{count} messages expected within {timeout:?}, {} arrived",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}
