//! The daemon's HTTP listener: liveness and readiness for the kubelet's
//! probes, and `GET /metrics` (see [`super::metrics`]):
//! - `GET /healthz`: 200 while the daemon's event loop answers (the same
//!   single-threaded runtime serves the pools, so a wedged daemon cannot
//!   answer either);
//! - `GET /readyz`: 503 until start-up is over, then 200 when every
//!   served pool is registered with the kubelet (a node with no pool is
//!   ready: it has nothing to register)
//!   and the config file on disk was accepted, else 503 saying why: the
//!   pools that are not registered, or the error that refused the config
//!   (the pools then keep serving the config before it). With DRA pools,
//!   also the DRA driver's registration and its ResourceSlices published
//!   (503 while the API server refuses them or cannot be reached). With a node
//!   policy, also not before it was applied, nor while a step of it failed
//!   or the file is refused; steps refused to protect pods are listed in a
//!   ready answer (see `provisioning`);
//! - `GET /metrics`: Prometheus text format 0.0.4.

use super::metrics::{self, Metrics};
use super::provisioning::{Readiness, SharedProvisioning};
use crate::dra::publisher::PublishState;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::codegen::Bytes;

/// Each served pool's "registered with the kubelet" flag, by resource name.
pub type Registrations = Arc<Mutex<BTreeMap<String, Arc<AtomicBool>>>>;

/// Why the config on disk is not the one served (None: it is).
pub type ConfigRefusal = Arc<Mutex<Option<String>>>;

/// The DRA side's publishing passes, once it runs (None: no DRA side).
pub type DraPublishing = Arc<Mutex<Option<watch::Receiver<PublishState>>>>;

/// What the probes report on, shared with the daemon.
#[derive(Debug, Clone, Default)]
pub struct ProbeState {
    /// Start-up is over: every pool it found has a runner (before that, an
    /// empty `registrations` would read as "nothing to wait for").
    pub started: Arc<AtomicBool>,
    /// The device plugin pools by resource name, and the DRA driver (as
    /// `DRA driver <name>`) once the DRA side runs.
    pub registrations: Registrations,
    pub config_refused: ConfigRefusal,
    pub provisioning: SharedProvisioning,
    pub dra_publishing: DraPublishing,
}

/// Readiness of the DRA side's ResourceSlices: Err(why not), or Ok(a note
/// for the ready answer); Ok(None) without a DRA side.
fn dra_slices(state: &ProbeState) -> Result<Option<String>, String> {
    let Ok(publishing) = state.dra_publishing.lock() else {
        return Err("(state unavailable)".into());
    };
    let Some(states) = publishing.as_ref() else {
        return Ok(None);
    };
    let now = states.borrow().clone();
    match now {
        PublishState::Pending => Err("DRA ResourceSlices not published yet".into()),
        PublishState::Failed(error) => Err(format!(
            "DRA ResourceSlices not published (retrying): {error}"
        )),
        PublishState::Published { slices } => {
            Ok(Some(format!("DRA ResourceSlices published: {slices}")))
        }
    }
}

