//! Calls to URLs that somebody else registered, kept inside an [`AddressPolicy`]: the host is
//! checked when the URL is registered ([`check_registered`]) and again every time it is resolved
//! for a connection ([`GuardedResolver`]), so a name that later resolves to a private or metadata
//! address (DNS rebinding) is not called either. Clients built with a policy follow no redirects.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use rma_proto::urls::{AddressPolicy, UrlError};

/// Checks a registered URL: its scheme and literal address at once, and every address its host
/// name resolves to now. A name that does not resolve here is let through: the connection-time
/// check still applies to it.
pub async fn check_registered(
    policy: &AddressPolicy,
    what: &str,
    raw: &str,
) -> Result<String, UrlError> {
    let url = policy.check(what, raw)?;
    if let Some(url::Host::Domain(host)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(443);
        let lookup = tokio::net::lookup_host((host, port));
        // A name that does not resolve from here (yet) is let through: the connection-time
        // check still applies to it.
        if let Ok(Ok(addrs)) = tokio::time::timeout(std::time::Duration::from_secs(2), lookup).await
        {
            for a in addrs {
                policy.check_ip(what, raw, a.ip())?;
            }
        }
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// A DNS resolver that drops the addresses a policy refuses, and fails when none is left.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: AddressPolicy,
}

impl GuardedResolver {
    /// A resolver for `policy`.
    pub fn new(policy: AddressPolicy) -> Arc<Self> {
        Arc::new(GuardedResolver { policy })
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let allowed = resolve_allowed(policy, name.as_str()).await?;
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// The addresses `host` resolves to that `policy` allows; an error saying why when none is.
/// What every guarded connection (reqwest's and the router's forwarding client) resolves with.
pub(crate) async fn resolve_allowed(
    policy: AddressPolicy,
    host: &str,
) -> Result<Vec<SocketAddr>, std::io::Error> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
    let allowed: Vec<SocketAddr> = found
        .iter()
        .copied()
        .filter(|a| policy.check_ip("host", host, a.ip()).is_ok())
        .collect();
    if allowed.is_empty() {
        let why = found
            .first()
            .and_then(|a| policy.check_ip("host", host, a.ip()).err())
            .map_or_else(
                || format!("{host} resolves to no address"),
                |e| e.to_string(),
            );
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            why,
        ));
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_are_checked_by_what_they_resolve_to() {
        let strict = AddressPolicy::default();
        let e = check_registered(&strict, "url", "https://localhost:9")
            .await
            .expect_err("localhost is loopback");
        assert!(e.to_string().contains("loopback"), "{e}");
        let on_loopback = AddressPolicy {
            allow_loopback: true,
            ..Default::default()
        };
        assert_eq!(
            check_registered(&on_loopback, "url", "http://localhost:9/")
                .await
                .expect("allowed"),
            "http://localhost:9"
        );
        // A name that does not resolve here is left to the connection-time check.
        assert!(
            check_registered(&strict, "url", "https://no-such-host.invalid")
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A server that answers every request with a redirect to the metadata service.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let policy = AddressPolicy {
            allow_loopback: true,
            ..Default::default()
        };
        let http = crate::http_client_with(None, Some(policy)).expect("client");
        let r = http
            .get(format!("http://{addr}/"))
            .send()
            .await
            .expect("an answer");
        assert_eq!(r.status(), 302, "the redirect comes back, not followed");
    }

    #[tokio::test]
    async fn the_resolver_refuses_to_connect_to_what_the_policy_refuses() {
        let http = crate::http_client_with(None, Some(AddressPolicy::default())).expect("client");
        let e = http
            .get("http://localhost:9/")
            .send()
            .await
            .expect_err("refused before connecting");
        let mut chain = String::new();
        let mut src: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = src {
            chain.push_str(&s.to_string());
            src = s.source();
        }
        assert!(chain.contains("loopback"), "{chain}");
    }
}
