//! Calls to workers over HTTP, at the URL they registered as `tunnel_url` (a Cloudflare tunnel,
//! say). Used when a worker has no live link. A connection that fails is treated like a dropped
//! link: the request goes to another worker and the tunnel is out of use until the next heartbeat.

use std::sync::OnceLock;

use crate::AppState;
use crate::link::{Call, LinkError, Reply};

fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        rma_client::install_crypto_provider();
        reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap_or_default()
    })
}

/// Sends `call` to the worker at `base`.
pub async fn call(state: &AppState, base: &str, call: &Call) -> Result<Reply, LinkError> {
    let mut url = format!(
        "{}/api/service/{}{}",
        base.trim_end_matches('/'),
        call.service,
        call.path
    );
    if !call.query.is_empty() {
        url.push('?');
        url.push_str(&call.query);
    }
    let method =
        reqwest::Method::from_bytes(call.method.as_bytes()).map_err(|_| LinkError::Closed)?;
    let mut req = http()
        .request(method, &url)
        .timeout(state.config().request_timeout)
        .body(call.body.clone());
    if let Some(ct) = &call.content_type {
        req = req.header(reqwest::header::CONTENT_TYPE, ct);
    }
    if let Some(id) = &call.request_id {
        req = req.header(rma_proto::headers::REQUEST_ID, id);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Err(LinkError::Timeout),
        Err(e) => {
            tracing::warn!(url = %base, error = %e, "worker's tunnel URL unreachable");
            return Err(LinkError::Closed);
        }
    };
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.bytes().await.map_err(|_| LinkError::Closed)?;
    Ok(Reply {
        status,
        content_type,
        body,
    })
}
