//! Watches the config file's directory, so an edit applies without SIGHUP.
//!
//! A ConfigMap volume never edits `config.json` in place: the kubelet writes
//! the new content into a fresh timestamped directory and swaps the `..data`
//! symlink to it (`config.json` is a symlink through `..data`), then removes
//! the old directory. So the file itself cannot be watched (its inode never
//! changes); its directory can. Any change there (a swap, an in-place edit,
//! an editor's rename) is waited out for [`DEBOUNCE`] of quiet, and then the
//! daemon compares the file's bytes with what it last loaded: only a real
//! change reloads.

use super::dirwatch::{watch_dir, DirEvent};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Quiet time after the last event before the config is looked at: a
/// ConfigMap swap is five or six events within a millisecond or two.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// A running watch on the config file's directory; stops when dropped.
pub struct ConfigWatch {
    dir: PathBuf,
    events: broadcast::Receiver<DirEvent>,
    stop: watch::Sender<bool>,
}

impl ConfigWatch {
    /// Starts watching the directory that holds `config_file`. Must be
    /// called inside a tokio runtime. A missing directory is retried by
    /// the watch itself (with a warning), as for the kubelet's directory.
    pub fn start(config_file: &Path) -> ConfigWatch {
        let dir = match config_file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        let (sender, events) = broadcast::channel(64);
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(watch_dir(dir.clone(), sender, stop_rx));
        ConfigWatch { dir, events, stop }
    }

    /// Waits for something to change in the directory, then for
    /// [`DEBOUNCE`] without further change. Never returns once the watch
    /// has ended.
    pub async fn changed(&mut self) {
        loop {
            match self.events.recv().await {
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                Ok(event) => {
                    tracing::debug!(dir = %self.dir.display(), ?event, "config directory changed");
                    break;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => break,
            }
        }
        while let Ok(next) = tokio::time::timeout(DEBOUNCE, self.events.recv()).await {
            if matches!(next, Err(broadcast::error::RecvError::Closed)) {
                break;
            }
        }
    }
}

impl Drop for ConfigWatch {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
