//! The web UI: the files Vite built into `web/dist`, embedded in the binary, and the topology
//! WebSocket that pushes changes to it.

use axum::extract::ws::{Message, WebSocket};
use axum::extract::{Path, State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use rma_http::ApiError;

use crate::AppState;

/// The built UI (`web/dist`). Missing when the UI was not built before the binary: then `/`
/// says how to build it.
#[derive(rust_embed::RustEmbed)]
#[folder = "../../web/dist"]
#[allow_missing = true]
struct Assets;

/// Changes whenever `web/dist` does (see build.rs): reading it here makes the router rebuild
/// with the new UI.
const _UI_STAMP: &str = env!("RMA_UI_STAMP");

const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>rma</title>\
<body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\">\
<h1>rma</h1><p>The web UI was not built into this binary. Run <code>./scripts/up</code>, \
or <code>(cd web &amp;&amp; npm ci &amp;&amp; npm run build)</code> and rebuild rma.</p>\
<p>The API works: <a href=\"/api/topology\">/api/topology</a>, <a href=\"/health\">/health</a>.</p>";

fn asset(path: &str) -> Option<Response> {
    let file = Assets::get(path)?;
    let mime = file.metadata.mimetype().to_owned();
    // Vite names assets by content hash: they never change under the same name.
    let cache = if path.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    Some(
        (
            [
                (header::CONTENT_TYPE, mime),
                (header::CACHE_CONTROL, cache.to_owned()),
            ],
            file.data.into_owned(),
        )
            .into_response(),
    )
}

/// `GET /`.
pub(crate) async fn index() -> Response {
    asset("index.html").unwrap_or_else(|| (StatusCode::OK, Html(NOT_BUILT)).into_response())
}

/// Top-level files such as `/favicon.svg`.
pub(crate) async fn file(Path(path): Path<String>) -> Response {
    asset(&path).unwrap_or_else(|| ApiError::not_found(format!("no file {path}")).into_response())
}

/// `GET /assets/{*path}`.
pub(crate) async fn assets(Path(path): Path<String>) -> Response {
    asset(&format!("assets/{path}"))
        .unwrap_or_else(|| ApiError::not_found(format!("no asset {path}")).into_response())
}

/// `GET /api/topology/ws`: sends the topology at once, then every time it changes.
/// Redacted unless the upgrade request carries the admin token.
/// What the page sends to see the whole topology.
#[derive(serde::Deserialize)]
struct SignIn {
    admin_token: String,
}

pub(crate) async fn topology_ws(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let admin = state.is_admin(&headers);
    // The page only ever sends a sign-in: nothing bigger is read.
    ws.max_message_size(4096)
        .max_frame_size(4096)
        .on_upgrade(move |socket| push_topology(state, socket, admin))
}

/// Pushes the topology on every change: whole for an admin, redacted for anyone else. A
/// browser cannot set headers on a WebSocket, so the page signs in by sending
/// `{"admin_token": "…"}` as a text message; a wrong token is answered with an error and the
/// view stays redacted.
async fn push_topology(state: AppState, socket: WebSocket, mut admin: bool) {
    let (mut sink, mut stream) = socket.split();
    let mut rx = state.topology_watch();
    let mut shutdown = state.shutdown();
    loop {
        let text = {
            let t = rx.borrow_and_update().clone();
            let t = if admin { t } else { t.redacted() };
            serde_json::to_string(&t).unwrap_or_default()
        };
        if sink.send(Message::Text(text.into())).await.is_err() {
            return;
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            msg = stream.next() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(Message::Text(text))) => {
                    let token = serde_json::from_str::<SignIn>(&text).map(|s| s.admin_token);
                    match token {
                        Ok(t) if state.admin_token_is(&t) => admin = true,
                        _ => {
                            let e = rma_proto::ErrorBody {
                                error: rma_proto::error_code::UNAUTHORIZED.into(),
                                message: "the admin token is not valid".into(),
                            };
                            let text = serde_json::to_string(&e).unwrap_or_default();
                            if sink.send(Message::Text(text.into())).await.is_err() {
                                return;
                            }
                        }
                    }
                    continue;
                }
                // Anything else from the page is ignored.
                Some(Ok(_)) => continue,
            },
            _ = shutdown.wait() => return,
        }
    }
}
