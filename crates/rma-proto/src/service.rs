//! Service names. Service types are plain lowercase names used in `/api/service/{type}`.

/// OCR of images and scanned PDFs.
pub const OCR: &str = "ocr";
/// Image clean-up for OCR.
pub const ENHANCE: &str = "enhance";
/// Proxy to an OpenAI-compatible backend, when one is configured.
pub const AI: &str = "ai";
/// Content-addressed storage.
pub const STORE: &str = "store";
/// Result cache keyed by the input's hash.
pub const CACHE: &str = "cache";
/// The machine can run a coordinator.
pub const COORDINATOR: &str = "coordinator";
/// The machine can proxy for others at the edge.
pub const EDGE_PROXY: &str = "edge-proxy";
/// The text layer of PDFs.
pub const PDF_TEXT: &str = "pdf-text";
/// Field extraction for debt letters.
pub const EXTRACT: &str = "extract";
/// Returns its input; for tests and benchmarks.
pub const ECHO: &str = "echo";
/// The document pipeline, run by the coordinator itself: store, enhance, OCR or PDF text,
/// extract, store.
pub const PROCESS: &str = "process";

/// The services rma knows, as metric label values.
pub const KNOWN: [&str; 10] = [
    OCR, ENHANCE, AI, STORE, CACHE, PDF_TEXT, EXTRACT, ECHO, PROCESS, EDGE_PROXY,
];

/// A service name as a metric label: known names as they are, anything else `other`, so a
/// client inventing names cannot grow the series count.
pub fn metric_label(name: &str) -> &'static str {
    KNOWN
        .iter()
        .find(|k| **k == name)
        .copied()
        .unwrap_or("other")
}

/// The path of a service request relative to a role's base URL, without a leading slash:
/// `api/service/{service}{rest}[?{query}]`. `rest` is empty or starts with `/`.
pub fn url_path(service: &str, rest: &str, query: &str) -> String {
    if query.is_empty() {
        format!("api/service/{service}{rest}")
    } else {
        format!("api/service/{service}{rest}?{query}")
    }
}

/// Checks that a service type from a URL is a plain name: 1–64 of `[a-z0-9-]`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert!(super::is_valid_name("pdf-text"));
        assert!(!super::is_valid_name("../etc"));
        assert!(!super::is_valid_name("OCR"));
        assert!(!super::is_valid_name(""));
    }
}
