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
        // colour codes only for a person at a terminal, not in log files
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// The CNI plugin's logger: a fixed level, no `RUST_LOG` parsing. EnvFilter
/// pulls in a regex engine that would quintuple the size of a binary that is
/// exec'd on every pod start.
pub fn init_cni(level: tracing::Level, file: Option<&std::path::Path>) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false);
    let opened = file.and_then(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    });
    let _ = match opened {
        Some(file) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}
