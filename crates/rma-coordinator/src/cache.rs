//! The result cache, seen from the coordinator: before dispatching a deterministic service it
//! asks a worker offering `cache` for the answer, keyed by (service, options, input hash); after
//! a fresh answer it stores it there. A hit answers at once, marked `X-RMA-Cache: hit`.

use rma_http::ApiError;
use rma_proto::{ServiceCall, service};

use crate::dispatch::{Dispatcher, Served};
use crate::link::ProgressFn;

/// Services whose answer depends only on their input and options.
const CACHEABLE: [&str; 4] = [
    service::OCR,
    service::PDF_TEXT,
    service::ENHANCE,
    service::EXTRACT,
];

/// The cache key of a call: BLAKE3 over a versioned, unambiguous encoding of the service, the
/// sub-path, the query parameters (sorted, so their order does not matter), the content type
/// and the hash of the body.
pub(crate) fn key(call: &ServiceCall) -> String {
    let mut params: Vec<&str> = call.query.split('&').filter(|p| !p.is_empty()).collect();
    params.sort_unstable();
    let body_hash = blake3::hash(&call.body);
    let ct = rma_proto::media::essence(call.content_type.as_deref()).unwrap_or_default();
    let mut h = blake3::Hasher::new();
    for part in [
        "rma-cache-v1",
        &call.service,
        &call.path,
        &params.join("&"),
        &ct,
    ] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.update(body_hash.as_bytes());
    h.finalize().to_hex().to_string()
}

/// Dispatches `call`, through the cache when the service is cacheable and a cache worker exists.
/// `?cache=false` skips the lookup (the fresh answer is still stored). A fresh answer of a
/// deterministic service is spot-checked when `verify` or when drawn (see `spotcheck`); a
/// checked answer that disagreed is not cached.
pub(crate) async fn cached(
    d: &Dispatcher,
    call: ServiceCall,
    progress: Option<ProgressFn>,
    verify: bool,
) -> Result<Served, ApiError> {
    let deterministic = call.method == "POST"
        && call.path.is_empty()
        && (CACHEABLE.contains(&call.service.as_str()) || call.service == service::ECHO);
    let cacheable =
        deterministic && call.service != service::ECHO && d.registry.offers(service::CACHE);
    // Asked for, any deterministic service is checked; drawn, only those worth the work.
    let drawn =
        verify || (CACHEABLE.contains(&call.service.as_str()) && crate::spotcheck::drawn(d, false));
    let check = |served: Served| async {
        if deterministic && served.reply.status == 200 && drawn {
            crate::spotcheck::check(d, &call, served).await
        } else {
            served
        }
    };
    if !cacheable {
        let served = d.dispatch(&call, progress).await?;
        return Ok(check(served).await);
    }
    let k = key(&call);
    let skip_lookup = call.query.split('&').any(|p| p == "cache=false");
    if !skip_lookup {
        let lookup = ServiceCall {
            service: service::CACHE.to_owned(),
            method: "GET".into(),
            path: format!("/{k}"),
            request_id: call.request_id.clone(),
            traceparent: call.traceparent.clone(),
            ..Default::default()
        };
        match d.dispatch(&lookup, None).await {
            Ok(mut hit) if hit.reply.status == 200 => {
                metrics::counter!("rma_coordinator_cache_total", "result" => "hit").increment(1);
                hit.cache = Some("hit");
                return Ok(hit);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "cache lookup failed; dispatching"),
        }
    }
    metrics::counter!("rma_coordinator_cache_total", "result" => "miss").increment(1);
    let mut served = d.dispatch(&call, progress).await?;
    served.cache = Some("miss");
    let served = check(served).await;
    if served.reply.status == 200 && served.verified != Some(rma_proto::job::Verdict::Disagreed) {
        let fill = ServiceCall {
            service: service::CACHE.to_owned(),
            method: "PUT".into(),
            path: format!("/{k}"),
            query: String::new(),
            content_type: served.reply.content_type.clone(),
            request_id: call.request_id.clone(),
            body: served.reply.body.clone(),
            traceparent: call.traceparent.clone(),
        };
        let d = d.clone();
        tokio::spawn(async move {
            if let Err(e) = d.dispatch(&fill, None).await {
                tracing::debug!(error = %e, "could not fill the cache");
            }
        });
    }
    Ok(served)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn call(query: &str, body: &'static [u8]) -> ServiceCall {
        ServiceCall {
            service: "ocr".into(),
            method: "POST".into(),
            path: String::new(),
            query: query.into(),
            content_type: Some("image/png; x=1".into()),
            request_id: Some("r".into()),
            body: Bytes::from_static(body),
            traceparent: None,
        }
    }

    #[test]
    fn keys_follow_input_and_options_not_their_order() {
        let a = key(&call("lang=eng&boxes=true", b"img"));
        assert_eq!(a.len(), 64);
        assert_eq!(a, key(&call("boxes=true&lang=eng", b"img")));
        assert_ne!(a, key(&call("lang=fra&boxes=true", b"img")));
        assert_ne!(a, key(&call("lang=eng&boxes=true", b"img2")));
        let mut other = call("lang=eng&boxes=true", b"img");
        other.service = "enhance".into();
        assert_ne!(a, key(&other));
    }
}
