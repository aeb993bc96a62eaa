//! What the process tests share: the `rma` binary started as a child process that dies with
//! the test, and waiting for the line it prints when it is ready.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub(crate) const RMA: &str = env!("CARGO_BIN_EXE_rma");

/// Kills the child when the test ends, however it ends.
pub(crate) struct Proc(pub(crate) Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

pub(crate) fn rma(args: &[&str]) -> Command {
    // Our reqwest is built without a default TLS provider; the library installs ring.
    rma_client::install_crypto_provider();
    let mut c = Command::new(RMA);
    c.args(args)
        .env("RUST_LOG", "warn")
        .env_remove("COORDINATOR_URL")
        .env_remove("WORKER_TYPE")
        .env_remove("WORKER_ID")
        .env_remove("RMA_LISTEN")
        .env_remove("RMA_JOIN_TOKEN")
        .env_remove("RMA_ADMIN_TOKEN")
        .env_remove("RMA_DATA_DIR")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

/// Spawns and waits for a line containing `marker` on stdout or stderr; returns the process
/// and the first `http://` URL in that line.
pub(crate) async fn start(args: &[&str], marker: &str) -> (Proc, String) {
    let mut child = rma(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rma");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for stream in [
        Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(stderr),
    ] {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let _ = tx.send(l);
            }
        });
    }
    let wait = async {
        while let Some(line) = rx.recv().await {
            if line.contains(marker) {
                return line;
            }
        }
        panic!("rma {args:?} exited before printing {marker:?}");
    };
    let line = tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("rma {args:?} did not print {marker:?} within 30 s"));
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(|w| w.trim_end_matches(['/', ',']).to_owned())
        .unwrap_or_default();
    (Proc(child), url)
}
