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

/// Like `init`, but append to `path`; falls back to stderr if the file
/// cannot be opened (a CNI plugin must still answer the runtime).
pub fn init_to_file(level: &str, path: &std::path::Path) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    let Ok(file) = file else {
        init(level);
        return;
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_target(false)
        .try_init();
}
