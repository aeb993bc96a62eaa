//! The router link: one WebSocket a router keeps to each coordinator (`GET /api/router/link`),
//! over which it forwards service requests instead of sending each as its own HTTP request.
//! Many calls share the connection at once and go out in batched writes, as calls to workers do
//! on their link ([`crate::link`]); the coordinator runs each through the same handler, with the
//! same checks, as an HTTP request to `/api/service/…`.
//!
//! The upgrade request carries the router's credential for that coordinator
//! ([`crate::headers::ROUTER_CREDENTIAL`]); anything else is refused (401/403) before the
//! upgrade. The upgrade's answer says the largest request body the coordinator takes
//! ([`MAX_BODY_HEADER`]); a router sends larger ones over HTTP, where they get the
//! coordinator's own 413. Every call still carries its headers, the credential included, and
//! is checked as an HTTP request would be.
//!
//! Frames have the link's shape: one binary WebSocket message, a 4-byte big-endian header
//! length, the header as JSON ([`RelayMessage`]), then the body bytes untouched. Liveness is
//! WebSocket pings. Either end may close at any time; calls without an answer then fail at the
//! router as a connection error would, and are tried at the next coordinator.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::link::{FrameError, decode_frame, encode_frame};

/// Where a coordinator accepts router links.
pub const PATH: &str = "/api/router/link";

/// Answer header of the upgrade: the largest request body, in bytes, the coordinator takes.
pub const MAX_BODY_HEADER: &str = "x-rma-max-body-bytes";

/// Only service requests travel the link; the path of every call starts with this.
pub const SERVICE_PREFIX: &str = "/api/service/";

/// The header of one router-link frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RelayMessage {
    /// Router → coordinator: an HTTP request; the frame's body is the request's.
    Call {
        /// Correlates the answer; unique per link.
        id: u64,
        /// HTTP method.
        method: String,
        /// Path and query, starting with [`SERVICE_PREFIX`].
        path: String,
        /// Request headers, in order.
        #[serde(default)]
        headers: Vec<(String, String)>,
    },
    /// Coordinator → router: the answer to `Call { id }`; the frame's body is the response's.
    Answer {
        /// The call's id.
        id: u64,
        /// HTTP status.
        status: u16,
        /// Response headers, in order.
        #[serde(default)]
        headers: Vec<(String, String)>,
    },
}

/// Encodes a message and its body into one frame.
pub fn encode(msg: &RelayMessage, body: &[u8]) -> Vec<u8> {
    encode_frame(msg, body)
}

/// Decodes a frame into its message and its body (a slice of `frame`, not a copy).
pub fn decode(frame: &Bytes) -> Result<(RelayMessage, Bytes), FrameError> {
    let (msg, range) = decode_frame(frame)?;
    Ok((msg, frame.slice(range)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_answers_round_trip_with_binary_bodies() {
        let call = RelayMessage::Call {
            id: 9,
            method: "POST".into(),
            path: "/api/service/echo?delay_ms=5".into(),
            headers: vec![
                ("content-type".into(), "application/octet-stream".into()),
                ("x-a".into(), "1".into()),
                ("x-a".into(), "2".into()),
            ],
        };
        let body = [0u8, 159, 146, 150, 255];
        let frame = Bytes::from(encode(&call, &body));
        let (back, got) = decode(&frame).expect("decodes");
        assert_eq!(back, call);
        assert_eq!(&got[..], &body);
        // The header is JSON tagged like the worker link's.
        let (_, range) = decode_frame::<serde_json::Value>(&frame).expect("decodes");
        let header: serde_json::Value =
            serde_json::from_slice(&frame[4..range.start]).expect("json header");
        assert_eq!(header["type"], "call");
        assert_eq!(header["headers"][2][1], "2");

        let answer = RelayMessage::Answer {
            id: 9,
            status: 413,
            headers: vec![],
        };
        let frame = Bytes::from(encode(&answer, b""));
        assert_eq!(decode(&frame).expect("decodes"), (answer, Bytes::new()));
    }

    #[test]
    fn a_worker_link_message_is_not_a_router_link_message() {
        let frame = Bytes::from(crate::link::encode(
            &crate::link::LinkMessage::Goodbye { reason: "x".into() },
            b"",
        ));
        assert!(matches!(decode(&frame), Err(FrameError::BadHeader(_))));
        assert!(matches!(
            decode(&Bytes::from_static(&[0, 0])),
            Err(FrameError::Truncated(2))
        ));
    }

    proptest::proptest! {
        /// Whatever arrives decodes or is an error; never a panic.
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode(&Bytes::from(bytes));
        }
    }
}
