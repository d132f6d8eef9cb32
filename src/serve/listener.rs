//! `chunkdump serve`'s HTTP listener, hardened against slow and idle clients.
//!
//! axum's own `serve` waits for a request's headers forever and takes every connection,
//! so a few hundred half-sent requests (slowloris) starve real clients. Here a connection
//! must send its headers within the header timeout or is closed, at most
//! `max_connections` are open at once (more are closed as they arrive, so the process's
//! file descriptors and memory stay bounded) and at most `max_connections_per_client`
//! from one client (so one client's idle sockets cannot fill the total), and every
//! request is answered within the request timeout (408 past it; see the router's layer
//! in [`with_request_timeout`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
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

/// Open connections per client (see [`client_of`]).
type Clients = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Who a peer is for the per-client cap: its IPv4 address, or the /64 of an IPv6 one
/// (one host commonly holds a whole /64).
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// One open connection counted against its client, given back when dropped.
struct ClientSlot {
    clients: Clients,
    client: IpAddr,
}

impl ClientSlot {
    /// A slot for a connection from `ip`, unless its client has `max` open already.
    fn take(clients: &Clients, ip: IpAddr, max: usize) -> Option<Self> {
        let client = client_of(ip);
        let mut open = clients.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(client).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            clients: clients.clone(),
            client,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// Serves `router` on `listener` with `limits` until `shutdown` resolves.
pub async fn serve_with_limits(
    listener: TcpListener,
    router: Router,
    limits: ListenerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_client: Clients = Arc::default();
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
        let Some(client) =
            ClientSlot::take(&per_client, peer.ip(), limits.max_connections_per_client)
        else {
            tracing::warn!(%peer, max = limits.max_connections_per_client, "too many connections from one client: closing a new one");
            drop(stream);
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "too many connections: closing a new one");
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let (_slot, _client) = (slot, client);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_an_ipv4_address_or_an_ipv6_slash_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_of(ip("10.0.0.7")), ip("10.0.0.7"));
        assert_eq!(client_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            client_of(ip("2001:db8:1:2:bbbb::9")),
            client_of(ip("2001:db8:1:2:aaaa::1"))
        );
        assert_ne!(client_of(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_of(ip("::ffff:10.0.0.7")), ip("10.0.0.7"));
        let clients = Clients::default();
        let slots: Vec<_> = (0..2)
            .map(|_| ClientSlot::take(&clients, ip("10.0.0.7"), 2).unwrap())
            .collect();
        assert!(ClientSlot::take(&clients, ip("10.0.0.7"), 2).is_none());
        drop(slots);
        assert!(clients.lock().unwrap().is_empty(), "given back");
    }
}
