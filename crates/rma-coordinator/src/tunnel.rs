//! Calls to workers over HTTP, at the URL they registered as `tunnel_url` (a Cloudflare tunnel,
//! say), used when a worker has no live link. A connection that fails counts as a lost worker:
//! the request goes to another and the tunnel is out of use until the worker's next heartbeat.

use std::time::Duration;

use rma_client::{Client, ClientError};
use rma_proto::{ServiceCall, ServiceReply};

use crate::link::CallError;

/// Sends `call` to the worker at `base` with this coordinator's credential (`bearer`: a worker
/// serves its tunnel for its federation's coordinators only), giving up after `timeout`.
pub(crate) async fn call(
    http: &reqwest::Client,
    base: &str,
    bearer: String,
    call: &ServiceCall,
    timeout: Duration,
) -> Result<ServiceReply, CallError> {
    let client = Client::with_http(base, http.clone())
        .map_err(|_| CallError::Lost)?
        .with_bearer(bearer);
    match tokio::time::timeout(timeout, client.send(call, &[])).await {
        Err(_) => Err(CallError::Timeout),
        Ok(Err(ClientError::Transport { source, .. })) if source.is_timeout() => {
            Err(CallError::Timeout)
        }
        Ok(Err(e)) => {
            tracing::warn!(url = %base, error = %e, "worker's tunnel URL unreachable");
            Err(CallError::Lost)
        }
        Ok(Ok(resp)) => Ok(ServiceReply {
            status: resp.status.as_u16(),
            content_type: resp.header("content-type").map(str::to_owned),
            took_us: resp
                .header(rma_proto::headers::TOOK_US)
                .and_then(|v| v.parse().ok()),
            body: resp.body,
        }),
    }
}
