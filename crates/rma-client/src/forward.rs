//! The router's hot path to coordinators: a plain `hyper` client for forwarding service
//! requests, with each coordinator's scheme and authority parsed once.
//!
//! `reqwest` (every other call in rma) parses a `Url` for every request and again in its
//! redirect layer, with IDNA processing of the host each time; on a forwarded echo that was a
//! few percent of the router's CPU. This client keeps what matters from it: rustls on ring with
//! the system's roots and [`crate::trust_pem`]'s, a connect timeout, idle connections kept 30 s,
//! no redirects, and the [`AddressPolicy`] checked on every address a name resolves to
//! ([`crate::guard`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rma_proto::ServiceCall;
use rma_proto::urls::AddressPolicy;

use crate::RawResponse;

/// Why a forward failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The request cannot be put on the wire (a method or header value HTTP does not allow):
    /// the caller's fault, whichever coordinator it went to.
    #[error("the request cannot be forwarded: {0}")]
    Request(String),
    /// No HTTP answer came: refused, reset, DNS, TLS, or an address the policy refuses.
    #[error("{url}: {message}")]
    Transport {
        /// Where it went.
        url: String,
        /// Why, with its causes.
        message: String,
    },
}

/// One coordinator as the forwarder addresses it: parsed once, cheap to clone.
#[derive(Debug, Clone)]
pub struct Upstream(Arc<UpstreamInner>);

#[derive(Debug)]
struct UpstreamInner {
    url: String,
    scheme: Scheme,
    authority: Authority,
    /// The base URL's path without its trailing slash (usually empty).
    prefix: String,
}

impl Upstream {
    /// A coordinator at `base` (`http(s)://host:port`, a path prefix allowed).
    pub fn parse(base: &str) -> Result<Self, crate::ClientError> {
        let url = rma_proto::urls::http_url("URL", base)?;
        let bad = |detail: String| rma_proto::urls::UrlError::new("URL", base, detail);
        let scheme = Scheme::try_from(url.scheme()).map_err(|e| bad(e.to_string()))?;
        let host = url.host_str().unwrap_or_default();
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let authority = Authority::try_from(authority).map_err(|e| bad(e.to_string()))?;
        Ok(Upstream(Arc::new(UpstreamInner {
            url: base.trim_end_matches('/').to_owned(),
            scheme,
            authority,
            prefix: url.path().trim_end_matches('/').to_owned(),
        })))
    }

    /// The base URL as given, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.0.url
    }
}

/// A pooled HTTP/1.1 client for forwarding [`ServiceCall`]s.
#[derive(Clone)]
pub struct Forwarder {
    http: HyperClient<hyper_rustls::HttpsConnector<HttpConnector<Resolver>>, Full<Bytes>>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Forwarder")
    }
}

impl Forwarder {
    /// A forwarder whose connections only reach addresses `policy` allows, giving up a
    /// connection attempt after `connect_timeout`. A whole request's time limit is the
    /// caller's (the router's `--request-timeout`).
    pub fn new(policy: AddressPolicy, connect_timeout: Duration) -> Self {
        crate::install_crypto_provider();
        let mut http = HttpConnector::new_with_resolver(Resolver { policy });
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(crate::rustls_config())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .build(https);
        Forwarder { http }
    }

    /// Sends `call` to `to` with `extra` headers (and its content type and request id); the
    /// answer as it came.
    pub async fn send(
        &self,
        to: &Upstream,
        call: &ServiceCall,
        extra: &[(&str, &str)],
    ) -> Result<RawResponse, ForwardError> {
        let request = build(to, call, extra)?;
        let transport = |message: String| ForwardError::Transport {
            url: to.url().to_owned(),
            message,
        };
        let resp = self
            .http
            .request(request)
            .await
            .map_err(|e| transport(chain(&e)))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| transport(chain(&e)))?
            .to_bytes();
        Ok(RawResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

fn build(
    to: &Upstream,
    call: &ServiceCall,
    extra: &[(&str, &str)],
) -> Result<Request<Full<Bytes>>, ForwardError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| ForwardError::Request(format!("{what}: {e}"));
    let method = Method::from_bytes(call.method.as_bytes()).map_err(|e| bad("method", &e))?;
    let path = format!("{}/{}", to.0.prefix, call.url_path());
    let path = PathAndQuery::try_from(path).map_err(|e| bad("path", &e))?;
    let uri = Uri::builder()
        .scheme(to.0.scheme.clone())
        .authority(to.0.authority.clone())
        .path_and_query(path)
        .build()
        .map_err(|e| bad("URI", &e))?;
    let mut request = Request::new(Full::new(call.body.clone()));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    let value = |v: &str| HeaderValue::from_str(v).map_err(|e| bad("header value", &e));
    if let Some(ct) = &call.content_type {
        headers.insert(CONTENT_TYPE, value(ct)?);
    }
    if let Some(id) = &call.request_id {
        headers.insert(rma_proto::headers::REQUEST_ID, value(id)?);
    }
    for (name, v) in extra {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad("header name", &e))?;
        headers.append(name, value(v)?);
    }
    Ok(request)
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Name resolution through [`crate::guard`]: only addresses the policy allows.
#[derive(Debug, Clone)]
struct Resolver {
    policy: AddressPolicy,
}

type Resolving =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, std::io::Error>> + Send>>;

impl tower_service::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy;
        Box::pin(async move {
            crate::guard::resolve_allowed(policy, name.as_str())
                .await
                .map(Vec::into_iter)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_keep_their_path_prefix_and_port() {
        let u = Upstream::parse("http://127.0.0.1:8080/").expect("parses");
        assert_eq!(u.url(), "http://127.0.0.1:8080");
        let call = ServiceCall::post("echo", Some("text/plain".into()), Bytes::from("x"));
        let r = build(&u, &call, &[("x-a", "1")]).expect("builds");
        assert_eq!(
            r.uri().to_string(),
            "http://127.0.0.1:8080/api/service/echo"
        );
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(r.headers()["x-a"], "1");

        let u = Upstream::parse("https://coord.example.org/rma").expect("parses");
        let mut call = call;
        call.path = "/a%20b".into();
        call.query = "lang=eng".into();
        let r = build(&u, &call, &[]).expect("builds");
        assert_eq!(
            r.uri().to_string(),
            "https://coord.example.org/rma/api/service/echo/a%20b?lang=eng"
        );
    }

    #[test]
    fn what_http_does_not_allow_is_the_request_s_fault() {
        assert!(Upstream::parse("ftp://x").is_err());
        assert!(Upstream::parse("not a url").is_err());
        let u = Upstream::parse("http://127.0.0.1:1").expect("parses");
        let call = ServiceCall::post("echo", Some("bad\nvalue".into()), Bytes::new());
        assert!(matches!(
            build(&u, &call, &[]),
            Err(ForwardError::Request(_))
        ));
        let mut call = ServiceCall::post("echo", None, Bytes::new());
        call.method = "NOT A METHOD".into();
        assert!(matches!(
            build(&u, &call, &[]),
            Err(ForwardError::Request(_))
        ));
    }

    #[tokio::test]
    async fn refused_addresses_are_never_connected_to() {
        let f = Forwarder::new(AddressPolicy::default(), Duration::from_secs(2));
        // Loopback is not allowed by the default (public-only) policy; "localhost" resolves to it.
        let u = Upstream::parse("http://localhost:9").expect("parses");
        let call = ServiceCall::post("echo", None, Bytes::new());
        let e = f.send(&u, &call, &[]).await.expect_err("refused");
        assert!(matches!(e, ForwardError::Transport { .. }), "{e}");
    }
}
