use std::{
    net::{IpAddr, SocketAddr},
    process::ExitCode,
};

use clap::Parser;
use filmvault::{
    backup,
    cli::{self, Cli, Command},
    config::Settings,
    memory,
    startup::Application,
    telemetry,
};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::fmt::writer::MakeWriterExt;

fn main() -> ExitCode {
    // Everything this process creates (the database and its WAL, log files, certificates) is
    // readable by its own user only. Set before any thread exists: the umask is per process.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let command = Cli::parse().command.unwrap_or(Command::Serve);
    // Needs no configuration, so it works before any is written.
    if let Command::DevCert { out_dir, force } = &command {
        return report(cli::dev_cert(out_dir, *force));
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("filmvault: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    // Dropped last, after the runtime: its background tasks may log until it is gone, and
    // the guards write out what is still queued.
    let _log_guards = match start_logging(&settings) {
        Ok(guards) => guards,
        Err(error) => {
            eprintln!("filmvault: cannot start logging: {error:#}");
            return ExitCode::from(2);
        }
    };
    telemetry::install_panic_hook();
    warn_about_unknown_variables(&settings);
    // The server's allocator settings, before the runtime's threads allocate; the one-shot
    // commands exit before memory matters.
    if matches!(command, Command::Serve)
        && let Err(error) = memory::return_free_memory()
    {
        eprintln!("filmvault: cannot start the thread that returns free memory: {error}");
        return ExitCode::FAILURE;
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run(command, settings)),
        Err(error) => {
            eprintln!("filmvault: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> ExitCode {
    report(match command {
        Command::CreateAdmin { username, email } => {
            cli::create_admin(&settings, username, email).await
        }
        Command::RotateSigningKey => cli::rotate_signing_key(&settings).await,
        Command::RotateDataKey => cli::rotate_data_key(&settings).await,
        Command::Healthcheck => cli::healthcheck(&settings),
        Command::Backup { out } => backup::backup(&settings, &out).await,
        Command::Restore { from, force } => backup::restore(&settings, &from, force).await,
        Command::Serve | Command::DevCert { .. } => serve(settings).await,
    })
}

fn start_logging(settings: &Settings) -> anyhow::Result<Vec<WorkerGuard>> {
    let (filter, format) = (&settings.logging.filter, settings.logging.format);
    let (stdout, stdout_guard) = telemetry::stdout_writer();
    match &settings.logging.file {
        Some(path) => {
            let (file, file_guard) = telemetry::file_writer(path)?;
            telemetry::init(telemetry::subscriber(filter, format, stdout.and(file))?)?;
            Ok(vec![stdout_guard, file_guard])
        }
        None => {
            telemetry::init(telemetry::subscriber(filter, format, stdout)?)?;
            Ok(vec![stdout_guard])
        }
    }
}

/// Variables filmvault once read: still set, they do nothing, which deserves more than "no
/// such variable".
const RETIRED_VARIABLES: [(&str, &str); 1] = [(
    "JWT_SECRET",
    "access tokens are signed with Ed25519 keys kept, encrypted, in the database (see \
     `filmvault rotate-signing-key`); remove it",
)];

fn warn_about_unknown_variables(settings: &Settings) {
    for unknown in &settings.unknown_variables {
        let retired = RETIRED_VARIABLES
            .iter()
            .find(|(name, _)| *name == unknown.name);
        if let Some((name, why)) = retired {
            tracing::warn!("{name} is set but no longer used: {why}");
            continue;
        }
        match &unknown.closest {
            Some(closest) => tracing::warn!(
                "{} is set but filmvault has no such variable, so it is ignored; did you mean \
                 {closest}?",
                unknown.name
            ),
            None => tracing::warn!(
                "{} is set but filmvault has no such variable, so it is ignored (every variable \
                 is in .env.example)",
                unknown.name
            ),
        }
    }
}

/// A fatal error is printed once, on stderr, where the person who started the process looks;
/// logging it as well would show it twice on a terminal.
fn report(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("filmvault: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let host = settings.host;
    let environment = settings.environment;
    let metrics_host = settings.metrics_addr.map(|addr| addr.ip());
    let application = Application::build(settings).await?;
    let url = |scheme: &str, port: u16| format!("{scheme}://{}", SocketAddr::new(host, port));
    if let Some((ip, port)) = metrics_host.zip(application.metrics_port()) {
        tracing::info!(address = %SocketAddr::new(ip, port), "metrics listener (METRICS_ADDR) is up");
    }
    match application.https_port() {
        Some(https_port) => tracing::info!(
            address = %url("https", https_port),
            redirects_from = %url("http", application.port()),
            ?environment,
            "filmvault is listening"
        ),
        None => tracing::info!(
            address = %url("http", application.port()),
            ?environment,
            "filmvault is listening"
        ),
    }
    let browse = match application.https_port() {
        Some(https_port) => browser_url(host, "https", https_port),
        None => browser_url(host, "http", application.port()),
    };
    tracing::info!(
        test_page = %format!("{browse}/static/index.html"),
        api_docs = %format!("{browse}/docs/"),
        "try it in a browser"
    );
    application.run_until_stopped().await?;
    Ok(())
}

/// Where a browser on this machine reaches the server: a wildcard address is not one, and the
/// development certificate is for `localhost`.
fn browser_url(host: IpAddr, scheme: &str, port: u16) -> String {
    if scheme == "https" && (host.is_loopback() || host.is_unspecified()) {
        return format!("https://localhost:{port}");
    }
    let host = if host.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        host
    };
    format!("{scheme}://{}", SocketAddr::new(host, port))
}
