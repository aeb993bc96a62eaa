//! A typed HTTP client for the rma contract, used by the CLI, the worker's agent, the
//! coordinator's registrar, the router (towards coordinators) and the tests. One [`Client`] per
//! base URL (a router or a coordinator); [`http_client`] builds the one kind of
//! `reqwest::Client` every role uses.
#![deny(clippy::unwrap_used)]

pub mod forward;
pub mod guard;
pub mod identity;

use std::sync::Once;
use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use rma_proto::api::{
    Ack, CoordinatorHeartbeat, CoordinatorInfo, CoordinatorRegister, CoordinatorRegistered,
    Topology, WorkerHeartbeat, WorkerRegister, WorkerRegistered,
};
use rma_proto::job::{self, JobAccepted, JobView};
use rma_proto::membership::{
    EnrollRequest, Enrolled, HeartbeatReply, Invite, InviteRequest, NodeInfo, RenewRequest,
};
use rma_proto::{ErrorBody, ServiceCall, error_code, headers};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

pub use reqwest::StatusCode as HttpStatus;

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL is not an absolute http(s) URL.
    #[error(transparent)]
    BaseUrl(#[from] rma_proto::urls::UrlError),
    /// A path joined to the base URL is not a valid URL.
    #[error("invalid URL {url:?}: {source}")]
    Url {
        /// The text that failed.
        url: String,
        /// Why.
        source: url::ParseError,
    },
    /// The request never got an HTTP answer: refused, reset, timed out, DNS.
    #[error("{url}: {source}")]
    Transport {
        /// Where it went.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("{status} {}: {}", .body.error, .body.message)]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// Its JSON body (or one made up from a non-JSON body).
        body: ErrorBody,
    },
    /// A job did not finish within the time it was waited for.
    #[error("job {id} is still {state} after {waited_s} s")]
    StillRunning {
        /// The job.
        id: String,
        /// Where it was last seen.
        state: &'static str,
        /// How long it was waited for.
        waited_s: u64,
    },
    /// The server answered 2xx with a body that is not what the contract says.
    #[error("unexpected answer from {url}: {message}")]
    Decode {
        /// Where it came from.
        url: String,
        /// Why it did not parse.
        message: String,
    },
}

impl ClientError {
    /// The HTTP status when the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Installs the process-wide rustls crypto provider (ring) once.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means a provider is already installed, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Certificate authorities trusted beside the system's (a self-hosted federation's own CA).
static EXTRA_ROOTS: std::sync::RwLock<Vec<Vec<u8>>> = std::sync::RwLock::new(Vec::new());

/// Trusts the certificates in `pem` (a CA, or a self-signed certificate) for every client made
/// from now on, beside the system's roots: `RMA_CA_CERT` in the CLI. Returns how many.
pub fn trust_pem(pem: &[u8]) -> Result<usize, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("holds no certificate".into());
    }
    let mut roots = EXTRA_ROOTS.write().unwrap_or_else(|p| p.into_inner());
    for c in &certs {
        if !roots.iter().any(|r| r.as_slice() == c.as_ref()) {
            roots.push(c.to_vec());
        }
    }
    Ok(certs.len())
}

/// The certificates [`trust_pem`] added (DER).
pub fn extra_roots() -> Vec<Vec<u8>> {
    EXTRA_ROOTS
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// A rustls client configuration for other clients (the worker's link): the system's roots and
/// the [`trust_pem`] ones; `None` when there are no extra ones (the defaults then serve).
pub fn tls_client_config() -> Option<std::sync::Arc<rustls::ClientConfig>> {
    if EXTRA_ROOTS
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .is_empty()
    {
        return None;
    }
    Some(std::sync::Arc::new(rustls_config()))
}

/// rustls on ring trusting the system's roots and the [`trust_pem`] ones.
pub(crate) fn rustls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    for der in extra_roots() {
        let _ = roots.add(rustls::pki_types::CertificateDer::from(der));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls's default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A raw service answer: status, content type, headers, body.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl RawResponse {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as a typed value of the contract.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The body as untyped JSON, for tests that look at shapes the contract does not name.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        self.parse()
    }

    /// The `message` of an error answer, or its status when the body is not `{error, message}`.
    pub fn error_message(&self) -> String {
        serde_json::from_slice::<ErrorBody>(&self.body)
            .map(|b| b.message)
            .unwrap_or_else(|_| format!("HTTP {}", self.status))
    }
}

