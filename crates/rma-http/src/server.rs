//! Serving a role's router on an already-bound listener, with a handle that stops it on drop.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A stop signal shared by a role's server and its background tasks.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A signal and the sender that fires it.
    pub fn new() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    /// Resolves once the signal fires (or its sender is gone).
    pub async fn wait(&mut self) {
        while !*self.0.borrow_and_update() {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }

    /// Whether the signal has fired.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }
}

/// How long a client may take to send a request's headers (a slow or silent client is cut off).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until `signal` fires; each is served by hyper's HTTP/1 with upgrades
/// (the link and the topology WebSocket), a header read timeout, and the peer's address in
/// the request extensions (`ConnectInfo`), as `axum::serve` would. On the signal, connections
/// finish their requests and close.
async fn accept_loop<L>(mut listener: L, app: Router, mut signal: Shutdown)
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    loop {
        let (io, peer) = tokio::select! {
            c = listener.accept() => c,
            _ = signal.wait() => return,
        };
        let svc = app
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        let mut signal = signal.clone();
        tokio::spawn(async move {
            let svc = hyper_util::service::TowerToHyperService::new(svc);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                _ = signal.wait() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// Sets `TCP_NODELAY` on an accepted connection, plain or (before its handshake) TLS: answers
/// and link frames go out as soon as they are written, not held back behind an unacknowledged
/// segment.
pub(crate) fn no_delay(tcp: &tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
}

/// A running server: its bound address, and its background tasks. Dropping it stops the
/// server (in-flight requests finish) and aborts the tasks, as a crash would, without goodbyes.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    /// Whether it serves TLS.
    https: bool,
    stop: watch::Sender<bool>,
    /// Background loops (registrar, sweeper…): aborted on drop.
    tasks: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// The bound address (the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}`.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Ties a background task's life to this handle.
    pub fn adopt(&mut self, task: JoinHandle<()>) {
        self.tasks.push(task);
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Serves `app` on `listener` until the handle is dropped or `stop` fires. `stop`'s receivers
/// (see [`Shutdown`]) are how background tasks learn of it too.
pub fn serve(
    listener: TcpListener,
    app: Router,
    stop: watch::Sender<bool>,
) -> std::io::Result<ServerHandle> {
    serve_with(listener, app, stop, None)
}

/// [`serve`], over TLS when `tls` is given.
pub fn serve_with(
    listener: TcpListener,
    app: Router,
    stop: watch::Sender<bool>,
    tls: Option<crate::tls::TlsConfig>,
) -> std::io::Result<ServerHandle> {
    let addr = listener.local_addr()?;
    let signal = Shutdown(stop.subscribe());
    let mut tasks = Vec::new();
    let https = tls.is_some();
    let server = match tls {
        None => {
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| no_delay(tcp));
            tokio::spawn(accept_loop(listener, app, signal))
        }
        Some(config) => {
            let (tls_listener, accept) = crate::tls::TlsListener::new(listener, config)?;
            tasks.push(accept);
            tokio::spawn(accept_loop(tls_listener, app, signal))
        }
    };
    // The server task is not kept: it ends by itself once the signal fires and its
    // connections drain; aborting it would cut in-flight requests.
    drop(server);
    Ok(ServerHandle {
        addr,
        https,
        stop,
        tasks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A client that sends half a request and then nothing is cut off after the header read
    /// timeout (paused time: the runtime jumps the clock while everyone waits), while a
    /// well-behaved one on another connection is served.
    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let app = Router::new().route(
            "/health",
            axum::routing::get(|axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>| async move {
                peer.ip().to_string()
            }),
        );
        let (stop, _) = Shutdown::new();
        let handle = serve(listener, app, stop).expect("serve");
        let mut slow = tokio::net::TcpStream::connect(handle.addr())
            .await
            .expect("connect");
        slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        let started = tokio::time::Instant::now();
        let mut buf = Vec::new();
        let _ = slow.read_to_end(&mut buf).await;
        assert!(
            started.elapsed() >= HEADER_READ_TIMEOUT,
            "closed after {:?}",
            started.elapsed()
        );
        let mut ok = tokio::net::TcpStream::connect(handle.addr())
            .await
            .expect("connect");
        ok.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        ok.read_to_string(&mut answer).await.expect("read");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.ends_with("127.0.0.1"),
            "the peer address reaches handlers: {answer}"
        );
    }
}
