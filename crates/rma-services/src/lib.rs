//! The services a worker runs, behind one [`Service`] trait, and the [`Registry`] that names them.
//!
//! A service sees a request as method, sub-path, query, content type and body bytes, and answers
//! with a status, content type and body, whether the request came down the link or over HTTP.
//! Errors are typed ([`ServiceError`]) and map to the HTTP statuses of the contract.
#![deny(clippy::unwrap_used)]

mod agree;
mod ai;
mod cache;
mod echo;
pub mod engine;
pub mod enhance;
mod extract;
mod media;
mod ocr;
mod pdf;
mod pdf_text;
mod quota;
mod store;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

pub use rma_proto::{ServiceCall, ServiceReply};

pub use echo::Echo;

/// Reports progress of a long request (pages done of total); a no-op unless the caller set one.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<dyn Fn(u32, u32) + Send + Sync>>);

impl Progress {
    /// Calls `f(done, total)` on each report.
    pub fn new(f: impl Fn(u32, u32) + Send + Sync + 'static) -> Self {
        Progress(Some(Arc::new(f)))
    }

    /// Reports `done` of `total`.
    pub fn report(&self, done: u32, total: u32) {
        if let Some(f) = &self.0 {
            f(done, total);
        }
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(on)"
        } else {
            "Progress(off)"
        })
    }
}

/// Refuses anything but POST (and PUT) for services that take a document.
pub fn require_post(req: &ServiceRequest) -> Result<(), ServiceError> {
    if matches!(req.call.method.as_str(), "POST" | "PUT") && req.call.path.is_empty() {
        Ok(())
    } else if !req.call.path.is_empty() {
        Err(ServiceError::NotFound(format!(
            "this service has no sub-resource {}",
            req.call.path
        )))
    } else {
        Err(ServiceError::MethodNotAllowed(format!(
            "send the document with POST, not {}",
            req.call.method
        )))
    }
}

/// How a worker's services are set up.
#[derive(Debug, Clone)]
pub struct ServicesConfig {
    /// Where `store` and `cache` keep their files.
    pub data_dir: PathBuf,
    /// OCR engines (threads) [cores].
    pub ocr_threads: usize,
    /// Load each OCR thread's English engine at start, so the first page does not wait for it
    /// [true].
    pub ocr_warm: bool,
    /// An OpenAI-compatible backend for `ai`.
    pub ai_backend: Option<String>,
    /// Most bytes `store` keeps; the oldest objects go first past it [50 GB].
    pub store_max_bytes: u64,
    /// Most bytes `cache` keeps [2 GB].
    pub cache_max_bytes: u64,
    /// Objects older than this go from `store` and `cache` whatever else happens [8 days: the
    /// jobs' 7-day retention and a margin].
    pub max_age: std::time::Duration,
}

impl ServicesConfig {
    /// Defaults around a data dir.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServicesConfig {
            data_dir: data_dir.into(),
            ocr_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ocr_warm: true,
            ai_backend: None,
            store_max_bytes: 50_000_000_000,
            cache_max_bytes: 2_000_000_000,
            max_age: std::time::Duration::from_secs(8 * 24 * 3600),
        }
    }
}

/// A boxed future, so services can be stored as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One call of a service as a service sees it: the call (the same [`ServiceCall`] on every hop)
/// and where to report progress of long work.
#[derive(Debug, Clone, Default)]
pub struct ServiceRequest {
    /// The call.
    pub call: ServiceCall,
    /// Where to report progress of long work.
    pub progress: Progress,
}

impl From<ServiceCall> for ServiceRequest {
    fn from(call: ServiceCall) -> Self {
        ServiceRequest {
            call,
            progress: Progress::default(),
        }
    }
}

/// Why a service refused or failed a request. Each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// 400: the input is malformed.
    #[error("{0}")]
    BadInput(String),
    /// 404: no such sub-resource.
    #[error("{0}")]
    NotFound(String),
    /// 405: the method is not supported by this service.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 413: the input is over a limit (bytes, pixels, pages).
    #[error("{0}")]
    TooLarge(String),
    /// 415: the input is not of a type this service reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 502: a backend the service depends on failed.
    #[error("{0}")]
    Upstream(String),
    /// 500: the service itself failed.
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            ServiceError::BadInput(_) => 400,
            ServiceError::NotFound(_) => 404,
            ServiceError::MethodNotAllowed(_) => 405,
            ServiceError::TooLarge(_) => 413,
            ServiceError::UnsupportedMediaType(_) => 415,
            ServiceError::Upstream(_) => 502,
            ServiceError::Internal(_) => 500,
        }
    }

    /// The `error` code of the JSON body.
    pub fn code(&self) -> &'static str {
        use rma_proto::error_code as c;
        match self {
            ServiceError::BadInput(_) => c::BAD_REQUEST,
            ServiceError::NotFound(_) => c::NOT_FOUND,
            ServiceError::MethodNotAllowed(_) => c::METHOD_NOT_ALLOWED,
            ServiceError::TooLarge(_) => c::PAYLOAD_TOO_LARGE,
            ServiceError::UnsupportedMediaType(_) => c::UNSUPPORTED_MEDIA_TYPE,
            ServiceError::Upstream(_) => c::UPSTREAM_FAILED,
            ServiceError::Internal(_) => c::INTERNAL,
        }
    }

    /// The error as the response a client sees: `{error, message}` with its status.
    pub fn into_reply(self) -> ServiceReply {
        let body = rma_proto::ErrorBody {
            error: self.code().to_owned(),
            message: self.to_string(),
        };
        ServiceReply {
            status: self.status(),
            ..ServiceReply::json(&body)
        }
    }
}

