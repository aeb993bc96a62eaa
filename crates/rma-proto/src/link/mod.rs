//! The link: the one connection a worker dials to its coordinator (a WebSocket at
//! `GET /api/worker/link`), over which the coordinator sends service requests and the worker
//! returns results. The worker needs no open port and no tunnel.
//!
//! Every message is one binary WebSocket frame: a 4-byte big-endian header length, the header
//! as JSON ([`LinkMessage`]), then the body bytes (a document, a result) untouched. Bodies are
//! never base64'd. Liveness uses WebSocket ping/pong frames, not messages.
//!
//! The upgrade request carries the worker's credential (`Authorization: Bearer …`; 401/403
//! without a valid one). The session opens with [`LinkMessage::Challenge`] from the
//! coordinator: its id and a fresh nonce. The worker answers [`LinkMessage::Hello`] carrying
//! [`PROTOCOL_VERSION`] and its signature of the challenge with the key its credential names
//! (so a stolen credential alone is useless); the coordinator answers [`LinkMessage::Welcome`]
//! or [`LinkMessage::Reject`] and closes. What happens after that — pings, silence, drain — is the
//! [`session`] state machine, the same one at both ends.

pub mod session;

use serde::{Deserialize, Serialize};

use crate::call::{ServiceCall, ServiceReply};

/// Version of this protocol; a coordinator rejects a hello with another one.
pub const PROTOCOL_VERSION: u32 = 3;

/// Most frames a link's writer sends in one write when several are queued (each end batches
/// what is waiting, then flushes once).
pub const WRITE_BATCH: usize = 64;

/// Largest header accepted (the body is bounded by the HTTP body limit, not this).
pub const MAX_HEADER_LEN: usize = 64 * 1024;

/// The header of one link frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LinkMessage {
    /// Coordinator → worker, first frame: prove you hold your key.
    Challenge {
        /// Who challenges; the worker checks it is the coordinator it registered with.
        coordinator_id: String,
        /// 256 random bits, base64url, never used twice.
        nonce: String,
    },
    /// Worker → coordinator, the answer to the challenge.
    Hello {
        /// [`PROTOCOL_VERSION`] of the worker.
        protocol_version: u32,
        /// The registered worker id.
        worker_id: String,
        /// The worker's signature of the challenge (`rma_auth::proof::link_message`), base64url.
        #[serde(default)]
        signature: String,
    },
    /// Coordinator → worker: the link is accepted and the worker is in rotation.
    Welcome {
        /// [`PROTOCOL_VERSION`] of the coordinator.
        protocol_version: u32,
        /// Who accepted.
        coordinator_id: String,
        /// How often the coordinator pings.
        #[serde(default)]
        ping_interval_ms: u64,
        /// Silent intervals after which either end gives the link up (0: the default, 5).
        #[serde(default)]
        ping_misses: u32,
    },
    /// Coordinator → worker: the link is refused; the coordinator closes after it.
    Reject {
        /// `unknown_worker` (register first), `protocol_version`, `unauthorized` (the
        /// signature does not verify) or `forbidden` (revoked).
        reason: String,
        /// In words.
        message: String,
    },
    /// Coordinator → worker: run a service; the frame's body is the call's body.
    Request {
        /// Correlates the response; unique per link.
        id: u64,
        /// The call, without its body.
        #[serde(flatten)]
        call: ServiceCall,
    },
    /// Worker → coordinator: the answer to `Request { id }`; the frame's body is the reply's.
    Response {
        /// The request's id.
        id: u64,
        /// The reply, without its body.
        #[serde(flatten)]
        reply: ServiceReply,
    },
    /// Worker → coordinator: progress of `Request { id }` (pages done of total).
    Progress {
        /// The request's id.
        id: u64,
        /// Units done.
        done: u32,
        /// Units in all.
        total: u32,
    },
    /// Worker → coordinator, every heartbeat interval while the link is open: the worker's
    /// load. It replaces the HTTP heartbeat while linked (one frame instead of a request with
    /// its credential checked again), and counts as traffic for liveness.
    Heartbeat {
        /// Load average per core.
        current_load: f64,
        /// Requests the worker is running.
        active_requests: u32,
        /// Heartbeats that failed since the last that got through (HTTP ones, before the link).
        #[serde(default)]
        heartbeats_failed: u32,
    },
    /// Coordinator → worker: the ping interval changed (a coordinator holding many links pings
    /// each less often); the worker judges silence by the new numbers from now on.
    Tune {
        /// How often the coordinator pings from now on.
        ping_interval_ms: u64,
        /// Silent intervals after which either end gives the link up (0: unchanged).
        #[serde(default)]
        ping_misses: u32,
    },
    /// Coordinator → worker: the services it is sent from now on (its coordinator moved a
    /// standby service in, or took one back). Workers that do not know this frame ignore it.
    Assign {
        /// Every service assigned now.
        services: Vec<String>,
    },
    /// Either side, before closing on purpose.
    Goodbye {
        /// In words.
        reason: String,
    },
}

