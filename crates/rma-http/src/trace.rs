//! Tracing across hops: W3C trace context (`traceparent`) accepted or started at the router and
//! carried over HTTP and the link to the worker, `Server-Timing` that says where the time went,
//! and optional export of each hop's span over OTLP (`--otlp-endpoint`).
//!
//! Each hop makes one span, a child of the context it was given, and passes its own span on as
//! the next hop's parent: router → coordinator → worker (and every `process` step under the
//! coordinator's span). Ids are ours (random, W3C format); when an exporter is installed the
//! spans are handed to the OpenTelemetry SDK with those ids, so what a collector shows matches
//! the headers a client saw.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use rand::RngCore;

/// One span's place in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// 16 bytes, never all zero.
    pub trace_id: [u8; 16],
    /// 8 bytes, never all zero.
    pub span_id: [u8; 8],
    /// Whether the caller records this trace (flag 01).
    pub sampled: bool,
}

impl TraceContext {
    /// Parses a `traceparent` value: `00-{32 hex}-{16 hex}-{2 hex}` (a later version's value is
    /// read by the same first fields, as the W3C spec asks). `None` for anything malformed or
    /// with an all-zero id.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let mut parts = value.split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || !is_lower_hex(version) {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let trace_id: [u8; 16] = hex_bytes(trace)?;
        let span_id: [u8; 8] = hex_bytes(span)?;
        let [flags]: [u8; 1] = hex_bytes(flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The context in `headers`' `traceparent`, when there is a valid one.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        headers
            .get(rma_proto::headers::TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse)
    }

    /// A new trace, sampled.
    pub fn root() -> Self {
        let mut rng = rand::rng();
        let mut trace_id = [0u8; 16];
        while trace_id == [0; 16] {
            rng.fill_bytes(&mut trace_id);
        }
        TraceContext {
            trace_id,
            span_id: new_span_id(),
            sampled: true,
        }
    }

    /// A span under this one: same trace, new span id.
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: new_span_id(),
            ..*self
        }
    }

    /// A child of `parent` when there is one, else a new trace.
    pub fn child_of(parent: Option<&TraceContext>) -> Self {
        parent.map_or_else(Self::root, Self::child)
    }

    /// As a `traceparent` value.
    pub fn header(&self) -> String {
        // Built by hand: this runs at every hop of every request, and `format!` with a
        // `{:02x}` per byte cost 4 % of a forwarded echo's CPU (one allocation per byte).
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        push_hex(&mut s, &self.trace_id);
        s.push('-');
        push_hex(&mut s, &self.span_id);
        s.push_str(if self.sampled { "-01" } else { "-00" });
        s
    }

    /// The trace id in hex.
    pub fn trace_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

fn new_span_id() -> [u8; 8] {
    let mut rng = rand::rng();
    let mut id = [0u8; 8];
    while id == [0; 8] {
        rng.fill_bytes(&mut id);
    }
    id
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !is_lower_hex(s) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// Appends `bytes` as lower-case hex.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

/// `Server-Timing` entries: (name, milliseconds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerTiming(pub Vec<(String, f64)>);

impl ServerTiming {
    /// Parses a `Server-Timing` value, keeping entries with a `dur`; others are skipped.
    pub fn parse(value: &str) -> Self {
        let entries = value
            .split(',')
            .filter_map(|entry| {
                let mut params = entry.split(';').map(str::trim);
                let name = params.next().filter(|n| !n.is_empty())?;
                let dur = params
                    .filter_map(|p| p.strip_prefix("dur="))
                    .find_map(|d| d.parse::<f64>().ok())
                    .filter(|d| d.is_finite() && *d >= 0.0)?;
                Some((name.to_owned(), dur))
            })
            .collect();
        ServerTiming(entries)
    }

    /// The entries in `headers`.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        headers
            .get(rma_proto::headers::SERVER_TIMING)
            .and_then(|v| v.to_str().ok())
            .map(Self::parse)
            .unwrap_or_default()
    }

    /// Adds an entry.
    pub fn push(&mut self, name: &str, took: Duration) {
        self.0.push((name.to_owned(), took.as_secs_f64() * 1000.0));
    }

    /// The sum of all entries, in milliseconds.
    pub fn total_ms(&self) -> f64 {
        self.0.iter().map(|(_, d)| d).sum()
    }

    /// As a header value: `router;dur=0.12, coordinator;dur=0.05, …`.
    pub fn header(&self) -> String {
        use std::fmt::Write;
        let mut s = String::with_capacity(self.0.len() * 24);
        for (i, (n, d)) in self.0.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            // Three decimals through integers: float formatting with a precision is several
            // times slower, and this runs at every hop of every request.
            let us = (d * 1000.0).round();
            let us = if us.is_finite() && us > 0.0 {
                us as u64
            } else {
                0
            };
            let _ = write!(s, "{n};dur={}.{:03}", us / 1000, us % 1000);
        }
        s
    }
}

