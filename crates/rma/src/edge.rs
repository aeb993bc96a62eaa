//! `rma up --edge`: the edge router (edge/, a Cloudflare Worker and its Durable Object) in
//! local workerd through `wrangler dev`, in place of the built-in router. Its admin token and
//! federation key are the same files `rma router` keeps, passed to the Worker as its secrets.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A running `wrangler dev`; its whole process group (workerd included) stops when dropped.
pub(crate) struct EdgeRouter {
    url: String,
    group: u32,
    log: PathBuf,
}

impl EdgeRouter {
    /// Starts `wrangler dev` of `edge_dir` on `listen` (port 0: a free one) and waits until it
    /// answers.
    pub(crate) async fn start(
        edge_dir: &Path,
        listen: SocketAddr,
        data_dir: &Path,
        admin_token: &str,
        federation_seed_hex: &str,
    ) -> Result<Self> {
        // Absolute: the command runs inside the folder.
        let edge_dir = &std::fs::canonicalize(edge_dir).with_context(|| {
            format!(
                "no edge router at {} (--edge-dir): run from the rma checkout, or point --edge-dir at its edge/",
                edge_dir.display()
            )
        })?;
        let wrangler = edge_dir.join("node_modules/.bin/wrangler");
        if !wrangler.exists() {
            bail!(
                "the edge router is not installed: {} is missing; run `(cd {} && npm ci)`, or ./scripts/up --edge",
                wrangler.display(),
                edge_dir.display()
            );
        }
        if !edge_dir.join("../web/dist/index.html").exists() {
            bail!(
                "the web UI is not built: run `(cd web && npm ci && npm run build)`, or ./scripts/up --edge"
            );
        }
        let port = match listen.port() {
            0 => std::net::TcpListener::bind((listen.ip(), 0))
                .and_then(|l| l.local_addr())
                .context("cannot find a free port for the edge router")?
                .port(),
            p => p,
        };
        let state = data_dir.join("edge-state");
        std::fs::create_dir_all(&state)
            .with_context(|| format!("cannot create {}", state.display()))?;
        let log = data_dir.join("edge.log");
        let out = std::fs::File::create(&log)
            .with_context(|| format!("cannot write {}", log.display()))?;
        let vars = [
            format!("ADMIN_TOKEN:{admin_token}"),
            format!("FEDERATION_KEY:{federation_seed_hex}"),
            // Everything is on loopback here; the free tier's limits do not apply to workerd
            // on this machine, so coordinators heartbeat every few seconds and the UI is live.
            "ALLOW_LOOPBACK:true".to_owned(),
            "HEARTBEAT_INTERVAL_S:2".to_owned(),
            "STALE_AFTER_S:30".to_owned(),
            "ROUTE_CACHE_MS:1000".to_owned(),
        ];
        let mut cmd = Command::new(&wrangler);
        cmd.current_dir(edge_dir)
            .args([
                "dev",
                "--ip",
                &listen.ip().to_string(),
                "--port",
                &port.to_string(),
            ])
            .arg("--persist-to")
            .arg(&state)
            .args(["--log-level", "warn"])
            .env("WRANGLER_SEND_METRICS", "false")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        for v in &vars {
            cmd.arg("--var").arg(v);
        }
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", wrangler.display()))?;
        let edge = EdgeRouter {
            url: format!("http://{}:{port}", listen.ip()),
            group: child.id(),
            log,
        };
        let client = rma_client::Client::new(&edge.url)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        while client.health().await.is_err() {
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "the edge router did not answer within 90 s; its log is {}",
                    edge.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(edge)
    }

    pub(crate) fn url(&self) -> String {
        self.url.clone()
    }
}

impl Drop for EdgeRouter {
    fn drop(&mut self) {
        // wrangler starts workerd as its children: the group goes together.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.group)])
            .status();
    }
}
