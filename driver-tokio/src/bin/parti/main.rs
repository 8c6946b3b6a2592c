//! `parti`: the command-line tool of parti.
//!
//! - `parti demo`: a whole fleet in one process (in memory, or against a NATS server) going
//!   through a join, a graceful leave, a crash and a partition refresh, with the moves and the
//!   settle time of each;
//! - `parti status`: what a fleet's KV holds right now (workers, leader, generation, shares) and
//!   anything inconsistent in it;
//! - `parti plan` / `parti explain`: dry-runs against the committed assignment;
//! - `parti pin` / `parti unpin`: an operator's pin of a partition to a worker;
//! - `parti worker`: one real worker process that logs its events.
//!
//! Every failure prints one `error: ...` line saying what to fix; the exit code is 2 for a
//! usage error (bad arguments, bad configuration) and 1 for a runtime failure.

/// Prints a line on stdout; if stdout is gone (`parti demo | head`), exits quietly instead of
/// panicking like `println!` would.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say_line(format_args!($($arg)*))
    };
}

mod common;
mod demo;
mod fleet;
mod json_files;
mod logs;
mod pin;
mod plan;
mod plan_json;
mod record;
mod serve_metrics;
mod status;
mod worker;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Partition ownership for a fleet of workers over NATS JetStream KV.
#[derive(Debug, Parser)]
#[command(name = "parti", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a fleet in this process through a join, a leave, a crash and a refresh.
    Demo(demo::DemoArgs),
    /// Shows a fleet's workers, leader, generation and shares, read from its KV.
    Status(status::StatusArgs),
    /// Previews what moves if workers are added or removed (nothing is written).
    Plan(plan::PlanArgs),
    /// Says why a partition is where it is (or would be, after a change).
    Explain(plan::ExplainArgs),
    /// Pins a partition to a worker: the leader moves it there while that worker is live.
    Pin(pin::PinArgs),
    /// Removes a partition's pin (it stays where it is until the strategy moves it).
    Unpin(pin::UnpinArgs),
    /// Runs one worker that logs its events; stops gracefully on SIGTERM / SIGINT.
    Worker(worker::WorkerArgs),
}

/// Why a command failed: a usage error (exit 2) or a runtime failure (exit 1). The message
/// says what to fix.
#[derive(Debug)]
pub enum CliError {
    /// Bad arguments or configuration.
    Usage(String),
    /// Something failed while running.
    Runtime(String),
}

impl CliError {
    /// A usage error (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::Usage(message.into())
    }

    /// A runtime failure (exit code 1).
    pub fn runtime(message: impl Into<String>) -> Self {
        CliError::Runtime(message.into())
    }
}

/// What every subcommand returns.
pub type CliResult<T = ()> = Result<T, CliError>;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(CliError::runtime(format!("cannot start tokio: {e}"))),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Plan(args) => plan::run_plan(args).await,
            Command::Explain(args) => plan::run_explain(args).await,
            Command::Pin(args) => pin::run_pin(args).await,
            Command::Unpin(args) => pin::run_unpin(args).await,
            Command::Worker(args) => worker::run(args).await,
        }
    });
    // Workers left behind (a crashed demo worker, a failed start) must not delay the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(e: CliError) -> ExitCode {
    let (message, code) = match e {
        CliError::Usage(m) => (m, 2),
        CliError::Runtime(m) => (m, 1),
    };
    eprintln!("error: {}", one_line(&message));
    ExitCode::from(code)
}

/// Prints clap's error as one line (its message, its tip, the usage) and exits 2; help and
/// version go to stdout with exit 0.
fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let text = e.render().to_string();
    let mut message = String::new();
    let mut tips = Vec::new();
    let mut usage = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(m) = line.strip_prefix("error:") {
            message = m.trim().to_string();
        } else if let Some(t) = line.strip_prefix("tip:") {
            tips.push(t.trim().to_string());
        } else if let Some(u) = line.strip_prefix("Usage:") {
            usage = Some(u.trim().to_string());
        } else if usage.is_none() && !line.starts_with("For more information") {
            // Details of the message, e.g. the missing arguments.
            message.push(' ');
            message.push_str(line);
        }
    }
    if message.is_empty() {
        message = text
            .lines()
            .next()
            .unwrap_or("invalid arguments")
            .to_string();
    }
    let mut line = message;
    for t in tips {
        line.push_str(&format!(" ({t})"));
    }
    if usage.is_none() {
        // Not every clap error carries the usage: point at the subcommand's help.
        let sub = std::env::args()
            .skip(1)
            .find(|a| !a.starts_with('-'))
            .filter(|a| {
                [
                    "demo", "status", "plan", "explain", "pin", "unpin", "worker",
                ]
                .contains(&a.as_str())
            });
        match sub {
            Some(sub) => line.push_str(&format!(" (see 'parti {sub} --help')")),
            None => line.push_str(" (see 'parti --help')"),
        }
    }
    if let Some(u) = usage {
        let cmd: Vec<&str> = u
            .split_whitespace()
            .take_while(|w| !w.starts_with(['<', '[', '-']))
            .collect();
        let cmd = cmd.join(" ");
        line.push_str(&format!("; usage: {u} (see '{cmd} --help')"));
    }
    eprintln!("error: {line}");
    ExitCode::from(2)
}

/// See [`say!`].
pub fn say_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{line}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// Collapses a message onto one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
