//! Per-address rate limits at the router: what one address may send of the calls that cost the
//! federation work — service requests (uploads) and registrations. Job polls, the topology, the
//! UI and health are not limited. Over the limit: 429 `{error: "rate_limited"}` with
//! `Retry-After`. GCRA (governor), one bucket per IP address, buckets forgotten once full again.
//!
//! Organisations get client keys (`rma invite --role client`): an upload carrying a client
//! credential is limited per client (its own, larger bucket) instead of per address, and with
//! `--clients keyed` an upload without one is refused with 401. The admin token is not limited.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rma_http::ApiError;

pub(crate) use rma_http::limit::Limiter;

/// The middleware on limited routes.
/// A client credential that passed the checks, for the forwarder to pass on to the coordinator
/// (which bounds each client's queue of jobs). Never the admin token.
#[derive(Clone, Debug)]
pub(crate) struct ClientKey(pub(crate) String);

pub(crate) async fn middleware(
    State(state): State<crate::AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let upload = req.uri().path().starts_with("/api/service/");
    let bearer = rma_http::auth::bearer(req.headers()).map(str::to_owned);
    let checked = match (upload, bearer) {
        (true, Some(_)) if state.is_admin(req.headers()) => return next.run(req).await,
        (true, Some(token)) => {
            // Organisations (client keys) upload; so do coordinators, running a job elsewhere
            // in the federation when they have no worker for it.
            let claims = state
                .federation()
                .verifier()
                .verify(&token)
                .map_err(|e| ApiError::from_auth(&e))
                .and_then(|c| match c.role {
                    rma_auth::Role::Client | rma_auth::Role::Coordinator => Ok(c),
                    rma_auth::Role::Worker | rma_auth::Role::Router => {
                        Err(ApiError::forbidden(format!(
                            "uploads need a client key; {} holds a {} credential",
                            c.sub, c.role
                        )))
                    }
                });
            match claims {
                Ok(c) if state.revoked().contains(&c.sub) => {
                    return ApiError::forbidden(format!("client {} has been revoked", c.sub))
                        .into_response();
                }
                Ok(c) => {
                    if c.role == rma_auth::Role::Client {
                        req.extensions_mut().insert(ClientKey(token));
                    }
                    state
                        .client_limiter()
                        .check(c.sub.clone())
                        .map_err(|w| (w, c.sub))
                }
                Err(e) => return e.into_response(),
            }
        }
        (true, None) if state.config().clients_keyed => {
            return ApiError::unauthorized(
                "this router takes documents from organisations with a client key only: ask its operator for one (rma invite --role client), then rma submit --join TOKEN",
            )
            .into_response();
        }
        _ => {
            // Requests driven in-process (tests without sockets) have no peer and are not
            // limited.
            let Some(ConnectInfo(peer)) =
                req.extensions().get::<ConnectInfo<SocketAddr>>().copied()
            else {
                return next.run(req).await;
            };
            // Anonymous uploads also have a quota of bytes an hour per address, counted in
            // kilobytes (a body without a length counts one).
            let kilobytes = req
                .headers()
                .get(axum::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(1, |b| b.div_ceil(1024).max(1))
                .min(u64::from(u32::MAX)) as u32;
            state
                .limiter()
                .check(peer.ip())
                .and_then(|()| {
                    if upload {
                        state.upload_quota().check_n(peer.ip(), kilobytes)
                    } else {
                        Ok(())
                    }
                })
                .map_err(|w| (w, peer.ip().to_string()))
        }
    };
    match checked {
        Ok(()) => next.run(req).await,
        Err((wait, who)) => {
            metrics::counter!("rma_router_rate_limited_total").increment(1);
            // A client already sending its document gets the 429, not a broken pipe.
            rma_http::discard_body(req.into_body()).await;
            rma_http::rate_limited(wait, &who)
        }
    }
}
