//! The in-process [`ApiServerStandin`] served over plain HTTP on loopback,
//! with the API server's REST paths, so the real `kube` client (and
//! `sriovctl apiserver-sim` for the demo and end-to-end tests) can talk to
//! it:
//!
//! - discovery: `/api`, `/apis`, `/apis/resource.k8s.io`,
//!   `/apis/resource.k8s.io/{v1,v1beta1}`, offering the versions it is told
//!   to (1.34+ offers both, 1.32/1.33 only `v1beta1`), changeable while it
//!   runs (an upgrade or downgrade under the client);
//! - `GET /api/v1/nodes/{name}`;
//! - ResourceSlices: list (`fieldSelector`, `labelSelector`), create, get,
//!   replace, delete, deletecollection; ResourceClaims: namespaced get.
//!   Objects are stored as `v1`; v1beta1 requests are converted both ways.
//!
//! The answers are [`super::rest`]'s. No TLS and no authentication:
//! loopback only.

use super::rest::{Reply, Routes};
use super::store::ApiServerStandin;
use crate::dra::kube_api::ResourceApiVersion;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The stand-in API server on a loopback address. Dropping it takes it
/// down.
pub struct HttpStandin {
    routes: Arc<Routes>,
    server: Option<JoinHandle<()>>,
}

/// Why the HTTP stand-in could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpStandinError {
    #[error("the stand-in API server serves plain HTTP without authentication, so only on a loopback address, not {0}")]
    NotLoopback(SocketAddr),
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("write the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

async fn answer(
    routes: Arc<Routes>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::http::Error> {
    let (parts, body) = request.into_parts();
    let reply = match body.collect().await {
        Ok(collected) => routes.answer(
            &parts.method,
            parts.uri.path(),
            parts.uri.query().unwrap_or_default(),
            &collected.to_bytes(),
        ),
        Err(error) => Reply::bad_request(format!("reading the request body: {error}")),
    };
    tracing::debug!(method = %parts.method, uri = %parts.uri, status = %reply.status, "apiserver-sim");
    Response::builder()
        .status(reply.status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(reply.body.to_string())))
}

fn serve(listener: TcpListener, routes: Arc<Routes>) -> JoinHandle<()> {
    tokio::spawn(async move {
        // dropped with this task when the server is taken down, which
        // ends every open connection too
        let mut connections = JoinSet::new();
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "apiserver-sim: accept failed");
                    continue;
                }
            };
            let routes = routes.clone();
            connections.spawn(async move {
                let service = service_fn(move |request| answer(routes.clone(), request));
                if let Err(error) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%error, "apiserver-sim: connection ended with an error");
                }
            });
            // reap finished connections as we go
            while connections.try_join_next().is_some() {}
        }
    })
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpStandinError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpStandinError::Listen { addr, source })
}

impl HttpStandin {
    /// Listen on `listen` (a loopback address; port 0 picks one) and serve
    /// `api`, offering `versions` of `resource.k8s.io`.
    pub async fn start(
        api: ApiServerStandin,
        listen: SocketAddr,
        versions: &[ResourceApiVersion],
    ) -> Result<Self, HttpStandinError> {
        if !listen.ip().is_loopback() {
            return Err(HttpStandinError::NotLoopback(listen));
        }
        let listener = bind(listen).await?;
        let addr = listener
            .local_addr()
            .map_err(|source| HttpStandinError::Listen {
                addr: listen,
                source,
            })?;
        let routes = Arc::new(Routes {
            api,
            versions: Mutex::new(versions.to_vec()),
            addr,
        });
        let server = Some(serve(listener, routes.clone()));
        Ok(HttpStandin { routes, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.routes.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.routes.addr)
    }

    /// The objects it serves (shared with every clone).
    pub fn api(&self) -> &ApiServerStandin {
        &self.routes.api
    }

    /// Offer other versions from now on (an upgrade or downgrade).
    pub fn set_versions(&self, versions: &[ResourceApiVersion]) {
        if let Ok(mut offered) = self.routes.versions.lock() {
            *offered = versions.to_vec();
        }
    }

    pub fn is_up(&self) -> bool {
        self.server.is_some()
    }

    /// Down: the port closed and every connection cut, so clients get
    /// "connection refused". Returns once nothing listens any more.
    pub async fn take_down(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Up again on the same address.
    pub async fn bring_up(&mut self) -> Result<(), HttpStandinError> {
        if self.server.is_none() {
            let listener = bind(self.routes.addr).await?;
            self.server = Some(serve(listener, self.routes.clone()));
        }
        Ok(())
    }

    /// A kubeconfig that points at this server: one cluster with a plain
    /// `http://` URL, a user with no credentials (the stand-in checks
    /// none). JSON, which every kubeconfig reader takes as YAML.
    pub fn kubeconfig(&self) -> Value {
        let name = "sriov-apiserver-sim";
        json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": self.url()}}],
            "users": [{"name": name, "user": {}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        })
    }

    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), HttpStandinError> {
        let text = format!("{:#}\n", self.kubeconfig());
        crate::atomic_file::write(path, text.as_bytes(), 0o600).map_err(|source| {
            HttpStandinError::Kubeconfig {
                path: path.to_owned(),
                source,
            }
        })
    }
}

impl Drop for HttpStandin {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
