//! `ai`: a proxy to an OpenAI-compatible backend (a local Ollama, vLLM or llama.cpp server),
//! offered only on workers started with `--ai-backend URL`. The sub-path is the API path:
//! `POST /api/service/ai/v1/chat/completions` goes to `{backend}/v1/chat/completions`; with no
//! sub-path, chat completions is meant.

use std::time::Duration;

use crate::{BoxFuture, Service, ServiceError, ServiceReply, ServiceRequest};

/// The `ai` service.
#[derive(Debug, Clone)]
pub(crate) struct Ai {
    backend: String,
    http: reqwest::Client,
}

impl Ai {
    /// Proxies to `backend` (e.g. `http://127.0.0.1:11434`).
    pub(crate) fn new(backend: &str) -> Result<Self, ServiceError> {
        let url = reqwest::Url::parse(backend)
            .map_err(|e| ServiceError::BadInput(format!("AI backend {backend:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ServiceError::BadInput(format!(
                "AI backend {backend:?} must be http(s)"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| ServiceError::Internal(format!("AI HTTP client: {e}")))?;
        Ok(Ai {
            backend: backend.trim_end_matches('/').to_owned(),
            http,
        })
    }
}

/// API paths the proxy passes on.
const ALLOWED: [&str; 4] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/models",
    "/v1/embeddings",
];

impl Service for Ai {
    fn name(&self) -> &'static str {
        rma_proto::service::AI
    }

    fn call(&self, req: ServiceRequest) -> BoxFuture<'_, Result<ServiceReply, ServiceError>> {
        Box::pin(async move {
            let path = if req.call.path.is_empty() {
                "/v1/chat/completions"
            } else {
                req.call.path.as_str()
            };
            if !ALLOWED.contains(&path) {
                return Err(ServiceError::NotFound(format!(
                    "ai passes on {} only, not {path}",
                    ALLOWED.join(", ")
                )));
            }
            let method = reqwest::Method::from_bytes(req.call.method.as_bytes())
                .map_err(|_| ServiceError::BadInput("bad method".into()))?;
            let mut r = self
                .http
                .request(method, format!("{}{path}", self.backend))
                .body(req.call.body.clone());
            if let Some(ct) = &req.call.content_type {
                r = r.header(reqwest::header::CONTENT_TYPE, ct);
            }
            let resp = r.send().await.map_err(|e| {
                ServiceError::Upstream(format!("the AI backend did not answer: {e}"))
            })?;
            let status = resp.status().as_u16();
            let ct = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = resp
                .bytes()
                .await
                .map_err(|e| ServiceError::Upstream(format!("the AI backend broke off: {e}")))?;
            Ok(ServiceReply {
                status,
                content_type: ct,
                body,
                took_us: None,
            })
        })
    }
}
