//! `Register` with the kubelet's `kubelet.sock` (device-plugins mode).

use super::service::plugin_options;
use crate::kubelet_api::deviceplugin::v1beta1::{
    registration_client::RegistrationClient, RegisterRequest,
};
use crate::kubelet_api::{uds, DEVICE_PLUGIN_API_VERSION};
use std::path::Path;
use std::time::Duration;

/// How long one registration attempt may take, connect included. The
/// kubelet answers Register only after dialing us back, so allow for that.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Connect(#[from] uds::UdsError),
    #[error("kubelet at {path} refused registration of {resource}: {status}")]
    Refused {
        path: String,
        resource: String,
        status: tonic::Status,
    },
    #[error("registration of {resource} with {path} timed out after {ATTEMPT_TIMEOUT:?}")]
    Timeout { path: String, resource: String },
}

/// One `Register` call: `endpoint` is our socket's file name in the
/// kubelet's directory, as the API wants it.
pub async fn register(
    kubelet_socket: &Path,
    endpoint: &str,
    resource_name: &str,
) -> Result<(), RegisterError> {
    let attempt = async {
        let channel = uds::connect(kubelet_socket).await?;
        RegistrationClient::new(channel)
            .register(RegisterRequest {
                version: DEVICE_PLUGIN_API_VERSION.into(),
                endpoint: endpoint.into(),
                resource_name: resource_name.into(),
                options: Some(plugin_options()),
            })
            .await
            .map_err(|status| RegisterError::Refused {
                path: kubelet_socket.display().to_string(),
                resource: resource_name.into(),
                status,
            })?;
        Ok(())
    };
    tokio::time::timeout(ATTEMPT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(RegisterError::Timeout {
                path: kubelet_socket.display().to_string(),
                resource: resource_name.into(),
            })
        })
}

/// Retry delays: 50 ms doubling to 5 s. A retry also happens at once when
/// `kubelet.sock` reappears, so the cap only matters while the kubelet is down.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Duration::from_millis(50),
        }
    }
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(5));
        delay
    }

    pub fn reset(&mut self) {
        *self = Backoff::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<u128> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![50, 100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 50);
    }
}
