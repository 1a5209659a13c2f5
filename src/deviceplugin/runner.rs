//! One pool's life: bind its socket, serve it, get registered, and start
//! over whenever the kubelet restarts or our socket disappears. Failures
//! are retried with backoff and logged; nothing here ends the process.

use super::allocate::CdiMode;
use super::dirwatch::DirEvent;
use super::register::{register, Backoff};
use super::served::ServedPool;
use super::service::{DeviceOwners, PoolService, WatcherRegistration, WatcherVerdict};
use crate::kubelet_api::deviceplugin::v1beta1::device_plugin_server::DevicePluginServer;
use crate::kubelet_api::pluginregistration::registration_server::RegistrationServer;
use crate::kubelet_api::uds::{self, UdsListener};
use crate::kubelet_api::KUBELET_SOCKET_NAME;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// How the kubelet learns about our sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// Sockets in the device-plugins dir, announced with `Register` on its `kubelet.sock`.
    KubeletSocket { dir: PathBuf },
    /// Sockets in the plugin watcher's `plugins_registry` dir; the kubelet finds them.
    PluginsRegistry { dir: PathBuf },
}

impl Registration {
    pub fn dir(&self) -> &Path {
        match self {
            Registration::KubeletSocket { dir } | Registration::PluginsRegistry { dir } => dir,
        }
    }
}

/// Everything a runner needs; `stop` flips to true at shutdown or when the
/// pool leaves the config.
pub struct Runner {
    pub registration: Registration,
    pub pool: Arc<watch::Sender<Arc<ServedPool>>>,
    pub cdi: CdiMode,
    pub owners: DeviceOwners,
    /// Where Allocate writes the device-info files of what it hands out.
    pub devinfo_dir: Arc<PathBuf>,
    pub events: broadcast::Receiver<DirEvent>,
    pub stop: watch::Receiver<bool>,
    /// True while the kubelet has us registered (for health reporting).
    pub registered: Arc<AtomicBool>,
    /// Counts each registration (the `sriov_dp_registrations` metric).
    pub registrations: prometheus_client::metrics::counter::Counter,
}

enum Outcome {
    Stop,
    Restart,
    RestartAfter(Duration),
}

/// Pause before rebinding after the gRPC server died on its own.
const SERVER_RESTART_DELAY: Duration = Duration::from_millis(500);

/// Grace for in-flight calls when a server instance stops.
const SERVER_STOP_GRACE: Duration = Duration::from_secs(2);

/// The socket one server instance listens on, as bound: whoever deletes or
/// replaces the file, `still_ours` says so.
struct BoundSocket<'a> {
    path: &'a Path,
    name: &'a str,
    inode: Option<u64>,
}

impl BoundSocket<'_> {
    fn still_ours(&self) -> bool {
        self.inode.is_some() && inode(self.path) == self.inode
    }

    /// Remove the socket unless someone else's replaced it.
    fn remove_if_ours(&self, resource: &str) {
        if self.still_ours() {
            if let Err(error) = std::fs::remove_file(self.path) {
                tracing::warn!(pool = %resource, %error, "cannot remove our socket");
            }
        }
    }
}

/// A file's identity: inode numbers are reused quickly, so the change time
/// goes with it.
type FileIdentity = (u64, i64, i64);

fn file_identity(path: &Path) -> Option<FileIdentity> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.ino(), m.ctime(), m.ctime_nsec()))
}

fn inode(path: &Path) -> Option<u64> {
    std::fs::symlink_metadata(path).ok().map(|m| m.ino())
}