/// The `reqwest::Client` of every role: rustls on ring, a 5 s connect timeout (at most
/// `timeout`), idle connections kept 30 s, and requests given up after `timeout` when set
/// (callers that forward long requests set a timeout per request instead).
pub fn http_client(timeout: Option<Duration>) -> Result<reqwest::Client, reqwest::Error> {
    http_client_with(timeout, None)
}

/// [`http_client`] for calls to URLs that others registered: with a `policy`, every name is
/// resolved through [`guard::GuardedResolver`] and no redirect is followed.
pub fn http_client_with(
    timeout: Option<Duration>,
    policy: Option<rma_proto::urls::AddressPolicy>,
) -> Result<reqwest::Client, reqwest::Error> {
    builder(timeout, policy).build()
}

fn builder(
    timeout: Option<Duration>,
    policy: Option<rma_proto::urls::AddressPolicy>,
) -> reqwest::ClientBuilder {
    install_crypto_provider();
    let connect = Duration::from_secs(5);
    let mut b = reqwest::Client::builder()
        .connect_timeout(timeout.map_or(connect, |t| connect.min(t)))
        .pool_idle_timeout(Duration::from_secs(30));
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    for der in extra_roots() {
        if let Ok(cert) = reqwest::Certificate::from_der(&der) {
            b = b.add_root_certificate(cert);
        }
    }
    if let Some(p) = policy {
        b = b
            .dns_resolver(guard::GuardedResolver::new(p))
            .redirect(reqwest::redirect::Policy::none());
    }
    b
}

/// What a client sends as `Authorization: Bearer …`.
#[derive(Debug, Clone)]
enum Bearer {
    /// A fixed token (the admin token, a worker's credential passed on by the router).
    Static(String),
    /// A node's current credential, renewed in place.
    Identity(std::sync::Arc<rma_auth::Identity>),
    /// A node's credential and proof of key, passed on by the router.
    Forwarded(String, Option<String>),
}

/// A client of one router or coordinator.
#[derive(Debug, Clone)]
pub struct Client {
    base: Url,
    http: reqwest::Client,
    bearer: Option<Bearer>,
}

impl Client {
    /// A client of `base` (`http://host:port`, a path prefix allowed) with a 30 s timeout for
    /// control calls.
    pub fn new(base: &str) -> Result<Self, ClientError> {
        Self::with_timeout(base, Duration::from_secs(30))
    }

    /// A client whose requests give up after `timeout`.
    pub fn with_timeout(base: &str, timeout: Duration) -> Result<Self, ClientError> {
        let http = http_client(Some(timeout)).map_err(|e| ClientError::Transport {
            url: base.to_owned(),
            source: e,
        })?;
        Self::with_http(base, http)
    }

