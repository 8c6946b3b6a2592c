//! `parti worker --metrics-addr`: serves the worker's metrics registry on `GET /metrics` in the
//! OpenMetrics text format, with hyper 1 (HTTP/1.1, one task per connection).

use crate::{CliError, CliResult};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use parti::metrics::Registry;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The content type of the OpenMetrics text exposition (what `prometheus-client` writes).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `addr` (`IP:PORT`; port 0 picks a free one). A malformed address is a usage error, an
/// address that cannot be bound a runtime one; both name the flag.
pub async fn bind(addr: &str) -> CliResult<TcpListener> {
    let parsed: SocketAddr = addr.parse().map_err(|_| {
        CliError::usage(format!(
            "--metrics-addr {addr:?}: not an IP:PORT address (e.g. 127.0.0.1:9464, or [::1]:9464)"
        ))
    })?;
    TcpListener::bind(parsed)
        .await
        .map_err(|e| CliError::runtime(format!("--metrics-addr {addr}: cannot listen: {e}")))
}

/// Serves `registry` on `listener` until the process ends.
pub fn spawn(listener: TcpListener, registry: Arc<Registry>) {
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let response = respond(&registry, &req);
                    async move { Ok::<_, Infallible>(response) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!(error = %e, "metrics endpoint: connection failed");
                }
            });
        }
    });
}

/// `GET /metrics`: the exposition; anything else: 404 or 405.
fn respond<B>(registry: &Registry, req: &Request<B>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    if req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: metrics are at /metrics\n".into(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
    }
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => reply(StatusCode::OK, CONTENT_TYPE, body),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("encoding failed: {e}\n"),
        ),
    }
}
