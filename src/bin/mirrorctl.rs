//! `mirrorctl`: the command line of one deployment (see `traffic_mirroring::cli`).

use clap::Parser;
use traffic_mirroring::cli::{self, Cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Warnings and errors only, on stderr: stdout is the answer (a table or JSON).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into()))
        .init();
    let cli = Cli::parse();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    std::process::ExitCode::from(cli::run(cli, &sdk).await as u8)
}
