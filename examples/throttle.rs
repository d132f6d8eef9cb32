//! A TCP proxy that behaves like a distant link, for `scripts/bench`: every byte is
//! delayed by a one-way latency in each direction, and each connection is capped at a
//! bandwidth (bytes are serialised at that rate, then propagate). A request/response
//! therefore costs at least one round trip, and one connection cannot carry more than
//! the cap. In Rust so the link model costs little of the CPU it shares with what it
//! measures (the machine's kernel has no netem).
//!
//! Usage: throttle TARGET_HOST:PORT RTT_MS MBYTES_PER_S
//! Prints the port it listens on (127.0.0.1), then serves until killed.

use std::io::Write;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Bytes read at a time.
const READ: usize = 256 * 1024;
/// Reads one direction may hold in flight: more than the bandwidth-delay product.
const QUEUED: usize = 16;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = || std::io::Error::other("usage: throttle TARGET_HOST:PORT RTT_MS MBYTES_PER_S");
    let target = args.get(1).ok_or_else(usage)?.clone();
    let rtt_ms: f64 = args.get(2).and_then(|a| a.parse().ok()).ok_or_else(usage)?;
    let mbytes: f64 = args.get(3).and_then(|a| a.parse().ok()).ok_or_else(usage)?;
    let one_way = Duration::from_secs_f64(rtt_ms / 2000.0);
    let rate = mbytes * 1e6;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    loop {
        let (client, _) = listener.accept().await?;
        let target = target.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (client_r, client_w) = client.into_split();
            let (server_r, server_w) = server.into_split();
            tokio::join!(
                pump(client_r, server_w, one_way, rate),
                pump(server_r, client_w, one_way, rate)
            );
        });
    }
}

/// Carries one direction: serialise at `rate`, deliver `one_way` later.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, one_way: Duration, rate: f64) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUED);
    let receive = async move {
        let mut serialised_until = Instant::now();
        loop {
            let mut buf = vec![0u8; READ];
            let n = from.read(&mut buf).await.unwrap_or(0);
            let now = Instant::now();
            if n == 0 {
                let _ = tx
                    .send((serialised_until.max(now) + one_way, Vec::new()))
                    .await;
                return;
            }
            buf.truncate(n);
            serialised_until = serialised_until.max(now) + Duration::from_secs_f64(n as f64 / rate);
            if tx.send((serialised_until + one_way, buf)).await.is_err() {
                return;
            }
        }
    };
    let deliver = async move {
        while let Some((at, data)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if data.is_empty() || to.write_all(&data).await.is_err() {
                let _ = to.shutdown().await;
                return;
            }
        }
    };
    tokio::join!(receive, deliver);
}