/// A finished span, ready to export.
#[derive(Debug, Clone)]
pub struct Span {
    /// `router`, `coordinator`, `worker`.
    pub name: &'static str,
    /// Its own context.
    pub context: TraceContext,
    /// Its parent's span id, when it has one.
    pub parent: Option<[u8; 8]>,
    /// Start (wall clock).
    pub start: SystemTime,
    /// End (wall clock).
    pub end: SystemTime,
    /// Which process role made it and what it did (`service`, `status`, `node`…).
    pub attributes: Vec<(&'static str, String)>,
}

/// Where finished spans go.
pub trait SpanSink: Send + Sync + std::fmt::Debug {
    /// Takes one finished span; must not block.
    fn export(&self, span: Span);
}

static SINK: OnceLock<Box<dyn SpanSink>> = OnceLock::new();

/// Installs the process-wide span sink (the OTLP exporter); `false` when one was installed
/// already.
pub fn install(sink: Box<dyn SpanSink>) -> bool {
    SINK.set(sink).is_ok()
}

/// Whether spans are exported.
pub fn exporting() -> bool {
    SINK.get().is_some()
}

/// Hands a finished span to the sink, when there is one and the trace is sampled. The span is
/// built by `make` only then, so a process that exports nothing pays nothing for it.
pub fn record(sampled: bool, make: impl FnOnce() -> Span) {
    if sampled && let Some(sink) = SINK.get() {
        sink.export(make());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_children_keep_the_trace() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = TraceContext::parse(v).expect("valid");
        assert_eq!(c.header(), v);
        assert!(c.sampled);
        let child = c.child();
        assert_eq!(child.trace_id, c.trace_id);
        assert_ne!(child.span_id, c.span_id);
        let root = TraceContext::root();
        assert_eq!(TraceContext::parse(&root.header()), Some(root));
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-xyz-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
        // A later version with more fields is read by its first ones.
        assert!(
            TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x")
                .is_some_and(|c| !c.sampled)
        );
    }

    #[test]
    fn server_timing_parses_and_prints() {
        let t =
            ServerTiming::parse("coordinator;dur=0.5, link;desc=\"x\";dur=1.25, bogus, w;dur=-1");
        assert_eq!(
            t.0,
            vec![("coordinator".to_owned(), 0.5), ("link".to_owned(), 1.25)]
        );
        assert!((t.total_ms() - 1.75).abs() < 1e-9);
        let mut u = ServerTiming::default();
        u.push("router", Duration::from_micros(120));
        assert_eq!(u.header(), "router;dur=0.120");
        let many = ServerTiming(vec![
            ("a".to_owned(), 12.0),
            ("b".to_owned(), 1.2346),
            ("c".to_owned(), 0.0004),
            ("d".to_owned(), 3_600_000.5),
        ]);
        assert_eq!(
            many.header(),
            "a;dur=12.000, b;dur=1.235, c;dur=0.000, d;dur=3600000.500"
        );
        assert_eq!(ServerTiming::parse(&many.header()).0.len(), 4);
        assert_eq!(ServerTiming::default().header(), "");
    }

    #[test]
    fn traceparent_flags_and_hex_are_printed_as_the_spec_writes_them() {
        let c = TraceContext {
            trace_id: [0xab; 16],
            span_id: [0x0f, 0, 0, 0, 0, 0, 0, 0x10],
            sampled: false,
        };
        assert_eq!(
            c.header(),
            "00-abababababababababababababababab-0f00000000000010-00"
        );
        assert_eq!(c.trace_hex(), "abababababababababababababababab");
    }
}
