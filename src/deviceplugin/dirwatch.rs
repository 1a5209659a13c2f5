//! Watches a directory with inotify and tells its listeners what appeared,
//! vanished or was written there: in the kubelet's directory, `kubelet.sock`
//! recreated (the kubelet restarted) or our own socket deleted (the kubelet
//! wiped the directory); in the config file's directory, an edit or a
//! ConfigMap's `..data` swap (see `configwatch`). Event driven: nothing polls.

use inotify::{EventMask, Inotify, WatchMask};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio_stream::StreamExt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirEvent {
    /// A file appeared (created, or renamed into the directory).
    Created(String),
    /// A file vanished (deleted, or renamed away).
    Removed(String),
    /// A file opened for writing was closed (edited in place).
    Written(String),
    /// Events may have been missed (queue overflow, the directory itself was
    /// removed and re-watched): every runner re-checks its state.
    Resync,
}

/// Run until `stop` turns true (the daemon's shutdown), whether or not any
/// pool listens at the moment: pools come and go with reloads. Survives the
/// directory being deleted and recreated: it re-adds the watch (with a short
/// backoff while the directory is missing) and sends `Resync`.
pub async fn watch_dir(
    dir: PathBuf,
    events: broadcast::Sender<DirEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let mut delay = Duration::from_millis(50);
    loop {
        let watched = tokio::select! {
            result = watch_once(&dir, &events) => result,
            _ = stop.wait_for(|s| *s) => return,
        };
        match watched {
            Ok(()) => {
                delay = Duration::from_millis(50);
                tracing::warn!(dir = %dir.display(), "watched directory went away; watching it again");
            }
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot watch directory; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
        let _ = events.send(DirEvent::Resync);
    }
}

/// One inotify watch on `dir`, until the directory itself goes away.
async fn watch_once(dir: &Path, events: &broadcast::Sender<DirEvent>) -> std::io::Result<()> {
    let inotify = Inotify::init()?;
    inotify.watches().add(
        dir,
        WatchMask::CREATE
            | WatchMask::CLOSE_WRITE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF,
    )?;
    // Anything that changed before the watch existed is unknown to the runners.
    let _ = events.send(DirEvent::Resync);
    let mut stream = inotify.into_event_stream([0u8; 4096])?;
    while let Some(event) = stream.next().await {
        let event = event?;
        if event.mask.contains(EventMask::Q_OVERFLOW) {
            let _ = events.send(DirEvent::Resync);
            continue;
        }
        if event
            .mask
            .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED)
        {
            return Ok(());
        }
        let Some(name) = event.name.map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let kind = if event
            .mask
            .intersects(EventMask::CREATE | EventMask::MOVED_TO)
        {
            DirEvent::Created(name)
        } else if event.mask.contains(EventMask::CLOSE_WRITE) {
            DirEvent::Written(name)
        } else {
            DirEvent::Removed(name)
        };
        tracing::debug!(dir = %dir.display(), ?kind, "directory event");
        // no receiver right now (no pool served) is fine: keep watching
        let _ = events.send(kind);
    }
    Ok(())
}
