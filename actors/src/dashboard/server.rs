//! The dashboard's HTTP server (axum): the page, the JSON API, server-sent events and
//! Prometheus `/metrics`. Every route but the page and its scripts needs the run's bearer token
//! (`Authorization: Bearer T`, or `?token=T` for the browser's `EventSource`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::Dashboard;
use crate::ActorError;

const PAGE: &str = include_str!("page.html");
const PAGE_JS: &str = include_str!("page.js");
const VIEWER_JS: &str = include_str!("viewer.js");
const UPLOT_JS: &str = include_str!("vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("vendor/uPlot.min.css");

/// How often `/api/events` sends a `status` event when no step came.
const STATUS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// File in the run directory holding the dashboard's base URL.
pub const URL_FILE: &str = "dashboard.url";
/// File in the run directory holding the bearer token (mode 0600).
pub const TOKEN_FILE: &str = "dashboard.token";

#[derive(Debug, Clone)]
struct App {
    dashboard: Dashboard,
    token: String,
}

/// A running dashboard server.
#[derive(Debug, Clone)]
pub struct Served {
    /// Base URL (`http://127.0.0.1:PORT/`).
    pub url: String,
    /// The bearer token the API requires.
    pub token: String,
}

/// Binds `addr`, writes the URL and a fresh token into `run_dir` and serves the
/// dashboard on a background task for as long as the process runs.
pub async fn serve(dashboard: Dashboard, addr: &str, run_dir: &Path) -> Result<Served, ActorError> {
    let fail = |reason: String| ActorError::Spawn {
        role: "dashboard",
        reason,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| fail(format!("dashboard.addr {addr}: {e}")))?;
    let local: SocketAddr = listener.local_addr().map_err(|e| fail(e.to_string()))?;
    let token = format!("{:032x}", rand::random::<u128>());
    let url = format!("http://{local}/");
    write_private(&run_dir.join(TOKEN_FILE), &token)?;
    let url_path = run_dir.join(URL_FILE);
    std::fs::write(&url_path, format!("{url}\n")).map_err(|source| ActorError::Io {
        path: url_path,
        source,
    })?;
    let app = App {
        dashboard,
        token: token.clone(),
    };
    let router = Router::new()
        .route("/", get(page))
        .route("/page.js", get(|| async { js(PAGE_JS) }))
        .route("/viewer.js", get(|| async { js(VIEWER_JS) }))
        .route("/uPlot.min.js", get(|| async { js(UPLOT_JS) }))
        .route(
            "/uPlot.min.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css")], UPLOT_CSS) }),
        )
        .route("/api/status", get(status))
        .route("/api/steps", get(steps))
        .route("/api/trajectories", get(trajectories))
        .route("/api/events", get(events))
        .route("/metrics", get(metrics))
        .route("/api/scale", post(scale))
        .route("/api/kill", post(kill))
        .with_state(app);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "the dashboard server stopped");
        }
    });
    Ok(Served { url, token })
}

/// Writes `text` to a file only its owner can read.
fn write_private(path: &Path, text: &str) -> Result<(), ActorError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let io = |source| ActorError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = options.open(path).map_err(io)?;
    f.write_all(format!("{text}\n").as_bytes()).map_err(io)
}

fn js(body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript")], body)
}

/// Whether the request carries the token, in a bearer header or the query.
fn authorized(app: &App, headers: &HeaderMap, uri: &Uri) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let query = uri
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("token="));
    bearer
        .or(query)
        .is_some_and(|t| constant_time_eq(t.as_bytes(), app.token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "missing or wrong bearer token (see the run directory's dashboard.token)\n",
    )
        .into_response()
}

async fn page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE)
}

async fn status(State(app): State<App>, headers: HeaderMap, uri: Uri) -> Response {
    if !authorized(&app, &headers, &uri) {
        return unauthorized();
    }
    axum::Json(app.dashboard.status()).into_response()
}

async fn steps(State(app): State<App>, headers: HeaderMap, uri: Uri) -> Response {
    if !authorized(&app, &headers, &uri) {
        return unauthorized();
    }
    axum::Json(app.dashboard.steps()).into_response()
}

/// `POST /api/scale` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleRequest {
    samplers: u32,
    #[serde(default)]
    node: Option<String>,
}

