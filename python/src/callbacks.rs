//! Calling Python from the worker: every callback (listener, source, message handler) runs on
//! the asyncio event loop the worker was started from, sync or async alike.

use crate::events::frozenset;
use crate::partition::partitions_from;
use crate::runtime::{attach, exiting};
use futures::channel::oneshot;
use futures::future::BoxFuture;
use parti::{Partition, PartitionId, PartitionSource, RebalanceListener, SourceError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCFunction, PyDict, PyTuple};
use pyo3_async_runtimes::TaskLocals;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// Runs `f(*args)` on the loop and awaits its result if it is awaitable.
const INVOKE: &std::ffi::CStr = cr#"
import inspect

async def invoke(f, args):
    result = f(*args)
    if inspect.isawaitable(result):
        result = await result
    return result

def schedule(loop, context, f, args, done):
    """Runs invoke(f, args) as a task of `loop`, in `context`; `done` gets the task."""
    def start():
        loop.create_task(invoke(f, args)).add_done_callback(done)
    loop.call_soon_threadsafe(start, context=context)
"#;

static SCHEDULE_FN: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The event loop a worker was started from, and how to run Python callables on it.
pub(crate) struct LoopBridge {
    locals: TaskLocals,
}

impl LoopBridge {
    /// The running loop of the calling coroutine (errors outside a running loop).
    pub(crate) fn current(py: Python<'_>) -> PyResult<Arc<Self>> {
        let locals = crate::runtime::current_locals(py)?;
        Ok(Arc::new(LoopBridge { locals }))
    }

    /// Whether the loop was closed (the program's `asyncio.run` returned).
    fn loop_closed(&self, py: Python<'_>) -> bool {
        let closed = self.locals.event_loop(py).call_method0("is_closed");
        closed.and_then(|c| c.is_truthy()).unwrap_or(true)
    }

    /// Calls `f(*args)` on the loop (awaiting it if it returns an awaitable) and returns its
    /// result. Errors if `f` raises or the loop is closed.
    ///
    /// The result comes back through a done callback that runs on the loop's thread (with the
    /// GIL): if the loop dies first, the callback is dropped with it and this returns
    /// [`exiting`] without touching Python. (`pyo3_async_runtimes::into_future_with_locals` takes
    /// the GIL on this runtime thread in that case, to build a `CancelledError`: at interpreter
    /// exit, with Python 3.9, that thread was killed inside Rust and the process crashed.)
    pub(crate) async fn call(
        &self,
        f: &Py<PyAny>,
        args: impl for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyTuple>>,
    ) -> PyResult<Py<PyAny>> {
        let rx = attach(|py| {
            if self.loop_closed(py) {
                return Err(loop_closed());
            }
            let schedule = SCHEDULE_FN.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
                let module =
                    PyModule::from_code(py, INVOKE, c"parti/_invoke.py", c"parti._invoke")?;
                Ok(module.getattr("schedule")?.unbind())
            })?;
            let (tx, rx) = oneshot::channel::<PyResult<Py<PyAny>>>();
            let tx = Mutex::new(Some(tx));
            let done = PyCFunction::new_closure(py, None, None, move |a, _| -> PyResult<()> {
                let result = a.get_item(0)?.call_method0("result").map(Bound::unbind);
                if let Some(tx) = tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    let _ = tx.send(result);
                }
                Ok(())
            })?;
            // A task of the worker's loop, in its context (contextvars).
            let (event_loop, context) = (self.locals.event_loop(py), self.locals.context(py));
            let call = (event_loop, context, f.bind(py), args(py)?, done);
            schedule.bind(py).call1(call)?;
            Ok(rx)
        })
        .unwrap_or_else(|| Err(exiting()))?;
        rx.await.unwrap_or_else(|_| Err(exiting()))
    }

    /// Hands an exception raised by `what` to the loop's exception handler (asyncio's
    /// convention for errors in callbacks: logged, the program goes on). Dropped when the
    /// interpreter is exiting.
    pub(crate) fn report(&self, what: &str, err: PyErr) {
        attach(|py| {
            if self.loop_closed(py) {
                // The program ended its loop (a worker left running at exit): no callback
                // can run any more, and nobody is left to tell.
                return;
            }
            let context = PyDict::new(py);
            let loop_ = self.locals.event_loop(py);
            let sent = context
                .set_item("message", format!("parti: exception in {what}"))
                .and_then(|()| context.set_item("exception", err.value(py)))
                .and_then(|()| {
                    let handler = loop_.getattr("call_exception_handler")?;
                    loop_.call_method1("call_soon_threadsafe", (handler, context))
                });
            if sent.is_err() {
                // The loop is closed: nobody is left to tell but the unraisable hook.
                err.write_unraisable(py, None);
            }
        });
    }
}

