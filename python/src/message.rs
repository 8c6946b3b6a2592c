//! `Message` and the subscription handler: NATS messages of owned partitions, handed to an
//! async Python function on the worker's event loop.

use crate::callbacks::LoopBridge;
use crate::state::py_repr;
use parti::MessageHandler;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A NATS message handed to a subscription handler.
#[pyclass(frozen, module = "parti._parti", name = "Message")]
pub(crate) struct PyMessage {
    /// The partition the message belongs to.
    #[pyo3(get)]
    partition: String,
    /// The subject it was published to.
    #[pyo3(get)]
    subject: String,
    /// Its payload.
    #[pyo3(get)]
    data: Py<PyBytes>,
    /// The reply subject, if the publisher expects an answer.
    #[pyo3(get)]
    reply: Option<String>,
    /// Its headers (the first value of each).
    #[pyo3(get)]
    headers: BTreeMap<String, String>,
}

#[pymethods]
impl PyMessage {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Message(partition={}, subject={}, {} bytes)",
            py_repr(&self.partition),
            py_repr(&self.subject),
            self.data.bind(py).as_bytes().len()
        )
    }
}

/// The driver's handler calling `handler(message)` on the loop. An exception is handed to
/// the loop's exception handler; the message counts as handled either way.
pub(crate) fn message_handler(bridge: Arc<LoopBridge>, handler: Py<PyAny>) -> MessageHandler {
    let handler = Arc::new(handler);
    MessageHandler::new(move |partition, message: async_nats::Message| {
        let bridge = bridge.clone();
        let handler = handler.clone();
        async move {
            let headers = message
                .headers
                .as_ref()
                .map(|h| {
                    h.iter()
                        .filter_map(|(k, v)| {
                            v.first().map(|v| (k.to_string(), v.as_str().to_owned()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let result = bridge
                .call(&handler, |py| {
                    let msg = PyMessage {
                        partition: partition.to_string(),
                        subject: message.subject.to_string(),
                        data: PyBytes::new(py, &message.payload).unbind(),
                        reply: message.reply.as_ref().map(|r| r.to_string()),
                        headers,
                    };
                    PyTuple::new(py, [Py::new(py, msg)?])
                })
                .await;
            if let Err(e) = result {
                bridge.report("the message handler", e);
            }
        }
    })
}
