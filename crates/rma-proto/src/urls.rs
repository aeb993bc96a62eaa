//! The one check of the URLs nodes give each other (coordinator and tunnel URLs, a router's or
//! an AI backend's address): absolute `http` or `https` with a host.

/// A URL that is not an absolute http(s) URL with a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {raw:?} is not an absolute http(s) URL with a host{detail}")]
pub struct UrlError {
    /// Which URL (`url`, `tunnel_url`, `--router-url`…).
    pub what: String,
    /// As given.
    pub raw: String,
    /// What the parser said, when it said something.
    detail: String,
}

/// Checks `raw` and returns it parsed.
pub fn http_url(what: &str, raw: &str) -> Result<url::Url, UrlError> {
    let fail = |detail: String| UrlError {
        what: what.to_owned(),
        raw: raw.to_owned(),
        detail,
    };
    let url = url::Url::parse(raw).map_err(|e| fail(format!(": {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(fail(String::new()));
    }
    Ok(url)
}

/// Checks `raw` and returns it as given, without a trailing slash (how URLs are stored).
pub fn base_url(what: &str, raw: &str) -> Result<String, UrlError> {
    http_url(what, raw)?;
    Ok(raw.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

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