/// A document service. Implementations are cheap to share (`Arc`) and safe to call concurrently.
pub trait Service: Send + Sync + 'static {
    /// The service type, as in `/api/service/{type}`.
    fn name(&self) -> &'static str;

    /// Runs one request.
    fn call(&self, req: ServiceRequest) -> BoxFuture<'_, Result<ServiceReply, ServiceError>>;
}

/// The services one worker hosts, by name.
#[derive(Clone, Default)]
pub struct Registry {
    services: BTreeMap<&'static str, Arc<dyn Service>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only `echo`: for tests and benchmarks of the federation itself.
    pub fn echo_only() -> Self {
        let mut r = Self::new();
        r.add(Arc::new(Echo));
        r
    }

    /// Every service this build implements, set up for one worker. `ai` only with a backend.
    pub fn for_worker(cfg: &ServicesConfig) -> Result<Self, ServiceError> {
        let pool = engine::OcrPool::new(cfg.ocr_threads);
        if cfg.ocr_warm {
            pool.warm("eng");
        }
        let ocr = ocr::Ocr::new(pool);
        let pdf = pdf_text::PdfText::new(Some(ocr.clone()));
        let mut r = Self::echo_only();
        r.add(Arc::new(ocr.clone()));
        r.add(Arc::new(pdf.clone()));
        r.add(Arc::new(enhance::Enhance));
        r.add(Arc::new(extract::Extract::new(Some(ocr), Some(pdf))));
        let (store_dir, cache_dir) = (cfg.data_dir.join("store"), cfg.data_dir.join("cache"));
        r.add(Arc::new(store::Store::new(&store_dir).with_quota(
            Arc::new(quota::Quota::new(
                store_dir.clone(),
                cfg.store_max_bytes,
                cfg.max_age,
            )),
        )));
        r.add(Arc::new(cache::Cache::new(&cache_dir).with_quota(
            Arc::new(quota::Quota::new(
                cache_dir.clone(),
                cfg.cache_max_bytes,
                cfg.max_age,
            )),
        )));
        if let Some(url) = &cfg.ai_backend {
            r.add(Arc::new(ai::Ai::new(url)?));
        }
        Ok(r)
    }

    /// The names of every service this build can run (`ai` included), without starting any.
    pub fn implemented() -> Vec<String> {
        use rma_proto::service as s;
        let mut v: Vec<String> = [
            s::AI,
            s::CACHE,
            s::ECHO,
            s::ENHANCE,
            s::EXTRACT,
            s::OCR,
            s::PDF_TEXT,
            s::STORE,
        ]
        .iter()
        .map(|x| (*x).to_owned())
        .collect();
        v.sort();
        v
    }

    /// Adds (or replaces) a service under its name.
    pub fn add(&mut self, service: Arc<dyn Service>) {
        self.services.insert(service.name(), service);
    }

    /// The service named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Service>> {
        self.services.get(name)
    }

    /// The names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.services.keys().map(|k| (*k).to_owned()).collect()
    }

    /// Runs `req` on the service it names, turning every failure into an error reply.
    pub async fn dispatch(&self, req: ServiceRequest) -> ServiceReply {
        let name = req.call.service.clone();
        match self.get(&name) {
            None => {
                ServiceError::NotFound(format!("this worker does not run the {name:?} service"))
                    .into_reply()
            }
            Some(s) => match s.call(req).await {
                Ok(resp) => resp,
                Err(e) => e.into_reply(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_service_is_a_404_body() {
        let resp = Registry::echo_only()
            .dispatch(ServiceRequest::from(ServiceCall {
                service: "teleport".into(),
                ..Default::default()
            }))
            .await;
        assert_eq!(resp.status, 404);
        let v: serde_json::Value = serde_json::from_slice(&resp.body).expect("json");
        assert_eq!(v["error"], "not_found");
    }
}