impl Runner {
    pub async fn run(mut self) {
        let (resource, socket_name) = {
            let pool = self.pool.borrow();
            (pool.resource_name.clone(), pool.socket_name())
        };
        let socket_path = self.registration.dir().join(&socket_name);
        let mut backoff = Backoff::default();
        loop {
            if *self.stop.borrow() {
                break;
            }
            let listener = match UdsListener::bind(&socket_path) {
                Ok(listener) => listener,
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(pool = %resource, %error, retry_in = ?delay, "cannot listen on the pool's socket");
                    if self.sleep_or_stop(delay).await {
                        break;
                    }
                    continue;
                }
            };
            let bound = BoundSocket {
                path: &socket_path,
                name: &socket_name,
                inode: inode(&socket_path),
            };
            let (stopping_tx, stopping_rx) = watch::channel(false);
            let (verdict_tx, verdict_rx) = mpsc::unbounded_channel();
            let (done_tx, mut server_done) = watch::channel(false);
            let server = self.spawn_server(
                listener,
                &resource,
                &socket_path,
                stopping_rx,
                verdict_tx,
                done_tx,
            );
            tracing::info!(pool = %resource, socket = %socket_path.display(), "serving");
            let outcome = match &self.registration {
                Registration::KubeletSocket { dir } => {
                    let kubelet = dir.join(KUBELET_SOCKET_NAME);
                    let session = self.kubelet_session(&kubelet, &bound, &resource, &mut backoff);
                    until_server_dies(session, &mut server_done, &resource).await
                }
                Registration::PluginsRegistry { .. } => {
                    let session = self.watcher_session(verdict_rx, &bound, &resource, &mut backoff);
                    until_server_dies(session, &mut server_done, &resource).await
                }
            };
            self.registered.store(false, Ordering::Relaxed);
            let _ = stopping_tx.send(true);
            stop_server(server, &resource).await;
            match outcome {
                Outcome::Stop => {
                    bound.remove_if_ours(&resource);
                    break;
                }
                Outcome::Restart => {}
                Outcome::RestartAfter(delay) => {
                    // Gone during the pause: nobody dials a dead socket, a
                    // shutdown meanwhile leaves nothing behind, and the
                    // plugin watcher sees the socket come back.
                    bound.remove_if_ours(&resource);
                    if self.sleep_or_stop(delay).await {
                        break;
                    }
                }
            }
        }
        tracing::info!(pool = %resource, "stopped serving");
    }

    fn spawn_server(
        &self,
        listener: UdsListener,
        resource: &str,
        socket_path: &Path,
        stopping: watch::Receiver<bool>,
        verdicts: mpsc::UnboundedSender<WatcherVerdict>,
        done: watch::Sender<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let service = PoolService {
            pool: self.pool.clone(),
            cdi: self.cdi,
            owners: self.owners.clone(),
            devinfo_dir: self.devinfo_dir.clone(),
            stopping: stopping.clone(),
        };
        let watcher =
            matches!(self.registration, Registration::PluginsRegistry { .. }).then(|| {
                WatcherRegistration {
                    resource_name: resource.to_owned(),
                    endpoint: socket_path.display().to_string(),
                    verdicts,
                }
            });
        let router = tonic::transport::Server::builder()
            .add_service(DevicePluginServer::new(service))
            .add_optional_service(watcher.map(RegistrationServer::new));
        let resource = resource.to_owned();
        let mut stopping = stopping;
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopping.wait_for(|s| *s).await;
            };
            if let Err(error) = uds::serve(router, listener, shutdown).await {
                tracing::error!(pool = %resource, %error, "gRPC server failed");
            }
            let _ = done.send(true);
        })
    }

    /// Sleeps for `delay`; true if told to stop meanwhile.
    async fn sleep_or_stop(&mut self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            _ = self.stop.wait_for(|s| *s) => true,
        }
    }

    /// Device-plugins mode: register, and register again whenever
    /// `kubelet.sock` is recreated; restart when our socket is gone.
    async fn kubelet_session(
        &mut self,
        kubelet: &Path,
        socket: &BoundSocket<'_>,
        resource: &str,
        backoff: &mut Backoff,
    ) -> Outcome {
        let ours = || socket.still_ours();
        // The kubelet.sock we registered with: a Created event or a resync
        // for the same file (our own start-up resync, say) needs no second
        // Register, which would make the kubelet reopen our stream.
        let mut registered_with: Option<FileIdentity> = None;
        loop {
            let kubelet_identity = file_identity(kubelet);
            let attempt = tokio::select! {
                attempt = register(kubelet, socket.name, resource) => attempt,
                _ = self.stop.wait_for(|s| *s) => return Outcome::Stop,
            };
            let wait = match attempt {
                Ok(()) => {
                    registered_with = kubelet_identity;
                    tracing::info!(pool = %resource, kubelet = %kubelet.display(), "registered with the kubelet");
                    self.registered.store(true, Ordering::Relaxed);
                    self.registrations.inc();
                    backoff.reset();
                    None
                }
                Err(error) => {
                    self.registered.store(false, Ordering::Relaxed);
                    let delay = backoff.next_delay();
                    tracing::warn!(pool = %resource, %error, retry_in = ?delay, "registration failed");
                    Some(tokio::time::sleep(delay))
                }
            };
            let mut wait = wait.map(Box::pin);
            // Wait for a reason to register again (or to stop).
            loop {
                let timer = async {
                    match wait.as_mut() {
                        Some(sleep) => sleep.await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = self.stop.wait_for(|s| *s) => return Outcome::Stop,
                    _ = timer => break,
                    event = self.events.recv() => match event {
                        Ok(DirEvent::Created(name)) if name == KUBELET_SOCKET_NAME => {
                            if wait.is_some() || file_identity(kubelet) != registered_with {
                                tracing::info!(pool = %resource, "kubelet.sock (re)created: registering");
                                break;
                            }
                        }
                        Ok(DirEvent::Removed(name)) if name == socket.name && !ours() => {
                            tracing::warn!(pool = %resource, "our socket was removed (kubelet restart?): serving again");
                            return Outcome::Restart;
                        }
                        Ok(DirEvent::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                            if !ours() {
                                return Outcome::Restart;
                            }
                            if wait.is_none() && file_identity(kubelet) != registered_with {
                                break;
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => return Outcome::Stop,
                        Ok(_) => {}
                    },
                }
            }
        }
    }

    /// Plugin-watcher mode: the kubelet finds our socket; we react to its
    /// verdict and to our socket disappearing.
    async fn watcher_session(
        &mut self,
        mut verdicts: mpsc::UnboundedReceiver<WatcherVerdict>,
        socket: &BoundSocket<'_>,
        resource: &str,
        backoff: &mut Backoff,
    ) -> Outcome {
        let ours = || socket.still_ours();
        loop {
            tokio::select! {
                _ = self.stop.wait_for(|s| *s) => return Outcome::Stop,
                verdict = verdicts.recv() => match verdict {
                    Some(v) if v.registered => {
                        tracing::info!(pool = %resource, "registered by the kubelet plugin watcher");
                        self.registered.store(true, Ordering::Relaxed);
                        self.registrations.inc();
                        backoff.reset();
                    }
                    Some(v) => {
                        // The kubelet will not retry on its own until the
                        // socket is recreated, so recreate it after a pause.
                        let delay = backoff.next_delay();
                        tracing::error!(pool = %resource, error = %v.error, retry_in = ?delay, "kubelet rejected the plugin; recreating the socket");
                        return Outcome::RestartAfter(delay);
                    }
                    // the server is gone: rebind after a pause
                    None => return Outcome::RestartAfter(SERVER_RESTART_DELAY),
                },
                event = self.events.recv() => match event {
                    Ok(DirEvent::Removed(name)) if name == socket.name && !ours() => {
                        tracing::warn!(pool = %resource, "our socket was removed: serving again");
                        return Outcome::Restart;
                    }
                    Ok(DirEvent::Resync) | Err(broadcast::error::RecvError::Lagged(_)) if !ours() => {
                        return Outcome::Restart;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Outcome::Stop,
                    _ => {}
                },
            }
        }
    }
}

/// Runs a registration session, cut short if the gRPC server stops on its
/// own (then the socket is rebound after a backoff delay).
async fn until_server_dies(
    session: impl std::future::Future<Output = Outcome>,
    server_done: &mut watch::Receiver<bool>,
    resource: &str,
) -> Outcome {
    tokio::select! {
        outcome = session => outcome,
        _ = server_done.wait_for(|d| *d) => {
            let delay = SERVER_RESTART_DELAY;
            tracing::error!(pool = %resource, retry_in = ?delay, "gRPC server stopped unexpectedly; restarting it");
            Outcome::RestartAfter(delay)
        }
    }
}

async fn stop_server(mut server: tokio::task::JoinHandle<()>, resource: &str) {
    if tokio::time::timeout(SERVER_STOP_GRACE, &mut server)
        .await
        .is_err()
    {
        tracing::warn!(pool = %resource, "server did not stop within {SERVER_STOP_GRACE:?}; aborting it");
        server.abort();
    }
}
