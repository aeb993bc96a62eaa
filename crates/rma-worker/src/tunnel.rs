//! Tunnel mode: the worker also serves its services over HTTP on a local listener, reachable at
//! `TUNNEL_URL` (a named Cloudflare tunnel, or any URL that leads to the listener). With
//! `USE_TUNNEL=true` it starts `cloudflared tunnel --url` for the listener itself and reads the
//! public URL it prints. The coordinator uses the URL when the worker has no live link.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::Exec as Registry;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use rma_http::ServiceTarget;
use rma_services::ServiceRequest;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// What the tunnel's handlers share.
#[derive(Clone)]
pub(crate) struct Tunnel {
    services: Arc<Registry>,
    max_body: usize,
    /// The worker's identity: the federation's public key checks callers' credentials.
    identity: Arc<rma_auth::Identity>,
    verified: Arc<rma_http::auth::VerifiedTokens>,
}

/// The worker's HTTP app: `ANY /api/service/{type}[/{rest}]` (for coordinators of its
/// federation only: a tunnel URL is public) and `GET /health`.
pub(crate) fn app(
    services: Arc<Registry>,
    max_body: usize,
    identity: Arc<rma_auth::Identity>,
) -> Router {
    let r = Router::new()
        .route("/api/service/{service}", any(serve))
        .route("/api/service/{service}/{*rest}", any(serve))
        .route(
            "/health",
            get(|| async { axum::Json(rma_proto::api::Ack::ok()) }),
        )
        .with_state(Tunnel {
            services,
            max_body,
            identity,
            verified: Arc::default(),
        });
    rma_http::finish(r)
}

/// 401 unless the caller holds a coordinator credential of this worker's federation (403 for
/// another role): anyone may learn a tunnel URL, only coordinators send work down it.
fn check_caller(t: &Tunnel, headers: &HeaderMap) -> Result<(), rma_http::ApiError> {
    let token = rma_http::auth::bearer(headers).ok_or_else(|| {
        rma_http::ApiError::unauthorized(
            "a worker runs services for the coordinators of its federation only (Authorization: Bearer …); send documents to the router",
        )
    })?;
    let claims = t
        .verified
        .verify(t.identity.verifier(), token)
        .map_err(|e| rma_http::ApiError::from_auth(&e))?;
    if claims.role != rma_auth::Role::Coordinator {
        return Err(rma_http::ApiError::forbidden(format!(
            "a worker runs services for coordinators; {} holds a {} credential",
            claims.sub, claims.role
        )));
    }
    Ok(())
}

async fn serve(
    State(t): State<Tunnel>,
    target: ServiceTarget,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(e) = check_caller(&t, &headers) {
        return e.into_response();
    }
    let (services, max_body) = (&t.services, t.max_body);
    let request_id = headers
        .get(rma_proto::headers::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let call = match target
        .read_call(&method, &headers, body, max_body, request_id)
        .await
    {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let reply = services.run(ServiceRequest::from(call)).await;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = (status, reply.body).into_response();
    if let Some(ct) = reply.content_type {
        rma_http::set_header(out.headers_mut(), "content-type", &ct);
    }
    if let Some(us) = reply.took_us {
        rma_http::set_header(
            out.headers_mut(),
            rma_proto::headers::TOOK_US,
            &us.to_string(),
        );
    }
    out
}

/// `cloudflared` on the PATH, or why not.
pub fn find_cloudflared() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("cloudflared"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "USE_TUNNEL=true needs cloudflared on the PATH (Cloudflare's tunnel client); install it, \
             or run a tunnel yourself and set TUNNEL_URL"
                .to_owned()
        })
}

/// The public URL in a line `cloudflared` printed, if it has one.
fn parse_tunnel_url(line: &str) -> Option<String> {
    line.split(|c: char| c.is_whitespace() || c == '|')
        .map(|t| {
            t.trim_matches(|c: char| {
                !c.is_ascii_alphanumeric() && c != ':' && c != '/' && c != '.' && c != '-'
            })
        })
        .find(|t| t.starts_with("https://") && t.ends_with(".trycloudflare.com"))
        .map(str::to_owned)
}

/// Starts `cloudflared tunnel --url {local}` and waits (up to 60 s) for the public URL it prints.
/// The tunnel lives as long as the returned child.
pub(crate) async fn start_cloudflared(
    binary: &std::path::Path,
    local: &str,
) -> Result<(Child, String), String> {
    let mut child = Command::new(binary)
        .args(["tunnel", "--no-autoupdate", "--url", local])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start cloudflared: {e}"))?;
    let stderr = child.stderr.take().ok_or("cloudflared has no stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = parse_tunnel_url(&line) {
                return Some(url);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(url)) => {
            // Keep draining its output so it never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            Ok((child, url))
        }
        Ok(None) => Err("cloudflared exited without printing a tunnel URL".into()),
        Err(_) => Err("cloudflared printed no tunnel URL within 60 s".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_quick_tunnel_url() {
        let line = "2026-11-28T06:00:00Z INF |  https://bright-fox-42.trycloudflare.com                                    |";
        assert_eq!(
            parse_tunnel_url(line).as_deref(),
            Some("https://bright-fox-42.trycloudflare.com")
        );
        assert_eq!(
            parse_tunnel_url("INF Requesting new quick Tunnel on trycloudflare.com..."),
            None
        );
        assert_eq!(
            parse_tunnel_url("see https://developers.cloudflare.com/"),
            None
        );
    }
}
