//! `edge-fleet hub serve`: the hub as a service. Stateless apart from PostgreSQL ([`crate::db`]),
//! so several instances can run behind one address.
//!
//! - `GET /channels/<store>.json` — the store's signed channel manifest (from the database);
//! - `GET /bundles/<id>/…` — release bundles, from a directory (what any static server or object
//!   store could serve instead: a bundle verifies by its id, wherever it comes from);
//! - `GET /images/<manifest-sha256>/…` — signed node images, streamed from a directory, fetched
//!   once per store by its agent ([`crate::images`]);
//! - `POST /v1/reports` — a store's signed report; accepted only if the store's registered key
//!   signed it and it is not older than the store's last one;
//! - `POST /v1/evidence` — a store's nightly evidence record, signed by the store (DSSE,
//!   [`crate::evidence::sign_record`]); kept per store and day for `edge-fleet audit write
//!   --database`;
//! - `GET /v1/status` — the current rollout: per partition the gate's inputs and verdict, and the
//!   decisions that led there;
//! - `GET /status` — the same as a page for people ([`crate::status_page`]);
//! - `GET /metrics` — the fleet in the Prometheus exposition format ([`crate::metrics`]).
//!
//! A ticker steps the current rollout every `step_every` (and a report wakes it early), in a
//! transaction under an advisory lock: instances take turns, none publishes twice.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use edge_images::dsse::Envelope;
use edge_images::keys::SecretKey;
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::agent::SignedReport;
use crate::db::{Db, DbError, Upload};

pub struct Config {
    pub listen: SocketAddr,
    pub database: String,
    pub bundles: PathBuf,
    pub images: Option<PathBuf>,
    pub keys: Vec<SecretKey>,
    pub manifest_lifetime: time::Duration,
    pub step_every: Duration,
    /// `GET /metrics`: the release catalogue and the stores' poll interval.
    pub metrics: crate::metrics::HubOptions,
}

struct App {
    db: Db,
    bundles: PathBuf,
    images: Option<PathBuf>,
    wake: Notify,
    metrics: crate::metrics::HubLive,
}

/// Serves until the process is stopped. `ready` gets the bound address (port 0 picks one).
pub async fn serve(cfg: Config, ready: impl FnOnce(SocketAddr)) -> Result<(), DbError> {
    let db = Db::connect(&cfg.database).await?;
    db.migrate().await?;
    let live = crate::metrics::HubLive::new(cfg.metrics);
    let app = Arc::new(App { db, bundles: cfg.bundles, images: cfg.images, wake: Notify::new(), metrics: live });
    let stepper = Db::connect(&cfg.database).await?;
    tokio::spawn(step_loop(stepper, app.clone(), cfg.keys, cfg.manifest_lifetime, cfg.step_every));
    let router = Router::new()
        .route("/channels/{file}", get(channel))
        .route("/bundles/{*path}", get(bundle))
        .route("/images/{*path}", get(image))
        .route("/v1/reports", post(report))
        .route("/v1/evidence", post(evidence))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .route("/status", get(|State(app): State<Arc<App>>| async move { crate::status_page::respond(&app.db).await }))
        // A report is a few KiB; nothing larger has any business here.
        .layer(DefaultBodyLimit::max(256 * 1024))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| DbError::Invalid(format!("listen on {}: {e}", cfg.listen)))?;
    let addr = listener.local_addr().map_err(|e| DbError::Invalid(e.to_string()))?;
    tracing::info!(%addr, "hub serving");
    ready(addr);
    axum::serve(listener, router).await.map_err(|e| DbError::Invalid(format!("serve: {e}")))
}

