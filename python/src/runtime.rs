//! The package's tokio runtime, and the gate every runtime thread passes to touch Python.
//!
//! Why a gate: CPython kills (with `pthread_exit`) any thread that tries to take the GIL once
//! the interpreter is finalizing. On a tokio thread that forced unwind runs into the
//! runtime's `catch_unwind` and aborts the process (`FATAL: exception not rethrown`), or a
//! thread that was half-way through `PyGILState_Release` crashes outright. Either way a
//! program whose `await worker.stop()` had already returned died at exit.
//!
//! So no thread of ours calls into Python without [`attach`], and an `atexit` hook
//! ([`register`]) closes the gate before finalization starts: it waits, with the GIL released,
//! for every call already inside Python to return, and from then on [`attach`] refuses.
//! Runtime threads go on running Rust (a worker still running keeps its lease alive until the
//! process ends) but never touch the interpreter again. Python's `atexit` hooks run before the
//! interpreter is marked as finalizing, which is what makes this enough.
//!
//! The runtime is handed to `pyo3-async-runtimes` as its [`Runtime`]: the thread that
//! resolves an asyncio future from a finished Rust one goes through the same gate.

use pyo3::prelude::*;
use pyo3_async_runtimes::generic::{ContextExt, JoinError, Runtime};
use pyo3_async_runtimes::TaskLocals;
use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, LazyLock, Mutex};
use std::time::Duration;

/// How long the exit hook waits for calls already inside Python (a callback running on a
/// runtime thread) before it lets the interpreter finalize anyway.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// The process-wide runtime every worker and async method runs on.
pub(crate) fn handle() -> &'static tokio::runtime::Handle {
    static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("parti-rt")
            .enable_all()
            .build()
            .expect("cannot start the parti tokio runtime")
    });
    RUNTIME.handle()
}

/// Whether Python may still be entered, and how many runtime threads are inside it.
struct Gate {
    state: Mutex<GateState>,
    left: Condvar,
}

struct GateState {
    closed: bool,
    inside: usize,
}

static GATE: Gate = Gate {
    state: Mutex::new(GateState {
        closed: false,
        inside: 0,
    }),
    left: Condvar::new(),
};

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enter(&'static self) -> Option<Inside> {
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        state.inside += 1;
        Some(Inside(self))
    }

    /// Closes the gate and waits (up to `limit`) until nobody is inside.
    fn close(&self, limit: Duration) {
        let mut state = self.lock();
        state.closed = true;
        let _ = self
            .left
            .wait_timeout_while(state, limit, |s| s.inside > 0)
            .unwrap_or_else(|e| e.into_inner());
    }
}

/// A pass through the gate; leaving wakes a waiting [`Gate::close`].
struct Inside(&'static Gate);

impl Drop for Inside {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.inside -= 1;
        if state.inside == 0 {
            self.0.left.notify_all();
        }
    }
}

/// `Python::attach` for runtime threads: runs `f` with the GIL, or returns `None` without
/// touching Python once the interpreter is exiting.
pub(crate) fn attach<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> Option<R> {
    let _inside = GATE.enter()?;
    Some(Python::attach(f))
}

/// The error a bridge call returns when Python is exiting (created without the GIL).
pub(crate) fn exiting() -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err("the Python interpreter is exiting")
}

/// The exit hook: closes the gate, waiting with the GIL released for callbacks in progress.
#[pyfunction]
fn _close_python_gate(py: Python<'_>) {
    py.detach(|| GATE.close(EXIT_WAIT));
}

/// Registers the exit hook with `atexit` (at import, so it runs before finalization).
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let hook = wrap_pyfunction!(_close_python_gate, m)?;
    m.py().import("atexit")?.call_method1("register", (hook,))?;
    Ok(())
}

/// [`handle`] as `pyo3-async-runtimes`' runtime: tasks spawn on it, and the blocking call that
/// resolves an asyncio future runs only while the gate is open.
pub(crate) struct PartiRuntime;

/// A task's failure, as `pyo3-async-runtimes` wants it.
pub(crate) struct TaskError(tokio::task::JoinError);

impl JoinError for TaskError {
    fn is_panic(&self) -> bool {
        self.0.is_panic()
    }
    fn into_panic(self) -> Box<dyn std::any::Any + Send + 'static> {
        self.0.into_panic()
    }
}

/// A spawned task's completion.
pub(crate) struct Joined(tokio::task::JoinHandle<()>);

impl Future for Joined {
    type Output = Result<(), TaskError>;
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map_err(TaskError)
    }
}

tokio::task_local! {
    static TASK_LOCALS: OnceCell<TaskLocals>;
}

impl Runtime for PartiRuntime {
    type JoinError = TaskError;
    type JoinHandle = Joined;

    fn spawn<F>(fut: F) -> Joined
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Joined(handle().spawn(fut))
    }

    fn spawn_blocking<F>(f: F) -> Joined
    where
        F: FnOnce() + Send + 'static,
    {
        // `pyo3-async-runtimes` only spawns blocking calls to enter Python.
        Joined(handle().spawn_blocking(move || {
            if let Some(_inside) = GATE.enter() {
                f();
            }
        }))
    }
}

impl ContextExt for PartiRuntime {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}

/// `fut` as an asyncio awaitable on the running loop, run on [`handle`].
pub(crate) fn future_into_py<F, T>(py: Python<'_>, fut: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    pyo3_async_runtimes::generic::future_into_py::<PartiRuntime, F, T>(py, fut)
}

/// [`future_into_py`] for a future with no result: it resolves to `None` (a bare `()` would
/// reach Python as an empty tuple).
pub(crate) fn unit_future_into_py<F>(py: Python<'_>, fut: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = PyResult<()>> + Send + 'static,
{
    future_into_py(py, async move { fut.await.map(|()| None::<()>) })
}

/// The running loop (and context) of the calling coroutine.
pub(crate) fn current_locals(py: Python<'_>) -> PyResult<TaskLocals> {
    pyo3_async_runtimes::generic::get_current_locals::<PartiRuntime>(py)
}
