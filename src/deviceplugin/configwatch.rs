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
    /// A change was seen and the quiet time after it not yet waited out:
    /// set across a cancelled [`ConfigWatch::changed`], so that the change
    /// is not lost when another wake of the daemon's `select!` won.
    pending: bool,
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
        ConfigWatch {
            dir,
            events,
            stop,
            pending: false,
        }
    }

    /// Waits for something to change in the directory, then for
    /// [`DEBOUNCE`] without further change. Never returns once the watch
    /// has ended. Cancel-safe: a change seen by a call that was dropped
    /// during the quiet time is reported by the next call.
    pub async fn changed(&mut self) {
        while !self.pending {
            match self.events.recv().await {
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                Ok(event) => {
                    tracing::debug!(dir = %self.dir.display(), ?event, "watched directory changed");
                    self.pending = true;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.pending = true,
            }
        }
        while let Ok(next) = tokio::time::timeout(DEBOUNCE, self.events.recv()).await {
            if matches!(next, Err(broadcast::error::RecvError::Closed)) {
                break;
            }
        }
        self.pending = false;
    }
}

impl Drop for ConfigWatch {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;

    /// The daemon waits on `changed` in a `select!` with other wakes: one
    /// that wins during the quiet time must not swallow the change.
    #[tokio::test]
    async fn a_change_seen_by_a_cancelled_wait_is_reported_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node-policy.yaml");
        let mut watch = ConfigWatch::start(&file);
        std::fs::write(&file, "policies: []\n").unwrap();
        // seen, then cancelled within the quiet time
        let cancelled = tokio::time::timeout(DEBOUNCE / 2, watch.changed()).await;
        assert!(cancelled.is_err(), "still waiting out the quiet time");
        // no new event: the pending change alone must end the next wait
        tokio::time::timeout(DEBOUNCE * 10, watch.changed())
            .await
            .expect("the change seen before the cancel is reported");
    }
}
