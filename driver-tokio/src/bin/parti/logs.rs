//! Logs of `parti worker` and `parti demo`: `tracing` events on stderr, filtered by `RUST_LOG`
//! (default: warnings and errors), human-readable or one JSON object per line.
//!
//! The library's events carry the worker's span (`prefix`, `instance`, `worker_id`); nothing
//! secret is in them (see `observe.rs` of the library), and the CLI logs no URL with
//! credentials either (`NatsOptions::display_urls`).

use crate::{CliError, CliResult};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// The format of the logs on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event, with the worker's span.
    Pretty,
    /// One JSON object per event (`timestamp`, `level`, `fields`, `target`, `span`).
    Json,
}

/// The logging flags shared by `parti worker` and `parti demo`.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// Format of the logs on stderr (their level: RUST_LOG, e.g. RUST_LOG=info or
    /// RUST_LOG=parti=debug; default: warnings and errors).
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty, value_name = "FORMAT")]
    pub log_format: LogFormat,
}

/// Installs the subscriber; a `RUST_LOG` that does not parse is a usage error.
pub fn init(args: &LogArgs) -> CliResult {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::WARN.into())
        .from_env()
        .map_err(|e| CliError::usage(format!("RUST_LOG: {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match args.log_format {
        LogFormat::Pretty => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    result.map_err(|e| CliError::runtime(format!("cannot install the logger: {e}")))
}
