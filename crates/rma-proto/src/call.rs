//! One service call and its reply: the shape a request has on every hop (router → coordinator
//! → link or tunnel → worker → service) and back.
//!
//! On the link, [`ServiceCall`] and [`ServiceReply`] travel inside
//! [`crate::link::LinkMessage::Request`] / [`crate::link::LinkMessage::Response`] headers; their
//! bodies ride after the header, unencoded, which is why `body` is skipped by serde.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One call of a service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCall {
    /// Service type (`ocr`, `echo`…).
    pub service: String,
    /// HTTP method of the original request.
    pub method: String,
    /// The sub-path after `/api/service/{type}`, empty or starting with `/`, still
    /// percent-encoded as the client sent it.
    #[serde(default)]
    pub path: String,
    /// The query string without `?`, empty when none.
    #[serde(default)]
    pub query: String,
    /// Content-Type of the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// End-to-end request id, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The body (a document, text, JSON). Not in the JSON header: it travels as raw bytes.
    #[serde(skip)]
    pub body: Bytes,
    /// W3C trace context of the hop that sent the call (`00-{trace}-{parent}-{flags}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl ServiceCall {
    /// A `POST` of `body` to `service`, with no sub-path or query.
    pub fn post(service: &str, content_type: Option<String>, body: Bytes) -> Self {
        ServiceCall {
            service: service.to_owned(),
            method: "POST".into(),
            content_type,
            body,
            ..Default::default()
        }
    }

    /// The value of query parameter `name` (our parameters are plain, not percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }

    /// The path and query relative to a role's base URL: `api/service/{type}{path}[?query]`.
    pub fn url_path(&self) -> String {
        crate::service::url_path(&self.service, &self.path, &self.query)
    }
}

/// A service's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReply {
    /// HTTP status, 200 for most.
    pub status: u16,
    /// Content-Type of the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The body. Not in the JSON header: it travels as raw bytes.
    #[serde(skip)]
    pub body: Bytes,
    /// Microseconds the worker spent executing the call (set by the worker, reported over the
    /// link; the coordinator exports it per worker and in `Server-Timing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_us: Option<u64>,
}

impl ServiceReply {
    /// 200 with a body.
    pub fn ok(content_type: Option<String>, body: Bytes) -> Self {
        ServiceReply {
            status: 200,
            content_type,
            body,
            took_us: None,
        }
    }

    /// 200 with a typed value as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Self {
        // Serialising our own plain types cannot fail; an empty body would show it if it did.
        Self::ok(
            Some("application/json".into()),
            Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        )
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as a typed value.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The message of an error answer: the `message` of a JSON `{error, message}` body, or the
    /// start of whatever else it is.
    pub fn error_message(&self) -> String {
        serde_json::from_slice::<crate::ErrorBody>(&self.body)
            .map(|b| b.message)
            .unwrap_or_else(|_| {
                String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(300)
                    .collect()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Query strings, service names and JSON bodies come from the network: reading any of
        /// them is an answer or an error, never a panic.
        #[test]
        fn query_strings_names_and_json_bodies_never_panic(query in ".{0,120}", name in ".{0,40}", json in ".{0,200}") {
            let call = ServiceCall { query: query.clone(), ..ServiceCall::post("echo", None, Bytes::new()) };
            let _ = call.query_param("lang");
            let _ = call.url_path();
            let _ = crate::service::is_valid_name(&name);
            let _ = crate::service::url_path(&name, "", &query);
            let reply = ServiceReply::ok(Some("application/json".into()), Bytes::from(json.clone()));
            let _ = reply.parse::<crate::results::ServiceResult>();
            let _ = reply.error_message();
            let _ = serde_json::from_str::<crate::api::WorkerRegister>(&json);
            let _ = serde_json::from_str::<crate::api::CoordinatorHeartbeat>(&json);
            let _ = serde_json::from_str::<crate::membership::EnrollRequest>(&json);
            let _ = serde_json::from_str::<crate::job::JobView>(&json);
        }
    }

    #[test]
    fn query_params_and_paths() {
        let c = ServiceCall {
            service: "ocr".into(),
            method: "POST".into(),
            path: "/x%2Fy".into(),
            query: "lang=eng&boxes".into(),
            ..Default::default()
        };
        assert_eq!(c.query_param("lang"), Some("eng"));
        assert_eq!(c.query_param("boxes"), Some(""));
        assert_eq!(c.query_param("nope"), None);
        assert_eq!(c.url_path(), "api/service/ocr/x%2Fy?lang=eng&boxes");
    }

    #[test]
    fn error_messages_from_json_or_text() {
        let r = ServiceReply {
            status: 400,
            content_type: None,
            body: Bytes::from_static(br#"{"error":"bad_request","message":"no"}"#),
            took_us: None,
        };
        assert_eq!(r.error_message(), "no");
        let r = ServiceReply {
            status: 502,
            content_type: None,
            body: Bytes::from_static(b"<html>"),
            took_us: None,
        };
        assert_eq!(r.error_message(), "<html>");
    }
}