async fn step_loop(mut db: Db, app: Arc<App>, keys: Vec<SecretKey>, lifetime: time::Duration, every: Duration) {
    loop {
        match db.step(&keys, lifetime, OffsetDateTime::now_utc()).await {
            Ok(step) => {
                for p in &step.published {
                    tracing::info!(store = %p.store, version = p.version, release = %p.release, "published");
                }
            }
            Err(DbError::NoRollout) => tracing::debug!("no rollout started"),
            Err(e) => tracing::error!(error = %e, "step failed"),
        }
        // The next tick, or earlier when a report arrives: a wave opens as soon as its gate is met.
        let _ = tokio::time::timeout(every, app.wake.notified()).await;
    }
}

async fn channel(State(app): State<Arc<App>>, UrlPath(file): UrlPath<String>) -> Response {
    let Some(store) = file.strip_suffix(".json") else { return StatusCode::NOT_FOUND.into_response() };
    match app.db.manifest(store).await {
        Ok(Some(m)) => {
            app.metrics.polled(store);
            ([(header::CONTENT_TYPE, "application/json")], m).into_response()
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => internal(e),
    }
}

async fn bundle(State(app): State<Arc<App>>, UrlPath(path): UrlPath<String>) -> Response {
    file(&app.bundles, &path).await
}

async fn image(State(app): State<Arc<App>>, UrlPath(path): UrlPath<String>) -> Response {
    match &app.images {
        Some(dir) => file(dir, &path).await,
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `root/path`, streamed: an image is 1–2 GB and is never read whole.
async fn file(root: &Path, path: &str) -> Response {
    // Plain relative components only (no `..`, no absolute path): what a bundle may name.
    let Ok(p) = crate::release::safe_relative(path).map(|p| root.join(p)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(f) = tokio::fs::File::open(&p).await else { return StatusCode::NOT_FOUND.into_response() };
    let len = match f.metadata().await {
        Ok(m) if m.is_file() => m.len(),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::with_capacity(f, 1 << 20));
    ([(header::CONTENT_LENGTH, len.to_string())], body).into_response()
}

async fn report(State(app): State<Arc<App>>, Json(signed): Json<SignedReport>) -> Response {
    match app.db.upload(&signed).await {
        Ok(Upload::Accepted) => {
            app.metrics.report(true);
            app.wake.notify_one();
            StatusCode::ACCEPTED.into_response()
        }
        Ok(Upload::Refused(why)) => {
            app.metrics.report(false);
            tracing::warn!(%why, "report refused");
            (StatusCode::FORBIDDEN, why).into_response()
        }
        Err(e) => internal(e),
    }
}

/// A store's nightly evidence record, signed by the store (DSSE): kept for the day's audit file.
async fn evidence(State(app): State<Arc<App>>, Json(env): Json<Envelope>) -> Response {
    match app.db.upload_evidence(&env).await {
        Ok(Upload::Accepted) => {
            app.metrics.evidence(true);
            StatusCode::ACCEPTED.into_response()
        }
        Ok(Upload::Refused(why)) => {
            app.metrics.evidence(false);
            tracing::warn!(%why, "evidence refused");
            (StatusCode::FORBIDDEN, why).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn status(State(app): State<Arc<App>>) -> Response {
    let current = match app.db.current().await {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    match app.db.history(50).await {
        Ok(h) => {
            let history: Vec<_> = h
                .iter()
                .map(|(at, release, d)| {
                    serde_json::json!({"at": at.unix_timestamp(), "release": release, "actions": d.actions, "status": d.status})
                })
                .collect();
            let (release, status) = current.unzip();
            Json(serde_json::json!({"release": release, "status": status, "history": history})).into_response()
        }
        Err(e) => internal(e),
    }
}

/// The fleet's facts from the database and this instance's own, in the exposition format.
async fn metrics(State(app): State<Arc<App>>) -> Response {
    match app.db.fleet_view().await {
        Ok(view) => {
            let body = app.metrics.render(&view, OffsetDateTime::now_utc());
            ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
        }
        Err(e) => internal(e),
    }
}

fn internal(e: DbError) -> Response {
    tracing::error!(error = %e, "request failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}
