//! gRPC over Unix domain sockets, the only transport the kubelet uses for its
//! plugin APIs.
//!
//! tonic speaks HTTP/2 over anything that reads and writes, so the server side
//! only needs a stream of accepted `UnixStream`s, and the client side a
//! connector that dials the socket path instead of resolving the URI.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::StreamExt;
use tonic::body::Body;
use tonic::codegen::{http, Body as HttpBody, Bytes, Service};
use tonic::service::Routes;
use tonic::transport::server::Router;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::Layer;

/// What can go wrong while binding, serving or dialing a socket; every
/// variant names the socket path, since a node has many of them.
#[derive(Debug, thiserror::Error)]
pub enum UdsError {
    /// Something that is not a socket sits where the socket should go; we
    /// refuse to delete it, as it is not ours.
    #[error("cannot bind {path}: it exists and is not a socket")]
    NotASocket { path: PathBuf },
    /// The path could not be inspected before binding.
    #[error("inspect socket path {path}: {source}")]
    Inspect { path: PathBuf, source: io::Error },
    /// A stale socket from an earlier run could not be removed.
    #[error("remove stale socket {path}: {source}")]
    RemoveStale { path: PathBuf, source: io::Error },
    /// `bind(2)` failed (missing directory, permissions, path too long, ...).
    #[error("bind unix socket {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    /// The gRPC server stopped with an error.
    #[error("serve grpc on unix socket {path}: {cause}")]
    Serve {
        path: PathBuf,
        cause: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// The socket could not be dialed or the HTTP/2 handshake failed.
    #[error("connect to unix socket {path}: {cause}")]
    Connect {
        path: PathBuf,
        cause: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// A listening Unix socket, bound before the server task starts so that a
/// caller can register with the kubelet as soon as `bind` returns.
#[derive(Debug)]
pub struct UdsListener {
    path: PathBuf,
    incoming: UnixListenerStream,
}

impl UdsListener {
    /// Binds `path`, first removing a stale socket left by an earlier run
    /// (sockets survive crashes and reboots under `/var/lib/kubelet`).
    /// Must be called inside a tokio runtime.
    pub fn bind(path: impl Into<PathBuf>) -> Result<Self, UdsError> {
        let path = path.into();
        remove_stale_socket(&path)?;
        let listener = UnixListener::bind(&path).map_err(|source| UdsError::Bind {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            incoming: UnixListenerStream::new(listener),
        })
    }

    /// The socket's path, as given to [`UdsListener::bind`].
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Removes `path` if it is a socket; leaves anything else alone and says so.
fn remove_stale_socket(path: &Path) -> Result<(), UdsError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(UdsError::Inspect {
                path: path.to_owned(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(UdsError::NotASocket {
            path: path.to_owned(),
        });
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        // Someone else removed it in the meantime: the goal is reached.
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(UdsError::RemoveStale {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets
/// in-flight calls finish. Every connection goes through
/// [`super::authority::relay`], so clients that send the socket path as
/// `:authority` (kubelets before 1.26, Python's grpc) are served too. The socket file is left in place: only the
/// caller knows whether the path might already belong to a newer server.
///
/// Generic over the router's layer so callers can add tower middleware
/// (tracing, or recording requests in tests).
pub async fn serve<L, ResBody>(
    router: Router<L>,
    listener: UdsListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), UdsError>
where
    L: Layer<Routes>,
    L::Service:
        Service<http::Request<Body>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    <L::Service as Service<http::Request<Body>>>::Future: Send,
    <L::Service as Service<http::Request<Body>>>::Error: Into<BoxError> + Send,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let UdsListener { path, incoming } = listener;
    let incoming = incoming.map(|accepted| accepted.map(super::authority::relay));
    router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|source| UdsError::Serve {
            cause: error_chain(&source),
            path,
            source,
        })
}

/// Opens a gRPC channel to the server listening on `path`.
///
/// The channel redials the same path if the connection drops, which is what
/// we want after a kubelet restart recreates its socket.
pub async fn connect(path: impl Into<PathBuf>) -> Result<Channel, UdsError> {
    let path = path.into();
    // tonic insists on a URI, but the connector below never looks at it.
    // `localhost` is also the :authority grpc-go sends for unix targets.
    let endpoint = Endpoint::from_static("http://localhost");
    let dial_path = path.clone();
    let connector = tower::service_fn(move |_: Uri| {
        let dial_path = dial_path.clone();
        async move { UnixStream::connect(dial_path).await.map(TokioIo::new) }
    });
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|source| UdsError::Connect {
            cause: error_chain(&source),
            path,
            source,
        })
}

/// The error type tonic and tower use for boxed service errors.
type BoxError = Box<dyn StdError + Send + Sync>;

/// Renders an error and all its sources on one line. tonic's transport error
/// says only "transport error"; the useful part (e.g. "No such file or
/// directory") is further down the chain.
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}
