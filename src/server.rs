//! The HTTP server under the router: a cap on open connections, a deadline
//! for idle and half-sent ones, and a graceful shutdown.
//!
//! `axum::serve` gives no control over either limit: a client that opens a
//! connection and sends half a request line, or nothing at all, holds a socket
//! and a task for as long as it likes. Here every connection is served by
//! hyper's HTTP/1.1 with a header-read deadline, which hyper arms whenever it
//! waits for a request head: on a new connection before the first byte, on a
//! keep-alive connection between requests, and while a head arrives byte by
//! byte. A slow body is bounded by the request timeout of `ops::limits`.
//!
//! Connections beyond the cap are not accepted: they wait in the listen
//! backlog, costing the service nothing, until one closes.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::config::ConnectionLimits;

/// How long a shutdown waits for connections still busy with a request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting, lets every request in flight finish (up to 30 s), and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let max = u32::try_from(limits.max_connections.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
    let open = Arc::new(Semaphore::new(max as usize));
    let (stop, stopping) = watch::channel(false);
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.idle_timeout).keep_alive(true);
    let builder = Arc::new(builder);

    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: wait instead of spinning.
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let connection = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
            tokio::pin!(connection);
            let outcome = tokio::select! {
                outcome = connection.as_mut() => outcome,
                _ = async { stopping.wait_for(|stop| *stop).await.map(|_| ()) } => {
                    // Finish the request in flight, if any, then close.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = outcome {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a permit until it is done.
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, open.acquire_many(max)).await.is_ok();
    if !drained {
        tracing::warn!(
            still_open = max as usize - open.available_permits(),
            "connections still busy after 30 s; closing them"
        );
    }
    Ok(())
}
