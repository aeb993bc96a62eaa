//! `echo`: returns the body and Content-Type unchanged; `?delay_ms=N` waits N ms first.
//! It exists for tests and benchmarks of the federation itself.

use std::time::Duration;

use crate::{BoxFuture, Service, ServiceError, ServiceReply, ServiceRequest};

/// Longest delay `echo` accepts: ten minutes.
pub(crate) const MAX_DELAY_MS: u64 = 600_000;

/// The echo service.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl Service for Echo {
    fn name(&self) -> &'static str {
        rma_proto::service::ECHO
    }

    fn call(&self, req: ServiceRequest) -> BoxFuture<'_, Result<ServiceReply, ServiceError>> {
        Box::pin(async move {
            if let Some(raw) = req.call.query_param("delay_ms") {
                let ms: u64 = raw.parse().map_err(|_| {
                    ServiceError::BadInput(format!(
                        "delay_ms must be a whole number of milliseconds, not {raw:?}"
                    ))
                })?;
                if ms > MAX_DELAY_MS {
                    return Err(ServiceError::BadInput(format!(
                        "delay_ms must be at most {MAX_DELAY_MS}"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Ok(ServiceReply::ok(req.call.content_type, req.call.body))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rma_proto::ServiceCall;

    #[tokio::test(start_paused = true)]
    async fn echoes_body_and_type_after_the_delay() {
        let req = ServiceRequest::from(ServiceCall {
            query: "delay_ms=1500".into(),
            content_type: Some("image/png".into()),
            body: Bytes::from_static(b"\x89PNG"),
            ..Default::default()
        });
        let start = tokio::time::Instant::now();
        let resp = Echo.call(req).await.expect("echo");
        assert_eq!(start.elapsed(), Duration::from_millis(1500));
        assert_eq!(resp.content_type.as_deref(), Some("image/png"));
        assert_eq!(&resp.body[..], b"\x89PNG");
    }

    #[tokio::test]
    async fn bad_delay_is_bad_input() {
        let req = ServiceRequest::from(ServiceCall {
            query: "delay_ms=soon".into(),
            ..Default::default()
        });
        let err = Echo.call(req).await.expect_err("refused");
        assert_eq!(err.status(), 400);
        let req = ServiceRequest::from(ServiceCall {
            query: format!("delay_ms={}", MAX_DELAY_MS + 1),
            ..Default::default()
        });
        assert_eq!(Echo.call(req).await.expect_err("refused").status(), 400);
    }
}
