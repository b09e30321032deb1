use std::process::ExitCode;

use clap::Parser;
use filmvault::{
    cli::{self, Cli, Command},
    config::Settings,
    startup::Application,
    telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    let command = Cli::parse().command.unwrap_or(Command::Serve);
    // Needs no configuration, so it works before any is written.
    if let Command::DevCert { out_dir } = &command {
        return report(cli::dev_cert(out_dir));
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("filmvault: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) =
        telemetry::subscriber(&settings.rust_log, settings.log_format, std::io::stdout)
            .map_err(anyhow::Error::from)
            .and_then(telemetry::init)
    {
        eprintln!("filmvault: cannot start logging (RUST_LOG: {error})");
        return ExitCode::from(2);
    }
    telemetry::install_panic_hook();
    report(match command {
        Command::CreateAdmin { username, email } => {
            cli::create_admin(&settings, username, email).await
        }
        Command::Serve | Command::DevCert { .. } => serve(settings).await,
    })
}

fn report(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = ?error, "filmvault stopped with an error");
            eprintln!("filmvault: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    if settings.jwt_secret_generated {
        tracing::warn!(
            "JWT_SECRET is not set: using a random secret for this run only; tokens will not \
             survive a restart. Set JWT_SECRET (see .env.example)."
        );
    }
    let host = settings.host;
    let environment = settings.environment;
    let application = Application::build(settings).await?;
    let url =
        |scheme: &str, port: u16| format!("{scheme}://{}", std::net::SocketAddr::new(host, port));
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
    application.run_until_stopped().await?;
    Ok(())
}