/// The answer to one probe request: status and body.
pub fn answer(method: &Method, path: &str, state: &ProbeState) -> (StatusCode, String) {
    let registrations = &state.registrations;
    if method != Method::GET {
        return (StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match path {
        "/healthz" => (StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            let pending: Vec<String> = registrations
                .lock()
                .map(|pools| {
                    pools
                        .iter()
                        .filter(|(_, registered)| !registered.load(Ordering::Relaxed))
                        .map(|(name, _)| name.clone())
                        .collect()
                })
                .unwrap_or_else(|_| vec!["(state unavailable)".into()]);
            let refused = state
                .config_refused
                .lock()
                .map(|r| r.clone())
                .unwrap_or_else(|_| Some("(state unavailable)".into()));
            let provisioning = state
                .provisioning
                .lock()
                .map(|p| p.readiness())
                .unwrap_or_else(|_| Readiness::NotReady("(state unavailable)".into()));
            if let Some(error) = refused {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("config refused, still serving the previous one: {error}\n"),
                )
            } else if let Readiness::NotReady(why) = provisioning {
                (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"))
            } else if !state.started.load(Ordering::Relaxed) {
                (StatusCode::SERVICE_UNAVAILABLE, "starting\n".into())
            } else if !pending.is_empty() {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not registered with the kubelet: {}\n", pending.join(", ")),
                )
            } else {
                match dra_slices(state) {
                    Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
                    Ok(dra_note) => {
                        let mut body = String::from("ready\n");
                        let notes = match provisioning {
                            Readiness::Ready(notes) => notes,
                            Readiness::NotReady(_) => Vec::new(),
                        };
                        for note in notes.into_iter().chain(dra_note) {
                            body.push_str(&note);
                            body.push('\n');
                        }
                        (StatusCode::OK, body)
                    }
                }
            }
        }
        _ => (
            StatusCode::NOT_FOUND,
            "try /healthz, /readyz or /metrics\n".into(),
        ),
    }
}

/// `GET /metrics`: the scrape's text, or 500 saying why not.
async fn scrape(metrics: &Metrics) -> (StatusCode, &'static str, String) {
    match metrics.scrape().await {
        Ok(text) => (StatusCode::OK, metrics::CONTENT_TYPE, text),
        Err(error) => {
            tracing::warn!(%error, "scrape failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("{error}\n"),
            )
        }
    }
}

/// Bind `addr` (before returning, so a bad address fails start-up) and
/// serve the probes and the metrics until the task is aborted.
pub async fn serve(
    addr: SocketAddr,
    state: ProbeState,
    metrics: Metrics,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "HTTP endpoint listening (/healthz, /readyz, /metrics)");
    Ok(tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "health endpoint: accept failed");
                    continue;
                }
            };
            let state = state.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let (state, metrics) = (state.clone(), metrics.clone());
                    async move {
                        let (method, path) = (request.method(), request.uri().path());
                        let (status, content_type, body) =
                            if method == Method::GET && path == "/metrics" {
                                scrape(&metrics).await
                            } else {
                                let (status, body) = answer(method, path, &state);
                                (status, "text/plain", body)
                            };
                        Response::builder()
                            .status(status)
                            .header("content-type", content_type)
                            .body(Full::new(Bytes::from(body)))
                    }
                });
                if let Err(error) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%error, "health endpoint: connection ended with an error");
                }
            });
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_every_pools_registration() {
        let state = ProbeState::default();
        let registrations = &state.registrations;
        let get = |path: &str| answer(&Method::GET, path, &state);
        assert_eq!(
            get("/readyz"),
            (StatusCode::SERVICE_UNAVAILABLE, "starting\n".into()),
            "no pool yet, but start-up is not over"
        );
        state.started.store(true, Ordering::Relaxed);
        assert_eq!(
            get("/readyz").0,
            StatusCode::OK,
            "no pool: nothing to wait for"
        );
        let flag = Arc::new(AtomicBool::new(false));
        if let Ok(mut pools) = registrations.lock() {
            pools.insert("intel.com/a".into(), flag.clone());
            pools.insert("intel.com/b".into(), Arc::new(AtomicBool::new(true)));
        }
        assert_eq!(
            get("/readyz"),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not registered with the kubelet: intel.com/a\n".into()
            )
        );
        flag.store(true, Ordering::Relaxed);
        assert_eq!(get("/readyz").0, StatusCode::OK);
        assert_eq!(get("/healthz"), (StatusCode::OK, "ok\n".into()));
        // /metrics is the listener's (see `serve`), not a probe
        assert_eq!(get("/metrics").0, StatusCode::NOT_FOUND);
        assert_eq!(
            answer(&Method::POST, "/healthz", &state).0,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn readiness_waits_for_the_node_policy_and_lists_steps_refused_for_pods() {
        let state = ProbeState::default();
        if let Ok(mut provisioning) = state.provisioning.lock() {
            provisioning.enabled = true;
        }
        let (status, body) = answer(&Method::GET, "/readyz", &state);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body, "node policy not applied yet\n");
        state.started.store(true, Ordering::Relaxed);
        if let Ok(mut provisioning) = state.provisioning.lock() {
            provisioning.applied = true;
            provisioning.refused = vec!["PF ens1f0 (0000:3b:00.0): numVfs 6 -> 0 -> 8".into()];
        }
        let (status, body) = answer(&Method::GET, "/readyz", &state);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            "ready\nnode policy step refused (a pod holds the VF): PF ens1f0 (0000:3b:00.0): numVfs 6 -> 0 -> 8\n"
        );
    }

    #[test]
    fn with_dra_readiness_waits_for_the_driver_and_its_slices() {
        let state = ProbeState::default();
        state.started.store(true, Ordering::Relaxed);
        let registered = Arc::new(AtomicBool::new(false));
        if let Ok(mut flags) = state.registrations.lock() {
            flags.insert("DRA driver sriov-rs.invalid".into(), registered.clone());
        }
        let (publish, states) = watch::channel(PublishState::Pending);
        if let Ok(mut publishing) = state.dra_publishing.lock() {
            *publishing = Some(states);
        }
        let get = || answer(&Method::GET, "/readyz", &state);
        assert_eq!(
            get(),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not registered with the kubelet: DRA driver sriov-rs.invalid\n".into()
            )
        );
        registered.store(true, Ordering::Relaxed);
        assert_eq!(
            get(),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "DRA ResourceSlices not published yet\n".into()
            )
        );
        publish.send_replace(PublishState::Failed("resourceslices is forbidden".into()));
        assert_eq!(
            get(),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "DRA ResourceSlices not published (retrying): resourceslices is forbidden\n".into()
            )
        );
        publish.send_replace(PublishState::Published { slices: 3 });
        assert_eq!(
            get(),
            (
                StatusCode::OK,
                "ready\nDRA ResourceSlices published: 3\n".into()
            )
        );
    }

    #[test]
    fn a_refused_config_makes_readiness_say_why() {
        let state = ProbeState::default();
        if let Ok(mut refused) = state.config_refused.lock() {
            *refused = Some("resource \"a\": selectors.vendors: bad".into());
        }
        let (status, body) = answer(&Method::GET, "/readyz", &state);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("config refused") && body.contains("selectors.vendors"),
            "{body}"
        );
        assert_eq!(answer(&Method::GET, "/healthz", &state).0, StatusCode::OK);
    }
}
