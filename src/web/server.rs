//! The status server's accept loop: hyper's HTTP/1 over the routes of [`super::router`], under
//! [`Limits`] (connections at once, a header deadline, head and body caps), which
//! `axum::serve` does not offer; and [`Server`], the handle that starts and stops it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use super::{Context, router};

/// A running server.
#[derive(Debug)]
pub struct Server {
    pub address: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// Longest wait for open connections (an export in progress) when the server stops.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// What the status server serves at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's backlog until one ends. (HTTP/1:
    /// also the requests in flight.)
    pub connections: usize,
    /// Time a client has to send a request's whole head, from the moment its connection is
    /// served or, on a kept-alive connection, from the end of the previous response: a client
    /// that sends nothing, or dribbles its headers, is cut.
    pub header_timeout: Duration,
    /// Largest request head (request line and headers) in bytes; larger gets 431.
    pub max_header_bytes: usize,
    /// Largest request body in bytes (only the operators' mark routes take one: a mark with a
    /// reason of 500 Chinese characters is about 2 KB); larger gets 413.
    pub max_body_bytes: usize,
    /// Time from a request's complete head to its response's head, reading the body included:
    /// a client that dribbles a body (only the operators' routes read one) is answered 408 and
    /// its connection closed. A streamed export is not cut: its response head comes at once.
    pub request_timeout: Duration,
}

impl Limits {
    /// A few officers' phones and laptops, the `status` command and a Prometheus scraper with
    /// room to spare; a Pi's blocking threads and read connections stay few.
    pub const DEFAULT: Limits = Limits {
        connections: 32,
        header_timeout: Duration::from_secs(10),
        max_header_bytes: 16 * 1024,
        max_body_bytes: 4096,
        request_timeout: Duration::from_secs(30),
    };
}
impl Server {
    /// Binds `address` and serves; a bind failure is logged and gives `None` (the gateway runs
    /// on without its status page).
    pub fn start(address: SocketAddr, ctx: Context) -> Option<Server> {
        match std::net::TcpListener::bind(address).and_then(|l| Server::spawn(l, ctx)) {
            Ok(server) => Some(server),
            Err(e) => {
                tracing::error!(address = %address, error = %e, "Status page not started; acquisition goes on without it.");
                None
            }
        }
    }

    /// Serves on a bound listener with [`Limits::DEFAULT`]. Must be called inside a tokio runtime.
    pub fn spawn(listener: std::net::TcpListener, ctx: Context) -> std::io::Result<Server> {
        Server::spawn_with(listener, ctx, Limits::DEFAULT)
    }

    /// Serves on a bound listener with these limits. Must be called inside a tokio runtime.
    pub fn spawn_with(
        listener: std::net::TcpListener,
        ctx: Context,
        limits: Limits,
    ) -> std::io::Result<Server> {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let address = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, router(ctx), limits, stopped));
        tracing::info!(max_connections = limits.connections, url = %format!("http://{address}/"), "Status page listening.");
        Ok(Server { address, stop, task })
    }

    /// Stops accepting, lets requests in progress finish for [`STOP_GRACE`], then drops them.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Accepts connections while a slot is free and serves each with hyper's HTTP/1 under the
/// limits; on `stopped`, stops accepting and lets the connections finish (the caller aborts
/// this task after [`STOP_GRACE`], which drops the connections still open).
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    mut stopped: oneshot::Receiver<()>,
) {
    let app = tower::ServiceBuilder::new()
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout))
        .service(app);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes);
    let slots = Arc::new(Semaphore::new(limits.connections));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        // Over the cap, connections wait in the kernel's backlog rather than being refused.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = &mut stopped => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, typically: wait a little rather than spin.
                    tracing::warn!(error = %e, "Status page cannot accept a connection.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stopped => break,
        };
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "Status page connection ended with an error.");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Binds `preferred`, or an ephemeral port on the same address if it is taken (the demo).
pub fn bind_or_ephemeral(preferred: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(preferred)
        .or_else(|_| std::net::TcpListener::bind(SocketAddr::new(preferred.ip(), 0)))
}
