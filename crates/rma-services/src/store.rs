//! `store`: content-addressed storage on a worker's disk. `POST` saves a document and answers
//! `{hash, size, content_type}` (BLAKE3, hex); `GET /{hash}` returns it. The same bytes are
//! stored once. Files are written to a temporary name and renamed, so a crash never leaves half a
//! document under a real hash; a hash that is not 64 hex digits is a 400, never a path.

use std::path::{Path, PathBuf};

use rma_proto::results::StoredObject;

use crate::{BoxFuture, Service, ServiceError, ServiceReply, ServiceRequest, media};

/// Checks a hash from a URL: exactly 64 lowercase hex digits.
pub(crate) fn check_hash(h: &str) -> Result<(), ServiceError> {
    if h.len() == 64
        && h.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(ServiceError::BadInput(format!(
            "{:?} is not a BLAKE3 hash (64 lowercase hex digits)",
            h.chars().take(80).collect::<String>()
        )))
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced, renamed.
pub(crate) async fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ServiceError> {
    let dir = path
        .parent()
        .ok_or_else(|| ServiceError::Internal("no parent directory".into()))?;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| ServiceError::Internal(format!("creating {}: {e}", dir.display())))?;
    let tmp = dir.join(format!(".tmp-{}", rand_suffix()));
    let write = async {
        let mut f = tokio::fs::File::create(&tmp).await?;
        tokio::io::AsyncWriteExt::write_all(&mut f, bytes).await?;
        f.sync_all().await?;
        tokio::fs::rename(&tmp, path).await
    };
    if let Err(e) = write.await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(ServiceError::Internal(format!(
            "writing {}: {e}",
            path.display()
        )));
    }
    Ok(())
}

fn rand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{nanos}", std::process::id())
}

/// The `store` service over a directory.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    dir: PathBuf,
    quota: Option<std::sync::Arc<crate::quota::Quota>>,
}

impl Store {
    /// Keeps objects under `dir/objects`.
    pub(crate) fn new(dir: impl Into<PathBuf>) -> Self {
        Store {
            dir: dir.into(),
            quota: None,
        }
    }

    /// The same, bounded by `quota`.
    pub(crate) fn with_quota(mut self, quota: std::sync::Arc<crate::quota::Quota>) -> Self {
        self.quota = Some(quota);
        self
    }

    fn object(&self, hash: &str) -> PathBuf {
        self.dir.join("objects").join(&hash[..2]).join(hash)
    }

    /// Saves bytes; returns `{hash, size, content_type, created}`.
    pub(crate) async fn put(
        &self,
        body: &[u8],
        content_type: Option<&str>,
    ) -> Result<StoredObject, ServiceError> {
        if body.is_empty() {
            return Err(ServiceError::BadInput(
                "nothing to store: the body is empty".into(),
            ));
        }
        let hash = blake3::hash(body).to_hex().to_string();
        let content_type = media::sniff(body)
            .map(|k| k.mime().to_owned())
            .or_else(|| media::essence(content_type))
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        let path = self.object(&hash);
        let created = !tokio::fs::try_exists(&path).await.unwrap_or(false);
        if created {
            write_atomic(&path.with_extension("type"), content_type.as_bytes()).await?;
            write_atomic(&path, body).await?;
            if let Some(q) = &self.quota {
                q.after_write();
            }
        }
        Ok(StoredObject {
            hash,
            size: body.len() as u64,
            content_type,
            created,
        })
    }

    /// Reads an object back, with its content type.
    pub(crate) async fn delete(&self, hash: &str) -> Result<(), ServiceError> {
        check_hash(hash)?;
        let path = self.object(hash);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {
                let _ = tokio::fs::remove_file(path.with_extension("type")).await;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ServiceError::NotFound(
                format!("no document with hash {hash} here"),
            )),
            Err(e) => Err(ServiceError::Internal(format!("deleting {hash}: {e}"))),
        }
    }

    pub(crate) async fn get(&self, hash: &str) -> Result<(Vec<u8>, String), ServiceError> {
        check_hash(hash)?;
        let path = self.object(hash);
        let body = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ServiceError::NotFound(format!(
                    "no document with hash {hash} here"
                )));
            }
            Err(e) => return Err(ServiceError::Internal(format!("reading {hash}: {e}"))),
        };
        let ct = tokio::fs::read_to_string(path.with_extension("type"))
            .await
            .unwrap_or_else(|_| "application/octet-stream".to_owned());
        Ok((body, ct))
    }
}

impl Service for Store {
    fn name(&self) -> &'static str {
        rma_proto::service::STORE
    }

    fn call(&self, req: ServiceRequest) -> BoxFuture<'_, Result<ServiceReply, ServiceError>> {
        Box::pin(async move {
            let sub = req.call.path.trim_start_matches('/');
            match (req.call.method.as_str(), sub) {
                ("POST" | "PUT", "") => Ok(ServiceReply::json(
                    &self
                        .put(&req.call.body, req.call.content_type.as_deref())
                        .await?,
                )),
                ("GET", h) if !h.is_empty() && !h.contains('/') => {
                    let (body, ct) = self.get(h).await?;
                    Ok(ServiceReply::ok(Some(ct), body.into()))
                }
                ("DELETE", h) if !h.is_empty() && !h.contains('/') => {
                    self.delete(h).await?;
                    Ok(ServiceReply::json(&rma_proto::api::Ack {
                        status: "deleted".into(),
                    }))
                }
                ("GET" | "DELETE", h) if h.contains('/') => {
                    Err(ServiceError::BadInput("a store path is one hash".into()))
                }
                (m, _) => Err(ServiceError::MethodNotAllowed(format!(
                    "store takes POST / (save), GET /{{hash}} (read) and DELETE /{{hash}}, not {m} /{sub}"
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_once_reads_back_and_refuses_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::new(dir.path());
        let a = s
            .put(b"%PDF-1.4 letter", Some("application/pdf"))
            .await
            .expect("put");
        assert!(a.created);
        assert_eq!(a.content_type, "application/pdf");
        assert_eq!(a.hash, blake3::hash(b"%PDF-1.4 letter").to_hex().as_str());
        let b = s.put(b"%PDF-1.4 letter", None).await.expect("again");
        assert!(!b.created, "the same bytes are stored once");
        let (body, ct) = s.get(&a.hash).await.expect("get");
        assert_eq!(body, b"%PDF-1.4 letter");
        assert_eq!(ct, "application/pdf");
        assert_eq!(
            s.get("../../etc/passwd").await.expect_err("path").status(),
            400
        );
        assert_eq!(
            s.get(&"A".repeat(64)).await.expect_err("upper").status(),
            400
        );
        assert_eq!(
            s.get(&"0".repeat(64)).await.expect_err("missing").status(),
            404
        );
        // No temporary files left behind.
        let leftovers: Vec<_> = walk(dir.path())
            .into_iter()
            .filter(|p| p.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    fn walk(p: &Path) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                let path = e.path();
                out.push(path.display().to_string());
                if path.is_dir() {
                    out.extend(walk(&path));
                }
            }
        }
        out
    }
}
