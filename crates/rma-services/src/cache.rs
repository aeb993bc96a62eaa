//! `cache`: results keyed by a hex key the coordinator derives from (service, options, input
//! hash). `GET /{key}` answers the stored result with its content type, or 404; `PUT /{key}`
//! stores one. Entries are files written atomically under the worker's data dir.

use std::path::PathBuf;

use crate::store::{check_hash, write_atomic};
use crate::{BoxFuture, Service, ServiceError, ServiceReply, ServiceRequest, media};

/// The `cache` service over a directory.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    dir: PathBuf,
    quota: Option<std::sync::Arc<crate::quota::Quota>>,
}

impl Cache {
    /// Keeps entries under `dir`.
    pub(crate) fn new(dir: impl Into<PathBuf>) -> Self {
        Cache {
            dir: dir.into(),
            quota: None,
        }
    }

    /// The same, bounded by `quota`.
    pub(crate) fn with_quota(mut self, quota: std::sync::Arc<crate::quota::Quota>) -> Self {
        self.quota = Some(quota);
        self
    }

    fn entry(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(key)
    }
}

impl Service for Cache {
    fn name(&self) -> &'static str {
        rma_proto::service::CACHE
    }

    fn call(&self, req: ServiceRequest) -> BoxFuture<'_, Result<ServiceReply, ServiceError>> {
        Box::pin(async move {
            let key = req.call.path.trim_start_matches('/');
            check_hash(key)?;
            let path = self.entry(key);
            match req.call.method.as_str() {
                "GET" => match tokio::fs::read(&path).await {
                    Ok(body) => {
                        let ct = tokio::fs::read_to_string(path.with_extension("type"))
                            .await
                            .unwrap_or_else(|_| "application/octet-stream".to_owned());
                        Ok(ServiceReply::ok(Some(ct), body.into()))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(
                        ServiceError::NotFound(format!("no cached result for {key}")),
                    ),
                    Err(e) => Err(ServiceError::Internal(format!("reading cache entry: {e}"))),
                },
                "PUT" => {
                    let ct = media::essence(req.call.content_type.as_deref())
                        .unwrap_or_else(|| "application/octet-stream".to_owned());
                    write_atomic(&path.with_extension("type"), ct.as_bytes()).await?;
                    write_atomic(&path, &req.call.body).await?;
                    if let Some(q) = &self.quota {
                        q.after_write();
                    }
                    Ok(ServiceReply::json(&rma_proto::results::CacheStored {
                        key: key.to_owned(),
                        size: req.call.body.len() as u64,
                    }))
                }
                "DELETE" => match tokio::fs::remove_file(&path).await {
                    Ok(()) => {
                        let _ = tokio::fs::remove_file(path.with_extension("type")).await;
                        Ok(ServiceReply::json(&rma_proto::api::Ack {
                            status: "deleted".into(),
                        }))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(
                        ServiceError::NotFound(format!("no cached result for {key}")),
                    ),
                    Err(e) => Err(ServiceError::Internal(format!("deleting cache entry: {e}"))),
                },
                m => Err(ServiceError::MethodNotAllowed(format!(
                    "cache takes GET, PUT and DELETE /{{key}}, not {m}"
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rma_proto::ServiceCall;

    #[tokio::test]
    async fn put_then_get() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Cache::new(dir.path());
        let key = "ab".repeat(32);
        let req = |method: &str, body: &'static [u8]| {
            ServiceRequest::from(ServiceCall {
                method: method.into(),
                path: format!("/{key}"),
                content_type: Some("application/json".into()),
                body: Bytes::from_static(body),
                ..Default::default()
            })
        };
        assert_eq!(
            c.call(req("GET", b"")).await.expect_err("miss").status(),
            404
        );
        c.call(req("PUT", b"{\"text\":\"hi\"}")).await.expect("put");
        let hit = c.call(req("GET", b"")).await.expect("hit");
        assert_eq!(&hit.body[..], b"{\"text\":\"hi\"}");
        assert_eq!(hit.content_type.as_deref(), Some("application/json"));
        let bad = ServiceRequest::from(ServiceCall {
            method: "GET".into(),
            path: "/../x".into(),
            ..Default::default()
        });
        assert_eq!(c.call(bad).await.expect_err("bad key").status(), 400);
    }
}
