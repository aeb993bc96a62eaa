//! Serving a role's router on an already-bound listener, with a handle that stops it on drop.

use std::net::SocketAddr;

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
    use axum::serve::ListenerExt;
    let addr = listener.local_addr()?;
    let mut signal = Shutdown(stop.subscribe());
    let mut tasks = Vec::new();
    let https = tls.is_some();
    let server = match tls {
        None => tokio::spawn(async move {
            let result = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { signal.wait().await })
            .await;
            if let Err(e) = result {
                tracing::error!(%addr, error = %e, "server stopped with an error");
            }
        }),
        Some(config) => {
            let (tls_listener, accept) = crate::tls::TlsListener::new(listener, config)?;
            tasks.push(accept);
            tokio::spawn(async move {
                // `tap_io` gives the connection's peer address to handlers, as plain TCP does.
                let result = axum::serve(
                    tls_listener.tap_io(|_| {}),
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move { signal.wait().await })
                .await;
                if let Err(e) = result {
                    tracing::error!(%addr, error = %e, "server stopped with an error");
                }
            })
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
