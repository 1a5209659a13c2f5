//! Logging setup shared by the binaries: always stderr (stdout belongs to
//! the CNI protocol and to sriovctl's machine-readable output).

use tracing_subscriber::EnvFilter;

/// `level` is a tracing filter such as `info` or `sriov_rs=debug`;
/// `RUST_LOG` overrides it when set.
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // try_init: a second call (tests) must not panic
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