/// `POST /api/kill` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KillRequest {
    node: String,
    actor: String,
}

fn refused(r: super::control::Refused) -> Response {
    let code = StatusCode::from_u16(r.0).unwrap_or(StatusCode::BAD_REQUEST);
    (code, format!("{}\n", r.1)).into_response()
}

/// Parses a JSON body, or refuses it (400) with serde's reason.
fn parse<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, super::control::Refused> {
    serde_json::from_str(body)
        .map_err(|e| super::control::Refused(400, format!("malformed request body: {e}")))
}

/// Scales samplers: `{"samplers": N, "node": "NAME"?}` → `{"nodes": [{"name", "samplers"}]}`.
async fn scale(State(app): State<App>, headers: HeaderMap, uri: Uri, body: String) -> Response {
    if !authorized(&app, &headers, &uri) {
        return unauthorized();
    }
    let req: ScaleRequest = match parse(&body) {
        Ok(r) => r,
        Err(r) => return refused(r),
    };
    let d = &app.dashboard;
    match super::control::scale(
        req.node.as_deref(),
        req.samplers,
        d.sampler_nodes(),
        d.node(),
    )
    .await
    {
        Ok(done) => {
            let line = done
                .iter()
                .map(|(n, c)| format!("{n}: {c}"))
                .collect::<Vec<_>>()
                .join(", ");
            app.dashboard.event(format!("scaled samplers ({line})"));
            let nodes: Vec<_> = done
                .into_iter()
                .map(|(name, samplers)| serde_json::json!({"name": name, "samplers": samplers}))
                .collect();
            axum::Json(serde_json::json!({ "nodes": nodes })).into_response()
        }
        Err(r) => refused(r),
    }
}

/// Kills an actor (fault drills): `{"node": "NAME", "actor": "NAME"}`.
async fn kill(State(app): State<App>, headers: HeaderMap, uri: Uri, body: String) -> Response {
    if !authorized(&app, &headers, &uri) {
        return unauthorized();
    }
    let req: KillRequest = match parse(&body) {
        Ok(r) => r,
        Err(r) => return refused(r),
    };
    match super::control::kill(&req.node, &req.actor).await {
        Ok(()) => {
            app.dashboard
                .event(format!("killed {} on {} (on request)", req.actor, req.node));
            axum::Json(serde_json::json!({"killed": req.actor, "node": req.node})).into_response()
        }
        Err(r) => refused(r),
    }
}

/// The trajectory viewer's recent trajectories, newest first (see
/// [`super::trajectories::render`] for their shape).
async fn trajectories(State(app): State<App>, headers: HeaderMap, uri: Uri) -> Response {
    if !authorized(&app, &headers, &uri) {
        return unauthorized();
    }
    axum::Json(app.dashboard.trajectories()).into_response()
}

async fn metrics(State(app): State<App>, headers: HeaderMap, uri: Uri) -> Response {
    if !authorized(&app, &headers, &uri) {
        return unauthorized();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.dashboard.prometheus(),
    )
        .into_response()
}

/// Server-sent events: a `status` event at once, then a `step` event (the step's
/// metrics and the status after it) per learner step.
async fn events(State(app): State<App>, headers: HeaderMap, uri: Uri) -> Response {
    if !authorized(&app, &headers, &uri) {
        return unauthorized();
    }
    let rx = app.dashboard.subscribe();
    let first = Event::default()
        .event("status")
        .data(app.dashboard.status().to_string());
    let stream = futures_util::stream::unfold((Some(first), rx), move |(first, mut rx)| {
        let app = app.clone();
        async move {
            if let Some(ev) = first {
                return Some((Ok::<_, Infallible>(ev), (None, rx)));
            }
            loop {
                let received = tokio::select! {
                    r = rx.recv() => r,
                    // Between steps (SFT, evaluations) the actor table still refreshes.
                    () = tokio::time::sleep(STATUS_EVERY) => {
                        let ev = Event::default().event("status").data(app.dashboard.status().to_string());
                        return Some((Ok(ev), (None, rx)));
                    }
                };
                match received {
                    Ok(v) => {
                        let ev = Event::default().event("step").data(v.to_string());
                        return Some((Ok(ev), (None, rx)));
                    }
                    // A slow client missed steps: the next one carries the full status.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
