//! The target of a service request, extracted once for every role: `ANY /api/service/{type}`
//! and `ANY /api/service/{type}/{*rest}` route to the same handler, which takes a
//! [`ServiceTarget`].

use axum::body::Body;
use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use rma_proto::ServiceCall;

use crate::ApiError;

/// What a service request asks for: the service, the sub-path exactly as the client sent it
/// (still percent-encoded: a decoded `%2F` must not turn into a path separator on the way to
/// the worker) and the query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTarget {
    /// The service type, checked to be a plain name.
    pub service: String,
    /// Empty, or the sub-path starting with `/`.
    pub rest: String,
    /// The query string without `?`, empty when none.
    pub query: String,
}

impl ServiceTarget {
    /// Parses `/…/api/service/{type}{rest}` (the prefix before `api/service` is ignored, so a
    /// router mounted under a path works too).
    pub fn parse(uri: &axum::http::Uri) -> Result<Self, ApiError> {
        let path = uri.path();
        let after = path
            .find("/api/service/")
            .map(|i| &path[i + "/api/service/".len()..])
            .ok_or_else(|| ApiError::not_found(format!("no route for {path}")))?;
        let (service, rest) = match after.find('/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, ""),
        };
        if !rma_proto::service::is_valid_name(service) {
            return Err(ApiError::bad_request(format!(
                "service type {service:?} is not a plain name (lowercase letters, digits, '-')"
            )));
        }
        Ok(ServiceTarget {
            service: service.to_owned(),
            rest: rest.to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
        })
    }

    /// The path relative to a base URL: `api/service/{type}{rest}[?query]`.
    pub fn url_path(&self) -> String {
        rma_proto::service::url_path(&self.service, &self.rest, &self.query)
    }

    /// The call this request makes: the body read within `limit` bytes (413 past it), the
    /// method, the content type from `headers`, and `request_id`. Every role that takes a
    /// service request over HTTP builds its call here.
    pub async fn read_call(
        self,
        method: &Method,
        headers: &HeaderMap,
        body: Body,
        limit: usize,
        request_id: Option<String>,
    ) -> Result<ServiceCall, ApiError> {
        let body = crate::read_body(headers, body, limit).await?;
        Ok(ServiceCall {
            service: self.service,
            method: method.to_string(),
            path: self.rest,
            query: self.query,
            content_type: headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            request_id,
            body,
            traceparent: crate::trace::TraceContext::from_headers(headers).map(|c| c.header()),
        })
    }

    /// A bounded label for metrics: the name when it is short, else `other`.
    pub fn metric_label(&self) -> &'static str {
        rma_proto::service::metric_label(&self.service)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ServiceTarget {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let OriginalUri(uri) = OriginalUri::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::internal(format!("reading the URI: {e}")))?;
        ServiceTarget::parse(&uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(u: &str) -> Result<ServiceTarget, ApiError> {
        ServiceTarget::parse(&u.parse().expect("uri"))
    }

    #[test]
    fn service_rest_and_query() {
        let t = parse("/api/service/store/ab%2Fcd?x=1").expect("ok");
        assert_eq!(
            (t.service.as_str(), t.rest.as_str(), t.query.as_str()),
            ("store", "/ab%2Fcd", "x=1")
        );
        assert_eq!(t.url_path(), "api/service/store/ab%2Fcd?x=1");
        let t = parse("/edge/api/service/echo").expect("ok");
        assert_eq!((t.service.as_str(), t.rest.as_str()), ("echo", ""));
        assert_eq!(
            parse("/api/service/OCR").expect_err("bad").status,
            axum::http::StatusCode::BAD_REQUEST
        );
    }
}
