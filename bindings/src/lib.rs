//! # parti-ffi: parti for Kotlin, Swift and Python, through uniffi
//!
//! One Rust core and driver, the same behaviour in every language: this crate only translates
//! types. What it exports (uniffi proc-macros, no UDL):
//!
//! - [`start_worker`]: connect to NATS ([`NatsOptions`]: URLs and the auth options) and start
//!   a worker with a [`WorkerConfig`], a [`Strategy`], a [`PartitionSource`] implemented in the
//!   foreign language and an optional [`EventListener`]. It returns a [`Worker`]: worker ID,
//!   leader flag, state, current assignment (cheap sync getters), and `refresh_partitions`,
//!   `set_load`, `drain`, `stop`, `stop_for_restart` (async); a `RebalanceListener` (async foreign trait).
//! - [`WorkerEvent`]s delivered to the listener, in order, on a thread of their own.
//! - The pure functions [`plan`], [`explain`], [`strategy_names`], [`strategy_by_name`],
//!   [`validate_config`], [`default_worker_config`] and [`resolve_worker_config`]: no network,
//!   no runtime. Config defaults and strategy names come from the core, never restated here.
//! - One error enum, [`PartiError`], with the meanings of [`parti::Error`].
//!
//! Async functions run on one multi-threaded tokio runtime owned by this library (see
//! [`runtime`]); the foreign side awaits them (Kotlin `suspend`, Python `async`). [`shutdown`]
//! stops it and joins its threads: a Python program must call it before it exits.
#![warn(missing_docs)]

mod config;
mod error;
mod events;
mod listener;
mod plan;
mod source;
mod worker;

pub use config::{
    default_worker_config, resolve_worker_config, validate_config, HandoffMode, NatsOptions,
    WorkerConfig,
};
pub use error::PartiError;
pub use events::{AlertLevel, EventListener, WorkerEvent, WorkerState};
pub use listener::{ListenerError, RebalanceListener};
pub use plan::{
    explain, plan, strategy_by_name, strategy_names, Explanation, Partition, PlanInput, PlanResult,
    PlanSummary, Strategy, WorkerSlot,
};
pub use source::PartitionSource;
pub use worker::{start_worker, Worker};

use std::future::Future;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

uniffi::setup_scaffolding!();

/// The library's tokio runtime until [`shutdown`]: every worker, NATS connection and async
/// call runs on it, so the foreign executor that awaits a call only waits for its result.
static RUNTIME: LazyLock<Mutex<Option<tokio::runtime::Runtime>>> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("parti-ffi")
        .enable_all()
        .build()
        .expect("cannot start the parti-ffi tokio runtime");
    Mutex::new(Some(runtime))
});

/// How long [`shutdown`] waits for the runtime's threads to finish.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// A handle to the library's runtime; `None` after [`shutdown`].
pub fn runtime() -> Option<tokio::runtime::Handle> {
    let runtime = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    runtime.as_ref().map(|r| r.handle().clone())
}

/// Stops the library's runtime and joins its threads (waiting up to 5 s). Workers still
/// running are dropped as if their process had died, so stop them first; async calls made
/// afterwards fail. Idempotent.
///
/// **Python (uniffi) programs must call it before the interpreter exits**, e.g.
/// `atexit.register(parti_ffi.shutdown)`: CPython kills any thread that takes the GIL while it
/// finalizes, and a runtime thread still returning from a callback (the wake-up of the last
/// awaited call) is then unwound through tokio and aborts the process
/// (`FATAL: exception not rethrown`). The call releases the GIL, lets that thread finish and
/// joins it. JVM programs may call it to release the threads early; they need not.
#[uniffi::export]
pub fn shutdown() {
    let taken = RUNTIME.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(runtime) = taken else { return };
    if tokio::runtime::Handle::try_current().is_ok() {
        // Called from a callback on a runtime thread: that thread cannot join itself.
        std::thread::spawn(move || runtime.shutdown_timeout(SHUTDOWN_WAIT));
    } else {
        runtime.shutdown_timeout(SHUTDOWN_WAIT);
    }
}

/// Runs `future` on [`runtime`] and waits for it; a panic inside is resumed in the caller
/// (uniffi turns it into the foreign side's internal error), and so is a call after
/// [`shutdown`].
pub(crate) async fn on_runtime<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let Some(runtime) = runtime() else {
        panic!("parti-ffi was shut down: no async call can run after shutdown()");
    };
    match runtime.spawn(future).await {
        Ok(output) => output,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("parti-ffi runtime task cancelled (shutdown() was called): {e}"),
    }
}

/// Returns `value`: one async round trip through the library's runtime and nothing else, to
/// measure what an async call costs from the foreign side.
#[uniffi::export(async_runtime = "tokio")]
pub async fn ping(value: u64) -> u64 {
    on_runtime(async move { value }).await
}

/// The version of the parti crates behind these bindings.
#[uniffi::export]
pub fn parti_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
