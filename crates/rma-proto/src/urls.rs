//! The one check of the URLs nodes give each other (coordinator and tunnel URLs, a router's or
//! an AI backend's address): absolute `http` or `https` with a host; and, for URLs that a router
//! or coordinator will call because somebody registered them, the [`AddressPolicy`] that keeps
//! those calls from becoming a proxy into the caller's own network (SSRF).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A URL that is not an absolute http(s) URL with a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {raw:?} {detail}")]
pub struct UrlError {
    /// Which URL (`url`, `tunnel_url`, `--router-url`…).
    pub what: String,
    /// As given.
    pub raw: String,
    /// What is wrong with it.
    detail: String,
}

impl UrlError {
    /// `raw`, given as `what`, is wrong in the way `detail` says.
    pub fn new(what: &str, raw: &str, detail: impl Into<String>) -> Self {
        UrlError {
            what: what.to_owned(),
            raw: raw.to_owned(),
            detail: detail.into(),
        }
    }
}

/// Checks `raw` and returns it parsed.
pub fn http_url(what: &str, raw: &str) -> Result<url::Url, UrlError> {
    let fail = |detail: String| UrlError {
        what: what.to_owned(),
        raw: raw.to_owned(),
        detail,
    };
    const NOT: &str = "is not an absolute http(s) URL with a host";
    let url = url::Url::parse(raw).map_err(|e| fail(format!("{NOT}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(fail(NOT.to_owned()));
    }
    Ok(url)
}

/// Checks `raw` and returns it as given, without a trailing slash (how URLs are stored).
pub fn base_url(what: &str, raw: &str) -> Result<String, UrlError> {
    http_url(what, raw)?;
    Ok(raw.trim_end_matches('/').to_owned())
}

/// Whether an address is publicly routable. Private, loopback, link-local, carrier-grade NAT
/// (100.64/10), Docker's bridge pools, documentation, benchmarking, multicast and reserved
/// ranges are not; nor are IPv6 unique-local, link-local, documentation or mapped addresses.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let private_or_special = ip.is_private() // 10/8, 172.16/12 (Docker's 172.17–31 bridges), 192.168/16 (Docker's 192.168 pools)
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT, 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments, 192.0.0/24
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, 198.18/15
        || a >= 240; // reserved
    !private_or_special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let special = ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64
        || s[0] == 0; // IPv4-compatible and other reserved
    !special && (s[0] & 0xe000) == 0x2000 // global unicast is 2000::/3
}

/// Which URLs a router or coordinator agrees to call when somebody registers them.
///
/// By default only `https` to publicly routable addresses. Loopback (`http` included) is allowed
/// when the caller itself listens on loopback (`rma up`, tests); `allow_http` admits plain http
/// anywhere, `allow_private` admits private, CGNAT and loopback ranges (a home LAN). Link-local
/// addresses — among them the cloud metadata service at 169.254.169.254 — unspecified, multicast
/// and broadcast addresses are refused whatever the flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Plain http to any host.
    pub allow_http: bool,
    /// Private, CGNAT and loopback addresses.
    pub allow_private: bool,
    /// Loopback addresses, http included (the caller listens on loopback).
    pub allow_loopback: bool,
}

impl AddressPolicy {
    /// Anything goes but link-local and the like: for callers that trust their configuration
    /// (a worker calling the router it was told to).
    pub const TRUSTED: AddressPolicy = AddressPolicy {
        allow_http: true,
        allow_private: true,
        allow_loopback: true,
    };