/// The error of a call on a closed loop (created without touching Python).
fn loop_closed() -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err("the worker's event loop is closed")
}

/// `on_assigned` / `on_revoked` / `on_lost` as a [`RebalanceListener`], with its rule: a revoke
/// is confirmed when `on_revoked` returned, raised (the exception goes to the loop's exception
/// handler, asyncio's convention) or its coroutine finished; `on_lost` defaults to
/// `on_revoked`, as in Kafka.
pub(crate) struct PyListener {
    pub(crate) bridge: Arc<LoopBridge>,
    pub(crate) on_assigned: Option<Py<PyAny>>,
    pub(crate) on_revoked: Option<Py<PyAny>>,
    pub(crate) on_lost: Option<Py<PyAny>>,
}

impl PyListener {
    async fn notify(
        &self,
        what: &str,
        callback: &Option<Py<PyAny>>,
        parts: &BTreeSet<PartitionId>,
    ) {
        let Some(f) = callback else { return };
        let result = self
            .bridge
            .call(f, |py| PyTuple::new(py, [frozenset(py, parts)?]))
            .await;
        if let Err(e) = result {
            // asyncio's convention first (the loop's exception handler), then the driver's
            // (a failed callback has returned; a `listener_failed` warning).
            let message = attach(|py| format!("{what} raised {}", e.value(py)))
                .unwrap_or_else(|| format!("{what} raised"));
            self.bridge.report(what, e);
            parti::listener_failed(message);
        }
    }
}

impl RebalanceListener for PyListener {
    fn on_assigned<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        Box::pin(self.notify("on_assigned", &self.on_assigned, partitions))
    }

    fn on_revoked<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        Box::pin(self.notify("on_revoked", &self.on_revoked, partitions))
    }

    fn on_lost<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        match &self.on_lost {
            Some(_) => Box::pin(self.notify("on_lost", &self.on_lost, partitions)),
            None => self.on_revoked(partitions),
        }
    }
}

/// A Python callable (sync or async) as the worker's [`PartitionSource`]: it returns the
/// partitions (`Partition` or `str` items); raising is a failed listing, retried by the worker.
pub(crate) struct PySource {
    pub(crate) bridge: Arc<LoopBridge>,
    pub(crate) callable: Py<PyAny>,
}

impl PartitionSource for PySource {
    fn list(&self) -> BoxFuture<'_, Result<Vec<Partition>, SourceError>> {
        Box::pin(async move {
            let result = self
                .bridge
                .call(&self.callable, |py| Ok(PyTuple::empty(py)))
                .await;
            attach(|py| {
                let describe = |e: PyErr| {
                    let name = e
                        .get_type(py)
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_else(|_| "Exception".into());
                    SourceError(format!("{name}: {}", e.value(py)))
                };
                let list = result.map_err(describe)?;
                partitions_from("source()", list.bind(py)).map_err(describe)
            })
            .unwrap_or_else(|| Err(SourceError("the Python interpreter is exiting".into())))
        })
    }
}
