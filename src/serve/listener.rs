//! `chunkdump serve`'s HTTP listener, hardened against slow and idle clients.
//!
//! axum's own `serve` waits for a request's headers forever and takes every connection,
//! so a few hundred half-sent requests (slowloris) starve real clients. Here a connection
//! must send its headers within the header timeout or is closed, at most
//! `max_connections` are open at once (more are closed as they arrive, so the process's
//! file descriptors and memory stay bounded), and every request is answered within the
//! request timeout (408 past it; see the router's layer in [`with_request_timeout`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::ListenerConfig;

/// The router with the request timeout: a request not answered in time gets a 408 (with
/// the API's JSON error body).
pub fn with_request_timeout(router: Router, timeout: Duration) -> Router {
    router
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::map_response(
            crate::api::error::json_error_bodies,
        ))
}

/// Serves `router` on `listener` with `limits` until `shutdown` resolves.
pub async fn serve_with_limits(
    listener: TcpListener,
    router: Router,
    limits: ListenerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let router = with_request_timeout(router, limits.request_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: pause rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "too many connections: closing a new one");
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}