    /// A client for occasional control calls (a worker's registration, its heartbeats while it
    /// has no link): no connection is kept open between calls, so a coordinator holding
    /// thousands of links holds no idle HTTP connection beside each.
    pub fn occasional(base: &str) -> Result<Self, ClientError> {
        let http = builder(Some(Duration::from_secs(30)), None)
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| ClientError::Transport {
                url: base.to_owned(),
                source: e,
            })?;
        Self::with_http(base, http)
    }

    /// A client over an existing `reqwest::Client` (shares its connection pool).
    pub fn with_http(base: &str, http: reqwest::Client) -> Result<Self, ClientError> {
        let mut base_url: Url = rma_proto::urls::http_url("URL", base)?;
        if !base_url.path().ends_with('/') {
            let p = format!("{}/", base_url.path());
            base_url.set_path(&p);
        }
        Ok(Client {
            base: base_url,
            http,
            bearer: None,
        })
    }

    /// The same client, sending `Authorization: Bearer {token}` with every request (the
    /// router's admin token, for admin views; a worker's credential, passed on).
    pub fn with_bearer(mut self, token: impl Into<String>) -> Self {
        self.bearer = Some(Bearer::Static(token.into()));
        self
    }

    /// The same client, passing on a node's credential and its proof of key (the router,
    /// proxying a worker's registration).
    pub fn with_forwarded(mut self, token: impl Into<String>, proof: Option<String>) -> Self {
        self.bearer = Some(Bearer::Forwarded(token.into(), proof));
        self
    }

    /// The same client, sending the node's current credential with every request, and a fresh
    /// proof that it holds the key the credential names.
    pub fn with_identity(mut self, identity: std::sync::Arc<rma_auth::Identity>) -> Self {
        self.bearer = Some(Bearer::Identity(identity));
        self
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let req = self.http.request(method, url);
        match &self.bearer {
            Some(Bearer::Static(t)) => req.bearer_auth(t),
            Some(Bearer::Identity(id)) => req
                .bearer_auth(id.bearer())
                .header(rma_auth::proof::PROOF_HEADER, id.request_proof()),
            Some(Bearer::Forwarded(token, proof)) => {
                let req = req.bearer_auth(token);
                match proof {
                    Some(p) => req.header(rma_auth::proof::PROOF_HEADER, p),
                    None => req,
                }
            }
            None => req,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `base` joined with a path like `api/edge/register` (no leading slash).
    pub fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base
            .join(path.trim_start_matches('/'))
            .map_err(|e| ClientError::Url {
                url: path.to_owned(),
                source: e,
            })
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let url = self.url(path)?;
        let mut req = self.request(method, url.clone());
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| ClientError::Transport {
            url: url.to_string(),
            source: e,
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Transport {
            url: url.to_string(),
            source: e,
        })?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url: url.to_string(),
            message: e.to_string(),
        })
    }

    /// `POST /api/edge/register`.
    pub async fn register_coordinator(
        &self,
        req: &CoordinatorRegister,
    ) -> Result<CoordinatorRegistered, ClientError> {
        self.call(Method::POST, "api/edge/register", Some(req))
            .await
    }

    /// `POST /api/edge/heartbeat`; the answer lists nodes revoked lately.
    pub async fn coordinator_heartbeat(
        &self,
        hb: &CoordinatorHeartbeat,
    ) -> Result<HeartbeatReply, ClientError> {
        self.call(Method::POST, "api/edge/heartbeat", Some(hb))
            .await
    }

    /// `DELETE /api/edge/{id}`.
    pub async fn deregister_coordinator(&self, id: &str) -> Result<Ack, ClientError> {
        self.call::<(), _>(Method::DELETE, &format!("api/edge/{id}"), None)
            .await
    }

    /// `POST /api/worker/register`.
    pub async fn register_worker(
        &self,
        req: &WorkerRegister,
    ) -> Result<WorkerRegistered, ClientError> {
        self.call(Method::POST, "api/worker/register", Some(req))
            .await
    }

    /// `POST /api/worker/heartbeat`.
    pub async fn worker_heartbeat(&self, hb: &WorkerHeartbeat) -> Result<Ack, ClientError> {
        self.call(Method::POST, "api/worker/heartbeat", Some(hb))
            .await
    }

    /// `POST /api/admin/invites` (admin token): a join token.
    pub async fn invite(&self, req: &InviteRequest) -> Result<Invite, ClientError> {
        self.call(Method::POST, "api/admin/invites", Some(req))
            .await
    }

    /// `POST /api/enroll`: a join token and a public key for a credential.
    pub async fn enroll(&self, req: &EnrollRequest) -> Result<Enrolled, ClientError> {
        self.call(Method::POST, "api/enroll", Some(req)).await
    }

    /// `POST /api/credentials/renew`.
    pub async fn renew(&self, req: &RenewRequest) -> Result<Enrolled, ClientError> {
        self.call(Method::POST, "api/credentials/renew", Some(req))
            .await
    }

    /// `GET /api/admin/nodes` (admin token).
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ClientError> {
        self.call::<(), _>(Method::GET, "api/admin/nodes", None)
            .await
    }

    /// `POST /api/admin/nodes/{id}/revoke` (admin token).
    pub async fn revoke(&self, node_id: &str) -> Result<Ack, ClientError> {
        self.call::<(), _>(
            Method::POST,
            &format!("api/admin/nodes/{node_id}/revoke"),
            None,
        )
        .await
    }

    /// `DELETE /api/jobs/{id}`: the job, its result and its stored document are gone.
    pub async fn delete_job(&self, id: &str) -> Result<Ack, ClientError> {
        self.call::<(), _>(Method::DELETE, &rma_proto::job::path(id), None)
            .await
    }

    /// `GET /api/admin/coordinators`.
    pub async fn coordinators(&self) -> Result<Vec<CoordinatorInfo>, ClientError> {
        self.call::<(), _>(Method::GET, "api/admin/coordinators", None)
            .await
    }

    /// `GET /api/admin/usage` (admin token): today's usage against the edge's free tier.
    pub async fn usage(&self) -> Result<rma_proto::api::Usage, ClientError> {
        self.call::<(), _>(Method::GET, "api/admin/usage", None)
            .await
    }

    /// `GET /api/topology`.
    pub async fn topology(&self) -> Result<Topology, ClientError> {
        self.call::<(), _>(Method::GET, "api/topology", None).await
    }

    /// `GET /health` as raw JSON (its shape differs between router and coordinator), with the
    /// status code, since a degraded router answers 503 with a body.
    pub async fn health(&self) -> Result<(StatusCode, serde_json::Value), ClientError> {
        let raw = self
            .raw(Method::GET, "health", None, Bytes::new(), &[])
            .await?;
        let v = raw.json().map_err(|e| ClientError::Decode {
            url: "health".into(),
            message: e.to_string(),
        })?;
        Ok((raw.status, v))
    }

    /// Any request, answered as it came: the caller looks at the status. Used for service calls
    /// (`api/service/echo?delay_ms=5`).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> Result<RawResponse, ClientError> {
        let url = self.url(path)?;
        let mut req = self.request(method, url.clone()).body(body);
        if let Some(ct) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.map_err(|e| ClientError::Transport {
            url: url.to_string(),
            source: e,
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| ClientError::Transport {
            url: url.to_string(),
            source: e,
        })?;
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    /// `POST /api/service/{service}` with a body; the answer as it came.
    pub async fn call_service(
        &self,
        service: &str,
        query: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<RawResponse, ClientError> {
        let path = rma_proto::service::url_path(service, "", query);
        self.raw(Method::POST, &path, Some(content_type), body, &[])
            .await
    }

    /// Sends a [`ServiceCall`] (method, sub-path, query, content type, request id, body) with
    /// `extra` headers; the answer as it came. How the router forwards a request and how a
    /// coordinator runs a job elsewhere.
    pub async fn send(
        &self,
        call: &ServiceCall,
        extra: &[(&str, &str)],
    ) -> Result<RawResponse, ClientError> {
        let method = Method::from_bytes(call.method.as_bytes()).map_err(|_| ClientError::Url {
            url: call.method.clone(),
            source: url::ParseError::InvalidDomainCharacter,
        })?;
        let mut headers: Vec<(&str, &str)> = extra.to_vec();
        if let Some(id) = &call.request_id {
            headers.push((headers::REQUEST_ID, id));
        }
        self.raw(
            method,
            &call.url_path(),
            call.content_type.as_deref(),
            call.body.clone(),
            &headers,
        )
        .await
    }

    /// `POST /api/service/{service}` with `Prefer: respond-async`: the job it became.
    pub async fn submit_job(
        &self,
        service: &str,
        query: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<JobAccepted, ClientError> {
        let path = rma_proto::service::url_path(service, "", query);
        let mut tries = 0;
        let raw = loop {
            let raw = self
                .raw(
                    Method::POST,
                    &path,
                    Some(content_type),
                    body.clone(),
                    &[("prefer", "respond-async")],
                )
                .await?;
            tries += 1;
            if raw.status != StatusCode::TOO_MANY_REQUESTS || tries > 5 {
                break raw;
            }
            // Over the router's per-address limit: wait as it says (a few times, briefly).
            let wait = raw
                .header("retry-after")
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(1)
                .min(10);
            tokio::time::sleep(Duration::from_secs(wait)).await;
        };
        if raw.status != StatusCode::ACCEPTED {
            return Err(api_error(raw.status, &raw.body));
        }
        raw.parse().map_err(|e| ClientError::Decode {
            url: path,
            message: e.to_string(),
        })
    }

    /// `GET /api/jobs/{id}`.
    pub async fn job(&self, id: &str) -> Result<JobView, ClientError> {
        self.call::<(), _>(Method::GET, &job::path(id), None).await
    }

    /// `GET /api/jobs/{id}/result`: a finished job's raw answer (an enhanced PNG, say).
    pub async fn job_result(&self, id: &str) -> Result<RawResponse, ClientError> {
        let raw = self
            .raw(Method::GET, &job::result_path(id), None, Bytes::new(), &[])
            .await?;
        if !raw.status.is_success() {
            return Err(api_error(raw.status, &raw.body));
        }
        Ok(raw)
    }

    /// Polls a job until it is done or failed, for at most `within`, calling `seen` with each
    /// view. Up to 60 polls in a row may fail to connect (a router or coordinator restarting)
    /// before the transport error is returned; an error answer (404: no such job) is returned
    /// at once.
    pub async fn wait(
        &self,
        id: &str,
        within: Duration,
        mut seen: impl FnMut(&JobView),
    ) -> Result<JobView, ClientError> {
        const POLL: Duration = Duration::from_millis(250);
        const MISSES: u32 = 60;
        let started = tokio::time::Instant::now();
        let mut misses = 0;
        let mut state = "queued";
        loop {
            match self.job(id).await {
                Ok(view) => {
                    misses = 0;
                    seen(&view);
                    if view.state.is_finished() {
                        return Ok(view);
                    }
                    state = view.state.as_str();
                }
                Err(e @ ClientError::Transport { .. }) => {
                    misses += 1;
                    if misses > MISSES {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
            if started.elapsed() >= within {
                return Err(ClientError::StillRunning {
                    id: id.to_owned(),
                    state,
                    waited_s: within.as_secs(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Turns an error answer into [`ClientError::Api`], keeping a JSON `{error, message}` body and
/// making one up from anything else.
pub fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    let body = serde_json::from_slice::<ErrorBody>(body).unwrap_or_else(|_| ErrorBody {
        error: error_code::for_status(status.as_u16()).to_owned(),
        message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    });
    ClientError::Api { status, body }
}

/// Exponential backoff with "equal jitter": each wait is uniform between half and all of a cap
/// that doubles from 250 ms to 10 s, so retries spread out but never come back at once.
#[derive(Debug)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// Starts at the smallest step.
    pub fn new() -> Self {
        Backoff { attempt: 0 }
    }

    /// Back to the smallest step.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next wait: uniform in [cap/2, cap] where cap doubles from 250 ms to 10 s.
    pub fn next_delay(&mut self) -> Duration {
        let cap_ms = (250u64 << self.attempt.min(6)).min(10_000);
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_millis(rand::random_range(cap_ms / 2..=cap_ms))
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut b = Backoff::new();
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(125) && first <= Duration::from_millis(250));
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(10));
        }
        let d = b.next_delay();
        assert!(
            d >= Duration::from_secs(5),
            "capped at 10 s with jitter down to half: {d:?}"
        );
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(250));
    }

    #[test]
    fn urls_join_under_a_prefix() {
        let c = Client::new("http://127.0.0.1:1/edge").expect("client");
        assert_eq!(
            c.url("api/topology").expect("url").as_str(),
            "http://127.0.0.1:1/edge/api/topology"
        );
        assert!(Client::new("ftp://x").is_err());
        assert!(Client::new("not a url").is_err());
    }

    #[test]
    fn error_bodies_are_kept_or_made_up() {
        let e = api_error(
            StatusCode::NOT_FOUND,
            br#"{"error":"not_found","message":"no"}"#,
        );
        assert!(matches!(e, ClientError::Api { ref body, .. } if body.error == "not_found"));
        let e = api_error(StatusCode::BAD_GATEWAY, b"<html>");
        assert!(matches!(e, ClientError::Api { ref body, .. } if body.error == "upstream_failed"));
    }
}