    /// Checks one address the URL's host is (or resolves to).
    pub fn check_ip(&self, what: &str, raw: &str, ip: IpAddr) -> Result<(), UrlError> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let refuse = |why: &str| {
            Err(UrlError {
                what: what.to_owned(),
                raw: raw.to_owned(),
                detail: format!("is refused: {ip} is {why}"),
            })
        };
        let link_local = match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        };
        if link_local {
            return refuse("link-local (the range of cloud metadata services); never called");
        }
        if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
            return refuse("not an address a server can have");
        }
        if ip.is_loopback() {
            if self.allow_loopback || self.allow_private {
                return Ok(());
            }
            return refuse("loopback, allowed only when this node listens on loopback");
        }
        if !is_public(ip) && !self.allow_private {
            return refuse("private or reserved (--allow-private-addresses admits a home LAN)");
        }
        Ok(())
    }

    /// Checks a URL's scheme, and its host when that is an IP literal. Host names are checked
    /// when they are resolved (see `rma_client::guard`). Returns the URL parsed.
    pub fn check(&self, what: &str, raw: &str) -> Result<url::Url, UrlError> {
        let url = http_url(what, raw)?;
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        if let Some(ip) = ip {
            self.check_ip(what, raw, ip)?;
        }
        let loopback_host = ip.is_some_and(|ip| ip.is_loopback())
            || url
                .host_str()
                .is_some_and(|h| h.eq_ignore_ascii_case("localhost"));
        if url.scheme() == "http"
            && !self.allow_http
            && !(loopback_host && (self.allow_loopback || self.allow_private))
        {
            return Err(UrlError {
                what: what.to_owned(),
                raw: raw.to_owned(),
                detail: "is refused: it must be https (plain http only on loopback, or with --allow-http)"
                    .into(),
            });
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().expect("an IP"))
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "172.17.0.2",   // docker0
            "172.31.255.1", // docker pools
            "192.168.1.20",
            "127.0.0.1",
            "169.254.10.1",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.9",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd12:3456::1",
            "2001:db8::1",
            "ff02::1",
            "::ffff:192.168.1.1",
        ] {
            assert!(!public(ip), "{ip} must not count as public");
        }
    }

    #[test]
    fn routable_addresses_are_public() {
        for ip in [
            "81.2.69.160",
            "100.128.0.1",
            "172.32.0.1",
            "2a00:1450:4009::1",
            "::ffff:81.2.69.160",
        ] {
            assert!(public(ip), "{ip} is public");
        }
    }

    #[test]
    fn the_default_policy_calls_only_public_https() {
        let p = AddressPolicy::default();
        assert!(p.check("url", "https://81.2.69.160:8443").is_ok());
        assert!(
            p.check("url", "https://c1.example.org").is_ok(),
            "names are checked when resolved"
        );
        for bad in [
            "http://81.2.69.160",
            "https://10.0.0.5",
            "https://127.0.0.1:8080",
            "http://localhost:8080",
            "https://[::1]:1",
            "https://[::ffff:10.0.0.1]/",
        ] {
            assert!(p.check("url", bad).is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn metadata_and_link_local_are_refused_whatever_the_flags() {
        for bad in [
            "http://169.254.169.254/latest",
            "https://[fe80::1]/",
            "http://0.0.0.0:80",
            "http://224.0.0.1",
        ] {
            let e = AddressPolicy::TRUSTED.check("url", bad).expect_err(bad);
            assert!(e.to_string().contains("url"), "{e}");
        }
    }

    #[test]
    fn loopback_and_lan_by_permission() {
        let on_loopback = AddressPolicy {
            allow_loopback: true,
            ..Default::default()
        };
        assert!(on_loopback.check("url", "http://127.0.0.1:9").is_ok());
        assert!(on_loopback.check("url", "http://localhost:9").is_ok());
        assert!(on_loopback.check("url", "http://10.0.0.5").is_err());
        let lan = AddressPolicy {
            allow_http: true,
            allow_private: true,
            ..Default::default()
        };
        assert!(lan.check("url", "http://10.0.0.5:8080").is_ok());
        assert!(lan.check("url", "http://192.168.1.20").is_ok());
        let https_lan = AddressPolicy {
            allow_private: true,
            ..Default::default()
        };
        assert!(https_lan.check("url", "https://10.0.0.5").is_ok());
        assert!(https_lan.check("url", "http://10.0.0.5").is_err());
    }

    #[test]
    fn only_absolute_http_urls_with_a_host() {
        assert_eq!(
            base_url("url", "http://10.0.0.2:8080/").expect("ok"),
            "http://10.0.0.2:8080"
        );
        assert!(base_url("url", "https://c1.example.org").is_ok());
        for bad in ["ftp://x", "localhost:8080", "", "http://", "file:///etc"] {
            let e = base_url("url", bad).expect_err(bad);
            assert!(e.to_string().starts_with("url "), "{e}");
        }
    }
}