/// A frame that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Shorter than its own length prefix says.
    #[error("link frame truncated: {0} bytes")]
    Truncated(usize),
    /// Header length over [`MAX_HEADER_LEN`].
    #[error("link frame header too long: {0} bytes")]
    HeaderTooLong(usize),
    /// The header is not a [`LinkMessage`].
    #[error("link frame header is not a link message: {0}")]
    BadHeader(#[from] serde_json::Error),
}

/// Encodes a message and its body into one frame.
pub fn encode(msg: &LinkMessage, body: &[u8]) -> Vec<u8> {
    // Serialising an enum of plain fields cannot fail.
    let header = serde_json::to_vec(msg).unwrap_or_default();
    let mut out = Vec::with_capacity(4 + header.len() + body.len());
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    out
}

/// Encodes a request: the call in the header, its body after it.
pub fn encode_request(id: u64, call: &ServiceCall) -> Vec<u8> {
    encode(
        &LinkMessage::Request {
            id,
            call: call.clone(),
        },
        &call.body,
    )
}

/// Encodes a response: the reply in the header, its body after it.
pub fn encode_response(id: u64, reply: &ServiceReply) -> Vec<u8> {
    encode(
        &LinkMessage::Response {
            id,
            reply: reply.clone(),
        },
        &reply.body,
    )
}

/// Decodes a frame whose body is then attached to the call or reply it carries.
pub fn decode_bytes(frame: &bytes::Bytes) -> Result<LinkMessage, FrameError> {
    let (mut msg, range) = decode(frame)?;
    match &mut msg {
        LinkMessage::Request { call, .. } => call.body = frame.slice(range),
        LinkMessage::Response { reply, .. } => reply.body = frame.slice(range),
        _ => {}
    }
    Ok(msg)
}

/// Decodes a frame into its message and the byte range of its body within `frame`.
pub fn decode(frame: &[u8]) -> Result<(LinkMessage, std::ops::Range<usize>), FrameError> {
    let len_bytes: [u8; 4] = frame
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(FrameError::Truncated(frame.len()))?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    if len > MAX_HEADER_LEN {
        return Err(FrameError::HeaderTooLong(len));
    }
    let header = frame
        .get(4..4 + len)
        .ok_or(FrameError::Truncated(frame.len()))?;
    let msg = serde_json::from_slice(header)?;
    Ok((msg, 4 + len..frame.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_binary_bodies() {
        let call = ServiceCall {
            service: "echo".into(),
            method: "POST".into(),
            path: "/x".into(),
            query: "delay_ms=5".into(),
            content_type: Some("application/octet-stream".into()),
            request_id: Some("r-1".into()),
            body: bytes::Bytes::from_static(&[0u8, 159, 146, 150, 255]),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        };
        let frame = bytes::Bytes::from(encode_request(7, &call));
        let back = decode_bytes(&frame).expect("decodes");
        assert_eq!(
            back,
            LinkMessage::Request {
                id: 7,
                call: call.clone()
            }
        );
        // The wire keeps the flat shape of protocol 1.
        let (_, range) = decode(&frame).expect("decodes");
        let header: serde_json::Value =
            serde_json::from_slice(&frame[4..range.start]).expect("json header");
        assert_eq!(header["type"], "request");
        assert_eq!(header["service"], "echo");
        assert_eq!(header["query"], "delay_ms=5");
        assert!(header.get("body").is_none());

        let reply = ServiceReply {
            status: 201,
            content_type: None,
            body: bytes::Bytes::from_static(b"done"),
            took_us: Some(1234),
        };
        let frame = bytes::Bytes::from(encode_response(7, &reply));
        assert_eq!(
            decode_bytes(&frame).expect("decodes"),
            LinkMessage::Response { id: 7, reply }
        );
    }

    #[test]
    fn hello_is_tagged_snake_case() {
        let v = serde_json::to_value(LinkMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            worker_id: "w".into(),
            signature: "s".into(),
        })
        .expect("serialise");
        assert_eq!(v["type"], "hello");
        assert_eq!(v["protocol_version"], PROTOCOL_VERSION);
        assert_eq!(v["signature"], "s");
    }

    proptest::proptest! {
        /// Whatever arrives on the link decodes or is an error; never a panic.
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode(&bytes);
            let _ = decode_bytes(&bytes::Bytes::from(bytes));
        }

        /// A length prefix followed by arbitrary (often JSON-like) text.
        #[test]
        fn decoding_prefixed_text_never_panics(header in r#"\{"type":"[a-z_]{0,12}"[^}]{0,80}\}"#, body in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let mut frame = (header.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(header.as_bytes());
            frame.extend_from_slice(&body);
            let _ = decode(&frame);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(decode(&[]), Err(FrameError::Truncated(0))));
        assert!(matches!(
            decode(&[0, 0, 0, 9, 1]),
            Err(FrameError::Truncated(5))
        ));
        assert!(matches!(
            decode(&[0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::HeaderTooLong(_))
        ));
        let mut bad = 3u32.to_be_bytes().to_vec();
        bad.extend_from_slice(b"{x}");
        assert!(matches!(decode(&bad), Err(FrameError::BadHeader(_))));
    }
}
